"""The Eyeriss model judged against real silicon: JSSC 2017 Table V (AlexNet, batch 4) and Table VI
(VGG-16, batch 3; active PEs and processing latency only -- the other columns are withheld).

Expected values are the chip's measurements, shipped as package data. Targets (issue 10): active PEs
exact on all 18 layers; processing latency within 10% per layer and 5% in total on both networks;
AlexNet DRAM and GLB traffic within 10% per layer. A target the model does not meet yet is marked
``xfail(strict=True)`` with the measured miss in its reason (docs/eyeriss_model.md, "Fidelity"):
it is reported on every run, and the marker fails the suite the day the target is met, so it
cannot silently stay.
"""

from __future__ import annotations

import pytest

from hwaware.eyeriss import Scorer
from hwaware.eyeriss.reference import alexnet_workload, load_reference, load_vgg16_reference, vgg16_workload
from hwaware.workload.rlc import expected_words, rlc_ratio

ALEX = load_reference()
VGG = load_vgg16_reference()


@pytest.fixture(scope="module")
def alexnet():
    return Scorer("eyeriss_v1", "energy").score(alexnet_workload(ALEX))


@pytest.fixture(scope="module")
def vgg16():
    return Scorer("eyeriss_v1", "energy").score(vgg16_workload(VGG))


def test_shipped_tables_hold_the_papers_facts():
    """Facts from the paper's text, written here independently of the JSON files."""
    assert ALEX["batch"] == 4 and VGG["batch"] == 3
    assert [L["name"] for L in ALEX["layers"]] == [f"CONV{i}" for i in range(1, 6)]
    assert len(VGG["layers"]) == 13
    assert ALEX["total"]["power_mW"] == 278 and ALEX["total"]["processing_latency_ms"] == 103.5
    # VGG-16 CONV layers: 15.35 GMACs per 224x224 frame (3x3 convolutions, padding 1), batch 3
    macs = sum(3 * L["M"] * L["C"] * 9 * L["E"] ** 2 for L in VGG["layers"])
    assert macs / 1e9 == pytest.approx(VGG["total"]["macs_G"], rel=0.01)
    assert sum(L["measured"]["processing_latency_ms"] for L in VGG["layers"]) == pytest.approx(
        VGG["total"]["processing_latency_ms"], abs=0.2)


def test_workloads_match_the_tables_shapes():
    for wl, ref in ((alexnet_workload(ALEX), ALEX), (vgg16_workload(VGG), VGG)):
        for layer, L in zip(wl.layers, ref["layers"]):
            assert (layer.Hp, layer.R, layer.E, layer.C, layer.M, layer.U) == (L["H"], L["R"], L["E"], L["C"], L["M"], L["U"])
            # the tables' MAC counts (0.42G, 5.55G, ...) at their printed precision
            assert layer.macs / 1e9 == pytest.approx(L["measured"]["macs_G"], abs=0.006)


# --- active PEs: exact on all 18 layers -------------------------------------------------------------

@pytest.mark.parametrize("i", range(5))
def test_alexnet_active_pes(alexnet, i):
    assert alexnet.layers[i].active_pes == ALEX["layers"][i]["measured"]["active_pes"]


@pytest.mark.parametrize("i", range(13))
def test_vgg16_active_pes(vgg16, i):
    assert vgg16.layers[i].active_pes == VGG["layers"][i]["measured"]["active_pes"]


# --- processing latency: 10% per layer, 5% in total ---------------------------------------------------

@pytest.mark.parametrize("i", range(5))
def test_alexnet_processing_latency(alexnet, i):
    m = ALEX["layers"][i]["measured"]
    assert alexnet.layers[i].processing_latency_ms == pytest.approx(m["processing_latency_ms"], rel=0.10)


def test_alexnet_processing_latency_total(alexnet):
    assert alexnet.total.processing_latency_ms == pytest.approx(ALEX["total"]["processing_latency_ms"], rel=0.05)


@pytest.mark.parametrize("i", range(13))
def test_vgg16_processing_latency(vgg16, i):
    m = VGG["layers"][i]["measured"]
    assert vgg16.layers[i].processing_latency_ms == pytest.approx(m["processing_latency_ms"], rel=0.10)


def test_vgg16_processing_latency_total(vgg16):
    assert vgg16.total.processing_latency_ms == pytest.approx(VGG["total"]["processing_latency_ms"], rel=0.05)


def test_vgg16_early_layers_are_slower_per_mac(vgg16):
    """The paper's text: CONV1-2 takes 'nearly four times longer' than CONV4-2 for the same MACs."""
    ratio = vgg16["CONV1-2"].processing_latency_ms / vgg16["CONV4-2"].processing_latency_ms
    assert 3.0 < ratio < 5.0


def test_vgg16_channels_per_pass_follow_the_psum_stream(vgg16):
    """Where a layer is psum-bound, its processing time is its psum traffic over the 64-bit GIN:
    N*M*E*F*ceil(C/qr)/4 cycles whatever p and t are, so the chip's latency fixes q*r. Written out
    here from Table VI and the shapes alone: the chip's CONV2-1 (405.3 ms) is one channel per pass,
    CONV3-1 (204.0 ms) two; the model's mappings must carry exactly those (rule M8)."""
    for name, chip_qr in (("CONV2-1", 1), ("CONV3-1", 2)):
        L = next(x for x in VGG["layers"] if x["name"] == name)
        psum_ms = 3 * L["M"] * L["E"] ** 2 * L["C"] / chip_qr / 4 / 200e6 * 1e3
        assert psum_ms == pytest.approx(L["measured"]["processing_latency_ms"], rel=0.10)
        mp = vgg16[name].mapping
        assert mp.q * mp.r == chip_qr


def test_table_iii_mappings_obey_the_one_bank_ifmap_rule():
    """Rule M8 against the chip's own mappings: one image's q*r ifmap channels of U(e-1)+R rows
    take no more 4 kB banks (2048 words) than one channel does (CONV2: 2 x 31 x 31 = 1922 words)."""
    for L in ALEX["layers"]:
        mp = L["mapping"]
        h = L["U"] * (mp["e"] - 1) + L["R"]
        one = -(-h * L["H"] // 2048)
        assert -(-mp["q"] * mp["r"] * h * L["H"] // 2048) <= one
    # and it binds on CONV2: twice the channels would not fit the bank
    conv2 = ALEX["layers"][1]
    assert 2 * conv2["mapping"]["q"] * 31 * 31 > 2048


# --- AlexNet traffic: 10% per layer ------------------------------------------------------------------

@pytest.mark.parametrize("i", range(5))
def test_alexnet_dram(alexnet, i):
    """CONV1 and CONV5 write their ofmaps coded as Sec. IV-B states (see the next tests): their DRAM
    checks the model's ifmap and filter traffic plus the paper's own compression statement."""
    assert alexnet.layers[i].dram_MB == pytest.approx(ALEX["layers"][i]["measured"]["dram_MB"], rel=0.10)


@pytest.mark.parametrize("i", range(5))
def test_alexnet_glb(alexnet, i):
    assert alexnet.layers[i].glb_MB == pytest.approx(ALEX["layers"][i]["measured"]["glb_MB"], rel=0.10)


def test_alexnet_conv3_glb_needs_more_channels_per_pass_than_table_iii(alexnet):
    """Sec. IV-A: a pass stores its psums back to the GLB once, and psums accumulated across passes
    stay in the GLB. So every ofmap value of a layer with c channel passes is written to the GLB c
    times and read back c-1 times: at least (2c-1) * N*M*E*F 16-bit accesses, ifmaps not even counted.
    Table III's CONV3 mapping (q*r = 4 of C = 256: 64 passes) would need 65.9 MB, more than the 50.2 MB
    the chip measured in all; the measurement allows at most 48 passes, i.e. q*r >= 6, which leaves a
    partial last pass (6 does not divide 256; 8 would). The model's mapping must carry that many."""
    L = ALEX["layers"][2]
    n_of = 4 * L["M"] * L["E"] ** 2
    glb_words = L["measured"]["glb_MB"] * 1e6 / 2

    def least_psum_words(c):
        return (2 * c - 1) * n_of

    table_qr = L["mapping"]["q"] * L["mapping"]["r"]
    assert least_psum_words(-(-L["C"] // table_qr)) * 2e-6 == pytest.approx(65.9, abs=0.1)
    assert least_psum_words(-(-L["C"] // table_qr)) > glb_words
    max_passes = max(c for c in range(1, L["C"] + 1) if least_psum_words(c) <= glb_words)
    assert max_passes == 48
    least_qr = -(-L["C"] // max_passes)
    assert least_qr == 6 and L["C"] % least_qr
    mp = alexnet.layers[2].mapping
    assert mp.q * mp.r >= least_qr


def test_alexnet_written_ofmaps_are_coded_as_sec_iv_b_states(alexnet):
    """Sec. IV-B: RLC saves "nearly 30%" of CONV1's fmap DRAM accesses (ifmaps and ofmaps) and "nearly
    75%" of CONV5's. Read with each fmap stored once (the network's input is not coded; CONV5's padded
    15x15 input at Table V's 77.6% zeros), what is left for the ofmap is, per raw ofmap word:"""
    wl = alexnet_workload(ALEX)
    n_if1, n_of1 = 4 * 3 * 227 * 227, 4 * 96 * 55 * 55
    conv1 = 1 - 0.30 * (n_if1 + n_of1) / n_of1
    assert conv1 == pytest.approx(0.540, abs=0.001)
    n_if5, n_of5 = 4 * 384 * 15 * 15, 4 * 256 * 13 * 13
    coded_if5 = 4 * 384 * 4 * expected_words(15 * 15, 0.776)  # exact expectation, 4 values per word
    conv5 = (0.25 * (n_if5 + n_of5) - coded_if5) / n_of5
    assert wl.layers[0].ofmap_rlc == pytest.approx(conv1, rel=1e-9)
    assert wl.layers[4].ofmap_rlc == pytest.approx(conv5, rel=0.05)
    # the model writes exactly that: N*M*E*F words times the ratio
    assert alexnet.layers[0].accesses["DRAM"]["psum"] == pytest.approx(n_of1 * conv1)
    # CONV1's written ofmap has far more zeros than CONV2's pooled input (38.7%), the only count the
    # tables give: coded at that, as before, CONV1's DRAM was 12.7% over the 5.0 MB measured
    assert conv1 < 0.75 * rlc_ratio(55 * 55, 0.387)
    # the layers no sentence covers keep the rule for unmeasured ofmaps (the next layer's zeros)
    assert [L.ofmap_rlc for L in wl.layers[1:4]] == [0.0, 0.0, 0.0]
    assert all(L.ofmap_rlc == 0.0 and L.ofmap_relu_zeros is None for L in vgg16_workload(VGG).layers)


def test_table_iii_glb_holds_one_pass_of_ifmaps_so_ifmaps_come_back_per_filter_group(alexnet):
    """Table III's GLB allocations are exactly one pass's ifmap strips (n*q*r planes of U(e-1)+R rows)
    and n*m psum planes of e x F (rule M6), and the rest of the 100 kB could not hold the strip of every
    channel: an ifmap row is gone from the GLB when the next group of m filters starts, so each ifmap
    value is read from DRAM ceil(M/m) times (times the strip halo), as the model counts."""
    for ls, L in zip(alexnet.layers, ALEX["layers"]):
        mp, wp = L["mapping"], L["H"]
        h = L["U"] * (mp["e"] - 1) + L["R"]
        ifmap_words = mp["n"] * mp["q"] * mp["r"] * h * wp
        psum_words = mp["n"] * mp["m"] * mp["e"] * L["E"]
        assert ifmap_words * 2 / 1024 == pytest.approx(L["glb_alloc_kB"]["ifmap"], abs=0.05)
        assert psum_words * 2 / 1024 == pytest.approx(L["glb_alloc_kB"]["psum"], abs=0.05)
        all_channels = mp["n"] * L["C"] * h * wp
        assert all_channels + psum_words > 100 * 1024 / 2
        if ls.mapping.as_dict() == mp:
            strips = -(-L["E"] // mp["e"])
            rows = L["U"] * (L["E"] - strips) + L["R"] * strips
            planes = 4 * L["C"] * L["groups"]
            coded = rlc_ratio(wp * wp, L["measured"]["ifmap_zeros_pct"] / 100) if L["name"] != "CONV1" else 1.0
            want = planes * rows * wp * -(-L["M"] // L["groups"] // mp["m"]) * coded
            assert ls.accesses["DRAM"]["ifmap"] == pytest.approx(want, rel=1e-9)


@pytest.mark.xfail(strict=True, reason="target not met: VGG-16 DRAM 359.9 MB vs the text's 321.1 MB (+12.1%); the "
                   "five ofmaps written before pooling are coded at the pooled zeros (Table VI has no other count): "
                   "at independent zeros per 2x2 window 341.0 MB (+6.2%), written for free 329.7 MB (+2.7%); at "
                   "AlexNet CONV1's written-vs-pooled relation (a lower bound for 2x2 pooling) 350.4 MB (+9.1%); no "
                   "legal mapping with Table VI's PEs and latency moves less (bench/vgg16_mapping_space.py); "
                   "bench/fidelity.py, docs/eyeriss_model.md")
def test_vgg16_dram_total_within_10pct_of_the_text(vgg16):
    """Sec. VI-B: "The required DRAM access for a batch of three frames is 321.1 MB"."""
    assert vgg16.total.dram_MB == pytest.approx(321.1, rel=0.10)


def test_written_vs_pooled_zeros_of_conv1_predict_alexnet_conv2_dram(alexnet):
    """The one layer where the paper gives an ofmap's written zeros and its pooled zeros is AlexNet CONV1
    (Sec. IV-B's 30% saving; CONV2 reads Table V's zeros after 3x3 max pooling). Their relation,
    written = pooled ** a, applied to CONV2 (the same pooling, written ofmap not given) brings CONV2's
    DRAM from the next-layer rule's upper bound to within 2% of Table V. For VGG-16's 2x2 pooling the
    same relation only bounds the traffic from below (bench/fidelity.py prints the bracket)."""
    import math

    from tests._bench import load_bench

    wl = alexnet_workload()
    c1, c2, c3 = wl.layers[:3]
    n = c1.E * c1.F
    lo, hi = 0.0, 1.0  # the written zeros whose independent-zeros code size is CONV1's coded ofmap
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rlc_ratio(n, mid) > c1.ofmap_rlc else (lo, mid)
    a = math.log(lo) / math.log(c2.ifmap_zeros)
    assert a == pytest.approx(load_bench("fidelity").pooled_exponent(wl), rel=1e-6)
    assert 0.25 < a < 1.0  # between independent zeros in a 2x2 window and a fully correlated one
    chip = ALEX["layers"][1]["measured"]["dram_MB"]
    assert alexnet.layers[1].dram_MB > 1.04 * chip  # the next-layer rule overestimates it
    layers = (c1, c2.replace(ofmap_relu_zeros=c3.ifmap_zeros ** a), *wl.layers[2:])
    got = Scorer("eyeriss_v1").score(type(wl)(layers, wl.unmodeled, wl.source)).layers[1].dram_MB
    assert got == pytest.approx(chip, rel=0.02)


def test_alexnet_totals_and_power(alexnet):
    t, m = alexnet.total, ALEX["total"]
    assert t.dram_MB == pytest.approx(m["dram_MB"], rel=0.10)
    assert t.glb_MB == pytest.approx(m["glb_MB"], rel=0.10)
    assert t.total_latency_ms == pytest.approx(m["total_latency_ms"], rel=0.10)
    # the power constant was fitted on this total; the per-layer trend is a real check
    assert t.power_mW == pytest.approx(m["power_mW"], rel=0.05)
    for ls, L in zip(alexnet.layers, ALEX["layers"]):
        assert ls.power_mW == pytest.approx(L["measured"]["power_mW"], rel=0.25)


def test_alexnet_mappings_match_table_iii_where_the_rules_decide(alexnet):
    """The mapper reproduces the chip's own Table III mappings on CONV1, 2, 4 and 5."""
    for i in (0, 1, 3, 4):
        assert alexnet.layers[i].mapping.as_dict() == ALEX["layers"][i]["mapping"]


# --- Eyexam -------------------------------------------------------------------------------------------

def test_eyexam_bounds_are_ordered_and_end_at_the_latency_model(alexnet, vgg16):
    for ls in (*alexnet.layers, *vgg16.layers):
        steps = [s.macs_per_cycle for s in ls.eyexam]
        assert [s.step for s in ls.eyexam] == list(range(1, 8))
        assert all(a >= b for a, b in zip(steps, steps[1:]))
        cycles = ls.processing_latency_ms * 1e-3 * 200e6
        assert steps[-1] == pytest.approx(ls.macs / cycles, rel=1e-9)
        assert steps[2] == pytest.approx(min(steps[1], 168))
        # step 5 runs the chosen mapping's active PEs at one MAC per cycle at best
        assert steps[4] <= ls.active_pes * (1 + 1e-9)


def test_processing_latency_is_not_below_ideal(alexnet, vgg16):
    """No layer beats MACs / (active PEs x 200 MHz)."""
    for ls in (*alexnet.layers, *vgg16.layers):
        assert ls.processing_latency_ms >= ls.macs / (ls.active_pes * 200e6) * 1e3


def test_no_chip_like_vgg16_mapping_moves_less_dram_than_the_models_choice():
    """bench/vgg16_mapping_space.py enumerates every mapping rules M1-M8 allow (all m, no fill floor,
    none of the mapper's reductions); among those with Table VI's active PEs and processing latency
    within 10%, none moves less DRAM than the mapping the model chooses, and the model's own choice is
    one of them: the VGG-16 DRAM gap to the text's 321.1 MB is not a mapping choice."""
    from tests._bench import load_bench

    rows = load_bench("vgg16_mapping_space").analyse()
    assert [r["name"] for r in rows] == [L["name"] for L in VGG["layers"]]
    for r in rows:
        assert r["chip_like"] >= 1, r["name"]
        assert r["min"] == pytest.approx(r["model"], rel=1e-9), r["name"]
        # relaxing the inferred M8 finds nothing cheaper either; every order moves at least the compulsory traffic
        assert r["min_no_m8"] == pytest.approx(r["model"], rel=1e-9), r["name"]
        assert r["compulsory"] <= r["min"]


def test_preset_unit_pj_is_the_refit_on_the_alexnet_total(alexnet):
    """eyeriss_v1.unit_pJ is fitted on Table V's 278 mW with the preset's clock_pJ taken out
    (hwaware.eyeriss.clock.unit_pJ_from_power); the preset must stay within 0.5% of that fit, i.e.
    be refitted whenever the access counts or latencies change (it was 1.56 when the fit said 1.543)."""
    from hwaware.eyeriss import resolve_hardware
    from hwaware.eyeriss.clock import unit_pJ_from_power

    hw = resolve_hardware("eyeriss_v1")
    t = alexnet.total
    unit = unit_pJ_from_power(278, t.total_latency_ms, t.energy_onchip, hw.clock_pJ, hw.num_pes, hw.core_MHz)
    assert hw.unit_pJ == pytest.approx(unit, rel=0.005)
