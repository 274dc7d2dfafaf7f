"""Workload imbalance of Eyeriss v2's sparse PEs on a 1x1 layer, from non-zero masks.

JETCAS 2019 Sec. I-B: with zeros skipped, "the amount of work to be performed at each PE now depends
on sparsity ... it creates an imbalanced workload across different PEs and the throughput of the
entire DNN accelerator will be bounded by the PE that has the most non-zero MACs"; Sec. V-B: the
imbalance "lowers the utilization of the active PEs". The v2 latency model
(:mod:`.eyeriss_v2`) spreads a layer's PE-cycles evenly over the active PEs; this module measures
what that leaves out, for a given row-stationary mapping and given masks:

- the mapping tiles a 1x1 layer as the RS search does on the v2 array: a PE runs one ofmap row
  (``F`` outputs) for ``p`` output channels and ``q`` input channels; ``e`` rows x ``r`` channel
  groups x ``t`` filter groups run at once (one *pass*), and passes follow one another;
- a PE's cycles in a pass: for every non-zero iact of its rows and channels, max(1, ceil(k / lanes))
  with k the non-zero weights of that iact's column of ``p`` weights (the PE cycle rule of
  :func:`.eyeriss_v2.pe_cycles`, here with the actual counts instead of their expectation);
- a pass lasts as long as its busiest PE (the bound the paper states); ``factor_layer`` is the
  looser bound where a PE waits only at the end of the layer (its passes back to back).

:func:`imbalance` returns the cycles with that per-pass bound and the cycles if the same work were
spread evenly over the PEs; their ratio is the loss. The same function on all-ones masks gives the
loss of the tiling alone (partial passes), on random masks at the same densities the loss expected
from independent zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Imbalance:
    """Cycles of one 1x1 layer: ``bounded`` (each pass as long as its busiest PE), ``even`` (the
    same PE-cycles spread over ``pes`` PEs) and ``busiest_pe``; ``factor`` = bounded / even."""

    bounded: float
    even: float
    pes: int
    busiest_pe: float  # the busiest PE's cycles over the whole layer: the bound if passes never wait

    @property
    def factor(self) -> float:
        return self.bounded / self.even if self.even else 1.0

    @property
    def factor_layer(self) -> float:
        """The loss if PEs ran their passes back to back, waiting only at the layer's end."""
        return self.busiest_pe / self.even if self.even else 1.0


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def imbalance(iacts: np.ndarray, weights: np.ndarray, *, p: int, q: int, r: int, t: int, e: int,
              lanes: int = 2) -> Imbalance:
    """``iacts``: non-zero mask of the input, shape (C, E, F) (1x1, stride 1: the ofmap's positions);
    ``weights``: non-zero mask of the weights, shape (M, C). Mapping letters as in
    :mod:`hwaware.eyeriss.cost` (``p`` filters and ``q`` channels per PE, ``e`` ofmap rows, ``r``
    channel groups and ``t`` filter groups at once)."""
    iacts, weights = np.asarray(iacts, dtype=bool), np.asarray(weights, dtype=bool)
    if iacts.ndim != 3 or weights.ndim != 2 or weights.shape[1] != iacts.shape[0]:
        raise ValueError(f"expected iacts (C, E, F) and weights (M, C) with the same C, got {iacts.shape} "
                         f"and {weights.shape}")
    if min(p, q, r, t, e, lanes) < 1:
        raise ValueError(f"mapping values and lanes must be positive, got p={p} q={q} r={r} t={t} e={e} lanes={lanes}")
    C, E, _ = iacts.shape
    M = weights.shape[0]
    # cycles per non-zero iact of channel c for filter group g: max(1, ceil(k / lanes))
    groups = _blocks(M, p)
    k = np.stack([weights[g].sum(axis=0) for g in groups])  # (filter groups, C)
    cost = np.maximum(1, -(-k // lanes))
    row_nz = iacts.sum(axis=2)  # (C, E): non-zero iacts of each channel in each ofmap row
    chans = _blocks(C, q)
    # work[g, c_group, row]: one PE's cycles
    work = np.stack([cost[:, cs] @ row_nz[cs] for cs in chans], axis=1)
    bounded = 0.0
    per_pe = np.zeros((t, r, e))  # each PE's cycles summed over the passes (PE = place in the pass)
    for gb in _blocks(len(groups), t):
        for cb in _blocks(len(chans), r):
            for rb in _blocks(E, e):
                w = work[gb, cb, rb]
                bounded += float(w.max())
                per_pe[: w.shape[0], : w.shape[1], : w.shape[2]] += w
    pes = e * r * t
    return Imbalance(bounded=bounded, even=float(work.sum()) / pes, pes=pes, busiest_pe=float(per_pe.max()))
