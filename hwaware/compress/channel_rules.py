"""The node rules of channel surgery's analysis (mixed into :class:`~.channel_graph.ChannelGraph`).

Every tensor value carries the *atoms* of its channel dim and where that dim is (``_cdim``: 1
for N x C x ..., the last dim after a channels-last ``permute``, 0 for a 1-D parameter). Ops
that tie channels together union their atoms; an op surgery cannot follow blocks the atoms it
reads, with the reason. The state (``_atoms``, ``_uf``, ``_shapes``, ...) is set up by
``ChannelGraph.__init__``.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .._fx import (
    ACTIVATION_FUNCTIONS,
    ACTIVATION_METHODS,
    ACTIVATION_MODULES,
    BINARY_FUNCTIONS,
    BINARY_METHODS,
    CAT_FUNCTIONS,
    COPY_METHODS,
    DROPOUT_FUNCTIONS,
    DROPOUT_MODULES,
    META_METHODS,
    PERMUTE_FUNCTIONS,
    PERMUTE_METHODS,
    POOL_FUNCTIONS,
    POOL_MODULES,
    REDUCE_FUNCTIONS,
    REDUCE_METHODS,
    RESHAPE_FUNCTIONS,
    RESHAPE_METHODS,
    RESIZE_FUNCTIONS,
    RESIZE_MODULES,
    SPLIT_FUNCTIONS,
    SPLIT_METHODS,
    STOCHASTIC_DEPTH_FUNCTIONS,
    is_norm_module,
    is_stochastic_depth,
    module_path,
    target_name,
)
from ..errors import HwawareError
from .channel_group import SizeAttribute

__all__ = ["ChannelRules"]

#: ops whose output channel c is computed from input channel c alone
_PASS_MODULES = (*ACTIVATION_MODULES, *DROPOUT_MODULES, *POOL_MODULES, *RESIZE_MODULES)
_PASS_FUNCTIONS = {*ACTIVATION_FUNCTIONS, *DROPOUT_FUNCTIONS, *POOL_FUNCTIONS, *RESIZE_FUNCTIONS,
                   *STOCHASTIC_DEPTH_FUNCTIONS}
_PASS_METHODS = {*ACTIVATION_METHODS, *COPY_METHODS}


class ChannelRules:
    """How each fx node moves, ties or blocks channel atoms."""

    def _block(self, atoms: np.ndarray | None, reason: str) -> None:
        if atoms is None:
            return
        for a in atoms.tolist():
            self._blocked.setdefault(a, reason)

    def _fresh(self, node: fx.Node, reason: str | None = None) -> np.ndarray | None:
        shape = self._shapes.get(node)
        if not isinstance(shape, tuple) or len(shape) < 2:
            return None
        atoms = self._uf.new(shape[1])
        if reason:
            self._block(atoms, reason)
        self._cdim[node] = 1
        return atoms

    def _set(self, node: fx.Node, atoms: np.ndarray | None, cdim: int = 1) -> None:
        self._atoms[node] = atoms
        self._cdim[node] = cdim

    def _inputs(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
        return found

    def _unsupported(self, node: fx.Node, what: str) -> None:
        reason = (f"passes through {what} at node '{node.name}' in '{module_path(node)}', "
                  "which surgery cannot follow")
        for inp in self._inputs(node):
            self._block(self._atoms.get(inp), reason)
            for part in self._parts.get(inp, ()):
                self._block(part[0], reason)
        self._atoms[node] = self._fresh(node, reason)

    def _visit(self, node: fx.Node) -> None:
        op = node.op
        if op == "placeholder":
            self._atoms[node] = self._fresh(node, "is tied to the model input")
        elif op == "get_attr":
            self._visit_attr(node)
        elif op == "output":
            for inp in self._inputs(node):
                self._block(self._atoms.get(inp), "feeds the model output")
        elif op == "call_module":
            self._visit_module(node)
        elif op == "call_function":
            self._visit_function(node, node.target, is_method=False)
        elif op == "call_method":
            self._visit_function(node, node.target, is_method=True)
        else:  # pragma: no cover - fx has no other ops
            self._unsupported(node, f"op {op}")

    def _visit_attr(self, node: fx.Node) -> None:
        """A 1-D parameter or buffer (a layer-scale ``gamma``) is a per-channel operand: its entries
        are atoms that a multiply couples to the channels it scales; surgery slices it."""
        target = str(node.target)
        shape = self._shapes.get(node)
        if isinstance(shape, tuple) and len(shape) == 1 and shape[0] > 1:
            if target not in self._param_atoms:
                self._param_atoms[target] = self._uf.new(shape[0])
                self._note_order(target)
            self._set(node, self._param_atoms[target], 0)
        else:
            self._atoms[node] = None

    def _note_order(self, name: str) -> None:
        self._order.setdefault(name, len(self._order))

    def _arg_atoms(self, node: fx.Node, i: int = 0) -> np.ndarray | None:
        a = node.args[i] if len(node.args) > i else None
        return self._atoms.get(a) if isinstance(a, fx.Node) else None

    def _arg_cdim(self, node: fx.Node, i: int = 0) -> int:
        a = node.args[i] if len(node.args) > i else None
        return self._cdim.get(a, 1) if isinstance(a, fx.Node) else 1

    def _pass(self, node: fx.Node, src: np.ndarray | None) -> None:
        """Output channels are the input channels (checks batch and channel dims are unchanged)."""
        inp = node.args[0] if node.args else None
        s_in = self._shapes.get(inp) if isinstance(inp, fx.Node) else None
        s_out = self._shapes.get(node)
        cd = self._arg_cdim(node)
        if (src is None or not isinstance(s_in, tuple) or not isinstance(s_out, tuple)
                or len(s_out) != len(s_in) or len(s_out) <= cd or cd == 0
                or s_out[0] != s_in[0] or s_out[cd] != s_in[cd]):
            self._unsupported(node, f"'{target_name(node)}' (changes the channel dim)")
            return
        self._set(node, src, cd)

    def _visit_module(self, node: fx.Node) -> None:
        name = str(node.target)
        mod = self._modules[name]
        src = self._arg_atoms(node)
        cd = self._arg_cdim(node)
        s_in = self._shapes.get(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
        kind = f"module '{name}' ({type(mod).__name__})"
        if isinstance(mod, nn.modules.conv._ConvNd) and not mod.transposed:
            if src is None or len(node.args) != 1 or node.kwargs or cd != 1:
                self._unsupported(node, kind)
                return
            self._visit_conv(name, mod, src)
            self._set(node, self._producer_atoms[name])
        elif isinstance(mod, nn.Linear):
            # y = x W^T on the last dim: a 2-D input, or channels-last (..., C) after a permute
            if src is None or not isinstance(s_in, tuple) or cd != len(s_in) - 1:
                self._unsupported(node, f"{kind} on an input whose last dim is not its channels")
                return
            self._visit_producer(name, src, mod.out_features)
            self._set(node, self._producer_atoms[name], cd)
        elif is_norm_module(mod) or isinstance(mod, nn.PReLU):
            self._visit_norm(node, name, mod, src, cd, s_in, kind)
        elif isinstance(mod, nn.LocalResponseNorm):
            if src is not None:
                for a in src.tolist():
                    self._caveat.setdefault(
                        a, f"LocalResponseNorm '{name}' sums over neighbouring channels; "
                        "kept channels' outputs change slightly")
            self._pass(node, src)
        elif isinstance(mod, nn.Flatten):
            self._reshape(node, src, literal_ok=True)
        elif isinstance(mod, nn.Softmax | nn.LogSoftmax) and mod.dim not in (1, -3):
            self._pass(node, src)
        elif isinstance(mod, _PASS_MODULES) or is_stochastic_depth(mod):
            if isinstance(mod, nn.modules.pooling._MaxPoolNd) and mod.return_indices:
                self._unsupported(node, f"{kind} with return_indices")
                return
            self._pass(node, src)
        else:
            self._unsupported(node, kind)

    def _visit_norm(self, node: fx.Node, name: str, mod: nn.Module, src: np.ndarray | None, cd: int,
                    s_in: Any, kind: str) -> None:
        """Norm layers (and subclasses such as timm's BatchNormAct2d) and PReLU: per-channel
        parameters sliced with the channels. LayerNorm (and GroupNorm with one group) normalize
        over the channels: still prunable, with a caveat (the statistics of the kept channels
        change)."""
        if isinstance(mod, nn.PReLU) and mod.num_parameters == 1:
            self._pass(node, src)
            return
        if src is None or not isinstance(s_in, tuple):
            self._unsupported(node, kind)
            return
        if any(p.dim() > 1 for c in mod.children() for p in c.parameters()):
            self._unsupported(node, f"{kind} with a sub-module holding per-channel weights")
            return
        if isinstance(mod, nn.LayerNorm):
            ns = tuple(mod.normalized_shape)
            over_last = len(ns) == 1 and cd == len(s_in) - 1 and s_in[-1] == ns[0]
            over_dim1 = (len(ns) == 1 and cd == 1 and s_in[1] == ns[0] and s_in[-1] != ns[0]
                         and type(mod) is not nn.LayerNorm)  # LayerNorm2d-style subclasses
            if not (over_last or over_dim1):
                self._unsupported(node, f"{kind} over dims other than the channels")
                return
            note = f"LayerNorm '{name}' normalizes over channels; kept channels' outputs change"
        elif isinstance(mod, nn.GroupNorm):
            if cd != 1 or mod.num_groups not in (1, mod.num_channels):
                self._unsupported(node, f"{kind} with {mod.num_groups} groups (removing channels "
                                  "would unbalance the groups)")
                return
            note = (f"GroupNorm '{name}' normalizes over channels; kept channels' outputs change"
                    if mod.num_groups == 1 else "")
        elif cd != 1:
            self._unsupported(node, f"{kind} on a channels-last tensor")
            return
        else:
            note = ""
        if note:
            for a in src.tolist():
                self._caveat.setdefault(a, note)
        first = self._channelwise_atoms.setdefault(name, src)
        if first is not src:
            self._uf.union_arrays(first, src)
        self._note_order(name)
        self._set(node, src, cd)

    def _visit_producer(self, name: str, src: np.ndarray, out_channels: int) -> np.ndarray:
        self._note_order(name)
        if name in self._producer_atoms:  # shared module called again: same filters, same inputs
            if len(self._consumer_atoms[name]) != len(src):
                raise HwawareError(f"module '{name}' is called with different channel counts")
            self._uf.union_arrays(self._consumer_atoms[name], src)
            return self._producer_atoms[name]
        out = self._uf.new(out_channels)
        for ch, a in enumerate(out.tolist()):
            self._owner[a] = (name, ch)
        self._producer_atoms[name] = out
        self._consumer_atoms[name] = src
        return out

    def _visit_conv(self, name: str, mod: nn.modules.conv._ConvNd, src: np.ndarray) -> None:
        out = self._visit_producer(name, src, mod.out_channels)
        g = mod.groups
        if g == 1:
            return
        c_g, m_g = mod.in_channels // g, mod.out_channels // g
        if c_g == 1:  # depthwise: conv group k reads only input channel k
            for o in range(mod.out_channels):
                self._uf.union(int(out[o]), int(src[o // m_g]))
            return
        for j in range(1, g):  # grouped: every conv group keeps the same channel positions
            self._uf.union_arrays(src[:c_g], src[j * c_g:(j + 1) * c_g])
            self._uf.union_arrays(out[:m_g], out[j * m_g:(j + 1) * m_g])

    def _is(self, target: Any, is_method: bool, functions: Any, methods: Any) -> bool:
        return target in methods if is_method else target in functions

    def _visit_function(self, node: fx.Node, target: Any, *, is_method: bool) -> None:
        if is_method and target in META_METHODS:
            self._atoms[node] = None
            return
        if not is_method and target in (getattr, operator.getitem):
            self._getitem(node)
            return
        src = self._arg_atoms(node)
        if self._is(target, is_method, _PASS_FUNCTIONS, _PASS_METHODS):
            self._pass(node, src)
        elif self._is(target, is_method, REDUCE_FUNCTIONS, REDUCE_METHODS):
            self._reduce(node, src)
        elif self._is(target, is_method, RESHAPE_FUNCTIONS, RESHAPE_METHODS):
            self._reshape(node, src, literal_ok=target not in ("view", "reshape", torch.reshape))
        elif self._is(target, is_method, PERMUTE_FUNCTIONS, PERMUTE_METHODS):
            self._permute(node, src)
        elif self._is(target, is_method, BINARY_FUNCTIONS, BINARY_METHODS):
            self._binary(node)
        elif not is_method and target in CAT_FUNCTIONS:
            self._cat(node)
        elif self._is(target, is_method, SPLIT_FUNCTIONS, SPLIT_METHODS):
            self._split(node, src)
        else:
            self._unsupported(node, f"'{target_name(node)}'")

    def _reduce(self, node: fx.Node, src: np.ndarray | None) -> None:
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        shape = self._shapes.get(node.args[0]) if isinstance(node.args[0], fx.Node) else None
        s_out = self._shapes.get(node)
        cd = self._arg_cdim(node)
        if dims is None or not isinstance(shape, tuple) or src is None or not isinstance(s_out, tuple):
            self._unsupported(node, f"'{target_name(node)}' over all dims")
            return
        dims = [dims] if isinstance(dims, int) else list(dims)
        if any(not isinstance(d, int) or d % len(shape) in (0, cd) for d in dims):
            self._unsupported(node, f"'{target_name(node)}' over the batch/channel dim")
            return
        new_cd = cd if keep else cd - sum(1 for d in dims if d % len(shape) < cd)
        self._set(node, src, new_cd)

    def _permute(self, node: fx.Node, src: np.ndarray | None) -> None:
        dims = list(node.args[1:]) or list(node.kwargs.get("dims", ()))
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        cd = self._arg_cdim(node)
        s_out = self._shapes.get(node)
        if (src is None or not isinstance(s_out, tuple) or len(dims) != len(s_out)
                or not all(isinstance(d, int) for d in dims)):
            self._unsupported(node, "'permute'")
            return
        dims = [d % len(s_out) for d in dims]
        if dims[0] != 0 or cd not in dims:
            self._unsupported(node, "'permute' moving the batch dim")
            return
        self._set(node, src, dims.index(cd))

    def _getitem(self, node: fx.Node) -> None:
        src_node = node.args[0]
        idx = node.args[1] if len(node.args) > 1 else None
        if isinstance(src_node, fx.Node) and src_node in self._parts and isinstance(idx, int):
            atoms, cd = self._parts[src_node][idx]
            self._set(node, atoms, cd)
            return
        if not isinstance(self._shapes.get(node), tuple):  # x.shape, x.size()[0]: metadata
            self._atoms[node] = None
            return
        s_in = self._shapes.get(src_node) if isinstance(src_node, fx.Node) else None
        if node.target is operator.getitem and isinstance(s_in, tuple) and self._full_slice(idx, s_in):
            self._pass(node, self._atoms.get(src_node))  # out[:, :C] with C the full width
            return
        if node.target is operator.getitem and isinstance(s_in, tuple) and self._attribute_slice(node, idx, s_in):
            return
        self._unsupported(node, f"'{target_name(node)}' (tensor indexing)")

    def _attribute_slice(self, node: fx.Node, idx: Any, s_in: tuple) -> bool:
        """``x[:, 0:v]`` or ``x[:, v:]`` where ``v`` is one int attribute of the module whose forward
        slices (timm RexNet: ``cat([x[:, 0:self.in_channels] + shortcut, x[:, self.in_channels:]])``):
        the slice's channels, and surgery rewrites ``v`` to the kept channels of ``x[:, :v]``. False
        (nothing recorded) for any other indexing."""
        src, cd = self._atoms.get(node.args[0]), self._arg_cdim(node)
        items = idx if isinstance(idx, tuple) else (idx,)
        if (src is None or cd != 1 or len(items) != 2 or items[0] != slice(None)
                or not isinstance(items[1], slice) or items[1].step not in (None, 1)):
            return False
        start, stop, c = items[1].start, items[1].stop, s_in[1]
        if start in (None, 0) and type(stop) is int and 0 < stop < c:
            v, atoms = stop, src[:stop]
        elif type(start) is int and 0 < start < c and (stop is None or (type(stop) is int and stop >= c)):
            v, atoms = start, src[start:]
        else:
            return False
        attr = self._size_attribute(node, v)
        if attr is None:
            return False
        self._set(node, atoms, cd)
        self._split_attrs.append(SizeAttribute(*attr, (src[:v],), node.name, (atoms,), cd))
        return True

    def _full_slice(self, idx: Any, s_in: tuple) -> bool:
        """``idx`` keeps the batch and channel dims whole (``x[:, :n]`` with ``n >= C``)."""
        items = idx if isinstance(idx, tuple) else (idx,)
        if len(items) < 2 or len(s_in) < 2:
            return False
        for item, size in zip(items[:2], s_in[:2]):
            if not isinstance(item, slice) or item.step not in (None, 1) or item.start not in (None, 0):
                return False
            if item.stop is not None and not (isinstance(item.stop, int) and item.stop >= size):
                return False
        return True

    def _split(self, node: fx.Node, src: np.ndarray | None) -> None:
        shapes = self._shapes.get(node)
        dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
        cd = self._arg_cdim(node)
        s_in = self._shapes.get(node.args[0]) if isinstance(node.args[0], fx.Node) else None
        if (src is None or not isinstance(shapes, list) or not isinstance(dim, int)
                or not isinstance(s_in, tuple) or not all(isinstance(s, tuple) for s in shapes)):
            self._unsupported(node, f"'{target_name(node)}'")
            return
        self._atoms[node] = None
        if dim % len(s_in) != cd:
            self._parts[node] = [(src, cd)] * len(shapes)
            return
        sizes = [s[cd] for s in shapes]
        size_arg = node.args[1] if len(node.args) > 1 else next(
            (node.kwargs[k] for k in ("split_size_or_sections", "split_size") if k in node.kwargs), None)
        # parts of one size read from an int attribute of the module (Res2Net: torch.split(x, self.width, 1)),
        # or computed from one that holds their total (CSPNet: x.split(self.expand_chs // 2, dim=1))
        scale, int_attr = 1, None
        if type(size_arg) is int and len(set(sizes)) == 1:
            int_attr = self._size_attribute(node, size_arg)
            if int_attr is None and len(sizes) > 1:
                scale, int_attr = len(sizes), self._size_attribute(node, size_arg * len(sizes))
        equal = len(set(sizes)) == 1 and (target_name(node) == "chunk" or int_attr is not None)
        if equal:
            # equal parts stay equal if unit i of every part goes together (as grouped convs)
            n = sizes[0]
            for k in range(1, len(sizes)):
                self._uf.union_arrays(src[:n], src[k * n:(k + 1) * n])
        offsets = np.cumsum([0, *sizes])
        self._parts[node] = [(src[offsets[i]:offsets[i + 1]], cd) for i in range(len(sizes))]
        parts = tuple(p for p, _ in self._parts[node])
        if int_attr is not None:  # surgery writes the new part size back
            self._split_attrs.append(SizeAttribute(*int_attr, parts, node.name, parts, cd, scale))
        if equal:
            return
        attr = self._sizes_attribute(node, sizes)
        if attr is None:
            self._block(src, f"is split with literal sizes {sizes} at node '{node.name}' in "
                        f"'{module_path(node)}' (the sizes would be wrong after surgery)")
        else:  # timm MixedConv2d reads its sizes from ``self.splits``: surgery rewrites them
            self._split_attrs.append(SizeAttribute(*attr, parts, node.name, parts, cd))

    def _sizes_attribute(self, node: fx.Node, sizes: list[int]) -> tuple[str, str] | None:
        """(module, attribute) when exactly one list attribute of the module whose forward does
        the split holds ``sizes`` (the forward reads the sizes from it, as MixedConv2d does)."""
        return self._owner_attribute(node, lambda v: isinstance(v, (list, tuple)) and list(v) == sizes
                                     and all(type(s) is int for s in v))

    def _size_attribute(self, node: fx.Node, size: int) -> tuple[str, str] | None:
        """(module, attribute) when exactly one int attribute of the module whose forward does the
        split (or slices) equals ``size`` (the forward reads it from there, as Res2Net's ``width``)."""
        return self._owner_attribute(node, lambda v: type(v) is int and v == size)

    def _owner_attribute(self, node: fx.Node, match: Any) -> tuple[str, str] | None:
        """(module path, attribute) of the one public attribute for which ``match`` holds, of the
        module whose forward ran ``node`` (the root's path is ""); None if none or several."""
        owner = module_path(node)
        owner = "" if owner == "(top level)" else owner
        mod = self._modules.get(owner)
        if mod is None:
            return None
        hits = [k for k, v in vars(mod).items() if not k.startswith("_") and match(v)]
        return (owner, hits[0]) if len(hits) == 1 else None

    def _parameter_shape(self, node: fx.Node, src: np.ndarray, pos: int) -> None:
        """A per-channel parameter viewed to a literal shape holding its length C at ``pos``: surgery
        rewrites the module attribute that holds that shape (timm MetaFormer's ``Scale``:
        ``self.scale.view(self.shape)``, shape ``(C, 1, 1)``), and blocks C if none does (``-1`` or
        a size read from a tensor needs nothing)."""
        shape = list(node.args[1:]) or [node.kwargs.get("size", node.kwargs.get("shape"))]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = list(shape[0])
        if pos >= len(shape) or type(shape[pos]) is not int or shape[pos] != len(src):
            return
        attr = self._owner_attribute(node, lambda v: isinstance(v, (tuple, list)) and list(v) == shape)
        if attr is None:
            self._block(src, f"is reshaped to the literal shape {tuple(shape)} at node '{node.name}' in "
                        f"'{module_path(node)}' (the channel count would be wrong after surgery)")
            return
        self._split_attrs.append(SizeAttribute(*attr, (src,), node.name, (src,), pos, index=pos))

    def _reshape(self, node: fx.Node, src: np.ndarray | None, *, literal_ok: bool) -> None:
        inp = node.args[0] if node.args else None
        s_in = self._shapes.get(inp) if isinstance(inp, fx.Node) else None
        s_out = self._shapes.get(node)
        cd = self._arg_cdim(node)
        what = f"'{target_name(node)}'"
        if src is None or not isinstance(s_in, tuple) or not isinstance(s_out, tuple):
            self._unsupported(node, what)
            return
        if cd == 0 and len(s_in) == 1:  # a 1-D parameter reshaped to broadcast: (C,) -> (1, C, 1, 1)
            big = [i for i, s in enumerate(s_out) if s != 1]
            if big and len(big) == 1 and s_out[big[0]] == s_in[0]:
                self._set(node, src, big[0])
                self._parameter_shape(node, src, big[0])
            else:
                self._unsupported(node, f"{what} of a per-channel parameter to {s_out}")
            return
        if len(s_out) < 2 or cd != 1:
            self._unsupported(node, what)
            return
        if not literal_ok:  # view/reshape: a literal channel count would be wrong after surgery
            sizes = list(node.args[1:])
            if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
                sizes = list(sizes[0])
            sizes += list(node.kwargs.get("shape", ()))
            if len(sizes) > 1 and isinstance(sizes[1], int) and sizes[1] != -1:
                self._unsupported(node, f"{what} with a literal size {sizes[1]} after the batch dim "
                                  "(use torch.flatten(x, 1) or x.view(x.size(0), -1))")
                return
        if s_out[0] != s_in[0]:
            self._unsupported(node, f"{what} (changes the batch dim)")
        elif s_out[1] == s_in[1] and math.prod(s_out[2:]) == math.prod(s_in[2:]):
            self._set(node, src)
        elif len(s_out) == 2 and s_out[1] == math.prod(s_in[1:]):
            self._set(node, np.repeat(src, math.prod(s_in[2:])))  # channel c -> H*W columns
        else:
            self._unsupported(node, f"{what} from {s_in} to {s_out}")

    def _binary(self, node: fx.Node) -> None:
        s_out = self._shapes.get(node)
        operands = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
        if not isinstance(s_out, tuple) or len(s_out) < 2:
            self._unsupported(node, f"'{target_name(node)}'")
            return
        # the channel dim of the output, aligned to its rank (broadcasting aligns on the right)
        cds = [self._cdim.get(a, 1) + len(s_out) - len(s) for a in operands
               if self._atoms.get(a) is not None and isinstance(s := self._shapes.get(a), tuple)
               and len(s) == len(s_out)]
        cd = cds[0] if cds else 1
        with_atoms: list[np.ndarray] = []
        for a in operands:
            s = self._shapes.get(a)
            if not isinstance(s, tuple):
                continue
            aligned = (1,) * (len(s_out) - len(s)) + s
            a_cd = self._cdim.get(a, 1) + len(s_out) - len(s)
            atoms = self._atoms.get(a)
            if atoms is not None and a_cd == cd and aligned[cd] == s_out[cd]:
                with_atoms.append(atoms)
            elif len(aligned) == len(s_out) and aligned[cd] == 1:
                continue  # broadcast along channels (a scalar gate per position)
            else:
                self._unsupported(node, f"'{target_name(node)}' with a per-channel operand "
                                  f"'{a.name}' of shape {s}")
                return
        if not with_atoms or cd == 0:
            self._unsupported(node, f"'{target_name(node)}'")
            return
        for other in with_atoms[1:]:
            self._uf.union_arrays(with_atoms[0], other)
        self._set(node, with_atoms[0], cd)

    def _cat(self, node: fx.Node) -> None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        s_out = self._shapes.get(node)
        if (not isinstance(tensors, (tuple, list)) or not isinstance(s_out, tuple) or len(s_out) < 2
                or not isinstance(dim, int)):
            self._unsupported(node, "'cat'")
            return
        parts = [self._atoms.get(t) if isinstance(t, fx.Node) else None for t in tensors]
        cds = {self._cdim.get(t, 1) for t in tensors if isinstance(t, fx.Node)}
        if any(p is None for p in parts) or len(cds) != 1:
            self._unsupported(node, "'cat' of a tensor without channels")
            return
        cd = cds.pop()
        if dim % len(s_out) == cd:
            self._set(node, np.concatenate(parts), cd)  # channel offsets kept apart
        else:
            for p in parts[1:]:
                self._uf.union_arrays(parts[0], p)
            self._set(node, parts[0], cd)
