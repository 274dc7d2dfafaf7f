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
from .cost import LEVELS, TYPES, evaluate
from .hardware import Hardware
from .mapper import Mapping, filled, legal_candidates, make_problem

FIELDS = ("e", "n", "p", "q", "r", "t", "m")
# the DRAM filter factor is set this small (a power of two: its counts scale exactly) so that the
# latency the search sees is the array's own cycles, never the DRAM filter bound
_TINY = 2.0 ** -200
_BLOCK = 512


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
        col = np.broadcast_to(res[key], (n,))[full]
        if col.size and col.min() != col.max():  # a count no mapping changes cannot order them
            cols.append(col)
    cols.append(np.broadcast_to(res["cycles"], (n,))[full])  # = array cycles (DRAM bound is _TINY)
    cols.append(-np.broadcast_to(res["active_pes"], (n,))[full].astype(np.float64))
    keep = full[pareto_first(np.stack(cols, axis=1))]
    return Shortlist({k: np.ascontiguousarray(cand[k][keep]) for k in FIELDS})


def pareto_first(F: np.ndarray) -> np.ndarray:
    """Ascending indices of the rows of ``F`` (n x d, lower is better in every column) that no
    earlier row weakly dominates (``F[j] <= F[i]`` in every column with ``j < i``).

    Rows are visited by (row sum, index), so a row's dominators come before it (a float sum is
    monotone in each term); each block is compared with the rows kept so far and with itself.
    Domination is transitive, so comparing with kept rows only loses nothing.
    """
    n = F.shape[0]
    order = np.lexsort((np.arange(n), F.sum(axis=1)))
    kept_rows = np.empty((0, F.shape[1]))
    kept_idx = np.empty(0, dtype=np.int64)
    for start in range(0, n, _BLOCK):
        blk = order[start:start + _BLOCK]
        X = F[blk]
        earlier = blk[None, :] < blk[:, None]  # [i, j]: j comes first in candidate order
        dom = (_weakly_below(X, X) & earlier).any(axis=1)
        if kept_idx.size:
            by_kept = _weakly_below(kept_rows, X) & (kept_idx[None, :] < blk[:, None])
            dom |= by_kept.any(axis=1)
        kept_rows = np.concatenate((kept_rows, X[~dom]))
        kept_idx = np.concatenate((kept_idx, blk[~dom]))
    return np.sort(kept_idx)


def _weakly_below(A: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``[i, j]``: row ``A[j] <= X[i]`` in every column (built a column at a time: one 2-D
    comparison per column is several times faster than reducing a 3-D array along its short axis)."""
    out = A[None, :, 0] <= X[:, None, 0]
    for c in range(1, X.shape[1]):
        out &= A[None, :, c] <= X[:, None, c]
    return out
