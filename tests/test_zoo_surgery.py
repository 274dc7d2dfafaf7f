"""Structured surgery on timm and torchvision models (bench/zoo.py runs the whole zoo).

For each model: hwaware finds at least Torch-Pruning's channel groups, and shrinking every
prunable group at once equals the original with the removed channels zeroed, in float64. Fast tests
take a representative subset at 32x32 (BatchNormAct2d, squeeze-excitation, DropPath,
LayerNorm2d + layer-scale, ghost/cat, stochastic_depth); the rest of the zoo is marked slow.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")  # a dev extra (pyproject); CI installs it
pytest.importorskip("torch_pruning")

ROOT = Path(__file__).resolve().parents[1]


def _zoo():
    spec = importlib.util.spec_from_file_location("_bench_zoo", ROOT / "bench" / "zoo.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


zoo = _zoo()

FAST = ["timm:mobilenetv2_100", "timm:efficientnet_b0", "timm:convnext_atto"]
SLOW = [m for m in zoo.ZOO if m not in FAST]


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _check(spec: str, size: int) -> None:
    torch.manual_seed(0)
    model = zoo.build(spec).eval()
    x = torch.randn(1, 3, size, size)
    graph, sc = zoo.check_shrink(model, x)
    tp_groups = zoo.torch_pruning_groups(model, x)
    if isinstance(tp_groups, int):
        assert sc.prunable >= tp_groups, (spec, sc.prunable, tp_groups)
    assert sc.ok, (spec, sc.max_rel_error)
    assert sc.exact > 0
    for g in graph.groups:  # every group either prunable or blocked with a reason
        assert g.prunable or g.reason, g


@pytest.mark.parametrize("spec", FAST)
def test_zoo_surgery_fast(spec):
    _check(spec, 32)


@pytest.mark.slow
@pytest.mark.parametrize("spec", SLOW)
def test_zoo_surgery_slow(spec):
    _check(spec, 64)


def test_convolutional_classifier_is_no_group_on_either_side():
    """SqueezeNet's classifier is a 1x1 Conv2d whose outputs are the classes: Torch-Pruning is told to
    ignore it as it ignores a Linear head, and hwaware blocks it (before this, Torch-Pruning counted
    26 groups to hwaware's 25)."""
    torch.manual_seed(0)
    model = zoo.build("tv:squeezenet1_0").eval()
    x = torch.randn(1, 3, 32, 32)
    head = model.classifier[1]
    assert isinstance(head, torch.nn.Conv2d) and head.out_channels == zoo.NUM_CLASSES
    graph, sc = zoo.check_shrink(model, x)
    assert zoo.torch_pruning_groups(model, x) == sc.prunable == 25  # 8 Fire modules x 3 convs + the stem
    assert not any(g.prunable and "classifier.1" in g.producers for g in graph.groups)
    _check("tv:squeezenet1_0", 32)


def test_torch_pruning_is_given_a_time_limit(monkeypatch):
    """A reference count that does not come in time is reported, not waited for (Torch-Pruning's group
    search ran for more than 13 minutes on timm rexnet_100)."""
    import time

    import torch_pruning as tp

    with pytest.raises(TimeoutError), zoo.time_limit(1):
        time.sleep(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 10, 1))
    x = torch.randn(1, 3, 8, 8)
    assert zoo.torch_pruning_groups(model, x) == 1  # the 10-channel classifier conv is ignored
    build = tp.DependencyGraph.build_dependency

    def slow(self, *a, **k):
        time.sleep(3)
        return build(self, *a, **k)

    monkeypatch.setattr(tp.DependencyGraph, "build_dependency", slow)
    assert zoo.torch_pruning_groups(model, x, seconds=1) == "error (TimeoutError)"


def test_a_model_that_fails_is_reported_and_the_others_still_run(monkeypatch, tmp_path, capsys):
    """timm ghostnetv2_100 cannot run at 32x32 (its attention pools a 1x1 map): the bench says so for that
    model and goes on to the next instead of ending with a traceback."""
    import json

    calls = []

    def run_one(spec, size, **kw):
        calls.append(spec)
        raise RuntimeError(f"Given input size: (160x1x1). Output size is too small ({spec})")

    monkeypatch.setattr(zoo, "run_one", run_one)
    out = tmp_path / "zoo.json"
    assert zoo.main(["--models", "timm:a,tv:b", "--json", str(out)]) == 1
    assert calls == ["timm:a", "tv:b"]
    text = capsys.readouterr().out
    assert "timm:a: failed: RuntimeError at 32x32: Given input size" in text and "tv:b: failed" in text
    assert [r["model"] for r in json.loads(out.read_text())] == ["timm:a", "tv:b"]


def test_independent_mac_count_includes_matrix_products():
    """The bench's reference count (torch's FlopCounterMode) against a hand count: a 3x3 convolution and
    an attention-like product of its output with itself, which Conv/Linear hooks alone would miss;
    hwaware's modeled + unmodeled MACs equal it."""
    from hwaware.profiler import profile

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            t = self.conv(x).flatten(2)  # N x 4 x 36
            return t @ t.transpose(1, 2)  # N x 4 x 4

    x = torch.randn(2, 3, 8, 8)
    hand = 2 * (36 * 4 * 3 * 9 + 4 * 4 * 36)
    assert zoo.independent_macs(Attn().eval(), x) == hand
    wl = profile(Attn().eval(), x, progress=False)
    assert wl.macs + wl.unmodeled_macs == hand and wl.unmodeled_macs == 2 * 4 * 4 * 36
