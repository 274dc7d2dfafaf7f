"""A converted model's integer graph re-run op by op through the golden reference
(:mod:`.golden`), from the inputs the fast backend produced: every op with arithmetic (Conv/Linear,
activations, multiply, add, concat, pooling, per-channel affine, LayerNorm) and the data movement
(reshapes, permutes, slices) written plainly in NumPy. ``mismatches`` lists the ops that differ."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import golden, shape_expr
from .act_ops import ClampOp, HardOp, LeakyReluOp, LutOp, MulOp, WindowPoolOp
from .graph_ops import AddOp, CatOp, ConvOp, ExpandOp, PermuteOp, ReluOp, ReshapeOp, SliceOp, UpsampleOp
from .norm_ops import AffineOp, LayerNormOp

__all__ = ["differing_ops", "golden_op", "mismatches"]


def _conv(op: ConvOp, x: np.ndarray, kw: dict[str, Any]) -> np.ndarray:
    if op.pad_same is not None:
        t, b, left, r = op.pad_same
        x = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    if op.fxq is not None:
        x = golden.requantize(x, fx=op.fx, fy=op.fxq, rounding=kw["rounding"],
                              overflow="saturate" if op.clip_input else kw["overflow"]).y
    kw = {**kw, "fx": op.f_in, "fw": op.fw, "fy": op.fy, "relu": op.relu, "fw_channels": op.fw_channels}
    if op.op == "Linear":
        rows = x.reshape(-1, x.shape[-1])
        return golden.linear(rows, op.w, op.b, **kw).y.reshape(*x.shape[:-1], -1)
    if op.op == "Conv1d":
        return golden.conv1d(x, op.w, op.b, stride=op.stride[1], padding=op.padding[1], groups=op.groups, **kw).y
    return golden.conv2d(x, op.w, op.b, stride=op.stride, padding=op.padding, groups=op.groups, **kw).y


def _pool(op: WindowPoolOp, x: np.ndarray, kw: dict[str, Any]) -> np.ndarray:
    if op.dims == 1:
        x = x[:, :, None, :]
    if op.kind == "max":
        y = golden.max_pool2d_ext(x, op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode).y
    elif op.adaptive is not None:
        y = golden.adaptive_avg_pool2d(x, op.adaptive, fx=op.fx, fy=op.fy, **kw).y
    else:
        y = golden.avg_pool2d_ext(x, op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode,
                                  count_include_pad=op.count_include_pad, fx=op.fx, fy=op.fy, **kw).y
    if op.dims == 1:
        y = y[:, :, 0, :]
    return y if op.keepdim else y.reshape(y.shape[:2])


def golden_op(op: Any, xs: list[np.ndarray], arith: dict[str, str], values: list) -> np.ndarray | None:
    """The golden output codes of ``op`` on inputs ``xs`` (``values``: every value of the run, for
    sizes read at run time); None for an op this module does not know."""
    kw = {"rounding": arith["rounding"], "overflow": arith["overflow"]}
    x = xs[0] if xs else None
    if isinstance(op, ConvOp):
        return _conv(op, x, {**kw, "mode": arith["mode"]})
    if isinstance(op, ReluOp):
        return golden.relu(x).y
    if isinstance(op, AddOp):
        return golden.add(x, xs[1], fa=op.fa, fb=op.fb, fy=op.fy, relu=op.relu, **kw).y
    if isinstance(op, CatOp):
        return golden.concat(xs, fxs=op.fxs, fy=op.fy, dim=op.dim, **kw).y
    if isinstance(op, ClampOp):
        return golden.clamp(x, op.lo, op.hi, fx=op.fy).y
    if isinstance(op, LeakyReluOp):
        return golden.leaky_relu(x, op.slope_code, op.fs, fx=op.fx, fy=op.fy, **kw).y
    if isinstance(op, HardOp):
        return getattr(golden, op.fn)(x, fx=op.fx, fy=op.fy, **kw).y
    if isinstance(op, LutOp):
        return golden.lut(x, op.fn, fx=op.fx, fy=op.fy, **kw).y
    if isinstance(op, MulOp):
        return golden.mul(x, xs[1], fa=op.fa, fb=op.fb, fy=op.fy, **kw).y
    if isinstance(op, WindowPoolOp):
        return _pool(op, x, kw)
    if isinstance(op, AffineOp):
        return golden.affine(x, op.a, op.b, dim=op.dim, fx=op.fx, fa=op.fa, fy=op.fy, **kw).y
    if isinstance(op, LayerNormOp):
        return golden.layer_norm(x, op.g, op.beta, dim=op.dim, e=op.e, fx=op.fx, fg=op.fg, fy=op.fy, **kw).y
    if isinstance(op, PermuteOp):
        return np.transpose(x, op.dims)
    if isinstance(op, ExpandOp):  # broadcasting by a product with ones of the target's shape
        return x * np.ones(xs[1].shape, dtype=x.dtype)
    if isinstance(op, UpsampleOp):  # torch's nearest: output index o reads input index floor(o * in / out)
        first = x.ndim - len(op.scale)
        for d, k in enumerate(op.scale):
            n = x.shape[first + d]
            x = np.take(x, (np.arange(n * k) * n) // (n * k), axis=first + d)
        return x
    if isinstance(op, SliceOp):
        return np.take(x, np.arange(op.start, op.stop), axis=op.dim)
    if isinstance(op, ReshapeOp):
        if op.shape is None:
            lead, end = x.shape[:op.start_dim], op.end_dim % x.ndim + 1
            return x.reshape(*lead, -1, *x.shape[end:]) if x.ndim else x
        return x.reshape([shape_expr.evaluate(v, lambda j: values[j].shape) for v in op.shape])
    return None


def differing_ops(fixed: Any, images: Any, *, skip: tuple[type, ...] = ()) -> tuple[list[Any], int]:
    """Re-run every op of ``fixed`` (except the types in ``skip``) through the golden reference on
    the inputs the fast run gave it; ``(the ops whose codes differ, ops checked)``. An op this
    module does not know counts as differing (never silently unchecked)."""
    run = fixed.run(fixed.quantize_input(images), keep=True)
    bad, checked = [], 0
    for k, op in enumerate(fixed.int_ops[1:], start=1):
        if isinstance(op, skip):
            continue
        want = golden_op(op, [run.values[j] for j in op.inputs], fixed.arith, run.values)
        checked += 1
        if want is None or want.shape != run.values[k].shape or not np.array_equal(want, run.values[k]):
            bad.append(op)
    return bad, checked


def mismatches(fixed: Any, images: Any, *, skip: tuple[type, ...] = ()) -> tuple[list[str], int]:
    """:func:`differing_ops` as ``(["name (op)", ...], ops checked)``."""
    bad, checked = differing_ops(fixed, images, skip=skip)
    return [f"{op.name} ({op.op})" for op in bad], checked
