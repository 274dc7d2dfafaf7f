"""Eyeriss v2 (JETCAS 2019): relation tests (sparsity speeds v2 up and never v1; the flexible NoC
keeps depthwise layers busy), the compressed-format rules, and the published MobileNet ratios."""

from __future__ import annotations

import pytest

from hwaware.errors import HwawareError
from hwaware.eyeriss import Scorer, resolve_hardware
from hwaware.eyeriss.dataflows.eyeriss_v2 import csc_ratio, grown, on_chip
from hwaware.workload import Layer, Workload

# a MobileNet-like slice: a stem conv, a depthwise 3x3 and a pointwise 1x1 layer
SLICE = (
    Layer("stem", N=1, M=32, C=3, H=56, W=56, R=3, S=3, U=2, padding=1),
    Layer("dw", N=1, M=64, C=1, H=28, W=28, R=3, S=3, padding=1, groups=64),
    Layer("pw", N=1, M=128, C=64, H=28, W=28, R=1, S=1),
)


def with_zeros(z_act: float, z_w: float) -> Workload:
    return Workload(tuple(L.replace(ifmap_zeros=z_act if i else 0.0, weight_zeros=z_w) for i, L in enumerate(SLICE)))


def test_preset_and_selection():
    hw = resolve_hardware("eyeriss_v2")
    assert hw.dataflow == "v2" and hw.num_pes == 192
    with pytest.raises(HwawareError, match="Eyeriss v2 is a chip with its own model"):
        resolve_hardware("eyeriss_v2:ws")


def test_csc_ratio():
    # 8-bit value + 4-bit count per non-zero, never above the raw 8 bits
    assert csc_ratio(0.0) == 1.0
    assert csc_ratio(0.5) == pytest.approx(0.5 * 12 / 8)
    assert csc_ratio(0.9) == pytest.approx(0.1 * 12 / 8)


@pytest.mark.parametrize("z_act, z_w", [(0.5, 0.0), (0.0, 0.5), (0.6, 0.4)])
def test_sparsity_speeds_v2_up_and_never_v1(z_act, z_w):
    dense, sparse = with_zeros(0.0, 0.0), with_zeros(z_act, z_w)
    v2 = Scorer("eyeriss_v2")
    assert v2.score(sparse).total.processing_latency_ms < v2.score(dense).total.processing_latency_ms
    assert v2.score(sparse).total.energy_total < v2.score(dense).total.energy_total
    v1 = Scorer("eyeriss_v1")
    # zero gating saves v1 no cycle; a faster sparse v1 can only come from the statistics picking
    # another mapping (here the pointwise layer at 50% zeros: 2 channel passes instead of 8, which the
    # partial last channel pass of issue 10's rule M5 allows), so compare layers whose mapping is kept
    for d, s in zip(v1.score(dense).layers, v1.score(sparse).layers):
        if d.mapping == s.mapping:
            assert s.processing_latency_ms >= d.processing_latency_ms * (1 - 1e-9), d.name


def test_zero_gating_never_saves_v1_a_cycle_on_any_layer():
    """v1's zero gating saves energy but no cycles: for a given mapping, a sparse layer (an FC layer
    included) takes the same processing cycles as the dense one, with the data on chip. (Two things
    can still shorten v1 in the model, neither of them zero skipping: the mapping search reads the
    statistics, so at 60% zeros it may pick another, faster mapping — 1.06 vs 1.11 ms on the pointwise
    layer here; and with the DRAM link, run-length-compressed sparse weights stream faster on a
    DRAM-bound FC layer — asserted below so that the distinction stays visible.)"""
    import numpy as np

    from hwaware.eyeriss.cost import evaluate
    from hwaware.eyeriss.mapper import make_problem, search

    fc = Layer("fc", N=1, M=1000, C=1024, H=1, W=1, R=1, S=1)
    hw = on_chip(resolve_hardware("eyeriss_v1"))
    for layer in (*SLICE, fc):
        sparse = layer.replace(ifmap_zeros=0.6, weight_zeros=0.6)
        pb_d, pb_s = (make_problem(L, hw, rlc_if=1.0, rlc_of=1.0, rlc_w=1.0) for L in (layer, sparse))
        mp = search(pb_d, hw)
        args = [np.array([getattr(mp, k)]) for k in ("e", "n", "p", "q", "r", "t", "m")]
        dense_res, sparse_res = evaluate(pb_d, hw, *args), evaluate(pb_s, hw, *args)
        assert sparse_res["cycles"][0] == dense_res["cycles"][0], layer.name
        assert sparse_res["energy"][0] < dense_res["energy"][0], layer.name
    linked = Scorer("eyeriss_v1")
    assert linked.score(Workload((fc.replace(weight_zeros=0.6),))).total.processing_latency_ms < \
        linked.score(Workload((fc,))).total.processing_latency_ms


def test_v2_mac_energy_is_8bit_on_nonzero_macs():
    rep = Scorer("eyeriss_v2").score(with_zeros(0.5, 0.3))
    for ls, layer in zip(rep.layers, with_zeros(0.5, 0.3).layers):
        nz = layer.macs * (1 - layer.ifmap_zeros) * (1 - layer.weight_zeros)
        assert ls.energy["MAC"] == pytest.approx(nz * 64 / 256)


def test_depthwise_keeps_v2_busy_where_v1_is_not():
    dw = Workload((SLICE[1],))
    v1, v2 = Scorer("eyeriss_v1").score(dw), Scorer("eyeriss_v2").score(dw)
    assert v2.layers[0].active_pes > v1.layers[0].active_pes
    assert v2.total.processing_latency_ms < v1.total.processing_latency_ms


def test_simd_pairs_weights_of_two_output_channels_only():
    """Two MACs per PE per cycle need two weights sharing an iact: a depthwise layer gets one."""
    from hwaware.eyeriss.dataflows.eyeriss_v2 import simd_lanes

    hw = resolve_hardware("eyeriss_v2")
    assert hw.macs_per_pe == 2 and simd_lanes(SLICE[1], hw) == 1 and simd_lanes(SLICE[2], hw) == 2
    dw = Scorer("eyeriss_v2").score(Workload((SLICE[1],))).layers[0]
    cycles = dw.processing_latency_ms * 1e-3 * 200e6
    assert cycles >= SLICE[1].macs / dw.active_pes * (1 - 1e-9)


def test_depthwise_gains_nothing_from_zeros_and_1x1_skips_both():
    """JETCAS 2019 Sec. V-A: CSC creates no skippable cycles when a PE has one input and one output
    channel (depthwise): one cycle per MAC whatever the zeros. Elsewhere zeros of both operands are
    skipped."""
    from hwaware.eyeriss.dataflows.eyeriss_v2 import pe_cycles

    dw, pw = SLICE[1].replace(ifmap_zeros=0.5, weight_zeros=0.3), SLICE[2].replace(ifmap_zeros=0.5, weight_zeros=0.3)
    assert pe_cycles(dw, m0=8, lanes=2) == SLICE[1].macs
    # dense weights, even m0: exactly the non-zero MACs over the lanes
    assert pe_cycles(pw.replace(weight_zeros=0.0), m0=8, lanes=2) == pytest.approx(SLICE[2].macs * 0.5 / 2)


def test_pe_cycles_per_column_visit():
    """Per non-zero iact, the PE runs the non-zero weights of its column of m0 weights, `lanes` per
    cycle, and takes at least one cycle (JETCAS Sec. IV: the iact is fetched first; an odd count leaves
    the second SIMD lane idle). m0 = 2, weight density 1/2: the column holds 0, 1 or 2 non-zeros with
    probabilities 1/4, 1/2, 1/4, so one lane takes 1, 1, 2 cycles (1.25 per visit) and two lanes 1, 1, 1;
    visits = MACs / m0 x iact density."""
    from hwaware.eyeriss.dataflows.eyeriss_v2 import pe_cycles

    pw = SLICE[2].replace(ifmap_zeros=0.5, weight_zeros=0.5)
    visits = SLICE[2].macs / 2 * 0.5
    assert pe_cycles(pw, m0=2, lanes=1) == pytest.approx(visits * 1.25)
    assert pe_cycles(pw, m0=2, lanes=2) == pytest.approx(visits * 1.0)
    # dense, odd m0 = 3: two cycles per column on two lanes (not 1.5)
    assert pe_cycles(SLICE[2], m0=3, lanes=2) == pytest.approx(SLICE[2].macs / 3 * 2)


def test_scaled_v1_is_v1_at_v2s_pes_storage_and_precision():
    """JETCAS 2019 Sec. V-A: the v1 of the comparison is the original Eyeriss with the storage
    capacity, number of PEs and data precision scaled to v2's."""
    from hwaware.eyeriss.dataflows.eyeriss_v2 import at_8_bits, scaled_v1

    v1, v2 = resolve_hardware("eyeriss_v1"), resolve_hardware("eyeriss_v2")
    s = scaled_v1(v1, v2)
    assert s.dataflow == v1.dataflow and s.num_pes == v2.num_pes == 192 and s.pe_rows == v1.pe_rows
    assert (s.spad_filter, s.spad_ifmap, s.spad_psum) == (v2.spad_filter, v2.spad_ifmap, v2.spad_psum)
    assert s.glb_kB + s.glb_filter_kB == pytest.approx(v2.glb_kB)
    assert (s.filter_bus_words, s.ifmap_bus_words) == (2 * v1.filter_bus_words, 2 * v1.ifmap_bus_words)
    assert all(L.act_bits == L.weight_bits == 8 for L in at_8_bits(Workload(SLICE)).layers)


# JETCAS 2019 abstract: sparse MobileNet at batch 1, v2 1470.6 inferences/s and 2560.3 inferences/J,
# 12.6x faster and 2.5x more energy-efficient than v1 (so v1: 116.7 inferences/s, 1024 inferences/J)
PUB_V2_FPS, PUB_V2_INF_J, PUB_SPEEDUP, PUB_EFF = 1470.6, 2560.3, 12.6, 2.5


def _mobilenet(width: float, size: int) -> Workload:
    import sys
    from pathlib import Path

    import torch

    from hwaware.profiler import profile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from mobilenet_v1 import mobilenet_v1

    x = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(0))
    return profile(mobilenet_v1(width_mult=width, input_size=size).eval(), x)


def test_published_throughput_rules_out_mobilenet_1_0_224():
    """v1 (168 PEs, 200 MHz, 1 MAC per PE per cycle) at the implied 1470.6 / 12.6 inferences/s does
    at most 288M MACs per inference: the paper's MobileNet is not 1.0-224 (569M), while 0.5-128 fits.
    This is why bench/eyeriss_v2.py and the test below also run 0.5-128."""
    bound = 168 * 200e6 / (PUB_V2_FPS / PUB_SPEEDUP)
    assert bound == pytest.approx(288e6, rel=0.01)
    assert _mobilenet(1.0, 224).macs > bound > _mobilenet(0.5, 128).macs


def test_reference_workload_is_mobilenet_0_5_128():
    """The Sparseloop artifact's "mobilenet0.5-sparse" is our MobileNet v1 at width 0.5, input 128:
    28 layers, and on the depthwise layers where the reference PE saves nothing from zeros its cycles
    equal our profiled layers' MACs exactly (L12, L14, L16, L20, L22, L24, L26), the dense first layer's
    too (L01: 3 x 3 x 3 x 16 x 64 x 64 = 1,769,472)."""
    from hwaware.eyeriss.dataflows import v2_reference as ref

    wl = _mobilenet(*ref.MOBILENET)
    assert len(wl.layers) == len(ref.PE_CYCLES) == 28
    for n in (1, 12, 14, 16, 20, 22, 24, 26):
        assert wl.layers[n - 1].macs == ref.PE_CYCLES[n - 1], n
    assert 3 * 3 * 3 * 16 * 64 * 64 == ref.PE_CYCLES[0]
    # the masks' sizes are the layers' iact and weight counts (L07: 64 x 32 x 32 iacts, 64 x 64 weights)
    for n, ((_, n_if), (_, n_w)) in ref.MASK_COUNTS.items():
        L = wl.layers[n - 1]
        assert (n_if, n_w) == (L.groups * L.C * L.H * L.W, L.M * L.C * L.R * L.S), n


def test_pe_model_against_reference_cycles():
    """One v2 PE with one MAC unit (the reference's PE) and the model's own output channels per PE:
    the model's cycles against the reference (Sparseloop artifact) on the layers whose sparsity was
    measured — within 10% on the eight 1x1 layers (the reference is 1.01-1.07x: pipeline overheads the
    model leaves out), and the depthwise and dense first layers between 0.8 and 1.0x of the model."""
    from hwaware.eyeriss.dataflows import v2_reference as ref
    from hwaware.eyeriss.dataflows.eyeriss_v2 import pe_cycles

    wl = ref.sparse_mobilenet(_mobilenet(*ref.MOBILENET))
    m0 = [ls.mapping.as_dict()["p"] for ls in Scorer("eyeriss_v2").score(wl).layers]
    model = [pe_cycles(L, m0=m, lanes=1) for L, m in zip(wl.layers, m0)]
    for n in ref.DENSITY:
        if wl.layers[n - 1].groups > 1:
            assert 0.8 * model[n - 1] <= ref.PE_CYCLES[n - 1] <= model[n - 1], n
        else:
            assert ref.PE_CYCLES[n - 1] == pytest.approx(model[n - 1], rel=0.10), n
    for n, L in enumerate(wl.layers, 1):
        if L.groups > 1 or n == 1:
            assert 0.8 * model[n - 1] <= ref.PE_CYCLES[n - 1] <= model[n - 1], n


@pytest.fixture(scope="module")
def sparse_mobilenet_05_128():
    """The published comparison (JETCAS 2019 Sec. V-A): v2 on the sparse MobileNet 0.5-128 (the
    reference sparsity, v2_reference), v1 scaled to v2's PEs, storage and 8-bit precision on the dense
    one; both with the data on chip, as bench/eyeriss_v2.py compares them."""
    from hwaware.eyeriss.dataflows import v2_reference as ref
    from hwaware.eyeriss.dataflows.eyeriss_v2 import at_8_bits, scaled_v1

    mb = _mobilenet(*ref.MOBILENET)
    dense = Workload(tuple(L.replace(ifmap_zeros=0.0, weight_zeros=0.0, ofmap_zeros=0.0, ifmap_rlc=0.0) for L in mb.layers))
    v1, v2 = resolve_hardware("eyeriss_v1"), resolve_hardware("eyeriss_v2")
    r1 = Scorer(on_chip(scaled_v1(v1, v2))).score(at_8_bits(dense))
    r2 = Scorer(on_chip(v2)).score(ref.sparse_mobilenet(mb))
    return {"speed": r1.total.processing_latency_ms / r2.total.processing_latency_ms,
            "v1_fps": 1e3 / r1.total.processing_latency_ms, "v2_fps": 1e3 / r2.total.processing_latency_ms,
            "eff": _onchip_J(r1) / _onchip_J(r2), "v1_inf_J": 1.0 / _onchip_J(r1), "v2_inf_J": 1.0 / _onchip_J(r2)}


def _onchip_J(rep) -> float:
    """On-chip energy per inference (batch 1): access energy x unit_pJ plus the clock term."""
    return rep.total.energy_onchip * rep.hardware.unit_pJ * 1e-12 + rep.total.clock_J


def test_published_v2_throughput(sparse_mobilenet_05_128):
    """v2 alone, against the published 1470.6 inferences/s. The model is an upper bound (every PE
    active; workload imbalance only from independently placed zeros — the paper's Sec. I-B bounds each
    pass by "the PE that has the most non-zero MACs", and the measured masks place zeros less evenly;
    no pipeline bubbles), so never slower than the chip; and never faster than the reference's own
    PE-cycles allow: one v2 PE's cycles on each layer (v2_reference), halved on the non-depthwise
    layers by perfect two-MAC SIMD, spread over all 192 PEs at 200 MHz (~2905 inferences/s). The
    model gives ~2407 (~2848 before the imbalance)."""
    from hwaware.eyeriss.dataflows import v2_reference as ref

    wl = _mobilenet(*ref.MOBILENET)
    lanes = [1 if L.groups > 1 else 2 for L in wl.layers]
    bound = 192 * 200e6 / sum(c / k for c, k in zip(ref.PE_CYCLES, lanes))
    assert PUB_V2_FPS <= sparse_mobilenet_05_128["v2_fps"] <= bound


def test_published_v1_throughput(sparse_mobilenet_05_128):
    """The scaled v1 on the dense MobileNet against the v1 implied by the published figures
    (1470.6 / 12.6 = 116.7 inferences/s): within a factor 1.5. The model gives ~160 (1.37x; 1.13x before
    issue 10's mapper rule M5 — v1's 1x1 and depthwise rules are still moving there)."""
    fps = sparse_mobilenet_05_128["v1_fps"]
    pub = PUB_V2_FPS / PUB_SPEEDUP
    assert pub / 1.5 <= fps <= pub * 1.5


def test_published_mobilenet_speedup(sparse_mobilenet_05_128):
    """JETCAS 2019: 12.6x faster; tolerance a factor 1.5. The model gives ~15.0x (~17.8x before the
    workload imbalance), inside the tolerance partly because the per-chip errors point the same way:
    the v2 model is ~1.64x the chip (an upper bound, test above) and the scaled-v1 model ~1.37x the
    implied v1 (issue 10's v1 model). The per-chip tests above are the real checks."""
    assert PUB_SPEEDUP / 1.5 <= sparse_mobilenet_05_128["speed"] <= PUB_SPEEDUP * 1.5


def test_published_mobilenet_energy(sparse_mobilenet_05_128):
    """Each chip's energy per inference within a factor 1.5 of the published (v2: 2560.3 inferences/J;
    v1: 2560.3 / 2.5 = 1024 implied). Both use v1's AlexNet calibration (per-access unit and the clock
    rule of hwaware.eyeriss.clock, v2's clock twice v1's per PE for twice the logic area); nothing is
    fitted on v2. The model gives ~2304 (0.90x) and ~835 (0.82x). Before the clock term v2 gave ~1700
    and the tolerance had been widened to 2; it is back at 1.5."""
    r = sparse_mobilenet_05_128
    assert PUB_V2_INF_J / 1.5 <= r["v2_inf_J"] <= PUB_V2_INF_J * 1.5
    assert PUB_V2_INF_J / PUB_EFF / 1.5 <= r["v1_inf_J"] <= PUB_V2_INF_J / PUB_EFF * 1.5


def test_published_mobilenet_efficiency_ratio(sparse_mobilenet_05_128):
    """JETCAS 2019: 2.5x more energy-efficient; tolerance a factor 1.5. The paper credits the gain to
    higher PE utilization cutting the share of static power such as the clock network (Sec. V-A); with
    the clock rule (hwaware.eyeriss.clock: 45% of v1's AlexNet power charged per PE-cycle, JSSC 2017
    Sec. VI-A) the model gives ~2.76x; without it ~0.97x (the access-count model alone finds both
    chips about equally efficient at 8 bits). The model's v2 runs 1.64x faster than the chip, so its
    clock energy is low: the ratio is high for that reason too."""
    assert PUB_EFF / 1.5 <= sparse_mobilenet_05_128["eff"] <= PUB_EFF * 1.5


# Sze et al. 2020 slides (JETCAS 2019 Fig. 14): speed-up of v2 over v1 on AlexNet at 256 / 1024 PEs
PUB_ALEXNET_BY_PES = (17.9, 71.5)


def _alexnet_by_pes(pes_v1, pes_v2):
    """Dense AlexNet, batch 1, data on chip, both chips grown by the paper's rule (:func:`grown`:
    v2 in 4 x 4-PE clusters at 1 MAC per PE per cycle, v1 square): inferences/s per PE count."""
    import sys
    from pathlib import Path

    import torch

    from hwaware.profiler import profile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from alexnet import AlexNet

    wl = profile(AlexNet().eval(), torch.randn(1, 3, 227, 227, generator=torch.Generator().manual_seed(0)))
    wl = Workload(tuple(L.replace(ifmap_zeros=0.0, weight_zeros=0.0, ofmap_zeros=0.0, ifmap_rlc=0.0) for L in wl.layers))
    fps = {}
    for name, counts in (("eyeriss_v1", pes_v1), ("eyeriss_v2", pes_v2)):
        for pes in counts:
            t = Scorer(on_chip(grown(resolve_hardware(name), pes))).score(wl).total.processing_latency_ms
            fps[name, pes] = 1e3 / t
    return fps


@pytest.mark.slow
def test_scaling_with_pe_count_alexnet():
    """JETCAS 2019 Sec. III-D on AlexNet: "the performance of Eyeriss v2 scales linearly from 256 to
    1024 PEs, and achieves more than 85% of the linearly scaled performance at 16384 PEs", while "the
    performance of Eyeriss v1 hardly improves when scaled up" (we take: less than 2x from 256 to 1024
    PEs; the model gives ~1.2x); and the published speed-up's growth from 256 to 1024 PEs, 71.5 / 17.9
    = 3.99, within 30% (the model gives ~3.45). The level of the speed-up is in the test below."""
    fps = _alexnet_by_pes((256, 1024), (256, 1024, 16384))
    v2 = [fps["eyeriss_v2", p] for p in (256, 1024, 16384)]
    assert v2[1] / v2[0] == pytest.approx(4.0, rel=0.10)
    assert v2[2] / v2[0] >= 0.85 * 64
    assert fps["eyeriss_v1", 1024] / fps["eyeriss_v1", 256] < 2.0
    ups = [fps["eyeriss_v2", p] / fps["eyeriss_v1", p] for p in (256, 1024)]
    assert ups[1] / ups[0] == pytest.approx(PUB_ALEXNET_BY_PES[1] / PUB_ALEXNET_BY_PES[0], rel=0.30), ups


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the model's v2/v1 speed-up on AlexNet at 256 PEs is ~8.0x against 17.9x: "
                   "v2 at 1 MAC per PE scales as the paper says, so the gap is v1's level: 17.9x implies a v1 of at "
                   "least ~253 ms per inference (ours ~120 ms), yet the same paper's ratios (Sec. I-C: 225.1x) put its "
                   "scaled v1 with 192 PEs at 153 ms: Fig. 14's v1 is a slower configuration the text does not "
                   "describe (x1.65 or more), on top of the model's scaled v1 being 1.76x faster than 153 ms (the 8-bit "
                   "NoC width, Table V an image); docs/dataflows.md, tests/test_eyeriss_v2_text.py")
def test_speedup_level_alexnet_256_pes():
    """The published 17.9x at 256 PEs, tolerance a factor 2."""
    fps = _alexnet_by_pes((256,), (256,))
    up = fps["eyeriss_v2", 256] / fps["eyeriss_v1", 256]
    assert PUB_ALEXNET_BY_PES[0] / 2 <= up <= PUB_ALEXNET_BY_PES[0] * 2


def test_sparse_imbalance_slows_sparse_1x1_layers_only():
    """The model's workload imbalance (JETCAS Sec. I-B, independent zeros): a sparse 1x1 layer gets a
    factor above 1 (the busiest PE of a pass has more non-zero work than the average), a dense one
    exactly 1 (the flexible NoC tiles it evenly), and so do layers it does not cover (3x3, depthwise)."""
    from hwaware.eyeriss.dataflows.eyeriss_v2 import sparse_imbalance
    from hwaware.workload import Layer

    mp = {"p": 16, "q": 4, "r": 4, "t": 2, "e": 8}
    pw = Layer(name="pw", N=1, M=128, C=64, H=16, W=16, R=1, S=1)
    assert sparse_imbalance(pw, mp, 2) == 1.0
    sparse = pw.replace(ifmap_zeros=0.4, weight_zeros=0.5)
    assert sparse_imbalance(sparse, mp, 2) > 1.05
    assert sparse_imbalance(sparse, mp, 2) == sparse_imbalance(sparse, mp, 2)  # fixed seed
    conv3 = Layer(name="c", N=1, M=128, C=64, H=18, W=18, R=3, S=3, ifmap_zeros=0.4, weight_zeros=0.5)
    dw = Layer(name="dw", N=1, M=64, C=64, H=18, W=18, R=3, S=3, groups=64, ifmap_zeros=0.4)
    assert sparse_imbalance(conv3, mp, 2) == 1.0 and sparse_imbalance(dw, mp, 1) == 1.0
