"""The mappings of one layer shape that data statistics can make the winner: search once per shape.

Data statistics (ifmap and weight zeros, RLC ratios, bit widths) never decide which mappings are
legal (``mapper.candidates`` and the fill rule read the shape and the hardware only), but they do
weigh the cost terms, so they can reorder candidates. They enter :func:`cost.evaluate` in closed
form: every access count ``acc_<level>_<type>`` is a count fixed by the mapping times a factor fixed
by the statistics (``rlc_if * act_bits/16`` for DRAM ifmaps, ``act_bits/16`` for on-chip ifmaps,
``rlc_w * weight_bits/16`` for DRAM filters, 1 for psums, ...), the MACs do not depend on the
mapping, and latency is ``max(array cycles, DRAM filter words / bandwidth) + DRAM fmap words /
bandwidth`` with the array cycles fixed by the mapping. So with non-negative factors:

    if mapping y is no worse than x in every access count, in array cycles and in active PEs, and
    comes first in the candidate order, then for *every* statistics y has no more energy, no more
    latency and no fewer PEs than x, and :func:`mapper.choose` never picks x while y is there.

:func:`shortlist` keeps the mappings no such y beats (the Pareto set of these features, ties to the
first), in candidate order. Then for any statistics ``choose`` over the shortlist picks exactly the
mapping ``mapper.search`` picks over every candidate (same minimum, same near-optimal winner, same
tie-break). tests/test_mapping_cache.py checks both the closed form and the equality on AlexNet,
VGG-16 and ResNet-50 shapes for random statistics. ResNet-50's 24 distinct shapes keep 1-40 of
124-6214 candidates each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..workload import Layer
from .cost import LEVELS, TYPES, evaluate, shaped
from .hardware import Hardware
from .mapper import Mapping, filled, legal_candidates, make_problem

FIELDS = ("e", "n", "p", "q", "r", "t", "m")
# the DRAM filter factor is set this small (a power of two: its counts scale exactly) so that the
# latency the search sees is the array's own cycles, never the DRAM filter bound
_TINY = 2.0 ** -200
_CHUNK = 4096  # rows j per bitset pass of pareto_first (n x 64 words of 8 bytes)


@dataclass(frozen=True, eq=False)
class Shortlist:
    """Candidate mappings of one shape (int arrays ``e n p q r t m``, in the mapper's order)."""

    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.arrays["e"].size)

    def mapping(self, i: int) -> Mapping:
        return Mapping(**{k: int(self.arrays[k][i]) for k in ("m", "n", "e", "p", "q", "r", "t")})

    def columns(self) -> tuple[np.ndarray, ...]:
        return tuple(self.arrays[k] for k in FIELDS)


def shape_problem(layer: Layer, hw: Hardware):
    """The layer's :class:`cost.Problem` with neutral statistics (16-bit, dense, uncompressed),
    except the DRAM filter factor, made negligible (see ``_TINY``)."""
    dense = layer.replace(ifmap_zeros=0.0, weight_zeros=0.0, ofmap_zeros=0.0, ifmap_rlc=0.0,
                          weight_bits=16, act_bits=16)
    return make_problem(dense, hw, rlc_if=1.0, rlc_of=1.0, rlc_w=_TINY)


def shortlist(layer: Layer, hw: Hardware) -> Shortlist:
    """Every mapping of ``layer``'s shape that some statistics can make ``mapper.search``'s choice."""
    pb = shape_problem(layer, hw)
    cand = legal_candidates(pb, hw)
    res = evaluate(pb, hw, *(cand[k] for k in FIELDS))
    full = filled(res, hw)
    n = int(np.asarray(res["active_pes"]).size)
    cols = []
    for key in (f"acc_{lv}_{ty}" for lv in LEVELS for ty in TYPES):
        col = shaped(res[key], (n,))[full]
        if col.size and col.min() != col.max():  # a count no mapping changes cannot order them
            cols.append(col)
    cols.append(shaped(res["cycles"], (n,))[full])  # = array cycles (DRAM bound is _TINY)
    cols.append(-shaped(res["active_pes"], (n,))[full].astype(np.float64))
    keep = full[pareto_first(np.stack(cols, axis=1))]
    return Shortlist({k: np.ascontiguousarray(cand[k][keep]) for k in FIELDS})


def pareto_first(F: np.ndarray) -> np.ndarray:
    """Ascending indices of the rows of ``F`` (n x d, lower is better in every column) that no
    earlier row weakly dominates (``F[j] <= F[i]`` in every column with ``j < i``).

    Exact and all-pairs, on bitsets: for each column, the rows ``j`` with ``F[j, c] <= F[i, c]`` are
    a prefix of that column's sorted order (ties included, by ``searchsorted(side="right")``), so a
    cumulative OR over the sorted rows' one-hot bits gives every row's set at once; the sets of the
    d columns and of ``j < i`` are ANDed 64 rows to a machine word. Cost ~ d * n * n/64 word
    operations (ResNet-50's shapes keep most of their 15-852 candidates, so the answer is large and
    pruning heuristics gain nothing); ``j`` is taken ``_CHUNK`` rows at a time to bound memory.
    """
    F = np.asarray(F, dtype=np.float64)
    n, d = F.shape
    dominated = np.zeros(n, dtype=bool)
    if n < 2:
        return np.flatnonzero(~dominated)
    orders, last = [], []
    for c in range(d):
        o = np.argsort(F[:, c], kind="stable")
        orders.append(o)
        last.append(np.searchsorted(F[o, c], F[:, c], side="right") - 1)  # last sorted row <= F[i, c]
    rows = np.arange(n)
    for j0 in range(0, n, _CHUNK):
        width = min(_CHUNK, n - j0)
        words = -(-width // 64)
        acc = np.full((n, words), ~np.uint64(0))
        for o, pos_of in zip(orders, last):
            j = o - j0
            inside = (j >= 0) & (j < width)
            bits = np.zeros((n, words), dtype=np.uint64)
            jj = j[inside].astype(np.uint64)
            bits[np.flatnonzero(inside), (jj >> np.uint64(6)).astype(np.int64)] = np.uint64(1) << (jj & np.uint64(63))
            np.bitwise_or.accumulate(bits, axis=0, out=bits)
            acc &= bits[pos_of]
        acc &= _first_bits(width)[np.clip(rows - j0, 0, width)]  # j < i
        dominated |= acc.any(axis=1)
    return np.flatnonzero(~dominated)


def _first_bits(width: int) -> np.ndarray:
    """``[k]``: the bitset of the first ``k`` of ``width`` rows (k = 0..width), 64 rows a word."""
    words = -(-width // 64)
    k = np.arange(width + 1)[:, None]
    start = np.arange(words)[None, :] * 64
    full = np.clip(k - start, 0, 64).astype(np.uint64)  # bits of each word that are set
    ones = np.where(full == 64, ~np.uint64(0), (np.uint64(1) << np.minimum(full, 63)) - np.uint64(1))
    return ones
