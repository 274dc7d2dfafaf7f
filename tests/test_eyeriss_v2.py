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

    assert simd_lanes(SLICE[1]) == 1 and simd_lanes(SLICE[2]) == 2
    dw = Scorer("eyeriss_v2").score(Workload((SLICE[1],))).layers[0]
    cycles = dw.processing_latency_ms * 1e-3 * 200e6
    assert cycles >= SLICE[1].macs / dw.active_pes * (1 - 1e-9)


def test_depthwise_gains_nothing_from_zeros_and_1x1_skips_both():
    """The per-PE rule of :func:`pe_cycles` (after the reference cycles of one v2 PE): one cycle per
    MAC on a depthwise layer whatever its zeros, one per non-zero MAC on a layer whose iacts meet
    several output channels' weights."""
    from hwaware.eyeriss.dataflows.eyeriss_v2 import pe_cycles

    dw, pw = SLICE[1].replace(ifmap_zeros=0.5, weight_zeros=0.3), SLICE[2].replace(ifmap_zeros=0.5, weight_zeros=0.3)
    assert pe_cycles(dw) == SLICE[1].macs
    assert pe_cycles(pw) == pytest.approx(SLICE[2].macs * 0.5 * 0.7)


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
    """One v2 PE: the model's PE-cycles against the reference (Sparseloop artifact) on the layers whose
    sparsity was measured — within 10% on the eight 1x1 layers (the reference is 1.01-1.07x: pipeline
    overheads the model leaves out), and the depthwise and dense first layers between 0.8 and 1.0x of
    the model's dense MACs."""
    from hwaware.eyeriss.dataflows import v2_reference as ref
    from hwaware.eyeriss.dataflows.eyeriss_v2 import pe_cycles

    wl = ref.sparse_mobilenet(_mobilenet(*ref.MOBILENET))
    for n in ref.DENSITY:
        model, gt = pe_cycles(wl.layers[n - 1]), ref.PE_CYCLES[n - 1]
        if wl.layers[n - 1].groups > 1:
            assert 0.8 * model <= gt <= model, n
        else:
            assert gt == pytest.approx(model, rel=0.10), n
    for n, L in enumerate(wl.layers, 1):
        if L.groups > 1 or n == 1:
            assert 0.8 * pe_cycles(L) <= ref.PE_CYCLES[n - 1] <= pe_cycles(L), n


@pytest.fixture(scope="module")
def sparse_mobilenet_05_128():
    from hwaware.eyeriss.dataflows import v2_reference as ref

    # the reference sparse MobileNet (measured on nine layers, the rest as v2_reference documents)
    wl = ref.sparse_mobilenet(_mobilenet(*ref.MOBILENET))
    # data on chip for both (unbounded DRAM link), as bench/eyeriss_v2.py compares them
    v1, v2 = (on_chip(resolve_hardware(n)) for n in ("eyeriss_v1", "eyeriss_v2"))
    r1, r2 = Scorer(v1).score(wl), Scorer(v2).score(wl)
    return {"speed": r1.total.processing_latency_ms / r2.total.processing_latency_ms,
            "v2_fps": 1e3 / r2.total.processing_latency_ms,
            "eff": (r1.total.energy_onchip * r1.hardware.unit_pJ) / (r2.total.energy_onchip * r2.hardware.unit_pJ),
            "v2_inf_J": 1.0 / (r2.total.energy_onchip * r2.hardware.unit_pJ * 1e-12)}


def test_published_v2_throughput(sparse_mobilenet_05_128):
    """v2 alone, against the published 1470.6 inferences/s: the model is an upper bound (every PE
    active, full SIMD, no imbalance between SIMD lanes or PEs), so never slower than the chip, and
    within a factor 2 above it: the reference PE-cycles, with SIMD on the non-depthwise layers, fill
    51% of the chip's PEs at 1470.6 inferences/s (the model gives ~2350, 1.6x; bench/eyeriss_v2.py)."""
    assert PUB_V2_FPS <= sparse_mobilenet_05_128["v2_fps"] <= 2 * PUB_V2_FPS


def test_published_mobilenet_energy(sparse_mobilenet_05_128):
    """v2 energy per inference within a factor 2 of the published 2560.3 inferences/J (the model
    gives ~1700: v2's energy unit is v1's 2.85 pJ per 16-bit MAC scaled by bits, not calibrated on
    the v2 chip; the factor was 1.5 while the sparsity was an assumed 50%/50%, which the measured,
    denser reference sparsity replaced), and v2 more efficient than v1 (the model gives ~1.3x, the
    paper 2.5x: the access-count model has no time-proportional energy, which v1's ~20x longer runs
    pay; docs/dataflows.md)."""
    r = sparse_mobilenet_05_128
    assert PUB_V2_INF_J / 2 <= r["v2_inf_J"] <= PUB_V2_INF_J * 2
    assert r["eff"] > 1.0


@pytest.mark.xfail(strict=True, reason="the model's speed-up is ~32x on the reference sparse MobileNet 0.5-128: "
                   "the v2 model is ~1.6x faster than the chip's 1470.6 inf/s (the reference PE-cycles with SIMD "
                   "fill 51% of the chip's PEs; the model's latency keeps 77% busy: every PE active, no lane or PE "
                   "imbalance), the v1 model ~1.6x slower than the implied 116.7 inf/s (v1 model, issue 10: "
                   "depthwise layers at 1-5% of the PEs' peak, 1x1 layers on 32-160 PEs); docs/dataflows.md")
def test_published_mobilenet_speedup(sparse_mobilenet_05_128):
    """JETCAS 2019: 12.6x faster; tolerance a factor 1.5."""
    assert PUB_SPEEDUP / 1.5 <= sparse_mobilenet_05_128["speed"] <= PUB_SPEEDUP * 1.5


# Sze et al. 2020 slides: speed-up of v2 over v1 on AlexNet at 256 / 1024 PEs
PUB_ALEXNET_BY_PES = (17.9, 71.5)


@pytest.mark.slow
def test_speedup_by_pe_count_alexnet():
    """The published table on AlexNet, dense, batch 1, data on chip, both chips grown by
    :func:`grown` (the table's own rule is not in our material). Tolerances: the speed-up at 256 PEs
    within a factor 2 of 17.9x (the model gives 13.2x) and its growth from 256 to 1024 PEs within 30%
    of the published 71.5 / 17.9 = 3.99 (the model gives 3.3-3.5). GoogLeNet and MobileNet are in
    bench/eyeriss_v2.py only: their v1 side rests on v1's 1x1 and depthwise mapping rules, which issue
    10 is still changing (its rule M8 roughly doubles their growth), so no tolerance would be honest."""
    import sys
    from pathlib import Path

    import torch

    from hwaware.profiler import profile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from alexnet import AlexNet

    wl = profile(AlexNet().eval(), torch.randn(1, 3, 227, 227, generator=torch.Generator().manual_seed(0)))
    wl = Workload(tuple(L.replace(ifmap_zeros=0.0, weight_zeros=0.0, ofmap_zeros=0.0) for L in wl.layers))
    ups = []
    for pes in (256, 1024):
        t = [Scorer(on_chip(grown(resolve_hardware(n), pes))).score(wl).total.processing_latency_ms
             for n in ("eyeriss_v1", "eyeriss_v2")]
        ups.append(t[0] / t[1])
    pub = PUB_ALEXNET_BY_PES
    assert pub[0] / 2 <= ups[0] <= pub[0] * 2, ups
    assert ups[1] / ups[0] == pytest.approx(pub[1] / pub[0], rel=0.30), ups
