"""The conversion pass: walk the traced float graph once, compute every float value on the
calibration data, fuse Conv/Linear + BatchNorm (+ ReLU) and add + ReLU, build each integer op
(:mod:`.builders`), fix its output format, correct its bias (:mod:`.bias`) and run it, so later
formats see the integer values earlier layers really produce."""

from __future__ import annotations

import operator
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from .._fx import (
    ADD_FUNCTIONS,
    ADD_METHODS,
    DROPOUT_FUNCTIONS,
    MUL_FUNCTIONS,
    MUL_METHODS,
    STOCHASTIC_DEPTH_FUNCTIONS,
    is_same_pad_conv,
    is_stochastic_depth,
    module_path,
    module_type,
    target_name,
)
from ..errors import HwawareError, UnsupportedLayerError
from . import shape_expr
from .act_ops import MulOp
from .bias import correct_bias
from .builders import BN_FOR, OpBuilders, base_type, functional_layer, pooling_module, same_pads
from .format import FixedFormat, frac_bits_for
from .graph_ops import AddOp, CatOp, ConvOp, ExpandOp, PermuteOp, ReluOp, ReshapeOp, SliceOp
from .intop import InputOp, IntOp
from .model import ConversionReport, FixedPointModel, LayerReport
from .norm_builders import NormBuilders
from .ranges import per_image_max, tail_range

__all__ = ["SUPPORTED", "Converter", "split_norm_act"]

SUPPORTED = ("Conv1d, Conv2d (any dilation; also timm Conv2dSame), Linear (also on channels-last input; also their functions "
             "with weights computed from parameters, as timm ScaledStdConv2d; a following "
             "BatchNorm or timm BatchNormAct2d folded and ReLU fused), BatchNorm elsewhere (per-channel affine), "
             "LayerNorm over channels (channels last, or first as timm LayerNorm2d), ReLU, ReLU6, Hardtanh, "
             "LeakyReLU, Hardswish, Hardsigmoid, SiLU, GELU, Sigmoid, Tanh, MaxPool1d/2d, AvgPool1d/2d, "
             "AdaptiveAvgPool1d/2d (modules or functions), mean over H and W, Flatten, Dropout, DropPath, Identity, add, multiply "
             "(also by a per-channel constant), cat, split/chunk, x[:, a:b], flatten/view/reshape (sizes "
             "from x.size() and arithmetic on them), permute/transpose/contiguous, expand_as, "
             "nearest upsampling by whole factors (Upsample, interpolate)")

_RELU_FUNCS = (torch.relu, nn.functional.relu, torch.relu_)
_FLATTEN_FUNCS = (torch.flatten,)
_CAT_FUNCS = (torch.cat, torch.concat)
_PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)


def split_norm_act(gm: torch.fx.GraphModule) -> None:
    """Rewrite each timm ``BatchNormAct2d``-style node (a BatchNorm subclass with ``act``/``drop``
    children) into a plain BatchNorm node and its activation node, so the BatchNorm folds into the
    convolution before it and the activation converts as its own op (both keep module paths:
    ``bn1.bn`` and ``bn1.act``)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if type(mod) in _BN_TYPES or not isinstance(mod, nn.modules.batchnorm._BatchNorm):
            continue
        if not hasattr(mod, "act") or (hasattr(mod, "drop") and not isinstance(mod.drop, _PASS_MODULES)):
            continue  # another BatchNorm subclass: make_op names it as unsupported
        plain = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[2 if isinstance(mod, nn.BatchNorm2d)
                                                                          else 1 if isinstance(mod, nn.BatchNorm1d) else 3]
        bn = plain(mod.num_features, mod.eps, mod.momentum, mod.affine, mod.track_running_stats)
        bn.load_state_dict({k: v for k, v in mod.state_dict().items() if "." not in k})
        bn.eval()
        mod.add_module("bn", bn)
        with gm.graph.inserting_after(node):
            bn_node = gm.graph.call_module(f"{node.target}.bn", node.args, node.kwargs)
        last = bn_node
        if not isinstance(mod.act, nn.Identity):
            with gm.graph.inserting_after(bn_node):
                last = gm.graph.call_module(f"{node.target}.act", (bn_node,))
        node.replace_all_uses_with(last)
        gm.graph.erase_node(node)
    gm.recompile()



def _is_relu(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _only_user(node: torch.fx.Node) -> torch.fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None



_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class Converter(OpBuilders, NormBuilders):
    """Walks the traced graph once: float values, fusion, integer ops and their formats."""

    def __init__(self, gm: torch.fx.GraphModule, layer_bits: dict[str, int] | int, *, mode: str,
                 rounding: str, overflow: str, headroom: float | str, bias_correction: bool,
                 progress: bool, per_channel_weights: bool = False,
                 narrow_formats: dict[str, tuple[int, int]] | None = None,
                 act_bits: dict[str, int] | None = None, search_formats: bool = False):
        self.gm = gm
        self.search_formats = search_formats
        self.modules = dict(gm.named_modules())
        self.layer_bits = layer_bits
        self.arith = {"mode": mode, "rounding": rounding, "overflow": overflow}
        self.headroom = headroom
        self.bias_correction = bias_correction
        self.per_channel_weights = per_channel_weights
        self.narrow_formats = narrow_formats or {}  # {layer: (f_in, f_w)} given, input clipped
        self.act_bits = act_bits or {}  # {layer: input width} where it differs from the weights'
        self.progress = progress
        self.calls: dict[str, int] = {}
        self.stand_ins: dict[torch.fx.Node, nn.Module] = {}  # functional Conv/Linear calls (builders.functional_layer)

    # naming as the profiler: module name, "#1" for a second call of the same module
    def layer_name(self, node: torch.fx.Node) -> str:
        base = str(node.target) if node.op == "call_module" else node.name
        owner = module_type(node) if node in self.stand_ins else None
        if owner is not None and issubclass(owner, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            base = module_path(node)  # a Conv/Linear subclass's own call (ScaledStdConv2d): named as the profile names it
        k = self.calls.get(base, 0)
        self.calls[base] = k + 1
        return base if k == 0 else f"{base}#{k}"

    def bits_for(self, name: str) -> int:
        if isinstance(self.layer_bits, int):
            return self.layer_bits
        return self.layer_bits.get(name, 16)

    def act_format(self, t: torch.Tensor, bits: int = 16) -> FixedFormat:
        if self.headroom == "auto":  # each tensor's own margin (:mod:`.ranges`)
            return FixedFormat(frac_bits_for(tail_range(per_image_max(t)), bits), bits)
        m = float(t.abs().max()) if t.numel() else 0.0
        return FixedFormat(frac_bits_for(m, bits, headroom=self.headroom), bits)

    def run(self, x: torch.Tensor) -> FixedPointModel:
        from tqdm import tqdm

        nodes = list(self.gm.graph.nodes)
        last_use: dict[torch.fx.Node, int] = {}
        for i, n in enumerate(nodes):
            for a in n.all_input_nodes:
                last_use[a] = i
            if n.target is operator.getitem and self.is_split(n.args[0]):  # a part reads the split's input
                last_use[n.args[0].args[0]] = i
        fenv: dict[torch.fx.Node, Any] = {}  # float values
        ienv: dict[torch.fx.Node, int] = {}  # node -> index of its integer value
        holders: dict[int, list[torch.fx.Node]] = {}  # integer value -> nodes that stand for it
        ivals: list[np.ndarray | None] = []
        shapes: list[tuple[int, ...]] = []
        int_ops: list[IntOp] = []
        reports: list[LayerReport] = []
        absorbed: set[torch.fx.Node] = set()
        self.value_max: dict[int, float] = {}
        self.consts = _constant_nodes(nodes)
        self.value_range: dict[int, float] = {}  # headroom "auto": the range a narrowed input covers
        output_index = -1
        position = {n: k for k, n in enumerate(nodes)}
        reference = self.gm(x.clone()) if self.search_formats else None  # the float output, once
        bar = tqdm(nodes, desc="convert", disable=not self.progress, leave=False)
        for i, node in enumerate(bar):
            if node.op == "output":
                out = node.args[0]
                if not isinstance(out, torch.fx.Node) or out not in ienv:
                    raise UnsupportedLayerError(
                        "convert: the model must return one tensor computed by supported ops "
                        f"({SUPPORTED})")
                output_index = ienv[out]
                break
            if node not in fenv:
                fenv[node] = self.float_value(node, fenv, x)
            if node in absorbed:
                pass
            elif node.op == "placeholder":
                if ienv:
                    raise UnsupportedLayerError("convert: models with more than one input are not supported")
                fmt = self.act_format(fenv[node])
                int_ops.append(InputOp("input", "input", (), fmt))
                ivals.append(fmt.quantize(fenv[node].double().numpy()))
                shapes.append(ivals[0].shape)
                ienv[node], holders[0] = 0, [node]
                self.value_max[0] = _max_abs(fenv[node].numpy())
                if self.headroom == "auto":
                    self.value_range[0] = tail_range(per_image_max(fenv[node]))
            elif node in self.consts or not isinstance(fenv[node], torch.Tensor):
                pass  # shapes, sizes, constants (parameters and what is computed from them alone)
            else:
                layer = functional_layer(node, fenv, self.consts)
                if layer is not None:
                    self.stand_ins[node] = layer
                group = self.fuse(node)
                for g in group[1:]:
                    absorbed.add(g)
                    fenv[g] = self.float_value(g, fenv, x)
                op, reported = self.make_op(group, fenv, ienv, int_ops)
                xs = [ivals[j] for j in op.inputs]
                r = None
                if isinstance(op, ConvOp) and self.search_formats:
                    rest = _Rest(self, nodes, max(position[g] for g in group) + 1, group[-1], fenv, last_use, x)
                    op, r = self.search_output_format(op, xs, fenv[group[-2] if op.relu else group[-1]],
                                                      rest, reference)
                elif isinstance(op, ConvOp) and self.bias_correction:
                    r = correct_bias(op, xs[0], fenv[group[-2] if op.relu else group[-1]], self.arith)
                if r is not None:
                    pass
                elif isinstance(op, ReshapeOp):
                    r = op.run(xs, self.arith, _Shapes(shapes))
                else:
                    r = op.run(xs, self.arith)
                k = len(int_ops)
                int_ops.append(op)
                ivals.append(r.y)
                shapes.append(r.y.shape)
                holders[k] = group
                for g in group:
                    ienv[g] = k
                ref = fenv[group[-1]].double().numpy()
                self.value_max[k] = _max_abs(ref)
                if self.headroom == "auto" and self.layer_bits != 16:  # a later layer may narrow it
                    self.value_range[k] = tail_range(per_image_max(fenv[group[-1]]))
                if reported:
                    err = float(np.abs(op.fy.dequantize(r.y) - ref).max()) if ref.size else 0.0
                    reports.append(LayerReport(
                        op.name, op.op, tuple(f.frac_bits for f in _in_formats(op, int_ops)),
                        op.fw.frac_bits if isinstance(op, ConvOp) else None, op.fy.frac_bits,
                        bool(getattr(op, "relu", False)), r.product_overflows, r.output_overflows, err,
                        self.value_max[k], op.fw.bits if isinstance(op, ConvOp) else op.fy.bits,
                        self.approx_error(op) or self.norm_error(op)))
            # free the float and integer values nobody reads any more
            for a in node.all_input_nodes:
                if last_use.get(a) == i:
                    fenv.pop(a, None)
                    j = ienv.get(a)
                    if j is not None and all(last_use.get(h, -1) <= i for h in holders[j]):
                        ivals[j] = None
        bar.close()
        if output_index < 0:
            raise UnsupportedLayerError("convert: the traced model has no output")
        known = sorted(op.name for op in int_ops if isinstance(op, ConvOp))
        for what, named in (("bits", self.layer_bits), ("act_bits", self.act_bits)):
            for name in named if isinstance(named, dict) else ():
                if name not in known:
                    from .._suggest import did_you_mean

                    raise HwawareError(f"convert: {what} names layer '{name}', which is not a Conv/Linear "
                                       f"call of the model{did_you_mean(name, known)}")
        for name in self.narrow_formats:
            if name not in {op.name for op in int_ops if isinstance(op, ConvOp)}:
                raise HwawareError(f"convert: narrow_formats names layer '{name}', which is not a Conv/Linear "
                                   f"call of the model")
        report = ConversionReport(self.arith["mode"], self.arith["rounding"], self.arith["overflow"],
                                  int_ops[0].fy.frac_bits, int(x.shape[0]), tuple(reports))
        return FixedPointModel(int_ops, output_index, report=report, **self.arith)

    def search_output_format(self, op: ConvOp, xs, target, rest, reference):
        """``op`` with the ``f_y`` of least network-output error, and its result
        (:mod:`.format_search`)."""
        from .format_search import admissible, candidate_ops, output_error, pick
        from .ranges import TAIL_P, per_image_max, tail_range

        reach = tail_range(per_image_max(target), p=TAIL_P)
        tried = []
        for cand in candidate_ops(op, self.arith["mode"]):
            r = correct_bias(cand, xs[0], target, self.arith) if self.bias_correction else None
            if r is None:
                r = cand.run(xs, self.arith)
            if not admissible(cand, op.fy.frac_bits, int(r.output_overflows), reach):
                continue
            value = torch.from_numpy(cand.fy.dequantize(r.y)).float()
            tried.append((cand, r, output_error(rest, value, reference)))
        k = pick([e for _, _, e in tried])
        return tried[k][0], tried[k][1]

    # -- float side ----------------------------------------------------------------------------
    def float_value(self, node: torch.fx.Node, fenv: dict, x: torch.Tensor) -> Any:
        if node.op == "placeholder":
            return x
        args = torch.fx.node.map_arg(node.args, lambda n: fenv[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: fenv[n])
        if node.op in ("call_function", "call_method"):
            args, kwargs = _out_of_place(node, args, kwargs)
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "get_attr":
            obj: Any = self.gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            return obj
        raise UnsupportedLayerError(f"convert: graph node '{node.name}' ({node.op}) is not supported")

    # -- pattern matching ----------------------------------------------------------------------
    def fuse(self, node: torch.fx.Node) -> list[torch.fx.Node]:
        group = [node]
        mod = self.modules.get(node.target) if node.op == "call_module" else self.stand_ins.get(node)
        if base_type(mod) in BN_FOR:
            nxt = _only_user(node)
            if nxt is not None and nxt.op == "call_module" and \
                    type(self.modules[nxt.target]) in BN_FOR[base_type(mod)]:
                group.append(nxt)
        if base_type(mod) in BN_FOR or (self.is_add(node) and self.constant_operand(node) is None):
            nxt = _only_user(group[-1])
            if nxt is not None and _is_relu(nxt, self.modules):
                group.append(nxt)
        return group

    def is_add(self, node: torch.fx.Node) -> bool:
        return (node.op == "call_function" and node.target in ADD_FUNCTIONS) or \
            (node.op == "call_method" and node.target in ADD_METHODS)

    def is_mul(self, node: torch.fx.Node) -> bool:
        return (node.op == "call_function" and node.target in MUL_FUNCTIONS) or \
            (node.op == "call_method" and node.target in MUL_METHODS)

    def make_op(self, group, fenv, ienv, int_ops) -> tuple[IntOp, bool]:
        node = group[0]
        name = self.layer_name(node)
        relu = _is_relu(group[-1], self.modules) and len(group) > 1
        pre = fenv[group[-2] if relu else group[-1]]  # value before a fused ReLU

        def inp(n: Any) -> int:
            if not isinstance(n, torch.fx.Node) or n not in ienv:
                raise UnsupportedLayerError(
                    f"convert: layer '{name}' reads {n!r}, which is not an activation of the model; "
                    f"supported: {SUPPORTED}")
            return ienv[n]

        if node.op == "call_module":
            mod = self.modules[node.target]
            t = type(mod)
            if base_type(mod) is not None:
                op = self.conv_op(name, mod, group, inp(node.args[0]), int_ops, pre, relu)
                if is_same_pad_conv(mod):
                    op.pad_same = same_pads(tuple(fenv[node.args[0]].shape[2:]), mod)
                return op, True
            if t is nn.ReLU:
                j = inp(node.args[0])
                return ReluOp(name, "ReLU", (j,), int_ops[j].fy), True
            if t in (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                     nn.AdaptiveAvgPool2d):
                return self.pool_op(name, mod, inp(node.args[0]), int_ops, fenv[node]), True
            if isinstance(mod, nn.Upsample):  # UpsamplingNearest2d and UpsamplingBilinear2d too
                return self.upsample_op(name, t.__name__, mod.mode, inp(node.args[0]), int_ops,
                                        fenv[node.args[0]], fenv[node], mod.size is not None), False
            act = self.activation_op(name, t.__name__, mod, (), {}, node, fenv, inp, int_ops)
            if act is not None:
                return act, True
            if is_stochastic_depth(mod):
                j = inp(node.args[0])
                return ReshapeOp(name, t.__name__, (j,), int_ops[j].fy, 0, 0), False
            if t is nn.Flatten:
                j = inp(node.args[0])
                return ReshapeOp(name, "Flatten", (j,), int_ops[j].fy, mod.start_dim, mod.end_dim), False
            if t in _PASS_MODULES:  # identity in eval mode
                j = inp(node.args[0])
                return ReshapeOp(name, t.__name__, (j,), int_ops[j].fy, 0, 0), False
            if t in _BN_TYPES:  # not folded: it reads a concat, or its convolution has other users
                j = inp(node.args[0])
                return self.batchnorm_affine(name, mod, j, int_ops, fenv[node.args[0]], fenv[node]), True
            if isinstance(mod, nn.LayerNorm):
                j = inp(node.args[0])
                return self.layer_norm_op(name, mod, j, int_ops, fenv[node.args[0]], fenv[node]), True
            if t.__name__.startswith("BatchNorm"):
                raise UnsupportedLayerError(
                    f"convert: layer '{name}' ({t.__name__}) is a BatchNorm subclass whose forward is unknown; "
                    f"supported: {SUPPORTED}")
            raise UnsupportedLayerError(f"convert: layer '{name}' is a {t.__name__}, which the fixed-point "
                                        f"backend does not support; supported: {SUPPORTED}")
        if node in self.stand_ins:
            return self.conv_op(name, self.stand_ins[node], group, inp(node.args[0]), int_ops, pre, relu), True
        const = self.constant_operand(node)
        if const is not None:
            x_node, c = const
            c = fenv[c] if isinstance(c, torch.fx.Node) else c
            return self.constant_affine(name, node, "mul" if self.is_mul(node) else "add", inp(x_node),
                                        int_ops, fenv[x_node], c, fenv[node]), True
        if self.is_add(node):
            args = list(node.args)
            if len(args) != 2 or any(k != "alpha" or v != 1 for k, v in node.kwargs.items()):
                raise UnsupportedLayerError(f"convert: '{name}': only a + b of two activations is supported")
            ja, jb = inp(args[0]), inp(args[1])
            fy = self.act_format(pre)
            return AddOp(name, "add", (ja, jb), fy, int_ops[ja].fy, int_ops[jb].fy, relu), True
        if _is_relu(node, self.modules):
            j = inp(node.args[0])
            return ReluOp(name, "relu", (j,), int_ops[j].fy), True
        if node.op in ("call_function", "call_method"):
            fname = target_name(node)
            act = self.activation_op(name, fname, None, node.args[1:], node.kwargs, node, fenv, inp, int_ops)
            if act is not None:
                return act, True
            if self.is_mul(node):
                args = [a for a in node.args if isinstance(a, torch.fx.Node)]
                if len(args) != 2 or len(node.args) != 2 or node.kwargs:
                    raise UnsupportedLayerError(f"convert: '{name}' in '{module_path(node)}' (mul): only a * b "
                                                f"of two activations is supported")
                ja, jb = inp(args[0]), inp(args[1])
                return MulOp(name, "mul", (ja, jb), self.act_format(fenv[node]), int_ops[ja].fy,
                             int_ops[jb].fy), True
            if fname == "mean" or node.target is torch.mean:
                return self.mean_op(name, node, fenv, inp, int_ops), True
            if node.target is nn.functional.interpolate:
                mode = node.kwargs.get("mode", node.args[3] if len(node.args) > 3 else "nearest")
                size = node.kwargs.get("size", node.args[1] if len(node.args) > 1 else None)
                return self.upsample_op(name, "interpolate", mode, inp(node.args[0]), int_ops,
                                        fenv[node.args[0]], fenv[node], size is not None), False
            pool = pooling_module(node)
            if pool is not None:
                return self.pool_op(name, pool, inp(node.args[0]), int_ops, fenv[node], label=fname), True
            if node.target in STOCHASTIC_DEPTH_FUNCTIONS or node.target in DROPOUT_FUNCTIONS:
                j = inp(node.args[0])
                return ReshapeOp(name, fname, (j,), int_ops[j].fy, 0, 0), False
        if node.op == "call_function" and node.target is operator.getitem and self.is_split(node.args[0]):
            return self.split_part(name, node, fenv, inp, int_ops), False
        if node.op == "call_function" and node.target is operator.getitem and \
                isinstance(fenv.get(node.args[0]), torch.Tensor):
            return self.channel_slice(name, node, fenv, inp, int_ops), False
        if (node.op == "call_function" and node.target in _CAT_FUNCS):
            tensors = node.args[0]
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            js = tuple(inp(n) for n in tensors)
            fy = self.act_format(fenv[node])
            return CatOp(name, "cat", js, fy, tuple(int_ops[j].fy for j in js), int(dim)), True
        if (node.op == "call_function" and node.target in _FLATTEN_FUNCS) or \
                (node.op == "call_method" and node.target == "flatten"):
            j = inp(node.args[0])
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return ReshapeOp(name, "flatten", (j,), int_ops[j].fy, int(start), int(end)), False
        if (node.op == "call_method" and node.target in ("view", "reshape")) or \
                (node.op == "call_function" and node.target is torch.reshape):
            j = inp(node.args[0])
            dims = node.args[1:] if node.args[1:] else (node.kwargs.get("shape"),)
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = tuple(dims[0])
            dims = shape_expr.expand(tuple(dims), ienv, fenv)
            return ReshapeOp(name, target_name(node), (j,), int_ops[j].fy,
                             shape=tuple(shape_expr.build(d, ienv, node) for d in dims)), False
        if node.op == "call_method" and node.target == "expand_as" and len(node.args) == 2 and not node.kwargs:
            j, k = inp(node.args[0]), inp(node.args[1])
            return ExpandOp(name, "expand_as", (j, k), int_ops[j].fy), False
        if node.op == "call_method" and node.target == "contiguous":
            j = inp(node.args[0])
            return ReshapeOp(name, "contiguous", (j,), int_ops[j].fy, 0, 0), False
        if (node.op == "call_method" and node.target in ("permute", "transpose")) or \
                (node.op == "call_function" and node.target in (torch.permute, torch.transpose)):
            return self.permute_op(name, node, fenv, inp, int_ops), False
        raise UnsupportedLayerError(f"convert: op '{target_name(node)}' in module '{module_path(node)}' "
                                    f"is not supported by the fixed-point backend; supported: {SUPPORTED}")

    def is_split(self, node: Any) -> bool:
        return isinstance(node, torch.fx.Node) and (
            (node.op == "call_function" and node.target in (torch.split, torch.chunk))
            or (node.op == "call_method" and node.target in ("split", "chunk")))

    def split_part(self, name, node, fenv, inp, int_ops) -> SliceOp:
        """``torch.split(x, sizes, dim)[i]`` / ``x.chunk(n, dim)[i]``: the channels (or rows) of
        part ``i``, codes and format unchanged (timm MixedConv2d splits its input so)."""
        src, i = node.args
        parts = fenv[src]
        x = src.args[0]
        dim = src.kwargs.get("dim", src.args[2] if len(src.args) > 2 else 0)
        if not isinstance(i, int) or not isinstance(dim, int) or not isinstance(parts, (tuple, list)):
            raise UnsupportedLayerError(f"convert: '{name}' in '{module_path(node)}': only a constant part "
                                        f"of a split/chunk along a constant dim is supported")
        dim %= parts[0].dim()
        start = sum(int(p.shape[dim]) for p in parts[:i])
        j = inp(x)
        return SliceOp(name, "split", (j,), int_ops[j].fy, dim, start, start + int(parts[i].shape[dim]))

    def channel_slice(self, name, node, fenv, inp, int_ops) -> SliceOp:
        """``x[:, a:b]`` (the other dims whole; timm's GhostModule keeps ``out[:, :out_chs]``)."""
        src, idx = node.args
        items = idx if isinstance(idx, tuple) else (idx,)
        whole = [isinstance(it, slice) and it == slice(None) for it in items]
        ch = items[1] if len(items) > 1 else None
        if not (len(items) >= 2 and whole[0] and all(whole[2:]) and isinstance(ch, slice)
                and ch.step in (None, 1) and all(v is None or isinstance(v, int) for v in (ch.start, ch.stop))):
            raise UnsupportedLayerError(f"convert: op 'getitem' in module '{module_path(node)}': only x[:, a:b] "
                                        f"(a channel range, other dims whole) is supported, got {idx!r}")
        start, stop, _ = ch.indices(int(fenv[src].shape[1]))
        j = inp(src)
        return SliceOp(name, "slice", (j,), int_ops[j].fy, 1, start, stop)

    def permute_op(self, name, node, fenv, inp, int_ops) -> PermuteOp:
        src = node.args[0]
        rank = fenv[src].dim()
        rest = list(node.args[1:]) or [node.kwargs.get("dims")]
        if target_name(node) == "transpose":
            a, b = (int(v) % rank for v in (rest + [node.kwargs.get("dim0"), node.kwargs.get("dim1")])[:2])
            perm = list(range(rank))
            perm[a], perm[b] = perm[b], perm[a]
        else:
            perm = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
            if not all(isinstance(d, int) for d in perm):
                raise UnsupportedLayerError(f"convert: op 'permute' in module '{module_path(node)}': the dims "
                                            f"must be ints, got {perm!r}")
            perm = [d % rank for d in perm]
        j = inp(src)
        return PermuteOp(name, target_name(node), (j,), int_ops[j].fy, tuple(perm))

    def constant_operand(self, node: torch.fx.Node) -> tuple[torch.fx.Node, Any] | None:
        """``(x, c)`` for ``x * c`` / ``x + c`` with ``c`` a constant (number, or computed from
        parameters alone) and ``x`` an activation; None otherwise."""
        if not (self.is_mul(node) or self.is_add(node)) or len(node.args) != 2 or node.kwargs:
            return None
        a, b = node.args
        is_const = [not isinstance(v, torch.fx.Node) or v in self.consts for v in (a, b)]
        if is_const[0] == is_const[1]:
            return None
        x, c = (b, a) if is_const[0] else (a, b)
        return (x, c) if isinstance(c, torch.fx.Node) or (isinstance(c, (int, float)) and not isinstance(c, bool)) \
            else None


def _constant_nodes(nodes: list[torch.fx.Node]) -> set[torch.fx.Node]:
    """Nodes computed from parameters and buffers alone (no placeholder upstream)."""
    consts: set[torch.fx.Node] = set()
    for n in nodes:
        if n.op == "get_attr" or (n.op in ("call_function", "call_method", "call_module")
                                  and n.all_input_nodes and all(a in consts for a in n.all_input_nodes)):
            consts.add(n)
    return consts


def _out_of_place(node: torch.fx.Node, args: Any, kwargs: dict) -> tuple[Any, dict]:
    """The arguments of a function/method call that must not overwrite its input: calibration
    reads every node's float value later (a fused ReLU's input is the bias correction's target
    and sets the layer's format), so ``F.relu(x, inplace=True)`` (torchvision GoogLeNet's
    BasicConv2d), ``x.relu_()`` or ``torch.relu_`` would silently replace it with its output."""
    if kwargs.get("inplace") is True:
        kwargs = {**kwargs, "inplace": False}
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    if isinstance(name, str) and name.endswith("_") and not name.startswith("_") and args and \
            isinstance(args[0], torch.Tensor):
        args = (args[0].clone(), *args[1:])
    return args, kwargs


class _Rest:
    """The float network from one node on: ``rest(value)`` is the model's output when ``value``
    replaces ``node``'s float value (the values of earlier nodes that later ones read are in ``fenv``)."""

    def __init__(self, conv: Converter, nodes, start: int, node, fenv: dict, last_use: dict, x) -> None:
        self.conv, self.nodes, self.start, self.node = conv, nodes, start, node
        self.fenv, self.last_use, self.x = fenv, last_use, x

    def __call__(self, value: torch.Tensor) -> torch.Tensor:
        env = dict(self.fenv)
        env[self.node] = value
        for k in range(self.start, len(self.nodes)):
            n = self.nodes[k]
            if n.op == "output":
                return env[n.args[0]]
            if n not in env:
                env[n] = self.conv.float_value(n, env, self.x)
            for a in n.all_input_nodes:
                if self.last_use.get(a) == k:
                    env.pop(a, None)
        raise UnsupportedLayerError("convert: the traced model has no output")


class _Shapes:
    """``values[j].shape`` for a ReshapeOp during conversion, where freed values keep their shape."""

    def __init__(self, shapes: list[tuple[int, ...]]) -> None:
        self.shapes = shapes

    def __getitem__(self, j: int) -> Any:
        return SimpleNamespace(shape=self.shapes[j])


def _max_abs(a: np.ndarray) -> float:
    return float(np.abs(a).max()) if a.size else 0.0


def _in_formats(op: IntOp, int_ops: list[IntOp]) -> list[FixedFormat]:
    if isinstance(op, ConvOp):
        return [op.f_in]
    return [int_ops[j].fy for j in op.inputs]

