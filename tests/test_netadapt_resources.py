"""NetAdapt resources: registry, Eyeriss wiring, MAC/weight counts, measured-latency tables."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from hwaware.errors import HwawareError
from hwaware.netadapt import Budget, ResourceContext, ResourceMeter, register_resource, resource_names
from hwaware.netadapt import resources as res_mod
from hwaware.netadapt.lut import LatencyLUT, device_key, grid_neighbours
from hwaware.workload import Layer, Workload


def tiny(c1: int = 16, c2: int = 32, c3: int = 32) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c3, 10),
    )


def tiny_macs(c1: int, c2: int, c3: int) -> int:
    """3x3 'same' convs at 32x32, 16x16, 8x8, then a 10-way FC (counted by hand)."""
    return 9 * 32 * 32 * 3 * c1 + 9 * 16 * 16 * c1 * c2 + 9 * 8 * 8 * c2 * c3 + c3 * 10


def tiny_weights(c1: int, c2: int, c3: int) -> int:
    return 9 * (3 * c1 + c1 * c2 + c2 * c3) + c3 * 10


def test_registry_lists_the_issue_resources() -> None:
    assert {"latency", "energy", "macs", "weights", "measured"} <= set(resource_names())
    with pytest.raises(HwawareError, match="did you mean 'energy'"):
        ResourceMeter(["enrgy"])


def test_macs_and_weights_per_image_match_hand_count() -> None:
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    meter = ResourceMeter(["macs", "weights"])  # batch 1: per image
    for chans in [(16, 32, 32), (5, 7, 3)]:
        values, wl = meter.measure_model(tiny(*chans), images)
        assert values["macs"] == tiny_macs(*chans)
        assert values["weights"] == tiny_weights(*chans)
        assert wl.layers[0].N == 4  # profiled on the whole batch, measured at batch 1


def test_eyeriss_resources_are_the_score_report_totals() -> None:
    from hwaware.eyeriss import score

    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    values, wl = ResourceMeter(["latency", "energy"]).measure_model(tiny(), images)
    report = score(wl, batch=1)
    assert values["latency"] == report.total.total_latency_ms
    assert values["energy"] == report.total.energy_total
    assert values["latency"] > 0 and values["energy"] > tiny_macs(16, 32, 32)  # at least one unit per MAC


def test_one_shared_scorer_whose_numbers_do_not_depend_on_history(monkeypatch) -> None:
    """The job shares one Scorer (unchanged layers are not remapped); resume and multi-process
    runs need its numbers to be a pure function of the workload, whatever was scored before."""
    import hwaware.eyeriss as eyeriss

    made = []

    class Counting(eyeriss.Scorer):
        def __init__(self, *a, **kw) -> None:  # noqa: ANN002, ANN003
            made.append(self)
            super().__init__(*a, **kw)

    monkeypatch.setattr(eyeriss, "Scorer", Counting)

    def wl(z: float) -> Workload:
        return Workload((Layer("a", N=1, M=24, C=16, H=16, W=16, R=3, S=3, padding=1, ifmap_zeros=z),))

    warm = ResourceContext()
    for z in (0.40004, 0.40012, 0.40004):
        warm.eyeriss(wl(z))
    assert len(made) == 1  # one Scorer for the whole job
    fresh = ResourceContext().eyeriss(wl(0.40012)).total
    assert warm.eyeriss(wl(0.40012)).total.energy_total == fresh.energy_total
    assert warm.eyeriss(wl(0.40012)).total.total_latency_ms == fresh.total_latency_ms


def test_registering_a_resource_makes_it_budgetable() -> None:
    try:
        @register_resource("layers_test", unit="", description="number of Conv/Linear layers")
        def _count(ctx: ResourceContext):  # noqa: ANN202
            return lambda wl: float(len(wl.layers))

        assert Budget.parse("layers_test=0.5").resource == "layers_test"
        values, _ = ResourceMeter(["layers_test"]).measure_model(tiny(), torch.randn(1, 3, 32, 32))
        assert values == {"layers_test": 4.0}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            register_resource("layers_test")(_count)
        assert any("registered twice" in str(w.message) for w in caught)
    finally:
        res_mod._REGISTRY.pop("layers_test", None)


# --- measured-latency look-up tables -----------------------------------------------------------

def bilinear_timer(calls: list[Layer]):  # noqa: ANN201
    """A fake stopwatch, bilinear in C and filters per group, so interpolation must be exact."""
    def timer(layer: Layer) -> float:
        calls.append(layer)
        if layer.kind == "depthwise":
            return 2.0 + 0.3 * layer.groups
        m = layer.M // layer.groups
        return 1.0 + 0.5 * layer.C + 0.25 * m + 0.125 * layer.C * m
    return timer


def test_grid_neighbours() -> None:
    assert grid_neighbours(13, 8) == (8, 16)
    assert grid_neighbours(16, 8) == (16, 16)
    assert grid_neighbours(5, 8) == (1, 8)
    assert grid_neighbours(1, 8) == (1, 1)
    assert grid_neighbours(7, 1) == (7, 7)


def test_lut_interpolates_between_timed_grid_points(tmp_path) -> None:
    calls: list[Layer] = []
    lut = LatencyLUT(tmp_path, step=8, timer=bilinear_timer(calls))
    conv = Layer("c", N=1, M=21, C=13, H=8, W=8, R=3, S=3, padding=1)
    assert lut.layer_latency(conv) == pytest.approx(1 + 0.5 * 13 + 0.25 * 21 + 0.125 * 13 * 21, rel=1e-12)
    assert sorted((c.C, c.M) for c in calls) == [(8, 16), (8, 24), (16, 16), (16, 24)]
    assert all((c.H, c.W, c.R, c.padding) == (8, 8, 3, 1) for c in calls)  # only channels vary
    lut.layer_latency(conv.replace(C=14, M=22))  # same cell: nothing new to time
    lut.layer_latency(conv.replace(C=16, M=24))  # a grid point: already timed
    assert len(calls) == 4
    grouped = Layer("g", N=1, M=42, C=13, H=8, W=8, R=3, S=3, padding=1, groups=2)
    assert lut.layer_latency(grouped) == pytest.approx(1 + 0.5 * 13 + 0.25 * 21 + 0.125 * 13 * 21, rel=1e-12)
    assert all(c.groups == 2 and c.M % 2 == 0 for c in calls[4:])
    dw = Layer("d", N=1, M=20, C=1, H=8, W=8, R=3, S=3, padding=1, groups=20)
    assert dw.kind == "depthwise"
    assert lut.layer_latency(dw) == pytest.approx(2.0 + 0.3 * 20, rel=1e-12)
    fc = Layer("f", N=1, M=10, C=37, H=1, W=1, R=1, S=1)
    assert lut.layer_latency(fc) == pytest.approx(1 + 0.5 * 37 + 0.25 * 10 + 0.125 * 370, rel=1e-12)


def test_lut_cache_is_reused_and_survives_corruption(tmp_path) -> None:
    calls: list[Layer] = []
    wl = Workload((Layer("c", N=1, M=21, C=13, H=8, W=8, R=3, S=3, padding=1),
                   Layer("f", N=1, M=10, C=21, H=1, W=1, R=1, S=1)))
    first = LatencyLUT(tmp_path, timer=bilinear_timer(calls)).network_latency(wl)
    n = len(calls)
    assert n > 0 and len(json.loads(next(tmp_path.glob("latency_*.json")).read_text())["entries"]) == n

    def no_timing(layer: Layer) -> float:
        raise AssertionError("a cached grid point was timed again")

    assert LatencyLUT(tmp_path, timer=no_timing).network_latency(wl) == first
    path = next(tmp_path.glob("latency_*.json"))
    path.write_text("{ not json")
    assert LatencyLUT(tmp_path, timer=bilinear_timer(calls)).network_latency(wl) == first
    assert len(calls) == 2 * n  # rebuilt once
    json.loads(path.read_text())  # and rewritten whole


def test_lut_file_is_keyed_by_device_and_dtype_and_times_for_real(tmp_path) -> None:
    lut = LatencyLUT(tmp_path, device="cpu", dtype="float32", warmup=1, repeats=3)
    assert lut.platform == device_key("cpu") and f"{torch.get_num_threads()}t" in lut.platform
    assert lut.path.name.endswith("_float32.json") and lut.path.name.startswith("latency_cpu-")
    other = LatencyLUT(tmp_path, device="cpu", dtype="float64", warmup=1, repeats=3)
    assert other.path != lut.path
    big = Layer("big", N=1, M=64, C=64, H=32, W=32, R=3, S=3, padding=1)
    small = big.replace(M=8, C=8)  # 64x fewer MACs
    t_big, t_small = lut.layer_latency(big), lut.layer_latency(small)
    assert 0 < t_small < t_big
    with pytest.raises(HwawareError, match="repeats"):
        LatencyLUT(tmp_path, repeats=0)


def test_measured_resource_uses_the_workdir_table(tmp_path) -> None:
    ctx = ResourceContext(lut_dir=tmp_path, lut_warmup=1, lut_repeats=3)
    values, _ = ResourceMeter(["measured", "macs"], context=ctx).measure_model(tiny(), torch.randn(2, 3, 32, 32))
    assert values["measured"] > 0
    saved = json.loads(next(tmp_path.glob("latency_*.json")).read_text())
    assert saved["platform"] == device_key("cpu") and len(saved["entries"]) >= 4
