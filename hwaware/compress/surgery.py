"""Structured channel surgery: remove whole filters/channels and return a smaller *dense* model.

One implementation shared by structured pruning and NetAdapt. The model is traced with
``torch.fx`` and run once on an example input (eval mode, no grad, the model is never modified) to
find which output channels must shrink together (only the first sample of the example input is
run; its shapes are all the analysis needs).

API
---
``channel_groups(model, example_input) -> list[ChannelGroup]``
    Every set of channels that must be removed together. A :class:`ChannelGroup` has

    - ``name``: the first producer (graph order) of the group, e.g. ``"layer1.0.conv1"``;
    - ``size``: number of *units*, the positions you choose from (indices ``0..size-1``);
    - ``width``: output channels of the named producer. Normally ``width == size`` and unit ``u`` is
      channel ``u`` of every producer; when a grouped conv couples channels (see below)
      ``width == k * size`` and unit ``u`` stands for channels ``u, u+size, ...``; ``units[u]``
      lists the exact ``(producer, channel)`` pairs of every unit;
    - ``producers``: Conv/Linear modules whose filters (output channels) are removed — coupled
      producers through residual adds, multiplications and depthwise convs are all listed;
    - ``consumers``: modules whose input channels are removed (next convs, depthwise convs, a Linear
      after ``flatten``, where the ``H*W`` block of columns of each channel goes);
    - ``channelwise``: per-channel modules that are sliced (BatchNorm, PReLU);
    - ``prunable`` / ``reason``: ``False`` with a one-line reason when the group feeds the model
      output, is tied to the model input, or passes through an op surgery cannot follow;
    - ``caveats``: ops that stay valid but whose outputs change (LocalResponseNorm: its window of
      neighbouring channels shifts when channels are removed).

``l2_ranking(model, group) -> list[int]``
    Unit indices, most important first: L2 norm of each filter, summed over coupled producers
    (NetAdapt's rule: keep the largest-L2 filters). Ties keep the lower index first.

``shrink(model, example_input, keep, *, round_to=1, check=True) -> nn.Module``
    A NEW model (deep copy; ``model`` is untouched) in which group ``g`` keeps only the units
    ``keep[g]`` (groups not named keep everything). Conv/Linear/BatchNorm modules are the same
    classes with smaller tensors (also ``weight_orig``/``weight_mask`` left by
    ``torch.nn.utils.prune``), so the profiler, the Eyeriss model and CPU timing all see the
    smaller network. ``check`` runs the example input through the result.

``prune_channels(model, example_input, group_name, n_remove, *, round_to=1) -> nn.Module``
    Remove the ``n_remove`` lowest-L2 units of one group.

``ChannelGraph(model, example_input)``
    The analysis behind all of the above; build it once and call ``.shrink(keep)`` / ``.prune(...)``
    many times in a loop (NetAdapt). It reads the model's *current* weights when shrinking.

Rules
-----
- Followed ops: Conv1d/2d/3d (any ``groups``), Linear (2-D input), BatchNorm/InstanceNorm, PReLU,
  elementwise activations, dropout, pooling, upsampling, padding, mean/sum over spatial dims,
  ``flatten``/``view``/``reshape``/``(un)squeeze`` (batch dim kept), tensor ``+ - * /`` (residual adds and
  squeeze-excitation gates couple their operands), ``torch.cat`` (channel offsets are kept apart;
  along another dim the operands are coupled). Anything else blocks the channels through it (listed
  in ``reason``), never silently mis-sliced.
- ``view``/``reshape`` with a literal size after the batch dim (``x.view(-1, 9216)``) blocks: the
  literal would be wrong after surgery; write ``torch.flatten(x, 1)`` or ``x.view(x.size(0), -1)``.
- Grouped convs (1 < groups < in_channels, e.g. the paper AlexNet CONV2/4/5, two groups): every
  conv group must keep the same number of channels, so channel ``i`` of each conv group is coupled
  (input channel ``i`` with ``i + C/groups``, output ``j`` with ``j + M/groups``). Pruning CONV1's
  output therefore removes channels in pairs (``width == 2 * size``); ``groups`` stays 2.
- Depthwise convs (``in_channels == groups``): output channels of conv group ``k`` follow input
  channel ``k``; removing a channel removes its depthwise filter and lowers ``groups``.
- ``round_to``: the kept channel count of each named group's producer is rounded UP to a multiple of
  ``round_to`` (the best-ranked removed units come back) and never beyond the original width. Use it
  for counts that tile the PE array (e.g. ``round_to=4`` or ``8`` for a 12x14 Eyeriss array whose
  row-stationary mapping splits filters over PE sets); ``round_to=1`` is exact.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .._suggest import did_you_mean
from ..errors import HwawareError

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "channel_groups",
    "count_params",
    "l2_ranking",
    "prune_channels",
    "shrink",
]


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels that must be removed together (see the module docstring)."""

    name: str
    size: int
    width: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    channelwise: tuple[str, ...] = ()
    prunable: bool = True
    reason: str = ""
    caveats: tuple[str, ...] = ()
    #: per unit, the (producer module, output channel) pairs it removes
    units: tuple[tuple[tuple[str, int], ...], ...] = field(default=(), repr=False)

    @property
    def channels_per_unit(self) -> int:
        """Channels of the named producer one unit stands for (2 for AlexNet CONV1; >= 1 always)."""
        return max(1, round(self.width / self.size))

    def __post_init__(self) -> None:
        if self.size < 1 or self.width < 1:
            raise ValueError(f"ChannelGroup {self.name!r}: size={self.size}, width={self.width}; "
                             "both must be >= 1")
        if self.units and len(self.units) != self.size:
            raise ValueError(f"ChannelGroup {self.name!r}: {len(self.units)} units for size {self.size}")


# ----------------------------------------------------------------------------------------------
# op tables

_PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Threshold,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool2d,
    nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
    nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
)
_CHANNELWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.PReLU,
)
_PASS_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus, F.sigmoid, F.tanh, F.threshold,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.clamp, torch.clip, torch.abs,
    torch.neg, operator.neg, torch.exp,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    F.interpolate, F.pad,
}
_PASS_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "clip_",
    "contiguous", "clone", "detach", "abs", "neg", "exp", "float", "half", "double", "to",
}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
_BINARY_FUNCTIONS = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
    operator.truediv, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
    torch.maximum, torch.minimum,
}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_META_METHODS = {"size", "dim", "numel"}


# ----------------------------------------------------------------------------------------------
# tracing


class _Tracer(fx.Tracer):
    """fx tracer that remembers which module was being traced when tracing failed."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.failed: list[str] | None = None

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        name = self.path_of_module(m)
        self.stack.append(f"{name} ({type(m).__name__})")
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed is None:
                self.failed = list(self.stack)
            raise
        finally:
            self.stack.pop()


def _trace(model: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        where = tracer.failed[-1] if tracer.failed else f"top-level forward of {type(model).__name__}"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HwawareError(
            f"channel surgery cannot trace the model with torch.fx: module '{where}' failed: {msg} "
            "(surgery needs a forward without data-dependent control flow)"
        ) from exc
    return fx.GraphModule(tracer.root, graph)


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced graph once and records each node's output shape (None if not a tensor)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.shapes[n] = _shape_of(out)
        return out


def _shape_of(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in x):
        return [_shape_of(v) for v in x]
    return None


def _as_args(example_input: Any) -> tuple[Any, ...]:
    """The forward's arguments, cut to the first sample (shapes are all the analysis needs)."""
    if isinstance(example_input, torch.Tensor):
        args: tuple[Any, ...] = (example_input,)
    elif isinstance(example_input, (tuple, list)) and example_input:
        args = tuple(example_input)
    else:
        raise HwawareError(
            f"example_input must be a tensor or a tuple of tensors, got {type(example_input).__name__}"
        )
    return tuple(a[:1] if isinstance(a, torch.Tensor) and a.dim() > 1 else a for a in args)


def _run_eval(model: nn.Module, fn: Any) -> Any:
    """Call ``fn()`` with every module in eval mode and no grad; restore training flags after."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            return fn()
    finally:
        for m, t in flags:
            m.training = t


# ----------------------------------------------------------------------------------------------
# analysis


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:
            p[a], a = root, p[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            if ra < rb:
                ra, rb = rb, ra
            self.parent[ra] = rb

    def union_arrays(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            self.union(x, y)


@dataclass
class _ConvUse:
    module: str
    in_atoms: np.ndarray
    out_atoms: np.ndarray


class ChannelGraph:
    """Channel dependency analysis of ``model`` on ``example_input`` (model never modified)."""

    def __init__(self, model: nn.Module, example_input: Any) -> None:
        if not isinstance(model, nn.Module):
            raise HwawareError(f"channel surgery needs an nn.Module, got {type(model).__name__}")
        self.model = model
        self.example_input = example_input
        args = _as_args(example_input)
        gm = _trace(model)
        rec = _ShapeRecorder(gm)
        try:
            _run_eval(model, lambda: rec.run(*args))
        except HwawareError:
            raise
        except Exception as exc:
            shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args]
            raise HwawareError(
                f"the example input {shapes} does not run through {type(model).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            ) from exc
        self._shapes = rec.shapes
        self._modules = dict(model.named_modules())
        self._uf = _UnionFind()
        self._atoms: dict[fx.Node, np.ndarray | None] = {}
        self._blocked: dict[int, str] = {}  # atom -> reason
        self._caveat: dict[int, str] = {}
        self._owner: dict[int, tuple[str, int]] = {}  # producer atom -> (module, channel)
        self._producer_atoms: dict[str, np.ndarray] = {}  # module -> out atoms (all calls share)
        self._consumer_atoms: dict[str, np.ndarray] = {}  # module -> in atoms (first call)
        self._channelwise_atoms: dict[str, np.ndarray] = {}
        self._order: dict[str, int] = {}  # module -> first appearance in the graph
        for node in gm.graph.nodes:
            self._visit(node)
        self.output_shape = next(
            (self._shapes.get(n) for n in gm.graph.nodes if n.op == "output"), None
        )
        self._build_groups()

    # -- node rules ----------------------------------------------------------------------------

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
        return atoms

    def _inputs(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
        return found

    def _unsupported(self, node: fx.Node, what: str) -> None:
        reason = f"passes through {what} at node '{node.name}', which surgery cannot follow"
        for inp in self._inputs(node):
            self._block(self._atoms.get(inp), reason)
        self._atoms[node] = self._fresh(node, reason)

    def _visit(self, node: fx.Node) -> None:
        op = node.op
        if op == "placeholder":
            self._atoms[node] = self._fresh(node, "is tied to the model input")
        elif op == "get_attr":
            self._atoms[node] = None
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

    def _note_order(self, name: str) -> None:
        self._order.setdefault(name, len(self._order))

    def _arg_atoms(self, node: fx.Node, i: int = 0) -> np.ndarray | None:
        a = node.args[i] if len(node.args) > i else None
        return self._atoms.get(a) if isinstance(a, fx.Node) else None

    def _pass(self, node: fx.Node, src: np.ndarray | None) -> None:
        """Output channels are the input channels (checks batch and channel dims are unchanged)."""
        inp = node.args[0] if node.args else None
        s_in = self._shapes.get(inp) if isinstance(inp, fx.Node) else None
        s_out = self._shapes.get(node)
        if (src is None or not isinstance(s_in, tuple) or not isinstance(s_out, tuple)
                or len(s_out) < 2 or s_out[:2] != s_in[:2]):
            self._unsupported(node, f"'{_target_name(node)}' (changes the channel dim)")
            return
        self._atoms[node] = src

    def _visit_module(self, node: fx.Node) -> None:
        name = str(node.target)
        mod = self._modules[name]
        src = self._arg_atoms(node)
        s_in = self._shapes.get(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
        kind = f"module '{name}' ({type(mod).__name__})"
        if isinstance(mod, nn.modules.conv._ConvNd) and not mod.transposed:
            if src is None or len(node.args) != 1 or node.kwargs:
                self._unsupported(node, kind)
                return
            self._visit_conv(name, mod, src)
            self._atoms[node] = self._producer_atoms[name]
        elif isinstance(mod, nn.Linear):
            if src is None or not isinstance(s_in, tuple) or len(s_in) != 2:
                self._unsupported(node, f"{kind} on a non-2-D input")
                return
            self._visit_producer(name, src, mod.out_features)
            self._atoms[node] = self._producer_atoms[name]
        elif isinstance(mod, _CHANNELWISE_MODULES):
            n_param = getattr(mod, "num_parameters", None)
            if isinstance(mod, nn.PReLU) and n_param == 1:
                self._pass(node, src)
                return
            if src is None:
                self._unsupported(node, kind)
                return
            first = self._channelwise_atoms.setdefault(name, src)
            if first is not src:
                self._uf.union_arrays(first, src)
            self._note_order(name)
            self._atoms[node] = src
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
        elif isinstance(mod, _PASS_MODULES):
            if isinstance(mod, nn.modules.pooling._MaxPoolNd) and mod.return_indices:
                self._unsupported(node, f"{kind} with return_indices")
                return
            self._pass(node, src)
        else:
            self._unsupported(node, kind)

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

    def _visit_function(self, node: fx.Node, target: Any, *, is_method: bool) -> None:
        if is_method and target in _META_METHODS:
            self._atoms[node] = None
            return
        if not is_method and target in (getattr, operator.getitem):
            if isinstance(self._shapes.get(node), tuple):  # a tensor slice: x[:, :8], split(...)[0]
                self._unsupported(node, f"'{_target_name(node)}' (tensor indexing)")
            else:  # x.shape, x.size()[0]: metadata, no channels involved
                self._atoms[node] = None
            return
        src = self._arg_atoms(node)
        if (not is_method and target in _PASS_FUNCTIONS) or (is_method and target in _PASS_METHODS):
            self._pass(node, src)
        elif (not is_method and target in _REDUCE_FUNCTIONS) or (is_method and target in _REDUCE_METHODS):
            dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            shape = self._shapes.get(node.args[0]) if isinstance(node.args[0], fx.Node) else None
            if dims is None or not isinstance(shape, tuple):
                self._unsupported(node, f"'{_target_name(node)}' over all dims")
                return
            dims = [dims] if isinstance(dims, int) else list(dims)
            if any(not isinstance(d, int) or d % len(shape) in (0, 1) for d in dims):
                self._unsupported(node, f"'{_target_name(node)}' over the batch/channel dim")
                return
            self._pass(node, src)
        elif (not is_method and target in _RESHAPE_FUNCTIONS) or (is_method and target in _RESHAPE_METHODS):
            self._reshape(node, src, literal_ok=target not in ("view", "reshape", torch.reshape))
        elif (not is_method and target in _BINARY_FUNCTIONS) or (is_method and target in _BINARY_METHODS):
            self._binary(node)
        elif not is_method and target in _CAT_FUNCTIONS:
            self._cat(node)
        else:
            self._unsupported(node, f"'{_target_name(node)}'")

    def _reshape(self, node: fx.Node, src: np.ndarray | None, *, literal_ok: bool) -> None:
        inp = node.args[0] if node.args else None
        s_in = self._shapes.get(inp) if isinstance(inp, fx.Node) else None
        s_out = self._shapes.get(node)
        what = f"'{_target_name(node)}'"
        if src is None or not isinstance(s_in, tuple) or not isinstance(s_out, tuple) or len(s_out) < 2:
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
            self._atoms[node] = src
        elif len(s_out) == 2 and s_out[1] == math.prod(s_in[1:]):
            self._atoms[node] = np.repeat(src, math.prod(s_in[2:]))  # channel c -> H*W columns
        else:
            self._unsupported(node, f"{what} from {s_in} to {s_out}")

    def _binary(self, node: fx.Node) -> None:
        s_out = self._shapes.get(node)
        operands = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
        if not isinstance(s_out, tuple) or len(s_out) < 2:
            self._unsupported(node, f"'{_target_name(node)}'")
            return
        with_atoms: list[np.ndarray] = []
        for a in operands:
            s = self._shapes.get(a)
            if not isinstance(s, tuple):
                continue
            aligned = (1,) * (len(s_out) - len(s)) + s
            channels = aligned[1] if len(aligned) == len(s_out) else None
            atoms = self._atoms.get(a)
            if atoms is not None and len(s) == len(s_out) and channels == s_out[1]:
                with_atoms.append(atoms)
            elif channels == 1:
                continue  # broadcast along channels (a scalar gate per position)
            else:
                self._unsupported(node, f"'{_target_name(node)}' with a per-channel operand "
                                  f"'{a.name}' of shape {s}")
                return
        if not with_atoms:
            self._unsupported(node, f"'{_target_name(node)}'")
            return
        for other in with_atoms[1:]:
            self._uf.union_arrays(with_atoms[0], other)
        self._atoms[node] = with_atoms[0]

    def _cat(self, node: fx.Node) -> None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        s_out = self._shapes.get(node)
        if (not isinstance(tensors, (tuple, list)) or not isinstance(s_out, tuple) or len(s_out) < 2
                or not isinstance(dim, int)):
            self._unsupported(node, "'cat'")
            return
        parts = [self._atoms.get(t) if isinstance(t, fx.Node) else None for t in tensors]
        if any(p is None for p in parts):
            self._unsupported(node, "'cat' of a tensor without channels")
            return
        if dim % len(s_out) == 1:
            self._atoms[node] = np.concatenate(parts)  # channel offsets kept apart
        else:
            for p in parts[1:]:
                self._uf.union_arrays(parts[0], p)
            self._atoms[node] = parts[0]

    # -- groups --------------------------------------------------------------------------------

    def _build_groups(self) -> None:
        uf = self._uf
        unit_producers: dict[int, set[str]] = {}
        for name, atoms in self._producer_atoms.items():
            for a in atoms.tolist():
                unit_producers.setdefault(uf.find(a), set()).add(name)
        # producers sharing a unit belong to one group
        pf = {name: name for name in self._producer_atoms}

        def pfind(x: str) -> str:
            while pf[x] != x:
                pf[x] = pf[pf[x]]
                x = pf[x]
            return x

        for names in unit_producers.values():
            first, *rest = sorted(names, key=self._order.__getitem__)
            for other in rest:
                a, b = pfind(first), pfind(other)
                if a != b:
                    if self._order[a] > self._order[b]:
                        a, b = b, a
                    pf[b] = a
        members: dict[str, list[str]] = {}
        for name in sorted(self._producer_atoms, key=self._order.__getitem__):
            members.setdefault(pfind(name), []).append(name)

        root_atoms: dict[int, list[int]] = {}
        for a in range(len(uf.parent)):
            root_atoms.setdefault(uf.find(a), []).append(a)

        self._unit_of: dict[int, tuple[str, int]] = {}  # unit root -> (group, unit index)
        groups: list[ChannelGroup] = []
        for lead, names in members.items():
            roots = {uf.find(a) for n in names for a in self._producer_atoms[n].tolist()}
            lead_ch = {uf.find(a): ch for ch, a in reversed(list(enumerate(self._producer_atoms[lead].tolist())))}

            def key(r: int, names: list[str] = names, lead_ch: dict[int, int] = lead_ch) -> tuple[int, int]:
                if r in lead_ch:
                    return (0, lead_ch[r])
                owned = [self._owner[a] for a in root_atoms[r] if a in self._owner]
                return (1 + min(names.index(n) for n, _ in owned), min(c for _, c in owned))

            ordered = sorted(roots, key=key)
            units = tuple(
                tuple(sorted(self._owner[a] for a in root_atoms[r] if a in self._owner))
                for r in ordered
            )
            reason = next((self._blocked[a] for r in ordered for a in root_atoms[r] if a in self._blocked), "")
            caveats = sorted({self._caveat[a] for r in ordered for a in root_atoms[r] if a in self._caveat})
            rootset = set(ordered)
            consumers = tuple(
                n for n in sorted(self._consumer_atoms, key=self._order.__getitem__)
                if any(uf.find(a) in rootset for a in self._consumer_atoms[n].tolist())
            )
            channelwise = tuple(
                n for n in sorted(self._channelwise_atoms, key=self._order.__getitem__)
                if any(uf.find(a) in rootset for a in self._channelwise_atoms[n].tolist())
            )
            for i, r in enumerate(ordered):
                self._unit_of[r] = (lead, i)
            groups.append(ChannelGroup(
                name=lead, size=len(ordered), width=len(self._producer_atoms[lead]),
                producers=tuple(names), consumers=consumers, channelwise=channelwise,
                prunable=not reason, reason=f"'{lead}' {reason}" if reason else "",
                caveats=tuple(caveats), units=units,
            ))
        self.groups: tuple[ChannelGroup, ...] = tuple(groups)
        self._by_name = {g.name: g for g in groups}

    # -- public --------------------------------------------------------------------------------

    def group(self, name: str) -> ChannelGroup:
        """The group named ``name`` (its first producer); HwawareError naming the choices if unknown."""
        try:
            return self._by_name[name]
        except KeyError:
            raise HwawareError(
                f"no channel group '{name}'{did_you_mean(name, self._by_name)}; groups: "
                f"{', '.join(self._by_name) or '(none)'}"
            ) from None

    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def ranking(self, group: ChannelGroup | str) -> list[int]:
        """Unit indices of ``group``, largest summed filter L2 norm first (see :func:`l2_ranking`)."""
        return l2_ranking(self.model, self.group(group) if isinstance(group, str) else group)

    def shrink(self, keep: Mapping[str, Sequence[int]], *, round_to: int = 1, check: bool = True) -> nn.Module:
        """A new, smaller dense copy of the model keeping ``keep[group]`` units of each named group."""
        if not isinstance(round_to, int) or round_to < 1:
            raise HwawareError(f"round_to must be an integer >= 1, got {round_to!r}")
        removed_units: set[tuple[str, int]] = set()
        for gname, idx in keep.items():
            g = self.group(gname)
            kept = _validate_keep(g, idx)
            if len(kept) < g.size and round_to > 1:
                kept = _round_up(kept, g, self.ranking(g), round_to)
            if len(kept) < g.size and not g.prunable:
                raise HwawareError(f"channel group {g.reason}; it cannot be pruned")
            removed_units.update((g.name, u) for u in range(g.size) if u not in kept)
        new = copy.deepcopy(self.model)
        if removed_units:
            self._apply(new, removed_units)
        if check:
            self._check(new)
        return new

    def prune(self, group: str, n_remove: int, *, round_to: int = 1) -> nn.Module:
        """Remove the ``n_remove`` lowest-L2 units of ``group`` (see :func:`prune_channels`)."""
        g = self.group(group)
        if not isinstance(n_remove, int) or not 0 <= n_remove < g.size:
            raise HwawareError(
                f"n_remove for group '{g.name}' must be an integer in [0, {g.size - 1}], got {n_remove!r}"
            )
        order = self.ranking(g)
        return self.shrink({g.name: sorted(order[: g.size - n_remove])}, round_to=round_to)

    # -- applying ------------------------------------------------------------------------------

    def _kept(self, atoms: np.ndarray, removed: set[tuple[str, int]]) -> list[int]:
        find = self._uf.find
        return [i for i, a in enumerate(atoms.tolist()) if self._unit_of.get(find(a)) not in removed]

    def _apply(self, new: nn.Module, removed: set[tuple[str, int]]) -> None:
        for name, out_atoms in self._producer_atoms.items():
            mod = new.get_submodule(name)
            kept_out = self._kept(out_atoms, removed)
            kept_in = self._kept(self._consumer_atoms[name], removed)
            if isinstance(mod, nn.Linear):
                _slice_module(mod, kept_out, kept_in)
                mod.in_features, mod.out_features = len(kept_in), len(kept_out)
            else:
                _shrink_conv(name, mod, kept_out, kept_in)
        for name, atoms in self._channelwise_atoms.items():
            mod = new.get_submodule(name)
            kept = self._kept(atoms, removed)
            if len(kept) == len(atoms):
                continue
            _slice_module(mod, kept, None)
            if isinstance(mod, nn.PReLU):
                mod.num_parameters = len(kept)
            else:
                mod.num_features = len(kept)

    def _check(self, new: nn.Module) -> None:
        args = _as_args(self.example_input)
        try:
            out = _run_eval(new, lambda: new(*args))
        except Exception as exc:
            raise HwawareError(
                f"the shrunk model does not run on the example input: {str(exc).splitlines()[0]} "
                "(an op surgery does not know hard-codes a channel count)"
            ) from exc
        if _shape_of(out) != self.output_shape:
            raise HwawareError(
                f"the shrunk model's output shape {_shape_of(out)} differs from the original "
                f"{self.output_shape}"
            )


# ----------------------------------------------------------------------------------------------
# module slicing


def _validate_keep(g: ChannelGroup, idx: Sequence[int]) -> set[int]:
    try:
        kept = [int(i) for i in idx]
    except (TypeError, ValueError):
        raise HwawareError(f"keep['{g.name}'] must be a sequence of unit indices, got {idx!r}") from None
    bad = [i for i in kept if not 0 <= i < g.size]
    if bad:
        raise HwawareError(f"keep['{g.name}'] has indices {bad[:5]} outside [0, {g.size - 1}]")
    if len(set(kept)) != len(kept):
        raise HwawareError(f"keep['{g.name}'] has repeated indices")
    if not kept:
        raise HwawareError(f"keep['{g.name}'] is empty; a group keeps at least one of its {g.size} units")
    return set(kept)


def _round_up(kept: set[int], g: ChannelGroup, ranking: list[int], round_to: int) -> set[int]:
    """Add back the best-ranked removed units until the lead producer's channel count is a
    multiple of ``round_to`` (or nothing is removed)."""
    lead_count = [sum(1 for n, _ in unit if n == g.name) for unit in g.units]
    kept = set(kept)
    extra = iter(u for u in ranking if u not in kept)
    while len(kept) < g.size and sum(lead_count[u] for u in kept) % round_to:
        kept.add(next(extra))
    return kept


def _index(t: torch.Tensor, dim: int, idx: list[int]) -> torch.Tensor:
    if len(idx) == t.shape[dim]:
        return t.detach().clone()
    return t.detach().index_select(dim, torch.as_tensor(idx, dtype=torch.long, device=t.device)).clone()


def _slice_module(mod: nn.Module, out_idx: list[int], in_idx: list[int] | None) -> None:
    """Slice every weight-like tensor of ``mod`` (params and buffers, incl. prune's _orig/_mask)."""
    for store in (mod._parameters, mod._buffers):
        for pname, t in list(store.items()):
            if t is None or pname == "num_batches_tracked":
                continue
            base = pname[:-5] if pname.endswith(("_orig", "_mask")) else pname
            new = _index(t, 0, out_idx) if t.dim() >= 1 else t.detach().clone()
            if base == "weight" and in_idx is not None and t.dim() >= 2:
                new = _index(new, 1, in_idx)
            if isinstance(t, nn.Parameter):
                store[pname] = nn.Parameter(new, requires_grad=t.requires_grad)
            else:
                store[pname] = new
    if "weight_orig" in mod._parameters and "weight_mask" in mod._buffers:
        # torch.nn.utils.prune recomputes `weight` before each forward; keep the attribute consistent
        object.__setattr__(mod, "weight", mod._parameters["weight_orig"] * mod._buffers["weight_mask"])


def _shrink_conv(name: str, mod: nn.Module, kept_out: list[int], kept_in: list[int]) -> None:
    g = mod.groups
    c_in, m = mod.in_channels, mod.out_channels
    if g == 1:
        _slice_module(mod, kept_out, kept_in)
        new_groups = 1
    elif c_in // g == 1:  # depthwise: whole conv groups go
        m_g = m // g
        if len(kept_out) != len(kept_in) * m_g:
            raise AssertionError(f"surgery bug: depthwise '{name}' keeps {len(kept_out)} of {m} filters "
                                 f"for {len(kept_in)} channels")
        _slice_module(mod, kept_out, None)
        new_groups = len(kept_in)
    else:
        c_g, m_g = c_in // g, m // g
        local = sorted({i % c_g for i in kept_in})
        if sorted(kept_in) != sorted(i + j * c_g for j in range(g) for i in local) or any(
            sum(1 for o in kept_out if o // m_g == j) != len(kept_out) // g for j in range(g)
        ):
            raise AssertionError(f"surgery bug: grouped conv '{name}' lost its group symmetry")
        _slice_module(mod, kept_out, local)
        new_groups = g
    mod.in_channels, mod.out_channels, mod.groups = len(kept_in), len(kept_out), new_groups


def _target_name(node: fx.Node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", repr(t))


# ----------------------------------------------------------------------------------------------
# functional API


def channel_groups(model: nn.Module, example_input: Any) -> list[ChannelGroup]:
    """Every channel group of ``model`` (prunable or not), in graph order of their first producer."""
    return list(ChannelGraph(model, example_input).groups)


def l2_ranking(model: nn.Module, group: ChannelGroup) -> list[int]:
    """Unit indices sorted by summed filter L2 norm over the group's producers, largest first."""
    mods = dict(model.named_modules())
    norms: dict[str, torch.Tensor] = {}
    for name in group.producers:
        if name not in mods:
            raise HwawareError(f"group '{group.name}' names producer '{name}', not in this model")
        w = mods[name].weight.detach()
        norms[name] = w.reshape(w.shape[0], -1).float().norm(dim=1)
    score = [sum(float(norms[n][c]) for n, c in unit) for unit in group.units]
    return sorted(range(group.size), key=lambda u: (-score[u], u))


def shrink(model: nn.Module, example_input: Any, keep: Mapping[str, Sequence[int]], *,
           round_to: int = 1, check: bool = True) -> nn.Module:
    """A new smaller dense model keeping ``keep[group_name]`` units; ``model`` is not modified."""
    return ChannelGraph(model, example_input).shrink(keep, round_to=round_to, check=check)


def prune_channels(model: nn.Module, example_input: Any, group_name: str, n_remove: int, *,
                   round_to: int = 1) -> nn.Module:
    """A new model without the ``n_remove`` lowest-L2 units of group ``group_name``."""
    return ChannelGraph(model, example_input).prune(group_name, n_remove, round_to=round_to)


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (handy to check that surgery shrank a model)."""
    return sum(p.numel() for p in model.parameters())

