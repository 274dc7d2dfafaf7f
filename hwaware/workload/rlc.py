"""Run-length compression of feature maps, as the Eyeriss chip stores them in DRAM (JSSC 2017, Fig. 8).

A stream of int16 codes becomes a list of (run, level) pairs: ``run`` (5 bits, 0..31) zeros, then
the 16-bit ``level`` written as is (two's complement). Three pairs fill one 64-bit word; the word's
last bit is 1 on the last word of the stream and 0 on every other word.

Bit layout of a word (bit 63 = most significant)::

    63..59 run0 | 58..43 level0 | 42..38 run1 | 37..22 level1 | 21..17 run2 | 16..1 level2 | 0 last

Rules (the paper fixes the first two; the rest are this codec's documented choices):

- Greedy, as on the chip: zeros are counted up to 31; the next value, whatever it is, is written as
  the level and counting starts again. So a run of more than 31 zeros is split: 32 zeros become the
  pair (31, 0) -- 31 counted zeros plus a zero written literally as the level.
- Trailing zeros (a run of ``L >= 1`` zeros that reaches the end of the stream) have no value after
  them, so their last zero is written as the level: ``L`` zeros give ``L // 32`` pairs (31, 0) and a
  final (L % 32 - 1, 0). When ``L`` is a multiple of 32 that final pair would be (31, 0), which is
  reserved for padding (next rule), so the encoder writes the last 32 zeros as (30, 0), (0, 0).
  Either way, a run of ``z`` zeros takes ``z // 32 + 1`` pairs, whether a value or the end follows.
- Padding: unused slots of the last word hold the pair (31, 0). A decoder drops (31, 0) pairs at the
  end of the last word; the encoder never ends a stream with a real (31, 0), so this is exact and the
  code needs no separate length (the chip's decoder knew the fmap size from its configuration).
- An empty stream encodes to zero words.

Worked example (the figure's stream)::

    codes  0 0 12 0 0 0 0 53 0 0 22 0 0 0
    pairs  (2, 12) (4, 53) (2, 22) | (2, 0) (31, 0) (31, 0)     <- 2nd word: trailing 3 zeros + padding
    words  2 words = 16 bytes for 14 values (28 bytes uncompressed)

Word count for ``n`` values: ``ceil(P / 3)`` with ``P = sum over zero runs z of (z // 32 + 1)``,
counting the runs before each non-zero value and the trailing run (if non-empty) --
:func:`encoded_words` evaluates this without building the words; :func:`expected_words` gives its
exact expectation when each value is zero independently with probability ``p``, and
:func:`rlc_ratio` a fast closed-form approximation of it that the hardware model calls per layer.

The codec lives with the workload because both the profiler (exact coded sizes of measured
activations) and the hardware model (DRAM traffic) use it; the fixed-point backend does not.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import HwawareError

__all__ = ["compressed_bytes", "decode", "encode", "encoded_words", "expected_words", "rlc_ratio", "words_for_mask",
           "words_for_nonzero", "words_for_packed"]

RUN_BITS = 5
LEVEL_BITS = 16
MAX_RUN = (1 << RUN_BITS) - 1  # 31
PAIRS_PER_WORD = 3
PAD_RUN, PAD_LEVEL = MAX_RUN, 0  # the padding pair (31, 0)

# shift of (run, level) for slot k of a word; bit 0 is the last-word flag
_RUN_SHIFT = (59, 38, 17)
_LEVEL_SHIFT = (43, 22, 1)


def _as_codes(codes: np.ndarray) -> np.ndarray:
    a = np.asarray(codes)
    if a.dtype != np.int16:
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise HwawareError(f"RLC encodes int16 codes, got an array of dtype {a.dtype}")
        if a.size and (a.min() < -32768 or a.max() > 32767):
            raise HwawareError(
                f"RLC encodes int16 codes, got values in [{a.min()}, {a.max()}] (allowed -32768..32767)"
            )
        a = a.astype(np.int16)
    return a.reshape(-1)


def _pairs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(runs, levels) of the greedy code, without padding."""
    a = _as_codes(codes)
    n = a.size
    nz = np.flatnonzero(a)
    prev = np.concatenate(([-1], nz[:-1]))
    z = nz - prev - 1  # zeros before each non-zero value
    count = z // 32 + 1
    total = int(count.sum())
    runs = np.full(total, MAX_RUN, dtype=np.int64)
    levels = np.zeros(total, dtype=np.int64)
    last = np.cumsum(count) - 1  # index of the pair that carries each non-zero value
    runs[last] = z % 32
    levels[last] = a[nz]
    tail = n - 1 - (int(nz[-1]) if nz.size else -1)
    if tail > 0:
        k = tail // 32 + 1
        t_runs = np.full(k, MAX_RUN, dtype=np.int64)
        t_levels = np.zeros(k, dtype=np.int64)
        if tail % 32:
            t_runs[-1] = tail % 32 - 1
        else:  # a final (31, 0) is the padding pair: end with (30, 0), (0, 0) instead
            t_runs[-2], t_runs[-1] = MAX_RUN - 1, 0
        runs = np.concatenate((runs, t_runs))
        levels = np.concatenate((levels, t_levels))
    return runs, levels


def encode(codes: np.ndarray) -> np.ndarray:
    """Compress int16 ``codes`` (any shape, read in C order) into 64-bit words (dtype uint64)."""
    runs, levels = _pairs(codes)
    n_words = -(-runs.size // PAIRS_PER_WORD)
    pad = n_words * PAIRS_PER_WORD - runs.size
    runs = np.concatenate((runs, np.full(pad, PAD_RUN, dtype=np.int64))).reshape(n_words, 3)
    levels = np.concatenate((levels, np.full(pad, PAD_LEVEL, dtype=np.int64))).reshape(n_words, 3)
    lv = (levels & 0xFFFF).astype(np.uint64)
    words = np.zeros(n_words, dtype=np.uint64)
    for k in range(PAIRS_PER_WORD):
        words |= runs[:, k].astype(np.uint64) << np.uint64(_RUN_SHIFT[k])
        words |= lv[:, k] << np.uint64(_LEVEL_SHIFT[k])
    if n_words:
        words[-1] |= np.uint64(1)
    return words


def decode(words: np.ndarray) -> np.ndarray:
    """Expand 64-bit words from :func:`encode` back into the int16 stream (1-D)."""
    w = np.asarray(words)
    if w.size and w.dtype != np.uint64:
        if not np.issubdtype(w.dtype, np.integer) or w.min() < 0:
            raise HwawareError(f"RLC words must be unsigned 64-bit integers, got dtype {w.dtype}")
        w = w.astype(np.uint64)
    w = w.reshape(-1).astype(np.uint64)
    if w.size == 0:
        return np.zeros(0, dtype=np.int16)
    flags = (w & np.uint64(1)).astype(bool)
    if not flags[-1] or flags[:-1].any():
        bad = int(np.flatnonzero(flags[:-1])[0]) if flags[:-1].any() else w.size - 1
        raise HwawareError(
            f"RLC stream is malformed: word {bad} has the wrong last-word flag "
            f"(only the final word of {w.size} may set bit 0)"
        )
    runs = np.stack([(w >> np.uint64(s)) & np.uint64(MAX_RUN) for s in _RUN_SHIFT], axis=1)
    levels = np.stack([(w >> np.uint64(s)) & np.uint64(0xFFFF) for s in _LEVEL_SHIFT], axis=1)
    runs = runs.astype(np.int64).reshape(-1)
    levels = levels.astype(np.uint16).view(np.int16).astype(np.int64).reshape(-1)
    keep = runs.size
    for _ in range(PAIRS_PER_WORD - 1):  # drop padding pairs at the end of the last word
        if runs[keep - 1] == PAD_RUN and levels[keep - 1] == PAD_LEVEL:
            keep -= 1
        else:
            break
    runs, levels = runs[:keep], levels[:keep]
    ends = np.cumsum(runs + 1)
    out = np.zeros(int(ends[-1]), dtype=np.int16)
    out[ends - 1] = levels
    return out


def encoded_words(codes: np.ndarray) -> int:
    """``len(encode(codes))`` computed from the zero runs alone (no words built)."""
    a = _as_codes(codes)
    return words_for_nonzero(np.flatnonzero(a), a.size)


def words_for_nonzero(nz: np.ndarray, n: int) -> int:
    """Words of the code of an ``n``-value stream whose non-zero values sit at the ascending
    indices ``nz`` (what :func:`encoded_words` counts; the profiler passes a zero mask's indices)."""
    if nz.size:
        gaps = np.diff(nz, prepend=-1)
        gaps -= 1  # zeros before each non-zero value
        gaps >>= 5  # // 32: the extra (31, 0) pairs of long runs
        pairs = int(gaps.sum()) + nz.size
        tail = n - 1 - int(nz[-1])
    else:
        pairs, tail = 0, n
    if tail > 0:
        pairs += tail // 32 + 1
    return -(-pairs // PAIRS_PER_WORD)


# per byte of a bit-packed mask (first value = most significant bit): zero values before its first
# non-zero value, and after its last one
_LEAD_ZEROS = np.array([8 - b.bit_length() for b in range(256)], dtype=np.int64)
_TRAIL_ZEROS = np.array([8] + [(b & -b).bit_length() - 1 for b in range(1, 256)], dtype=np.int64)


def words_for_mask(mask: np.ndarray) -> tuple[int, int]:
    """(words of the code, non-zero values) of a stream given as a boolean non-zero ``mask`` (any
    shape, read in C order): :func:`encoded_words` without a pass over the positions.

    With ``P = nnz + sum over maximal zero runs z of z // 32 + [stream ends in a zero]`` (the pair
    count of the module docstring), only runs of 32+ zeros add to ``nnz``. The mask is packed 8
    values to a byte; a run of 32 zeros always covers 3 whole zero bytes, so only the runs of 3+
    zero bytes are measured, each extended by the zero values at the end of the byte before it and
    the start of the byte after it. Cost: one pass over the mask plus one over n/8 bytes.
    """
    flat = np.ascontiguousarray(mask).reshape(-1)
    nnz = int(np.count_nonzero(flat))
    if nnz == 0:
        return words_for_packed(np.zeros(0, dtype=np.uint8), flat.size, 0, True), 0
    return words_for_packed(np.packbits(flat), flat.size, nnz, not flat[-1]), nnz


def words_for_packed(packed: np.ndarray, n: int, nnz: int, ends_in_zero: bool) -> int:
    """Words of the code of an ``n``-value stream from its bit-packed non-zero mask
    (``np.packbits``, first value = most significant bit), its non-zero count and whether its last
    value is zero: the second half of :func:`words_for_mask`, for callers that pack the mask in
    pieces (the profiler does, on several threads; pieces of a multiple of 8 values concatenate to
    the packing of the whole)."""
    if nnz == 0:
        return -(-(n // 32 + 1) // PAIRS_PER_WORD) if n else 0
    nb = packed.size
    zb = np.flatnonzero(packed == 0)
    long_runs = 0
    if zb.size >= 3:
        brk = np.flatnonzero(np.diff(zb) != 1)
        starts = np.concatenate((zb[:1], zb[brk + 1]))
        ends = np.concatenate((zb[brk], zb[-1:]))
        wide = ends - starts >= 2
        starts, ends = starts[wide], ends[wide]
        if starts.size:
            z = 8 * (ends - starts + 1)
            z += np.where(starts > 0, _TRAIL_ZEROS[packed[np.maximum(starts - 1, 0)]], 0)
            z += np.where(ends < nb - 1, _LEAD_ZEROS[packed[np.minimum(ends + 1, nb - 1)]], 0)
            z -= np.where(ends == nb - 1, 8 * nb - n, 0)  # packing's filler bits
            long_runs = int((z // 32).sum())
    pairs = nnz + long_runs + int(ends_in_zero)  # a stream ending in zeros: one more pair
    return -(-pairs // PAIRS_PER_WORD)


def compressed_bytes(codes: np.ndarray) -> int:
    """Bytes the RLC code of ``codes`` takes in DRAM (8 per word)."""
    return 8 * encoded_words(codes)


def expected_words(n_values: int, zero_fraction: float) -> float:
    """Exact expected word count for ``n_values`` values, each zero independently w.p. ``zero_fraction``.

    The encoder is a finite-state machine: the state is the pending zero count r (0..31, plus "r = 0
    right after a literal (31, 0)", which matters because the stream's end adds a pair exactly when
    the last value was zero) and the pair count mod 3. A 99-state Markov chain carries the
    probability of each state and, alongside it, the expected pair count accumulated in it; its
    n-step matrix is raised by repeated squaring (O(log n) products of 198x198 matrices). Then
    ``E[words] = (E[P] + E[(-P) mod 3]) / 3``, since ``ceil(P/3) = (P + (-P mod 3)) / 3``.

    For large ``n`` the pair count mod 3 is near uniform, so ``E[words] ~ (E[P] + 1) / 3`` with
    ``E[P] ~ n * (1 - p) * (1 + p**32 / (1 - p**32))`` (ignoring the end).
    Example: ``expected_words(3, 0.0) == 1.0``; ``expected_words(4, 0.0) == 2.0``.
    """
    if isinstance(n_values, bool) or int(n_values) != n_values or n_values < 0:
        raise HwawareError(f"n_values must be a non-negative integer, got {n_values!r}")
    p = float(zero_fraction)
    if not 0.0 <= p <= 1.0:
        raise HwawareError(f"zero_fraction must be within [0, 1], got {zero_fraction!r}")
    n = int(n_values)
    if n == 0:
        return 0.0
    q = 1.0 - p
    # run-states: 0..31 = pending zero count; 32 = "r = 0, last value was a zero" (after (31, 0))
    n_run = 33
    size = n_run * 3

    def idx(r: int, m: int) -> int:
        return r * 3 + m

    T = np.zeros((size, size))  # transition probabilities
    Rw = np.zeros((size, size))  # transition probability * pairs emitted on that transition
    for r in range(n_run):
        pending = 0 if r == 32 else r
        for m in range(3):
            i = idx(r, m)
            # non-zero value: emit (pending, v)
            j = idx(0, (m + 1) % 3)
            T[i, j] += q
            Rw[i, j] += q
            if pending < MAX_RUN:
                T[i, idx(pending + 1, m)] += p
            else:  # 32nd zero: emit (31, 0)
                j = idx(32, (m + 1) % 3)
                T[i, j] += p
                Rw[i, j] += p
    # Augmented step [[T, Rw], [0, T]] acting on row vector (dist, acc): acc' = acc T + dist Rw.
    A = np.zeros((2 * size, 2 * size))
    A[:size, :size] = T
    A[:size, size:] = Rw
    A[size:, size:] = T
    v = np.zeros(2 * size)
    v[idx(0, 0)] = 1.0
    e = n
    while e:
        if e & 1:
            v = v @ A
        e >>= 1
        if e:
            A = A @ A
    dist, acc = v[:size].reshape(n_run, 3), v[size:].reshape(n_run, 3)
    # end of stream: one more pair iff the last value was zero (states r >= 1 and r == 32)
    ends_zero = np.zeros(n_run, dtype=bool)
    ends_zero[1:] = True
    mean_pairs = float(acc.sum() + dist[ends_zero].sum())
    final_mod = np.zeros(3)
    for m in range(3):
        final_mod[m] += dist[~ends_zero, m].sum()
        final_mod[(m + 1) % 3] += dist[ends_zero, m].sum()
    mean_fill = float(final_mod[1] * 2 + final_mod[2] * 1)  # (-P) mod 3
    return (mean_pairs + mean_fill) / 3.0


@lru_cache(maxsize=65536)
def rlc_ratio(n_values: int, zero_fraction: float) -> float:
    """Expected RLC size / raw size in 16-bit words for i.i.d. zeros (a 64-bit word = 4 words).

    E[pairs] = n(1-z)(1 + z^32/(1-z^32)) + z (one literal-zero pair per 32 zeros, plus the trailing
    run) and E[words] ~ (E[pairs] + 1)/3; within 1.5% of the exact expectation
    (:func:`expected_words`, a Markov-chain computation too slow for the hardware model's
    inner loop) for streams of 1000+ values, and tested against it. Dense data grows by 4/3: three
    16-bit values per 64-bit word. Streams of at most 3 values are one word (exact); from 4 values
    on the expression falls as ``zero_fraction`` rises, so more zeros never cost more.
    """
    if n_values <= 0:
        return 1.0
    if n_values <= 3:  # exact: 1 to 3 values are 1 to 3 pairs, i.e. one 64-bit word whatever the zeros
        return 4.0 / n_values
    z = min(max(float(zero_fraction), 0.0), 1.0)
    z32 = z**32
    if z32 < 1.0:
        pairs = n_values * (1.0 - z) * (1.0 + z32 / (1.0 - z32)) + z
    else:
        pairs = n_values / 32.0 + 1.0
    words = (pairs + 1.0) / 3.0
    return 4.0 * words / n_values
