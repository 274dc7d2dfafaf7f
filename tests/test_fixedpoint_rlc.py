"""RLC codec (JSSC 2017 Fig. 8): exact round trip, word layout, word counts and their expectation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hwaware.errors import HwawareError
from hwaware.workload import rlc


def reference_pairs(values):
    """Straight transcription of the documented rules, one value at a time."""
    pairs, run = [], 0
    for v in values:
        if v == 0 and run < 31:
            run += 1
        else:
            pairs.append((run, int(v)))
            run = 0
    if run:  # trailing zeros: the last zero becomes the level
        pairs.append((run - 1, 0))
    elif pairs and values[-1] == 0 and pairs[-1] == (31, 0):
        pairs[-1:] = [(30, 0), (0, 0)]  # (31, 0) is reserved for padding at the end
    return pairs


def reference_words(values):
    pairs = reference_pairs(values)
    words = []
    for i in range(0, len(pairs), 3):
        chunk = pairs[i:i + 3] + [(31, 0)] * (3 - len(pairs[i:i + 3]))
        word = 0
        for run, level in chunk:
            word = (word << 21) | (run << 16) | (level & 0xFFFF)
        word <<= 1
        words.append(word | (1 if i + 3 >= len(pairs) else 0))
    return words


int16_streams = hnp.arrays(
    np.int16,
    st.integers(0, 300),
    elements=st.one_of(st.just(0), st.just(0), st.just(0), st.sampled_from([-32768, 32767, -1, 1]),
                       st.integers(-32768, 32767)),
)


@settings(deadline=None, max_examples=300)
@given(int16_streams)
def test_round_trip_and_layout_match_reference(codes):
    words = rlc.encode(codes)
    assert words.dtype == np.uint64
    assert [int(w) for w in words] == reference_words(codes.tolist())
    out = rlc.decode(words)
    assert out.dtype == np.int16 and np.array_equal(out, codes)
    assert rlc.encoded_words(codes) == len(words)


@settings(deadline=None, max_examples=100)
@given(st.lists(st.integers(0, 100), min_size=1, max_size=6), st.booleans())
def test_long_zero_runs_round_trip(runs, end_with_zeros):
    parts = []
    for r in runs:
        parts += [0] * r + [7]
    if end_with_zeros:
        parts += [0] * (32 * (len(runs) % 3 + 1))  # a multiple of 32: the (30, 0), (0, 0) case
    codes = np.array(parts, dtype=np.int16)
    assert np.array_equal(rlc.decode(rlc.encode(codes)), codes)
    assert rlc.encoded_words(codes) == len(rlc.encode(codes))


def test_paper_example_words():
    # 0 0 12 0 0 0 0 53 0 0 22 | 0 0 0: (2,12) (4,53) (2,22) in word 0; (2,0) + two pads in word 1
    codes = np.array([0, 0, 12, 0, 0, 0, 0, 53, 0, 0, 22, 0, 0, 0], dtype=np.int16)
    w = rlc.encode(codes)
    w0 = (2 << 59) | (12 << 43) | (4 << 38) | (53 << 22) | (2 << 17) | (22 << 1) | 0
    w1 = (2 << 59) | (0 << 43) | (31 << 38) | (0 << 22) | (31 << 17) | (0 << 1) | 1
    assert [int(x) for x in w] == [w0, w1]


def test_runs_longer_than_31_and_negative_levels():
    codes = np.array([0] * 32 + [-1] + [0] * 31 + [-32768], dtype=np.int16)
    pairs = list(zip(*[a.tolist() for a in rlc._pairs(codes)]))
    assert pairs == [(31, 0), (0, -1), (31, -32768)]


def test_empty_and_all_zero_streams():
    assert rlc.encode(np.zeros(0, np.int16)).size == 0
    assert rlc.decode(np.zeros(0, np.uint64)).size == 0
    for n in (1, 31, 32, 33, 64, 96, 1000):
        z = np.zeros(n, np.int16)
        assert np.array_equal(rlc.decode(rlc.encode(z)), z)
        assert rlc.encoded_words(z) == -(-(n // 32 + 1) // 3)


def test_dense_stream_costs_a_third_more_than_raw():
    # no zeros: one pair per value, 3 values per 64-bit word vs 4 raw 16-bit values
    codes = np.arange(1, 3001, dtype=np.int16)
    assert rlc.encoded_words(codes) == 1000


def test_malformed_streams_are_rejected():
    w = rlc.encode(np.arange(1, 10, dtype=np.int16))
    with pytest.raises(HwawareError, match="last-word flag"):
        rlc.decode(w[:-1])
    with pytest.raises(HwawareError, match="int16"):
        rlc.encode(np.array([40000]))
    with pytest.raises(HwawareError, match="int16"):
        rlc.encode(np.array([0.5]))


@pytest.mark.parametrize("n", [1, 2, 5, 10, 13])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 0.97, 1.0])
def test_expected_words_is_exact_on_small_streams(n, p):
    # exact expectation by enumerating every zero pattern (2**n), weighted by its probability
    total = 0.0
    for mask in itertools.product([0, 1], repeat=n):
        k = sum(mask)
        codes = np.array([0 if m else 5 for m in mask], dtype=np.int16)
        total += p**k * (1 - p) ** (n - k) * len(reference_words(codes.tolist()))
    assert rlc.expected_words(n, p) == pytest.approx(total, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("p", [0.9, 0.97, 1.0])
def test_expected_words_exact_across_runs_longer_than_31(p):
    # exact distribution of the pair count P by dynamic programming over (pending run, last was a
    # literal (31,0), P) for n = 100 values -- runs of 32+ zeros are likely at these p
    n = 100
    states = {(0, False, 0): 1.0}
    for _ in range(n):
        nxt = {}
        for (run, lit, pairs), pr in states.items():
            if p < 1:
                key = (0, False, pairs + 1)
                nxt[key] = nxt.get(key, 0.0) + pr * (1 - p)
            key = (run + 1, False, pairs) if run < 31 else (0, True, pairs + 1)
            nxt[key] = nxt.get(key, 0.0) + pr * p
        states = nxt
    expected = 0.0
    for (run, lit, pairs), pr in states.items():
        total = pairs + (1 if run or lit else 0)
        expected += pr * -(-total // 3)
    assert rlc.expected_words(n, p) == pytest.approx(expected, rel=1e-10)
    assert rlc.expected_words(96, 1.0) == 2.0  # 96 zeros: 96 // 32 + 1 = 4 pairs -> 2 words
    assert rlc.expected_words(0, 0.5) == 0.0


@pytest.mark.parametrize("p", [0.2, 0.6, 0.95])
def test_expected_words_matches_mean_of_random_streams(p):
    rng = np.random.default_rng(1)
    n = 400
    counts = [rlc.encoded_words(np.where(rng.random(n) < p, 0, 3).astype(np.int16)) for _ in range(3000)]
    mean, sem = np.mean(counts), np.std(counts) / np.sqrt(len(counts))
    assert abs(mean - rlc.expected_words(n, p)) < 4 * sem + 1e-9


def test_expected_words_rejects_bad_arguments():
    with pytest.raises(HwawareError, match="zero_fraction"):
        rlc.expected_words(10, 1.5)
    with pytest.raises(HwawareError, match="n_values"):
        rlc.expected_words(-1, 0.5)
