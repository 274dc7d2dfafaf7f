"""How each float module or function becomes an integer op (Conv/Linear with BatchNorm folded,
pooling in every form, activations); :class:`OpBuilders` is mixed into the converter, which
supplies the formats (``act_format``, ``bits_for``, ``value_max``) from the calibration run."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .._fx import is_plain_linear, is_same_pad_conv, module_path
from ..errors import UnsupportedLayerError
from .act_ops import ClampOp, HardOp, LeakyReluOp, LutOp, WindowPoolOp
from .format import FixedFormat, frac_bits_for, pair
from .graph_ops import ConvOp, UpsampleOp, wide_bias_codes
from .intop import IntOp

__all__ = ["BN_FOR", "OpBuilders", "base_type", "dilate", "functional_layer", "pooling_module", "same_pads"]

BN_FOR = {nn.Conv1d: (nn.BatchNorm1d,), nn.Conv2d: (nn.BatchNorm2d,), nn.Linear: (nn.BatchNorm1d,)}


def base_type(mod: nn.Module | None) -> type | None:
    """Conv1d / Conv2d / Linear for those classes and the subclasses with the same arithmetic
    (timm's Conv2dSame pads first; timm's Linear); None for anything else."""
    t = type(mod)
    if t in (nn.Conv1d, nn.Conv2d, nn.Linear):
        return t
    if mod is not None and is_same_pad_conv(mod):
        return nn.Conv2d
    if mod is not None and is_plain_linear(mod):
        return nn.Linear
    return None



def same_pads(size: tuple[int, ...], mod: nn.Module) -> tuple[int, int, int, int]:
    """TF "SAME" padding of timm's Conv2dSame for an input of ``size`` (H, W): (top, bottom, left, right)."""
    pads = []
    for n, k, s, d in zip(size, mod.kernel_size, mod.stride, mod.dilation):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


#: activation name (class or function, lower case) -> table function for LutOp, or its own kind
_ACTIVATIONS = {"relu6": "", "hardtanh": "", "leaky_relu": "", "leakyrelu": "", "hardswish": "",
                "hardsigmoid": "", "silu": "silu", "gelu": "gelu", "sigmoid": "sigmoid", "tanh": "tanh"}
_ACTIVATION_TYPES = (nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU,
                     nn.Sigmoid, nn.Tanh)


def _first(v: Any) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)



#: pooling functions -> (the module they compute, the names of their arguments after the input, in order)
_MAX_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
_POOL_FUNCTIONS: dict[Any, tuple[type, tuple[str, ...]]] = {
    nn.functional.max_pool1d: (nn.MaxPool1d, _MAX_ARGS), torch.max_pool1d: (nn.MaxPool1d, _MAX_ARGS),
    nn.functional.max_pool2d: (nn.MaxPool2d, _MAX_ARGS), torch.max_pool2d: (nn.MaxPool2d, _MAX_ARGS),
    nn.functional.avg_pool1d: (nn.AvgPool1d, _AVG_ARGS[:5]), nn.functional.avg_pool2d: (nn.AvgPool2d, _AVG_ARGS),
    nn.functional.adaptive_avg_pool1d: (nn.AdaptiveAvgPool1d, ("output_size",)),
    nn.functional.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ("output_size",)),
}


#: Conv/Linear functions -> (the module they compute, the names of their arguments after the input, in order)
_CONV_ARGS = ("weight", "bias", "stride", "padding", "dilation", "groups")
_LAYER_FUNCTIONS: dict[Any, tuple[type, tuple[str, ...]]] = {
    nn.functional.conv1d: (nn.Conv1d, _CONV_ARGS), torch.conv1d: (nn.Conv1d, _CONV_ARGS),
    nn.functional.conv2d: (nn.Conv2d, _CONV_ARGS), torch.conv2d: (nn.Conv2d, _CONV_ARGS),
    nn.functional.linear: (nn.Linear, _CONV_ARGS[:2]),
}


def _call(node: torch.fx.Node, table: dict[Any, tuple[type, tuple[str, ...]]]) -> tuple[type, dict] | None:
    """(module class, arguments after the input by name) of a call of a function in ``table``;
    None for any other node, or when the input is passed by keyword (not a form read here)."""
    if node.op != "call_function":
        return None
    try:
        cls, names = table[node.target]
    except (KeyError, TypeError):  # TypeError: an unhashable target
        return None
    if not node.args or len(node.args) - 1 > len(names):
        return None
    return cls, dict(zip(names, node.args[1:]), **node.kwargs)


def functional_layer(node: torch.fx.Node, fenv: dict, consts: set) -> nn.Module | None:
    """The Conv1d/Conv2d/Linear module that a functional call computes when its weight (and bias)
    come from parameters alone, e.g. timm's ``ScaledStdConv2d`` (weight standardization in its
    forward, then ``F.conv2d``): a stand-in holding the computed weight, so that the call takes the
    module's path (folding, formats, bias correction). None for any other node."""
    call = _call(node, _LAYER_FUNCTIONS)
    if call is None:
        return None
    cls, kw = call
    w, b = kw.get("weight"), kw.get("bias")
    if not (isinstance(w, torch.fx.Node) and w in consts) or (isinstance(b, torch.fx.Node) and b not in consts):
        return None  # a weight computed from activations (dynamic convolution): not a layer
    weight = fenv[w].detach()  # tensors: the float run called the function with them
    bias = fenv[b].detach() if isinstance(b, torch.fx.Node) else b
    if cls is nn.Linear:
        mod = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    else:
        groups = kw.get("groups", 1)
        mod = cls(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=kw.get("stride", 1),
                  padding=kw.get("padding", 0), dilation=kw.get("dilation", 1), groups=groups,
                  bias=bias is not None, device="meta")
    mod.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        mod.bias = nn.Parameter(bias, requires_grad=False)
    return mod


def pooling_module(node: torch.fx.Node) -> nn.Module | None:
    """The pooling module a pooling function call computes (``F.max_pool2d(x, 3, 2, 1)`` ->
    ``nn.MaxPool2d(3, 2, 1)``, ``torch.max_pool2d``, ``F.avg_pool1d/2d``, ``F.adaptive_avg_pool1d/2d``),
    so that both forms take one path; None for any other node."""
    call = _call(node, _POOL_FUNCTIONS)
    if call is None:
        return None
    cls, kwargs = call
    if kwargs.get("stride") in ((), []):  # torch.max_pool2d's default: the kernel size
        kwargs["stride"] = None
    return cls(**kwargs)


def dilate(w: np.ndarray, dilation: tuple[int, int]) -> np.ndarray:
    """Weight codes of a dilated convolution as the undilated kernel they span: ``d - 1`` zero codes
    between taps (a ``k x k`` kernel at dilation ``d`` spans ``(k - 1) * d + 1``). Same output size
    and the same integer result in every mode: a zero weight's product is exactly 0, so the floor of
    mode eyeriss cuts nothing there and the exact sums of mode wide are unchanged."""
    dh, dw = dilation
    if dh == dw == 1:
        return w
    R, S = (1, w.shape[-1]) if w.ndim == 3 else w.shape[-2:]
    out = np.zeros((*w.shape[:2], (R - 1) * dh + 1, (S - 1) * dw + 1), dtype=w.dtype)
    out[..., ::dh, ::dw] = w.reshape(*w.shape[:2], R, S)
    return out[:, :, 0] if w.ndim == 3 else out


class OpBuilders:
    """The converter's op constructors (need ``self.arith``, ``self.modules``, ``self.headroom``,
    ``self.per_channel_weights``,
    ``self.value_max``, ``act_format`` and ``bits_for``)."""

    def conv_op(self, name, mod, group, j, int_ops, pre, relu) -> ConvOp:
        w = mod.weight.detach().double()
        b = mod.bias.detach().double() if mod.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if len(group) > 1 and type(self.modules.get(group[1].target)) in sum(BN_FOR.values(), ()):
            bn = self.modules[group[1].target]
            if not bn.track_running_stats or bn.running_mean is None:
                raise UnsupportedLayerError(f"convert: '{group[1].target}' has no running statistics to fold")
            scale = bn.weight.detach().double() if bn.affine else torch.ones_like(bn.running_var.double())
            shift = bn.bias.detach().double() if bn.affine else torch.zeros_like(scale)
            k = scale / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * k.reshape(-1, *([1] * (w.dim() - 1)))
            b = (b - bn.running_mean.double()) * k + shift
        bits = self.bits_for(name)
        abits = self.act_bits.get(name, bits)  # the input's width (the weights' unless given apart)
        fx = int_ops[j].fy
        fxq = None
        given = self.narrow_formats.get(name) if min(bits, abits) < 16 else None  # (f_in, f_w): input clipped
        fw = FixedFormat(given[1] if given else frac_bits_for(float(w.abs().max()), bits), bits)
        fy = self.act_format(pre)
        if abits < 16:
            fxq = FixedFormat(given[0], abits) if given else self.narrow_input_format(int_ops, j, abits)
        f_in = fxq or fx
        fws = self.channel_weight_formats(w, b, fw, f_in) if self.per_channel_weights else None
        if fws is None:
            wq = fw.quantize(w.numpy())
        else:
            wq = np.stack([FixedFormat(f, bits).quantize(w[m].numpy()) for m, f in enumerate(fws)])
        if self.arith["mode"] == "eyeriss":
            bq = FixedFormat(fy.frac_bits).quantize(b.numpy()).astype(np.int64)
        else:
            fb = np.asarray(fws if fws is not None else [fw.frac_bits] * len(b)) + f_in.frac_bits
            bq = wide_bias_codes(np.ldexp(b.numpy(), fb), name, base_type(mod).__name__)
        t = base_type(mod)
        clip = given is not None and fxq is not None
        if t is nn.Linear:
            return ConvOp(name, "Linear", (j,), fy, fx, fw, wq, bq, relu=relu, fxq=fxq, fw_channels=fws, clip_input=clip)
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            raise UnsupportedLayerError(f"convert: layer '{name}': string padding and padding modes other than "
                                        f"zeros are not supported")
        wq = dilate(wq, (1, *mod.dilation) if t is nn.Conv1d else pair(mod.dilation, "dilation"))
        if t is nn.Conv1d:
            return ConvOp(name, "Conv1d", (j,), fy, fx, fw, wq, bq, (1, mod.stride[0]), (0, mod.padding[0]),
                          mod.groups, relu, fxq, fw_channels=fws, clip_input=clip)
        return ConvOp(name, "Conv2d", (j,), fy, fx, fw, wq, bq, pair(mod.stride, "stride"),
                      pair(mod.padding, "padding"), mod.groups, relu, fxq, fw_channels=fws, clip_input=clip)

    def channel_weight_formats(self, w, b, fw: FixedFormat, f_in: FixedFormat) -> tuple[int, ...]:
        """Per-output-channel weight formats (opt-in): the max rule on each channel's weights; an
        all-zero channel keeps the tensor's format, and in mode ``wide`` a channel's format stays
        coarse enough for its int32 bias at ``f_x + f_w`` to hold twice the bias (room for the
        bias correction)."""
        out = []
        for m, top in enumerate(w.abs().reshape(w.shape[0], -1).amax(1).tolist()):
            f = frac_bits_for(top, fw.bits) if top > 0 else fw.frac_bits
            if self.arith["mode"] == "wide" and float(b[m]) != 0.0:
                f = max(fw.frac_bits, min(f, frac_bits_for(2.0 * abs(float(b[m])), 32) - f_in.frac_bits))
            out.append(f)
        return tuple(out)

    def narrow_input_format(self, int_ops, j, bits) -> FixedFormat:
        """A narrower input format: the range the 16-bit input format was sized for."""
        fx = int_ops[j].fy
        top = self.value_max.get(j) or math.ldexp(fx.qmax, -fx.frac_bits)
        if self.headroom == "auto":  # the 16-bit format's range already holds the margin
            top = self.value_range.get(j, top)
            return FixedFormat(frac_bits_for(top, bits), bits)
        return FixedFormat(frac_bits_for(top, bits, headroom=self.headroom), bits)

    def pool_op(self, name, mod, j, int_ops, out, label: str | None = None) -> WindowPoolOp:
        """The integer op of a pooling module (or of the module a pooling function computes,
        :func:`pooling_module`; ``label``: the function's name, for reports)."""
        t = type(mod)
        label = label or t.__name__
        fx = int_ops[j].fy
        dims = 1 if t.__name__.endswith("1d") else 2
        kind = "max" if t.__name__.startswith("Max") else "avg"
        if kind == "max" and (any(d != 1 for d in pair(mod.dilation, "dilation")) or mod.return_indices):
            raise UnsupportedLayerError(f"convert: layer '{name}' ({label}): max pooling with dilation "
                                        f"or return_indices is not supported")
        if getattr(mod, "divisor_override", None):
            raise UnsupportedLayerError(f"convert: layer '{name}' ({label}): divisor_override is not "
                                        f"supported")
        fy = fx if kind == "max" else self.act_format(out)
        if t.__name__.startswith("Adaptive"):
            size = mod.output_size
            osz = (1, size if isinstance(size, int) else size[0]) if dims == 1 else pair(size, "output_size")
            if None in osz:
                raise UnsupportedLayerError(f"convert: layer '{name}': adaptive output size None is not supported")
            return WindowPoolOp(name, label, (j,), fy, "avg", fx, adaptive=osz, dims=dims)
        k = mod.kernel_size
        st = mod.stride if mod.stride is not None else k
        pad = mod.padding
        if dims == 1:
            k, st, pad = (1, _first(k)), (1, _first(st)), (0, _first(pad))
        return WindowPoolOp(name, label, (j,), fy, kind, fx, pair(k, "kernel"), pair(st, "stride"),
                            pair(pad, "padding"), bool(mod.ceil_mode),
                            bool(getattr(mod, "count_include_pad", True)), dims=dims)

    def mean_op(self, name, node, fenv, inp, int_ops) -> WindowPoolOp:
        """``x.mean((2, 3))`` (keepdim or not) on N x C x H x W, ``x.mean(-1)`` on N x C x L."""
        src = node.args[0]
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        keep = bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))
        rank = fenv[src].dim() if isinstance(src, torch.fx.Node) and src in fenv else 0
        dims = sorted(d % rank for d in ([dims] if isinstance(dims, int) else (dims or ()))) if rank else []
        if rank not in (3, 4) or dims != list(range(2, rank)):
            raise UnsupportedLayerError(f"convert: '{name}' in '{module_path(node)}' (mean): only a mean over "
                                        f"the spatial dims of N x C x H x W or N x C x L is supported, got "
                                        f"dims {dims} of a {rank}-D tensor")
        j = inp(src)
        return WindowPoolOp(name, "mean", (j,), self.act_format(fenv[node]), "avg", int_ops[j].fy,
                            adaptive=(1, 1), keepdim=keep, dims=2 if rank == 4 else 1)

    def upsample_op(self, name, label, mode, j, int_ops, x: torch.Tensor, y: torch.Tensor,
                    fixed_size: bool) -> UpsampleOp:
        """``nn.Upsample`` / ``F.interpolate`` in mode ``nearest`` (or ``nearest-exact``, the same for
        whole factors) whose output is a whole multiple of its input in every spatial dim: the
        factors are read from the input and output the float run saw (``scale_factor`` or ``size``).
        ``fixed_size``: the call gave ``size``; the converted model then raises on an input of another
        size (repeating by the same factors would miss the size asked for)."""
        if mode not in ("nearest", "nearest-exact"):
            raise UnsupportedLayerError(f"convert: layer '{name}' ({label}): mode '{mode}' is not supported; "
                                        f"only nearest upsampling by whole factors")
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.dim() == y.dim() >= 3):
            raise UnsupportedLayerError(f"convert: layer '{name}' ({label}): only the upsampling of one "
                                        f"N x C x ... activation is supported")
        pairs = list(zip(x.shape[2:], y.shape[2:]))
        if any(i == 0 or o % i for i, o in pairs):
            raise UnsupportedLayerError(f"convert: layer '{name}' ({label}): output size {tuple(y.shape[2:])} is "
                                        f"not a whole multiple of the input's {tuple(x.shape[2:])}; only nearest "
                                        f"upsampling by whole factors is supported")
        return UpsampleOp(name, label, (j,), int_ops[j].fy, tuple(o // i for i, o in pairs),
                          tuple(int(o) for o in y.shape[2:]) if fixed_size else None)

    def activation_op(self, name, kind, mod, fargs, fkwargs, node, fenv, inp, int_ops) -> IntOp | None:
        """The integer op of an activation module (``kind`` = class name) or function/method
        (``kind`` = its name, ``fargs``/``fkwargs`` its extra arguments); None if not one."""
        if mod is None and node.op == "call_function" and \
                not str(getattr(node.target, "__module__", "")).startswith("torch"):
            return None
        key = kind.lower().rstrip("_")
        if key not in _ACTIVATIONS:
            return None
        if mod is not None and type(mod) not in _ACTIVATION_TYPES:
            return None  # a user class named like one: its forward may differ
        j = inp(node.args[0])
        fx = int_ops[j].fy

        def arg(i: int, kw: str, attr: str, default: Any) -> Any:
            if mod is not None:
                return getattr(mod, attr, default)
            return fkwargs.get(kw, fargs[i] if len(fargs) > i else default)

        if key in ("relu6", "hardtanh"):
            lo = 0.0 if key == "relu6" else float(arg(0, "min_val", "min_val", -1.0))
            hi = 6.0 if key == "relu6" else float(arg(1, "max_val", "max_val", 1.0))
            return ClampOp(name, kind, (j,), fx, lo, hi)
        if key == "leaky_relu" or key == "leakyrelu":
            slope = float(arg(0, "negative_slope", "negative_slope", 0.01))
            fs = frac_bits_for(abs(slope), 16) if slope else 0
            return LeakyReluOp(name, kind, (j,), fx, fx, int(math.floor(math.ldexp(slope, fs) + 0.5)), fs)
        fy = self.act_format(fenv[node])
        if key in ("hardswish", "hardsigmoid"):
            return self.never_overflowing(HardOp(name, kind, (j,), fy, fx, key))
        return self.never_overflowing(LutOp(name, kind, (j,), fy, fx, _ACTIVATIONS[key]))

    def never_overflowing(self, op: IntOp) -> IntOp:
        """An elementwise activation whose output is bounded by its input's format (Sigmoid, Tanh,
        Hardsigmoid <= 1; SiLU, GELU, Hardswish <= max(x, 0.28)) gets an output format no input code
        can overflow: the calibration format (the max rule) when it holds the op's result for every
        one of the 2**bits input codes, else the finest that does. An SE gate or a SiLU whose
        calibration outputs were small then stays right on an image that drives it further, instead
        of wrapping to a wrong-signed value (tf_efficientnetv2_b0's blocks.3.0.se.act1 did); it
        costs at most the bits the calibration max was below that bound. Only under ``wrap``: under
        ``saturate`` such a value clips to the range like every other op's, and the max rule's
        finer format is kept (the coarser one lowered the zoo's EfficientNets' agreement there)."""
        if self.arith["overflow"] == "saturate":
            return op
        fx = op.fx
        codes = np.arange(fx.qmin, fx.qmax + 1, dtype=np.int64).astype(np.int16 if fx.bits <= 16 else np.int32)
        while op.run([codes], self.arith).output_overflows:
            op.fy = FixedFormat(op.fy.frac_bits - 1, op.fy.bits)
        return op

    def approx_error(self, op: IntOp) -> float:
        """Stated bound of a table activation's error in output units (0 for exact ops)."""
        if not isinstance(op, LutOp):
            return 0.0
        if op.fn in ("silu", "gelu"):
            return op.gate_error * self.value_max.get(op.inputs[0], 0.0)
        return op.gate_error
