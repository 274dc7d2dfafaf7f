"""Workload imbalance of v2's sparse PEs (hwaware/eyeriss/dataflows/imbalance.py): hand-counted cases.

JETCAS 2019 Sec. I-B: with zeros skipped, the throughput "will be bounded by the PE that has the most
non-zero MACs". Every expected value below is counted by hand from the masks and the mapping.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwaware.eyeriss.dataflows.imbalance import imbalance

# C=4 channels, 2 x 3 outputs, M=4 filters; p=2 filters and q=2 channels per PE, r=2 channel groups,
# t=2 filter groups, e=2 rows: one pass on 8 PEs
KW = {"p": 2, "q": 2, "r": 2, "t": 2, "e": 2}


def test_dense_layer_that_tiles_exactly_is_balanced():
    """Every PE: 2 channels x 3 outputs non-zero iacts, each with a column of 2 non-zero weights ->
    ceil(2/2) = 1 cycle: 6 cycles on each of 8 PEs."""
    r = imbalance(np.ones((4, 2, 3), bool), np.ones((4, 4), bool), **KW)
    assert (r.bounded, r.even, r.pes, r.busiest_pe) == (6.0, 6.0, 8, 6.0)
    assert r.factor == 1.0 and r.factor_layer == 1.0


def test_one_busy_channel_row_bounds_the_pass():
    """Only channel 0, row 0 is non-zero: the two PEs of (channel group 0, row 0) — one per filter
    group — each take 3 cycles; the other six take none. Even: 6 / 8 = 0.75, so 4x."""
    iacts = np.zeros((4, 2, 3), bool)
    iacts[0, 0, :] = True
    r = imbalance(iacts, np.ones((4, 4), bool), **KW)
    assert r.bounded == 3.0 and r.even == pytest.approx(0.75) and r.factor == pytest.approx(4.0)


def test_column_cycles_round_up_and_never_drop_below_one():
    """p=3 filters per PE with lanes=2: a column of 3 non-zero weights takes 2 cycles, an empty column
    still 1 (the iact's fetch). One channel, one row, one output, one filter group, one PE."""
    iacts = np.ones((2, 1, 1), bool)
    weights = np.zeros((3, 2), bool)
    weights[:, 0] = True  # channel 0: 3 non-zero weights; channel 1: none
    r = imbalance(iacts, weights, p=3, q=2, r=1, t=1, e=1, lanes=2)
    assert r.bounded == 2 + 1 and r.pes == 1
    assert imbalance(iacts, weights, p=3, q=2, r=1, t=1, e=1, lanes=1).bounded == 3 + 1


def test_passes_add_their_busiest_pe_and_layer_bound_sums_per_pe():
    """Two rows, e=1 (one PE, r=t=1, q=C, p=M): two passes, pass 1 (row 0) with 3 non-zero
    iacts, pass 2 (row 1) 1: bounded 3 + 1; one PE, so even = 4 and busiest = 4. Then e=2 on the same
    data: one pass of 2 PEs, max 3, even 2 -> 1.5x; a PE waiting only at the end: also 3."""
    iacts = np.zeros((1, 2, 3), bool)
    iacts[0, 0, :] = True
    iacts[0, 1, 0] = True
    w = np.ones((1, 1), bool)
    one = imbalance(iacts, w, p=1, q=1, r=1, t=1, e=1, lanes=1)
    assert (one.bounded, one.even, one.busiest_pe) == (4.0, 4.0, 4.0)
    two = imbalance(iacts, w, p=1, q=1, r=1, t=1, e=2, lanes=1)
    assert (two.bounded, two.even, two.factor, two.factor_layer) == (3.0, 2.0, 1.5, 1.5)


def test_layer_end_bound_is_never_above_the_per_pass_bound():
    """Summing each PE's passes before taking the max can only be shorter than a max per pass."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        r = imbalance(rng.random((16, 6, 5)) < 0.5, rng.random((12, 16)) < 0.4, p=4, q=3, r=2, t=2, e=2)
        assert r.even <= r.busiest_pe <= r.bounded


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="same C"):
        imbalance(np.ones((4, 2, 3), bool), np.ones((4, 5), bool), **KW)
    with pytest.raises(ValueError, match="positive"):
        imbalance(np.ones((4, 2, 3), bool), np.ones((4, 4), bool), p=0, q=1, r=1, t=1, e=1)
