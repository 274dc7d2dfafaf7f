"""Per-layer output-format search: each Conv/Linear's ``f_y`` chosen by the error it leaves in the
network's output (``convert(..., search_formats=True)``).

Why: in mode ``eyeriss`` with ``floor`` (the chip) every product is cut at ``f_y``, losing up to one
code each; bias correction (:mod:`.bias`) cancels the mean of that loss, but not the part that varies
with how many non-zero products an output has (ReLU zeros, borders). That residual scales with the
code size ``2**-f_y``, so one bit finer halves it; the max rule with its margin
(``headroom_bits``) leaves 0.5 to 1.5 bits unused. A finer format lets the largest calibration values
overflow, and whether that costs more than the precision gains depends on where they go: a positive
pre-ReLU sum that wraps becomes negative and the fused ReLU zeroes it, a max pooling may never pick
it. A layer's own output error cannot see that (with ``wrap`` it always prefers the finest format
holding every calibration value); the network's output can.

Rule (greedy, layer by layer, in execution order; every earlier layer already fixed in integers):

- candidates ``f0 - 1``, ``f0``, ``f0 + 1``, with ``f0`` the max rule with ``headroom_bits``;
- ``f0 + 1`` (finer than the max rule) only where it is :func:`admissible`: it still holds the range
  unseen images are expected to reach (:func:`hwaware.fixedpoint.ranges.tail_range` of the layer's
  calibration outputs), or calibration values already overflow it, so that what such overflows cost
  is measured rather than assumed. Without this a layer whose calibration images all fit the finer
  format loses the max rule's margin on no evidence: the trained builtin:shapes ResNet-18's first
  convolution did (calibration max 7.88, the finer format's range 8.0, the tail fit's 10.2), and
  5 of 1000 validation images wrapped there and flipped with float top-1 margins of 9 to 11;
- for each, the layer is built with that ``f_y``, its bias corrected (when bias correction is on) and
  run on its integer input from the calibration data; its dequantized output replaces the float
  value and the rest of the network runs in float to the output;
- the candidate with the least output error (:func:`output_error`: each calibration image's RMS
  error against the float model's output, averaged over the images) wins; a candidate within ``TIE`` (relative) of the least counts as equal
  and the coarsest of those wins (more margin for unseen images, and a choice that rounding noise in
  the float reference cannot flip between thread counts).

Cost: three integer runs of each Conv/Linear and three float passes of the network's remainder on the
calibration images. The user's model is never run or modified (the converter works on its copy).
Precedent: choosing quantization parameters by the error they cause downstream rather than by range
alone, as AdaRound ("Up or Down? Adaptive Rounding for Post-Training Quantization", Nagel et al.,
ICML 2020) chooses each weight's rounding by the error of the layer's output rather than to nearest;
here only among power-of-two output formats, and with the network's output as the error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .format import FRAC_MAX, FRAC_MIN, FixedFormat
from .graph_ops import ConvOp

__all__ = ["CANDIDATE_OFFSETS", "TIE", "admissible", "candidate_ops", "output_error", "pick"]

CANDIDATE_OFFSETS = (-1, 0, 1)  # bits finer than the max rule's f_y
TIE = 1e-6  # relative difference of output errors below which two candidates count as equal


def candidate_ops(op: ConvOp, mode: str = "eyeriss") -> list[ConvOp]:
    """Copies of ``op`` with ``f_y`` moved by each of :data:`CANDIDATE_OFFSETS`, coarsest first
    (formats outside the allowed range are skipped). In mode ``eyeriss`` the bias codes are at
    ``f_y`` and are moved with it (bias correction, when on, replaces them anyway); in mode
    ``wide`` they are at ``f_x + f_w`` and stay as they are."""
    out = []
    for d in CANDIDATE_OFFSETS:
        f = op.fy.frac_bits + d
        if not FRAC_MIN <= f <= FRAC_MAX:  # beyond the formats the contract allows
            continue
        fy = FixedFormat(f, op.fy.bits)
        b = op.b
        if d and b is not None and mode == "eyeriss":
            b = np.clip(np.floor(np.ldexp(b.astype(np.float64), d) + 0.5), -32768, 32767).astype(np.int64)
        out.append(dataclasses.replace(op, fy=fy, b=b))
    return out


def admissible(cand: ConvOp, f0: int, overflows: int, reach: float) -> bool:
    """Whether candidate ``cand`` may compete: at most as fine as the max rule's ``f0``, or finer
    but either holding ``reach`` (the layer's expected range on unseen images) or already overflowed
    by ``overflows`` calibration outputs (their cost is then in the measured error)."""
    if cand.fy.frac_bits <= f0 or overflows > 0:
        return True
    return cand.fy.qmax * cand.fy.lsb >= reach


def pick(errors: Sequence[float]) -> int:
    """Index of the least error; among those within :data:`TIE` (relative) of it, the first (the
    coarsest format: candidates come coarsest first)."""
    best = min(errors)
    for i, e in enumerate(errors):
        if e <= best * (1.0 + TIE) + 1e-30:
            return i
    return int(np.argmin(errors))


def output_error(run_rest: Callable[[torch.Tensor], Any], value: torch.Tensor, reference: torch.Tensor) -> float:
    """The network's output error when ``value`` replaces the layer's float output and the rest runs
    in float (``run_rest``): the root-mean-square error against ``reference`` (the float model's
    output) of each image, averaged over the images.

    Per image, then averaged, rather than one mean square over all: an overflow that wrecks one image's
    output costs that image's error, not its square, so it is weighed against the precision every image
    gains as a classifier's top-1 is (it can flip that one image, no more). With one mean square, the
    trained small CNN's conv3/conv4 kept the coarser formats for 7-31 overflowing calibration values and
    agreed with float on 99.3/99.0/99.5% of 1000 validation images; with this error on 99.7/99.4/99.5%
    (three calibration sets; docs/fixedpoint.md)."""
    d = (run_rest(value).double() - reference.double()).reshape(len(reference), -1)
    return float(d.pow(2).mean(1).sqrt().mean())
