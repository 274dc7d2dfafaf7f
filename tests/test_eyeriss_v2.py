"""Eyeriss v2 (JETCAS 2019): relation tests (sparsity speeds v2 up and never v1; the flexible NoC
keeps depthwise layers busy), the compressed-format rules, and the published MobileNet ratios."""

from __future__ import annotations

import pytest

from hwaware.errors import HwawareError
from hwaware.eyeriss import Scorer, resolve_hardware
from hwaware.eyeriss.dataflows.eyeriss_v2 import csc_ratio
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
    assert v1.score(sparse).total.processing_latency_ms >= v1.score(dense).total.processing_latency_ms * (1 - 1e-9)


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


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="since issue 10's v1 mapping rules (vertical set replication, exact pass "
                   "tiling, fill floor) v1 runs MobileNet's 1x1 layers psum-bound: 142 ms instead of 58 ms, speed-up "
                   "~36x vs the published 12.6x; see /work/notes/issue-10.md")
def test_published_mobilenet_ratios():
    """JETCAS 2019: sparse MobileNet at batch 1 is 12.6x faster and 2.5x more energy-efficient on v2.
    Our sparse MobileNet is an assumption (50% zero weights and activations; the pruned model is not
    available) and our v1 runs 16-bit. Tolerances: speed-up within a factor 1.5 of 12.6x (the model
    gives ~18x); energy efficiency only in direction (> 1x; the model gives ~1.2x, see
    docs/dataflows.md for why it is below 2.5x)."""
    import sys
    from pathlib import Path

    import torch

    from hwaware.profiler import profile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from mobilenet_v1 import mobilenet_v1

    wl = profile(mobilenet_v1().eval(), torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    wl = Workload(tuple(L.replace(ifmap_zeros=0.5 if i else 0.0, weight_zeros=0.5) for i, L in enumerate(wl.layers)))
    r1, r2 = Scorer("eyeriss_v1").score(wl), Scorer("eyeriss_v2").score(wl)
    speed = r1.total.processing_latency_ms / r2.total.processing_latency_ms
    eff = (r1.total.energy_onchip * r1.hardware.unit_pJ) / (r2.total.energy_onchip * r2.hardware.unit_pJ)
    assert 12.6 / 1.5 <= speed <= 12.6 * 1.5
    assert eff > 1.0
