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
- With more than one torch thread, a large CPU tensor is measured in pieces on the profiler's
  threads (as many as torch's intra-op threads: the forward pass waits for its hooks, so those
  cores are idle meanwhile); results are identical to one piece (tested with pieces of 5 values).
- Tensors on other devices (CUDA) stay there: the same counts by torch ops, returned as 0-d tensors
  so the profiler reads them all with one synchronization at the end of the forward pass. The code
  size uses ``since`` = zeros since the last non-zero value (a running maximum of positions): a run
  of ``z`` zeros holds ``z // 32`` positions with ``since`` a multiple of 32.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import numpy_view
from ..workload import Layer
from ..workload.rlc import PAIRS_PER_WORD, words_for_packed

Count = int | torch.Tensor  # a 0-d tensor for tensors off the CPU (read at the end of the batch)
SLOTS = 6  # statistics per record, see LayerStats
_CHUNK = 1 << 24  # values per step of the device code-size count (bounds its int64 temporaries)
_MIN_PIECE = 1 << 18  # values per piece of a CPU tensor measured on several threads (smaller: one piece)


def _pieces(n: int, pool: Executor | None, workers: int, align: int = 1) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges splitting ``n`` items into at most ``workers`` pieces of at least
    ``_MIN_PIECE`` values, every boundary a multiple of ``align``."""
    k = max(1, min(workers if pool is not None else 1, n // _MIN_PIECE))
    cuts = [0] + [(n * i // k) // align * align for i in range(1, k)] + [n]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a] or [(0, n)]


def _map(pool: Executor | None, fn: Callable, spans: list[tuple[int, int]]) -> list:
    """``fn(start, stop)`` over ``spans``: on the pool's threads when there are several (NumPy's
    comparisons, reductions, ``count_nonzero`` of booleans and ``packbits`` release the GIL), else
    on the calling thread."""
    if pool is None or len(spans) == 1:
        return [fn(a, b) for a, b in spans]
    return list(pool.map(lambda ab: fn(*ab), spans))


def non_finite_cpu(a: np.ndarray, pool: Executor | None = None, workers: int = 1) -> int:
    """NaN/inf values of a NumPy array, a contiguous one in pieces: min and max are finite only
    when every value is (the exact count is paid only then)."""
    if a.size == 0 or not np.issubdtype(a.dtype, np.floating):
        return 0
    if a.flags.c_contiguous:
        flat = a.reshape(-1)
        ok = all(_map(pool, lambda i, j: bool(np.isfinite(flat[i:j].min()) and np.isfinite(flat[i:j].max())),
                      _pieces(flat.size, pool, workers)))
    else:
        ok = bool(np.isfinite(a.min()) and np.isfinite(a.max()))
    return 0 if ok else int(a.size - np.count_nonzero(np.isfinite(a)))


def zeros(t: torch.Tensor, pool: Executor | None = None, workers: int = 1) -> Count:
    """Exact zeros of ``t`` (a CPU tensor in up to ``workers`` pieces on ``pool``'s threads)."""
    a = numpy_view(t)
    if a is None:
        return t.numel() - torch.count_nonzero(t.detach() != 0)
    if not a.flags.c_contiguous:
        return int(a.size - np.count_nonzero(a != 0))
    flat = a.reshape(-1)
    return int(a.size - sum(_map(pool, lambda i, j: np.count_nonzero(flat[i:j] != 0),
                                 _pieces(flat.size, pool, workers))))


def input_stats(inp: torch.Tensor, layer: Layer, pool: Executor | None = None,
                workers: int = 1) -> tuple[Count, Count, int]:
    """(zeros of ``inp``, 64-bit words of the chip's RLC code of the zero-padded input, its values).

    The code's size depends only on where the zeros are, so the stream is the input's zero pattern
    in NCHW order with the layer's zero padding, exactly as the accelerator would store the fmap
    (a 4-D input is padded in H and W, a 3-D one along its last dimension). A CPU input is read in
    up to ``workers`` pieces on ``pool``'s threads: the mask by planes, its count and packing by
    ranges of a multiple of 8 values (so the packed pieces join into the packing of the whole).
    """
    return stream_stats(inp, stream_pads(inp.dim(), layer), pool, workers)


def stream_stats(inp: torch.Tensor, pads: tuple[int, int] | None, pool: Executor | None = None,
                 workers: int = 1) -> tuple[Count, Count, int]:
    """(zeros, 64-bit RLC words, values) of the NCHW stream of ``inp`` zero-padded by ``pads`` =
    (rows, columns) on each side, or unpadded (``None``): :func:`input_stats` for a layer's input,
    :func:`written_stats` for the ofmap a layer writes (so a ReLU output that the next layer reads
    unpadded, as a 1x1 convolution does, is measured once for both)."""
    a = numpy_view(inp)
    if a is None:
        return _device_input_stats(inp.detach(), pads)
    ph, pw = pads or (0, 0)
    *lead, h, w = a.shape if a.ndim >= 2 else (1, a.size)
    mask = (np.zeros if pads else np.empty)((*lead, h + 2 * ph, w + 2 * pw), dtype=bool)
    planes = int(np.prod(lead, dtype=np.int64))
    src = a.reshape(planes, h, w)  # a view of a contiguous input
    window = mask.reshape(planes, h + 2 * ph, w + 2 * pw)[:, ph:ph + h, pw:pw + w]

    def fill(i: int, j: int) -> None:
        np.not_equal(src[i:j], 0, out=window[i:j])

    per_plane = max(h * w, 1)
    _map(pool, fill, [(i // per_plane, j // per_plane)
                      for i, j in _pieces(planes * per_plane, pool, workers, align=per_plane)])
    flat = mask.reshape(-1)

    def count_pack(i: int, j: int) -> tuple[int, np.ndarray]:
        return int(np.count_nonzero(flat[i:j])), np.packbits(flat[i:j])

    parts = _map(pool, count_pack, _pieces(flat.size, pool, workers, align=8))
    nnz = sum(c for c, _ in parts)
    packed = parts[0][1] if len(parts) == 1 else np.concatenate([p for _, p in parts])
    words = words_for_packed(packed, flat.size, nnz, flat.size > 0 and not flat[-1])
    return int(a.size - nnz), words, int(flat.size)


def written_stats(out: torch.Tensor, pool: Executor | None = None, workers: int = 1) -> tuple[Count, Count, int]:
    """(zeros, 64-bit RLC words, values) of an ofmap as the chip writes it: the tensor's NCHW stream
    coded whole, no padding (JSSC Sec. IV-B: ofmaps leave through the ReLU module and the RLC
    encoder). One pass over the tensor (its zero mask), in pieces on ``pool`` as :func:`input_stats`."""
    return stream_stats(out, None, pool, workers)


def stream_pads(ndim: int, layer: Layer) -> tuple[int, int] | None:
    """The zero padding (rows, columns per side) of ``layer``'s input stream, ``None`` for none."""
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
