"""Checks of a converted integer model: bit-exactness of the fast kernels against the NumPy
reference (:mod:`hwaware.fixedpoint.golden`) and top-1 accuracy/agreement with the float model."""

from __future__ import annotations

from typing import Any

__all__ = ["accuracy_and_agreement", "bit_exact_mismatches"]


def accuracy_and_agreement(model: Any, fixed: Any, loader: Any) -> tuple[float, float]:
    """Top-1 accuracy of ``fixed`` and the fraction of images where it picks the float model's
    class, in one pass over ``loader`` (the integer model is the slow part)."""
    import torch

    from ..errors import HwawareError

    was = model.training
    model.eval()
    correct = same = seen = 0
    try:
        with torch.no_grad():
            for x, y in loader:
                pf = model(x).argmax(1)
                pq = fixed(x).argmax(1)
                correct += int((pq == y).sum())
                same += int((pq == pf).sum())
                seen += int(y.shape[0])
    finally:
        model.train(was)
    if seen == 0:
        raise HwawareError("quantize: the validation loader yields no images")
    return correct / seen, same / seen


def bit_exact_mismatches(fixed: Any, images: Any) -> list[str]:
    """Recompute every Conv/Linear op of ``fixed`` with the NumPy reference from the int16 inputs the
    fast backend used; return the names of the ops whose outputs differ (empty: bit-exact)."""
    import numpy as np

    from . import golden
    from .convert import ConvOp

    run = fixed.run(fixed.quantize_input(images), keep=True)
    arith = fixed.arith
    bad = []
    for k, op in enumerate(fixed.int_ops):
        if not isinstance(op, ConvOp):
            continue
        x = op.prepare(run.values[op.inputs[0]], arith)
        kw = dict(fx=op.f_in, fw=op.fw, fy=op.fy, mode=arith["mode"], rounding=arith["rounding"],
                  overflow=arith["overflow"], relu=op.relu, fw_channels=op.fw_channels)
        if op.op == "Linear":
            ref = golden.linear(x, op.w, op.b, **kw)
        elif op.op == "Conv1d":
            ref = golden.conv1d(x, op.w, op.b, stride=op.stride[1], padding=op.padding[1], groups=op.groups, **kw)
        else:
            ref = golden.conv2d(x, op.w, op.b, stride=op.stride, padding=op.padding, groups=op.groups, **kw)
        if not np.array_equal(ref.y, run.values[k]):
            bad.append(op.name)
    return bad
