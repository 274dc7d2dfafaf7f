"""Bias correction: each Conv/Linear's bias codes set so its channels' mean output on the
calibration data is right (see :mod:`hwaware.fixedpoint.convert`, "Bias correction")."""

from __future__ import annotations

import numpy as np
import torch

from .format import OpResult
from .graph_ops import ConvOp, wide_bias_codes

__all__ = ["correct_bias"]


def correct_bias(op: ConvOp, x: np.ndarray, target: torch.Tensor, arith: dict[str, str]) -> OpResult | None:
    """Set each bias code so the channel's mean output on the calibration data is right.

    ``target``: the float model's output of this layer (before a fused ReLU). The integer
    layer runs without bias on its integer input; the bias becomes the rounded mean of
    (target - integer result) per output channel, which also absorbs the mean error the
    input carries from earlier layers. In mode eyeriss the layer's result with the new bias
    follows from that run (the adder is modular) and is returned; otherwise None.
    """
    t = target.double().numpy()
    ch = t.ndim - 1 if op.op == "Linear" else 1  # a Linear on channels-last input: the last dim
    axes = tuple(i for i in range(t.ndim) if i != ch)
    if arith["mode"] == "eyeriss":
        r0 = op.run([x], arith, bias=None, relu=False)
        got = r0.y.astype(np.float64)
        delta = (np.ldexp(t, op.fy.frac_bits) - got).mean(axis=axes)  # codes at f_y
        op.b = np.clip(np.floor(delta + 0.5), -32768, 32767).astype(np.int64)
        if r0.output_overflows or op.fy.bits < 16:
            return None
        # no sum wrapped without bias, so got is the exact sum of cut products
        shape = [1] * got.ndim
        shape[ch] = -1
        total = r0.y.astype(np.int64) + op.b.reshape(shape)
        y = ((total + 32768) & 0xFFFF) - 32768
        if op.relu:
            y = np.maximum(y, 0)
        return OpResult(y.astype(np.int16), r0.product_overflows,
                        int(((total < -32768) | (total > 32767)).sum()))
    else:
        fws = np.asarray(op.fw_channels if op.fw_channels is not None else [op.fw.frac_bits] * len(op.b))
        s = op.f_in.frac_bits + fws - op.fy.frac_bits  # per output channel
        got = op.run([x], arith, bias=np.zeros_like(op.b), relu=False).y.astype(np.float64)
        delta = np.ldexp((np.ldexp(t, op.fy.frac_bits) - got).mean(axis=axes), s)  # codes at f_x + f_w
        op.b = wide_bias_codes(delta, op.name, op.op)  # exact int64, never clipped
    return None

