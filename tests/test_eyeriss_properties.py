"""Relation and property tests of the Eyeriss model (hypothesis over layer shapes).

Each property is checked against quantities computed here, from the layer's letters and the
hardware's documented limits, not taken from the model's own intermediate values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwaware.errors import HwawareError, UnsupportedLayerError
from hwaware.eyeriss import Hardware, Scorer, get_preset, rlc_ratio
from hwaware.eyeriss.mapper import DEFAULT_TOLERANCE
from hwaware.workload import Layer, Workload

HW = get_preset("eyeriss_v1")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layers(draw, name="L"):
    R = draw(st.integers(1, 7))
    S = draw(st.integers(1, min(R + 2, 12)))
    U = draw(st.sampled_from([1, 2]))
    H = draw(st.integers(max(R, 1), 40))
    W = draw(st.integers(max(S, 1), 40))
    kind = draw(st.sampled_from(["conv", "grouped", "depthwise", "fc"]))
    N = draw(st.integers(1, 4))
    if kind == "fc":
        return Layer(name, N=N, M=draw(st.integers(1, 300)), C=draw(st.integers(1, 600)), H=1, W=1, R=1, S=1,
                     ifmap_zeros=draw(st.floats(0, 0.95)), weight_zeros=draw(st.floats(0, 0.9)))
    if kind == "depthwise":
        ch = draw(st.integers(2, 48))
        return Layer(name, N=N, M=ch, C=1, H=H, W=W, R=R, S=S, U=U, groups=ch,
                     ifmap_zeros=draw(st.floats(0, 0.95)))
    g = 2 if kind == "grouped" else 1
    return Layer(name, N=N, M=g * draw(st.integers(1, 48)), C=draw(st.integers(1, 64)), H=H, W=W, R=R, S=S,
                 U=U, groups=g, ifmap_zeros=draw(st.floats(0, 0.95)), weight_zeros=draw(st.floats(0, 0.9)))


def _needed_rows(layer: Layer) -> int:
    """Distinct padded-input rows any output row touches (independent of the model's halo math)."""
    rows = set()
    for e in range(layer.E):
        rows.update(range(e * layer.U, e * layer.U + layer.R))
    return len(rows)


@SETTINGS
@given(layers())
def test_dram_traffic_never_below_compulsory(layer):
    sc = Scorer(HW)
    ls = sc.score_layer(layer, first=False, next_zeros=None)
    # compulsory: each needed ifmap value read once, each weight read once, each ofmap written once,
    # all at the RLC-coded size the model uses for that stream
    rlc_if = rlc_ratio(layer.Hp * layer.Wp, layer.ifmap_zeros)
    rlc_of = rlc_ratio(layer.E * layer.F, layer.ofmap_zeros or layer.ifmap_zeros)
    rlc_w = min(1.0, rlc_ratio(layer.C * layer.R * layer.S, layer.weight_zeros))
    need_if = layer.N * layer.in_channels * _needed_rows(layer) * layer.Wp * rlc_if
    acc = ls.accesses["DRAM"]
    assert acc["ifmap"] >= need_if * (1 - 1e-9)
    assert acc["filter"] >= layer.weights * rlc_w * (1 - 1e-9)
    assert acc["psum"] >= layer.ofmap_size * rlc_of * (1 - 1e-9)


@SETTINGS
@given(layers())
def test_chosen_mapping_within_hardware_limits(layer):
    ls = Scorer(HW).score_layer(layer)
    mp = ls.mapping
    Mg, C = layer.M // layer.groups, layer.C
    R, S = layer.R, layer.S
    # spads (JSSC Sec. IV-A): p*q*S filter words, q*S ifmap words, p psums
    assert mp.p * mp.q * S <= HW.spad_filter
    assert mp.q * S <= HW.spad_ifmap
    assert mp.p <= HW.spad_psum
    # the sets fit the physical array: segments of at most 14 columns stacked in 12 rows
    segs = math.ceil(mp.e / HW.pe_cols)
    if mp.e <= HW.pe_cols:
        sets = (HW.pe_rows // R) * (HW.pe_cols // mp.e)
    else:
        sets = HW.pe_rows // (R * segs)
    assert 1 <= mp.r * mp.t <= sets
    assert ls.active_pes == R * mp.e * mp.r * mp.t <= HW.num_pes
    assert mp.q * mp.r <= C and mp.p * mp.t <= Mg
    assert mp.p * mp.t <= mp.m or mp.m == Mg
    assert 1 <= mp.e <= layer.E and 1 <= mp.n <= layer.N
    # GLB: ifmap tile + psum tile in whole 4 kB banks within the 25 banks
    bank = HW.glb_words // HW.glb_banks
    ifmap_words = mp.n * mp.q * mp.r * (layer.U * (mp.e - 1) + R) * layer.Wp
    psum_words = mp.n * mp.m * mp.e * layer.F
    assert math.ceil(ifmap_words / bank) + math.ceil(psum_words / bank) <= HW.glb_banks


@SETTINGS
@given(layers(), st.floats(0, 0.95), st.floats(0, 0.95))
def test_energy_never_rises_with_ifmap_sparsity(layer, z1, z2):
    lo, hi = sorted((z1, z2))
    strict = Scorer(HW, tolerance=0.0)
    e_lo = strict.score_layer(layer.replace(ifmap_zeros=lo)).energy_total
    e_hi = strict.score_layer(layer.replace(ifmap_zeros=hi)).energy_total
    assert e_hi <= e_lo * (1 + 1e-9)
    # with the default near-optimality slack the chosen mappings may differ by at most that slack
    slack = Scorer(HW)
    assert slack.score_layer(layer.replace(ifmap_zeros=hi)).energy_total <= \
        slack.score_layer(layer.replace(ifmap_zeros=lo)).energy_total * (1 + DEFAULT_TOLERANCE) * (1 + 1e-9)


@SETTINGS
@given(layers(), st.floats(0, 0.9))
def test_weight_sparsity_never_raises_energy(layer, extra):
    sc = Scorer(HW, tolerance=0.0)
    denser = layer.replace(weight_zeros=0.0)
    sparser = layer.replace(weight_zeros=extra)
    assert sc.score_layer(sparser).energy_total <= sc.score_layer(denser).energy_total * (1 + 1e-9)


@settings(max_examples=20, deadline=None)
@given(st.lists(layers(), min_size=1, max_size=4))
def test_energy_additive_and_macs_conserved(ls):
    wl = Workload(tuple(layer.replace(name=f"L{i}") for i, layer in enumerate(ls)))
    sc = Scorer(HW)
    rep = sc.score(wl)
    # MACs conserved: the report's total equals the paper's N*M*C*E*F*R*S summed here
    expect = sum(L.N * L.M * L.C * L.E * L.F * L.R * L.S for L in wl.layers)
    assert rep.total.macs == expect
    # additive: total = sum of layers; each layer scored alone (same neighbours) gives the same value
    assert rep.total.energy_total == pytest.approx(sum(x.energy_total for x in rep.layers), rel=1e-12)
    fresh = Scorer(HW)
    for i, layer in enumerate(wl.layers):
        nxt = wl.layers[i + 1].ifmap_zeros if i + 1 < len(wl.layers) else None
        alone = fresh.score_layer(layer, first=(i == 0), next_zeros=nxt)
        assert alone.energy_total == pytest.approx(rep.layers[i].energy_total, rel=1e-12)
    # energy by level and by data type both add up to the total
    t = rep.total
    assert sum(t.energy.values()) == pytest.approx(t.energy_total, rel=1e-9)
    assert sum(t.energy_by_type.values()) == pytest.approx(t.energy_total, rel=1e-9)


def test_energy_is_counts_times_costs():
    layer = Layer("c", N=2, M=32, C=16, H=20, W=20, R=3, S=3, padding=1, ifmap_zeros=0.3)
    ls = Scorer(HW).score_layer(layer)
    costs = {"DRAM": 200, "GLB": 6, "array": 2, "RF": 1}
    for level, cost in costs.items():
        assert ls.energy[level] == pytest.approx(sum(ls.accesses[level].values()) * cost)
    # MAC energy: every MAC whose ifmap is non-zero (zero gating), at 1 per MAC
    assert ls.energy["MAC"] == pytest.approx(layer.macs * 0.7)
    # RF: one ifmap-spad read per MAC, filter-spad reads gated by zero ifmaps
    assert ls.accesses["RF"]["ifmap"] == pytest.approx(layer.macs)
    assert ls.accesses["RF"]["filter"] == pytest.approx(layer.macs * 0.7)


def test_lower_bit_width_scales_data_and_mac_costs():
    base = Layer("c", N=1, M=64, C=32, H=16, W=16, R=3, S=3, padding=1, ifmap_zeros=0.4)
    sc = Scorer(HW)
    e16 = sc.score_layer(base)
    e8 = sc.score_layer(base.replace(weight_bits=8, act_bits=8))
    assert e8.energy["MAC"] == pytest.approx(e16.energy["MAC"] / 4)  # multiplier ~ bits^2 (survey Sec. VII)
    assert e8.energy_total < e16.energy_total


def test_warm_rescore_remaps_only_the_changed_layer():
    from hwaware.eyeriss.score import clear_mapping_cache

    clear_mapping_cache()
    wl = Workload(tuple(Layer(f"L{i}", N=1, M=32 + 8 * i, C=16, H=28, W=28, R=3, S=3, padding=1) for i in range(6)))
    sc = Scorer(HW)
    sc.score(wl)
    before = sc.cache_info()
    assert before["searched"] == before["mappings"] == 6
    changed = wl.replace_layer(3, wl.layers[3].replace(M=24))
    sc.score(changed)
    assert sc.cache_info()["searched"] == 7 and sc.cache_info()["mappings"] == 7


def test_mappings_are_shared_by_every_scorer_in_the_process(monkeypatch):
    import hwaware
    import sys

    import hwaware.eyeriss.score  # noqa: F401 (the module; the package exports a function of that name)
    score_mod = sys.modules["hwaware.eyeriss.score"]

    score_mod.clear_mapping_cache()
    wl = Workload(tuple(Layer(f"L{i}", N=1, M=16 * (i + 1), C=8, H=20, W=20, R=3, S=3, padding=1) for i in range(4)))
    first = hwaware.score(wl, hardware=HW)
    calls = []
    real = score_mod.shortlist
    monkeypatch.setattr(score_mod, "shortlist", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = hwaware.score(wl, hardware=HW)  # a new Scorer inside: every mapping comes from the cache
    other = Scorer(HW)
    other.score(wl)
    assert calls == [] and other.cache_info() == {"mappings": 4, "searched": 0, "layers": 4}
    assert again.to_dict() == first.to_dict()  # a hit is exactly what a search returns
    Scorer(HW, objective="latency").score(wl)  # shortlists hold every objective's winner
    assert calls == []
    score_mod.clear_mapping_cache()
    Scorer(HW).score(wl)
    assert len(calls) == 4


def test_rlc_ratio_matches_exact_expectation():
    from hwaware.fixedpoint.rlc import expected_words

    for n in (1000, 3025):
        for z in (0.0, 0.3, 0.6, 0.9):
            exact = 4 * expected_words(n, z) / n
            assert rlc_ratio(n, z) == pytest.approx(exact, rel=0.015)
    for n in (1, 2, 3):  # one word, exactly, whatever the zeros
        for z in (0.0, 0.5, 0.9375, 1.0):
            assert rlc_ratio(n, z) == pytest.approx(4 * expected_words(n, z) / n, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.floats(0, 1), st.floats(0, 1))
def test_rlc_ratio_never_rises_with_sparsity(n, z1, z2):
    lo, hi = sorted((z1, z2))
    assert rlc_ratio(n, hi) <= rlc_ratio(n, lo) * (1 + 1e-12)


def test_large_filter_rows_are_split_not_dropped():
    layer = Layer("big", N=1, M=8, C=3, H=40, W=40, R=15, S=5)
    rep = Scorer(HW).score(Workload((layer,)))
    assert rep.layers[0].note and "split" in rep.layers[0].note
    assert rep.total.macs == layer.macs


def test_unsupported_layer_is_reported_with_its_macs():
    ok = Layer("ok", N=1, M=8, C=3, H=16, W=16, R=3, S=3)
    bad = Layer("stride3", N=1, M=8, C=8, H=16, W=16, R=3, S=3, U=3)
    rep = Scorer(HW).score(Workload((ok, bad)))
    assert [u.name for u in rep.unscored] == ["stride3"]
    assert rep.unscored[0].macs == bad.macs
    assert "stride" in rep.unscored[0].reason
    assert rep.unscored_share() == pytest.approx(bad.macs / (ok.macs + bad.macs))
    with pytest.raises(UnsupportedLayerError, match="stride3"):
        Scorer(HW).score(Workload((ok, bad)), on_unsupported="raise")


def test_objectives_order_their_own_metric():
    layer = Layer("c", N=4, M=96, C=48, H=27, W=27, R=5, S=5, padding=2, ifmap_zeros=0.3)
    e = Scorer(HW, "energy", tolerance=0.0).score_layer(layer)
    lat = Scorer(HW, "latency", tolerance=0.0).score_layer(layer)
    assert e.energy_total <= lat.energy_total * (1 + 1e-12)
    assert lat.total_latency_ms <= e.total_latency_ms * (1 + 1e-12)


# --- hardware descriptions ------------------------------------------------------------------

def test_hardware_presets_match_the_papers():
    hw = get_preset("eyeriss_v1")
    assert (hw.pe_rows, hw.pe_cols, hw.num_pes) == (12, 14, 168)
    assert (hw.spad_filter, hw.spad_ifmap, hw.spad_psum) == (224, 12, 24)
    assert hw.glb_words * 2 == 100 * 1024 and hw.glb_banks == 25 and hw.glb_filter_kB == 8
    assert hw.peak_gmacs == pytest.approx(33.6)  # JSSC Sec. VI: 33.6 GMACS at 200 MHz
    assert hw.energy_costs() == {"DRAM": 200, "GLB": 6, "array": 2, "RF": 1, "MAC": 1}
    isca = get_preset("eyeriss_isca256")
    assert isca.num_pes == 256 and isca.default_batch == 16


def test_hardware_yaml_file(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("base: eyeriss_v1\npe_rows: 16\npe_cols: 16\nglb_kB: 200\n")
    hw = Hardware.load(f)
    assert hw.num_pes == 256 and hw.glb_kB == 200 and hw.spad_filter == 224
    layer = Layer("c", N=1, M=64, C=64, H=30, W=30, R=3, S=3)
    assert Scorer(hw).score_layer(layer).active_pes <= 256


@pytest.mark.parametrize("text, match", [
    ("pe_rowz: 12\n", "unknown key 'pe_rowz'.*did you mean 'pe_rows'"),
    ("pe_rows: -3\n", "'pe_rows' must be a positive integer"),
    ("glb_kB: zero\n", "'glb_kB' must be a number"),
    ("base: eyeriss_v9\n", "unknown hardware 'eyeriss_v9'"),
    ("gate_zero_ifmap: maybe\n", "must be true or false"),
    ("pe_rows: [1, 2\n", "not valid YAML"),
])
def test_bad_hardware_files_rejected(tmp_path, text, match):
    f = tmp_path / "hw.yaml"
    f.write_text(text)
    with pytest.raises(HwawareError, match=match):
        Hardware.load(f)


def test_missing_hardware_file_names_the_presets():
    with pytest.raises(HwawareError, match="eyeriss_v1"):
        Scorer("no_such_chip.yaml")


def test_vectorized_and_single_evaluation_agree():
    """The mapper's array evaluation and the report's single evaluation are the same function."""
    from hwaware.eyeriss import evaluate
    from hwaware.eyeriss.mapper import candidates, make_problem

    layer = Layer("c", N=2, M=64, C=32, H=15, W=15, R=3, S=3, ifmap_zeros=0.5)
    pb = make_problem(layer, HW, rlc_if=0.8, rlc_of=0.6, rlc_w=1.0)
    cand = candidates(pb, HW)
    res = evaluate(pb, HW, *(cand[k] for k in "enpqrtm"))
    for i in (0, len(cand["e"]) // 2, len(cand["e"]) - 1):
        one = evaluate(pb, HW, *(np.array([cand[k][i]]) for k in "enpqrtm"))
        assert one["energy"][0] == res["energy"][i] and one["cycles"][0] == res["cycles"][i]


@settings(max_examples=40, deadline=None)
@given(layers())
def test_search_follows_the_documented_rule(layer):
    """search() = fill filter, then energy within tolerance, then fastest, over every candidate."""
    from hwaware.eyeriss import evaluate
    from hwaware.eyeriss.mapper import candidates, make_problem, search

    sc = Scorer(HW)
    pb = make_problem(layer, HW, **dict(zip(("rlc_if", "rlc_of", "rlc_w"), sc._ratios(layer, False, None))))
    full = candidates(pb, HW)
    if not full:
        return
    res = evaluate(pb, HW, *(full[x] for x in "enpqrtm"))
    pes = res["active_pes"]
    ok = pes >= HW.mapping_fill * pes.max()
    en = np.where(ok, res["energy"], np.inf)
    lat = res["cycles"] + res["stall_cycles"]
    near = np.flatnonzero(en <= en.min() * (1 + DEFAULT_TOLERANCE) * (1 + 1e-12))
    got = search(pb, HW, "energy")
    i = near[np.isclose(lat[near], lat[near].min(), rtol=1e-11)]
    assert any(all(int(full[x][j]) == getattr(got, x) for x in "enpqrtm") for j in i)
    # every candidate obeys the chip's tiling rules: passes carry up to q*r channels (only the last
    # one fewer), filters and images tile exactly
    assert np.all(full["q"] * full["r"] <= pb.C) and np.all(pb.M % full["m"] == 0)
    assert np.all(full["m"] % (full["p"] * full["t"]) == 0) and np.all(pb.N % full["n"] == 0)


def test_scores_do_not_depend_on_scoring_history():
    """A shared Scorer gives the same numbers as a fresh one (the mapping cache is history-free)."""
    base = Layer("c", N=1, M=48, C=32, H=20, W=20, R=3, S=3, padding=1, ifmap_zeros=0.4012)
    near = base.replace(ifmap_zeros=0.4041)  # same rounded statistics, different exact ones
    shared = Scorer(HW)
    shared.score_layer(base)
    a = shared.score_layer(near)
    b = Scorer(HW).score_layer(near)
    assert a.mapping == b.mapping and a.energy_total == b.energy_total
