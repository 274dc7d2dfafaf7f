"""Checks of a converted integer model: bit-exactness of the fast kernels against the NumPy
reference (:mod:`hwaware.fixedpoint.golden`) and top-1 accuracy/agreement with the float model."""

from __future__ import annotations

from typing import Any

__all__ = ["accuracy_and_agreement", "bit_exact_mismatches"]


def accuracy_and_agreement(model: Any, fixed: Any, loader: Any) -> tuple[float, float]:
    """Top-1 accuracy of ``fixed`` and the fraction of images where it picks the float model's
    class, in one pass over ``loader`` (the integer model is the slow part)."""
    from .._modes import inspection_mode
    from ..errors import HwawareError

    correct = same = seen = 0
    with inspection_mode(model):  # eval, no grad, each module's flag restored
        for x, y in loader:
            pf = model(x).argmax(1)
            pq = fixed(x).argmax(1)
            correct += int((pq == y).sum())
            same += int((pq == pf).sum())
            seen += int(y.shape[0])
    if seen == 0:
        raise HwawareError("quantize: the validation loader yields no images")
    return correct / seen, same / seen


def bit_exact_mismatches(fixed: Any, images: Any) -> list[str]:
    """Recompute every op of ``fixed`` (Conv/Linear, activations, multiply, add, concat, pooling,
    affine, LayerNorm and the data movement: what the converter emits) with the golden reference
    from the int16 inputs the fast backend gave it; return the names of the ops whose outputs
    differ (empty: bit-exact). :mod:`.golden_graph` does the work."""
    from .golden_graph import differing_ops

    return [op.name for op in differing_ops(fixed, images)[0]]
