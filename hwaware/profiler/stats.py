"""What the profiler measures on a layer's tensors: exact zero counts and the RLC-coded size of the
zero-padded input (JSSC Fig. 8), summed over batches by :class:`LayerStats`.

Cost is what matters here: these statistics run on every Conv/Linear call of a profiled forward
pass (ResNet-50: 54 calls, 25M weights, 11M input values at batch 1). Each tensor is read once into
a zero mask (``x != 0``, NaN counts as non-zero as in ``torch.count_nonzero(x == 0)``); the input's
mask is written straight into a zero-padded boolean array, so its zero count and its code size come
from one list of non-zero positions (:func:`hwaware.workload.rlc.words_for_nonzero`). CPU tensors are
read through NumPy views, single-threaded on the calling thread. Measured (median of 7, one 0.8M
activation, loaded 2-core machine): torch ``count_nonzero(x == 0)`` 22 ms, ``F.pad`` + int16 mask
+ ``encoded_words`` ~70 ms, this module's zeros + code size ~2 ms; see docs/profiler.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import numpy_view
from ..workload import Layer
from ..workload.rlc import words_for_nonzero


def nonzero_mask(t: torch.Tensor) -> np.ndarray:
    """``t != 0`` as a NumPy bool array (logical, C order)."""
    a = numpy_view(t)
    if a is None:
        return (t.detach() != 0).cpu().numpy()
    return a != 0


def zeros(t: torch.Tensor) -> int:
    """Exact zeros of ``t``."""
    return int(t.numel() - np.count_nonzero(nonzero_mask(t)))


def input_stats(inp: torch.Tensor, layer: Layer) -> tuple[int, int, int]:
    """(zeros of ``inp``, 64-bit words of the chip's RLC code of the zero-padded input, its values).

    The code's size depends only on where the zeros are, so the stream is the input's zero pattern
    in NCHW order with the layer's zero padding, exactly as the accelerator would store the fmap
    (a 4-D input is padded in H and W, a 3-D one along its last dimension).
    """
    mask = nonzero_mask(inp)
    ph, pw = layer.padding, layer.padding_w
    if (ph or pw) and mask.ndim in (3, 4):
        if mask.ndim == 3:
            ph = 0
        *lead, h, w = mask.shape
        padded = np.zeros((*lead, h + 2 * ph, w + 2 * pw), dtype=bool)
        padded[..., ph:ph + h, pw:pw + w] = mask
        mask = padded
    nz = np.flatnonzero(mask)
    return int(inp.numel() - nz.size), words_for_nonzero(nz, mask.size), int(mask.size)


@dataclass
class LayerStats:
    """One record's shape (from the first batch) and zero counts summed over batches."""

    layer: Layer
    # ifmap, weight, ofmap zeros; then the RLC-coded 64-bit words of the padded ifmap and its values
    zeros: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def add(self, zeros: tuple[int, ...], counts: tuple[int, ...]) -> None:
        for i in range(4):
            self.zeros[i] += zeros[i]
            self.counts[i] += counts[i]

    def finish(self) -> Layer:
        z = [self.zeros[i] / self.counts[i] if self.counts[i] else 0.0 for i in range(3)]
        # a 64-bit RLC word carries the space of four 16-bit values
        rlc = 4.0 * self.zeros[3] / self.counts[3] if self.counts[3] else 0.0
        return self.layer.replace(ifmap_zeros=z[0], weight_zeros=z[1], ofmap_zeros=z[2], ifmap_rlc=min(rlc, 2.0))
