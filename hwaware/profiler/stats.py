"""What the profiler measures on a layer's tensors: exact zero counts and the RLC-coded size of the
zero-padded input (JSSC Fig. 8), summed over batches by :class:`LayerStats`.

Cost is what matters here: these statistics run on every Conv/Linear call of a profiled forward
pass (ResNet-50: 54 calls, 25M weights, 11M input values at batch 1), so each tensor is read once
into a zero mask (``x != 0``; NaN counts as non-zero, as in ``torch.count_nonzero(x == 0)``).

- CPU tensors go through NumPy views on the calling thread (no OpenMP hand-off per op, which on a
  busy machine costs more than the work). The input's mask is written straight into a zero-padded
  boolean array, and its zero count and code size come from the bit-packed mask
  (:func:`hwaware.workload.rlc.words_for_mask`). ResNet-50's 54 inputs at batch 1 (1 thread, loaded
  machine): 91 ms with a list of non-zero positions, 35 ms packed.
- Tensors on other devices (CUDA) stay there: the same counts by torch ops, returned as 0-d tensors
  so the profiler reads them all with one synchronization at the end of the forward pass. The code
  size uses ``since`` = zeros since the last non-zero value (a running maximum of positions): a run
  of ``z`` zeros holds ``z // 32`` positions with ``since`` a multiple of 32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import numpy_view
from ..workload import Layer
from ..workload.rlc import PAIRS_PER_WORD, words_for_mask

Count = int | torch.Tensor  # a 0-d tensor for tensors off the CPU (read at the end of the batch)
SLOTS = 6  # statistics per record, see LayerStats
_CHUNK = 1 << 24  # values per step of the device code-size count (bounds its int64 temporaries)


def zeros(t: torch.Tensor) -> Count:
    """Exact zeros of ``t``."""
    a = numpy_view(t)
    if a is None:
        return t.numel() - torch.count_nonzero(t.detach() != 0)
    return int(a.size - np.count_nonzero(a != 0))


def input_stats(inp: torch.Tensor, layer: Layer) -> tuple[Count, Count, int]:
    """(zeros of ``inp``, 64-bit words of the chip's RLC code of the zero-padded input, its values).

    The code's size depends only on where the zeros are, so the stream is the input's zero pattern
    in NCHW order with the layer's zero padding, exactly as the accelerator would store the fmap
    (a 4-D input is padded in H and W, a 3-D one along its last dimension).
    """
    a = numpy_view(inp)
    pads = _pads(inp.dim(), layer)
    if a is None:
        return _device_input_stats(inp.detach(), pads)
    if pads is None:
        mask = a != 0
    else:
        ph, pw = pads
        *lead, h, w = a.shape
        mask = np.zeros((*lead, h + 2 * ph, w + 2 * pw), dtype=bool)
        np.not_equal(a, 0, out=mask[..., ph:ph + h, pw:pw + w])
    words, nnz = words_for_mask(mask)
    return int(a.size - nnz), words, int(mask.size)


def written_stats(out: torch.Tensor) -> tuple[Count, Count, int]:
    """(zeros, 64-bit RLC words, values) of an ofmap as the chip writes it: the tensor's NCHW stream
    coded whole, no padding (JSSC Sec. IV-B: ofmaps leave through the ReLU module and the RLC
    encoder). One pass over the tensor (its zero mask)."""
    a = numpy_view(out)
    if a is None:
        words, nnz = device_words(out.detach().reshape(-1) != 0)
        return out.numel() - nnz, words, out.numel()
    words, nnz = words_for_mask(a != 0)
    return int(a.size - nnz), words, int(a.size)


def _pads(ndim: int, layer: Layer) -> tuple[int, int] | None:
    ph, pw = layer.padding, layer.padding_w
    if not (ph or pw) or ndim not in (3, 4):
        return None
    return (0 if ndim == 3 else ph, pw)


def _device_input_stats(x: torch.Tensor, pads: tuple[int, int] | None) -> tuple[Count, Count, int]:
    mask = x != 0
    if pads is not None:
        ph, pw = pads
        *lead, h, w = mask.shape
        padded = mask.new_zeros((*lead, h + 2 * ph, w + 2 * pw))
        padded[..., ph:ph + h, pw:pw + w] = mask
        mask = padded
    flat = mask.reshape(-1)
    words, nnz = device_words(flat)
    return x.numel() - nnz, words, flat.numel()


def device_words(flat: torch.Tensor) -> tuple[Count, Count]:
    """(words of the code, non-zero values) of the stream whose non-zero mask is ``flat`` (1-D bool,
    any device) by torch ops, as 0-d tensors (no synchronization); equals
    :func:`~hwaware.workload.rlc.words_for_mask` (tested on CPU tensors)."""
    n = flat.numel()
    if n == 0:
        return 0, 0
    nnz = torch.count_nonzero(flat)
    long_runs = torch.zeros((), dtype=torch.int64, device=flat.device)
    since_end = torch.zeros((), dtype=torch.int64, device=flat.device)  # zeros carried into a chunk
    for start in range(0, n, _CHUNK):
        m = flat[start:start + _CHUNK]
        idx = torch.arange(m.numel(), device=m.device, dtype=torch.int64)
        last = torch.cummax(torch.where(m, idx, -1 - since_end), 0).values  # last non-zero position
        since = idx - last
        long_runs += ((since % 32 == 0) & ~m).sum()
        since_end = since[-1]
    pairs = nnz + long_runs + (~flat[-1]).to(torch.int64)  # a stream ending in zeros: one more pair
    return (pairs + PAIRS_PER_WORD - 1) // PAIRS_PER_WORD, nnz


@dataclass
class LayerStats:
    """One record's shape (from the first batch) and zero counts summed over batches."""

    layer: Layer
    # ifmap, weight, ofmap zeros; the RLC-coded 64-bit words of the padded ifmap and its values; the
    # zeros and RLC words of the ofmap after its ReLU (counts 0 in batches where no ReLU followed)
    zeros: list[int] = field(default_factory=lambda: [0] * SLOTS)
    counts: list[int] = field(default_factory=lambda: [0] * SLOTS)

    def add(self, zeros: tuple[int, ...], counts: tuple[int, ...]) -> None:
        for i in range(SLOTS):
            self.zeros[i] += zeros[i]
            self.counts[i] += counts[i]

    def finish(self) -> Layer:
        z = [self.zeros[i] / self.counts[i] if self.counts[i] else 0.0 for i in range(3)]
        # a 64-bit RLC word carries the space of four 16-bit values
        rlc = 4.0 * self.zeros[3] / self.counts[3] if self.counts[3] else 0.0
        # the ReLU'd ofmap only when every batch's call had one (else it is not what the layer writes)
        relu = self.counts[4] == self.counts[2] and self.counts[4] > 0
        relu_zeros = self.zeros[4] / self.counts[4] if relu else None
        of_rlc = min(4.0 * self.zeros[5] / self.counts[5], 2.0) if relu else 0.0
        return self.layer.replace(ifmap_zeros=z[0], weight_zeros=z[1], ofmap_zeros=z[2], ifmap_rlc=min(rlc, 2.0),
                                  ofmap_relu_zeros=relu_zeros, ofmap_rlc=of_rlc)
