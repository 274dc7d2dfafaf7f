"""Mapping search once per layer shape: data statistics cannot change which mapping wins beyond
the shape's shortlist (hwaware/eyeriss/shortlist.py), proved in two parts:

1. the premise: statistics enter every access count as one factor common to all mappings, and the
   latency as array cycles (statistics-free) vs. DRAM words over the link -- checked on every
   candidate of real layer shapes against an evaluation with neutral statistics;
2. the consequence: for random statistics, bit widths, objectives and tolerances, choosing from the
   shortlist gives exactly ``mapper.search`` over every candidate.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwaware.eyeriss import Scorer
from hwaware.eyeriss.cost import LEVELS, TYPES, evaluate
from hwaware.eyeriss.hardware import resolve_hardware
from hwaware.eyeriss.mapper import candidates, choose, make_problem, search
from hwaware.eyeriss.score import clear_mapping_cache
from hwaware.eyeriss.shortlist import FIELDS, shortlist
from hwaware.workload import Layer, Workload

HW = resolve_hardware("eyeriss_v1")

# AlexNet CONV1-5 (JSSC Table III), VGG-16 and ResNet-50 shapes: strided, 1x1, 3x3, 7x7, FC, batch 4
SHAPES = [
    Layer("alex1", N=4, M=96, C=3, H=227, W=227, R=11, S=11, U=4),
    Layer("alex2", N=4, M=256, C=48, H=27, W=27, R=5, S=5, padding=2, groups=2),
    Layer("alex3", N=4, M=384, C=256, H=13, W=13, R=3, S=3, padding=1),
    Layer("vgg1_2", N=1, M=64, C=64, H=224, W=224, R=3, S=3, padding=1),
    Layer("vgg4_1", N=1, M=512, C=256, H=28, W=28, R=3, S=3, padding=1),
    Layer("res_stem", N=1, M=64, C=3, H=224, W=224, R=7, S=7, U=2, padding=3),
    Layer("res_1x1", N=1, M=256, C=64, H=56, W=56, R=1, S=1),
    Layer("res_3x3s2", N=1, M=128, C=128, H=56, W=56, R=3, S=3, U=2, padding=1),
    Layer("res_down", N=1, M=1024, C=512, H=28, W=28, R=1, S=1, U=2),
    Layer("fc", N=4, M=1000, C=2048, H=1, W=1, R=1, S=1),
]


def _random_stats(rng: np.random.Generator) -> dict[str, float]:
    return {"ifmap_zeros": float(rng.uniform(0, 0.95)), "weight_zeros": float(rng.uniform(0, 0.9)),
            "rlc_if": float(rng.uniform(0.05, 2.0)), "rlc_of": float(rng.uniform(0.05, 2.0)),
            "rlc_w": float(rng.uniform(0.05, 1.0)),
            "weight_bits": int(rng.choice([1, 2, 4, 8, 12, 16])), "act_bits": int(rng.choice([1, 2, 4, 8, 12, 16]))}


def _problem(layer: Layer, st: dict[str, float]):
    lay = layer.replace(ifmap_zeros=st["ifmap_zeros"], weight_zeros=st["weight_zeros"],
                        weight_bits=st["weight_bits"], act_bits=st["act_bits"])
    return make_problem(lay, HW, rlc_if=st["rlc_if"], rlc_of=st["rlc_of"], rlc_w=st["rlc_w"])


@pytest.mark.parametrize("layer", SHAPES, ids=lambda lay: lay.name)
def test_statistics_scale_each_count_by_one_factor_for_every_mapping(layer):
    rng = np.random.default_rng(0)
    neutral = make_problem(layer, HW, rlc_if=1.0, rlc_of=1.0, rlc_w=1.0)
    cand = candidates(neutral, HW)
    cols = [cand[k] for k in FIELDS]
    base = evaluate(neutral, HW, *cols)
    n = cand["e"].size
    # array cycles: the latency with the DRAM filter bound made negligible
    tiny = evaluate(make_problem(layer, HW, rlc_if=1.0, rlc_of=1.0, rlc_w=2.0 ** -200), HW, *cols)
    bw = HW.dram_words_per_cycle
    costs = HW.energy_costs()
    for _ in range(5):
        st = _random_stats(rng)
        got = evaluate(_problem(layer, st), HW, *cols)
        for key in (f"acc_{lv}_{ty}" for lv in LEVELS for ty in TYPES):
            a, b = np.broadcast_to(got[key], (n,)), np.broadcast_to(base[key], (n,))
            nz = b != 0
            assert np.all(a[~nz] == 0), key
            if nz.any():
                ratio = a[nz] / b[nz]
                np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12, err_msg=key)
                assert ratio[0] >= 0
        # energy = sum of counts x level costs + a part no mapping changes (the MACs)
        by_counts = sum(np.broadcast_to(got[f"acc_{lv}_{ty}"], (n,)) * costs[lv] for lv in LEVELS for ty in TYPES)
        rest = np.broadcast_to(got["energy"], (n,)) - by_counts
        np.testing.assert_allclose(rest, rest[0], rtol=1e-9, atol=1e-6 * abs(by_counts).max())
        # latency: statistics-free array cycles vs the DRAM filter stream, then the fmap stall
        np.testing.assert_allclose(got["cycles"], np.maximum(tiny["cycles"], got["acc_DRAM_filter"] / bw), rtol=1e-12)
        np.testing.assert_allclose(got["stall_cycles"], (got["acc_DRAM_ifmap"] + got["acc_DRAM_psum"]) / bw,
                                   rtol=1e-12)
        assert np.array_equal(np.broadcast_to(got["active_pes"], (n,)), np.broadcast_to(base["active_pes"], (n,)))


@pytest.mark.parametrize("layer", SHAPES, ids=lambda lay: lay.name)
def test_the_shortlist_holds_the_winner_for_any_statistics(layer):
    rng = np.random.default_rng(1)
    sl = shortlist(layer, HW)
    # (the candidates already hold M7's fill floor, so on some shapes every one of them can win)
    assert 0 < len(sl) <= candidates(make_problem(layer, HW, rlc_if=1, rlc_of=1, rlc_w=1), HW)["e"].size
    for i in range(24):
        st = _random_stats(rng)
        objective = ("energy", "latency", "edp")[i % 3]
        tolerance = (0.0, 0.02, 0.1)[i % 3]
        pb = _problem(layer, st)
        want = search(pb, HW, objective, tolerance)
        res = {k: np.broadcast_to(v, (len(sl),)) for k, v in evaluate(pb, HW, *sl.columns()).items()}
        assert sl.mapping(choose(res, objective, tolerance)) == want, (st, objective, tolerance)


def test_changing_statistics_never_searches_again_and_scores_as_a_fresh_search():
    clear_mapping_cache()
    wl = Workload(tuple(SHAPES[3:8]))
    sc = Scorer(HW)
    sc.score(wl)
    assert sc.cache_info()["searched"] == 5
    rng = np.random.default_rng(2)
    sparse = Workload(tuple(lay.replace(ifmap_zeros=float(rng.uniform(0.2, 0.9)), weight_zeros=0.5,
                                        weight_bits=8, act_bits=6) for lay in wl.layers))
    warm = sc.score(sparse)
    assert sc.cache_info()["searched"] == 5  # new statistics and bit widths: no new search
    layers = sparse.layers
    for i, ls in enumerate(warm.layers):  # and each mapping is what a full search on them picks
        nxt = layers[i + 1].ifmap_zeros if i + 1 < len(layers) else None
        rlc_if, rlc_of, rlc_w = sc._ratios(layers[i], i == 0, nxt)  # noqa: SLF001 (the scorer's ratios)
        pb = make_problem(layers[i], HW, rlc_if=rlc_if, rlc_of=rlc_of, rlc_w=rlc_w)
        assert ls.mapping == search(pb, HW)


def test_cold_scoring_on_more_workers_gives_the_same_report():
    wl = Workload(tuple(SHAPES[1:9]))
    clear_mapping_cache()
    one = Scorer(HW, workers=1).score(wl).to_dict()
    clear_mapping_cache()
    sc = Scorer(HW, workers=3)
    three = sc.score(wl).to_dict()
    assert sc.cache_info()["searched"] == 8
    assert three == one
    with pytest.raises(Exception, match="workers must be a positive integer"):
        Scorer(HW, workers=0)


def test_disk_cache_is_shared_verified_and_safe_to_delete(tmp_path, monkeypatch):
    import json
    import shutil
    import sys

    import hwaware.eyeriss.score  # noqa: F401 (the module; the package exports a function of that name)

    score_mod = sys.modules["hwaware.eyeriss.score"]
    wl = Workload(tuple(SHAPES[4:7]))
    calls = []
    real = score_mod.shortlist
    monkeypatch.setattr(score_mod, "shortlist", lambda *a, **k: calls.append(1) or real(*a, **k))
    clear_mapping_cache()
    score_mod.set_mapping_cache_dir(tmp_path / "maps")
    try:
        first = Scorer(HW).score(wl).to_dict()
        files = sorted((tmp_path / "maps").rglob("*.json"))
        assert len(calls) == 3 and len(files) == 3
        entry = json.loads(files[0].read_text())
        assert entry["key"]["shape"] and entry["key"]["model"] and entry["key"]["hardware"]["name"] == HW.name
        clear_mapping_cache()  # a new process: every shape read from disk, the same report
        sc = Scorer(HW)
        assert sc.score(wl).to_dict() == first and len(calls) == 3 and sc.cache_info()["searched"] == 0
        # a tampered entry (checksum no longer matches) and a garbled one are misses, then rewritten
        entry["mappings"]["e"][0] += 1
        files[0].write_text(json.dumps(entry))
        files[1].write_text("{not json")
        clear_mapping_cache()
        assert Scorer(HW).score(wl).to_dict() == first and len(calls) == 5
        assert json.loads(files[1].read_text())["checksum"]
        shutil.rmtree(tmp_path / "maps")  # deleting the cache only costs searches
        clear_mapping_cache()
        assert Scorer(HW).score(wl).to_dict() == first and len(calls) == 8
    finally:
        score_mod.set_mapping_cache_dir(None)
        clear_mapping_cache()


def _pareto_reference(F: np.ndarray) -> list[int]:
    """Rows no earlier row weakly dominates, by the definition (all pairs, one at a time)."""
    return [i for i in range(len(F)) if not any((F[j] <= F[i]).all() for j in range(i))]


@pytest.mark.parametrize("n, d, levels, chunk", [(1, 3, 5, 4096), (2, 2, 1, 4096), (300, 4, 6, 4096),
                                                (257, 3, 4, 64), (200, 5, 50, 70), (130, 2, 1000, 4096)])
def test_pareto_first_equals_the_definition(monkeypatch, n, d, levels, chunk):
    # few levels per column make ties and duplicate rows common (ties go to the first row);
    # small chunks exercise the row-chunking and partial 64-bit words
    import hwaware.eyeriss.shortlist as sl

    monkeypatch.setattr(sl, "_CHUNK", chunk)
    rng = np.random.default_rng(n * 31 + d)
    F = rng.integers(0, levels, size=(n, d)).astype(np.float64)
    F[:, 0] += rng.choice([0.0, 0.25, -0.0], size=n)  # a signed zero and fractions in one column
    assert sl.pareto_first(F).tolist() == _pareto_reference(F)
