"""Issue 17's compression results against their targets (slow: each trains or prunes for minutes).

The benches measure; these tests run them with the measured settings and assert the issue's
thresholds. Where a target is not met the test is a strict xfail whose reason states the value
measured: it turns red the day the target is reached, so the xfail is then removed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _json(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def test_vgg_small_energy_is_feature_map_traffic():
    """The pruning study's network is where the paper's effect lives: at the chip's batch of 4
    its Eyeriss energy is mostly ifmap and psum accesses, while most weights sit in the layers with
    the smallest feature maps (conv5, fc6, fc7). Random weights: the split hardly depends on them."""
    from hwaware.eyeriss import Scorer
    from hwaware.measure import measure, module_energy
    from hwaware.modelref import load_model

    torch.manual_seed(0)
    model = load_model(str(ROOT / "models" / "vgg_small.py")).eval()
    m = measure(model, torch.randn(4, 3, 32, 32), scorer=Scorer("eyeriss_v1"), batch=4)
    t = m.energy_by_type
    assert (t["ifmap"] + t["psum"]) / m.energy >= 0.6, t
    assert t["filter"] / m.energy <= 0.3, t
    sizes = {n: mod.weight.numel() for n, mod in model.named_modules() if hasattr(mod, "weight") and mod.weight.dim() > 1}
    late = sizes["conv5"] + sizes["fc6"] + sizes["fc7"]
    assert late / sum(sizes.values()) >= 0.5
    energy = module_energy(m.layer_energy)
    assert (energy["conv5"] + energy["fc6"] + energy["fc7"]) / m.energy <= 0.25


# Settings of the measured study (bench/prune_compare.py, docs/pruning.md "Where the paper's effect
# lives"): vgg_small trained once and cached, 1000 validation images, 400 fine-tuning steps per run,
# every run kept within 1 point of validation top-1, one thread. The study ran each arm in its own
# process; here the arms share one process (and its training-data order), so the numbers differ a
# little from the study's.
_STUDY = ["--val", "1000", "--budget", "400", "--curve-drop", "1.0", "--threads", "1"]
_ARMS = "magnitude,energy,structured,l1-filter"


@pytest.fixture(scope="module")
def pruning_study(tmp_path_factory):
    """The four arms of the study, run once for the pruning tests below (tens of minutes)."""
    out = tmp_path_factory.mktemp("prune") / "study.json"
    assert _bench("prune_compare").main(["--methods", _ARMS, *_STUDY, "--json", str(out)]) == 0
    return _json(out)


def _at(study: dict, arm: str) -> dict:
    return study["runs"][arm]["at_max_drop"]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="measured 1.02x (energy-aware 0.918 vs magnitude 0.940 of the energy at <= 1 point, 400 "
                          "fine-tuning steps each): a zero weight saves its MAC and weight accesses, not the "
                          "ifmap/psum traffic that is 71% of vgg_small's energy; target 1.5x, paper 1.74x")
def test_energy_aware_pruning_saves_1_5x_more_than_magnitude(pruning_study):
    gain = _at(pruning_study, "magnitude")["energy_ratio"] / _at(pruning_study, "energy")["energy_ratio"]
    assert gain >= 1.5, gain


@pytest.mark.slow
def test_channel_level_energy_aware_pruning_cuts_energy_and_latency_within_1_point(pruning_study):
    """Zero weights save energy but never cycles on Eyeriss; removing channels saves both. The
    lowest-energy state within 1 point of validation top-1 (measured in this test's run: energy 0.561,
    latency 0.609, 1.0 point below on validation, 2.25 on the test split; the per-process study:
    0.439, 0.525)."""
    at = _at(pruning_study, "structured")
    assert 100 * (pruning_study["baseline_val"] - at["val_accuracy"]) <= 1.0 + 1e-9
    assert at["energy_ratio"] <= 0.85
    assert at["latency_ratio"] <= 0.9


@pytest.mark.slow
def test_channel_level_energy_aware_saves_1_5x_more_than_weight_magnitude(pruning_study):
    """Against the paper's baseline, weight-level magnitude pruning (Han et al.), at equal accuracy
    (<= 1 point) and equal fine-tuning: ratio of the energy reductions (the paper's 1.74x measure;
    measured 1.68x in this test's run: 0.940 / 0.561; the per-process study: 2.13x)."""
    gain = _at(pruning_study, "magnitude")["energy_ratio"] / _at(pruning_study, "structured")["energy_ratio"]
    assert gain >= 1.5, gain


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="measured 1.43x in this test's run (structured 0.561 vs l1-filter 0.801 of the energy at "
                          "<= 1 point); the per-process study gave 1.89x (0.439 vs 0.830): the spread between runs "
                          "(training-data order) is larger than the margin over the 1.5x target")
def test_channel_level_energy_aware_saves_1_5x_more_than_l1_filter_pruning(pruning_study):
    """Against channel-level magnitude pruning (filter L1 norm, Li et al. 2017), same measure."""
    gain = _at(pruning_study, "l1-filter")["energy_ratio"] / _at(pruning_study, "structured")["energy_ratio"]
    assert gain >= 1.5, gain


# bench/quantize_qat.py as measured (issue 17 item 1), one run per network: the uniform arm gives the
# energy floor, the search the mixed-precision point; asserted by the tests below.
_QAT = ["--threads", "2"]


@pytest.fixture(scope="module", params=["small_cnn", "resnet18"])
def qat_study(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("qat") / "q.json"
    assert _bench("quantize_qat").main([*_QAT, "--models", request.param, "--json", str(out)]) == 0
    return request.param, _json(out)[request.param]


@pytest.mark.slow
def test_qat_fake_quant_is_what_the_integer_backend_computes(qat_study, request):
    """The search accepts trials on the fake-quantized accuracy, so that must be the chip's: every
    arm's fine-tuned model, converted to the integer backend with the formats it trained with, picks
    the fake-quant model's class on >= 99% of the validation images (the small CNN: every image, bit
    for bit; ResNet-18's residual adds round at 16 bits, which the fake quantization does not model),
    and the searched widths' integer model keeps max_drop."""
    name, q = qat_study
    if name == "resnet18":
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
            "not measured: the builtin:shapes ResNet-18 QAT arm has not run; its 5-epoch training (315 Adam steps) ran "
            "at 3-16 s per step on the shared 2-core machine in session 6 and was stopped to leave the CPU to "
            "the small CNN's arms")))
    res = q["result"]
    want = 1.0 if name == "small_cnn" else 0.99
    assert res["fake_quant_agreement"] >= want
    assert 100 * (res["float_accuracy"] - res["accuracy"]) <= res["max_drop"] + 1e-9
    for arm in q["arms"].values():
        assert arm["agreement"] >= want, arm


@pytest.mark.slow
def test_qat_bit_width_search_beats_uniform_8_bits_by_1_5x(qat_study, request):
    """Issue 17's target: >= 1.5x less Eyeriss energy than uniform 8 bits with the integer model's
    test top-1 <= 1 point below float (HAQ, CVPR 2019: 1.9x on BitFusion)."""
    name, q = qat_study
    request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=_QAT_SHORT[name]))
    assert q["gain_vs_8"] >= 1.5, q["gain_vs_8"]
    assert 100 * (q["test_float"] - q["test_searched"]) <= 1.0


_QAT_SHORT = {
    "small_cnn": "not met so far: with joint widths (session 5) bench/quantize_qat.py measured the searched widths "
                 "(conv4 4, conv3 5, conv2 4, conv1 3, fc 5) at 1.46x less energy than 8 bits, +0.2 points on 500 val "
                 "images but 3.3 points below float on the 1000 test images; uniform 4 bits (clipped formats, 100 QAT "
                 "steps) 1.49x at 0.6 test points. The bench's defaults since session 6 (separate weight/input "
                 "widths, 100-step all-layers trials, 1000 val images, 100 final steps) were not run to the end on the "
                 "loaded machine; what ran: on all 1000 val images (float 92.8%) uniform 4 bits after 100 QAT steps "
                 "from 8 bits is 1.9 points below float (rejected), and uniform weights 3 / inputs 4 bits (1.63x by "
                 "the model) 100 steps reaches 88.7% fake-quant val, 4.1 points below",
    "resnet18": "not measured: the builtin:shapes ResNet-18 QAT arm has not run (its training alone is > 1 h on the "
                "shared 2-core machine; see the agreement test's reason)",
}
