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
# every run kept within 1 point of validation top-1, one thread. The channel-level claims are
# asserted at every one of three fine-tuning data orders (--seed; each arm gets a fresh loader, so
# arms in one process see the order a process of their own would); the weight-level arm and the
# no-restoration ablation run at the first seed only (the weight-level arm alone takes as long as
# the three others together).
_STUDY = ["--val", "1000", "--budget", "400", "--curve-drop", "1.0", "--threads", "1"]
_SEEDS = (1, 2, 3)
_ARMS = "magnitude,structured,l1-filter,structured-latency"
_FIRST_SEED_ARMS = "energy,structured-norestore"


@pytest.fixture(scope="module")
def pruning_seeds(tmp_path_factory):
    """{seed: study JSON} of the three channel-level arms at each seed, the first seed with the
    weight-level arm and the ablation too; merged by the bench (its --merge report adds each run's
    ``at_max_drop`` and gains). About an hour on 2 idle cores."""
    bench = _bench("prune_compare")
    folder = tmp_path_factory.mktemp("prune")
    files = []
    for seed in _SEEDS:
        arms = _ARMS + ("," + _FIRST_SEED_ARMS if seed == _SEEDS[0] else "")
        files.append(folder / f"seed{seed}.json")
        assert bench.main(["--methods", arms, "--seed", str(seed), *_STUDY, "--json", str(files[-1])]) == 0
    return {seed: _json(f) for seed, f in zip(_SEEDS, files)}


def _at(study: dict, arm: str) -> dict:
    return study["runs"][arm]["at_max_drop"]


def _gains(studies: dict, arm: str, baseline: str) -> dict:
    """{seed: ratio of energy reductions of ``arm`` over ``baseline`` at <= 1 point}, each seed's own."""
    return {s: _at(st, baseline)["energy_ratio"] / _at(st, arm)["energy_ratio"] for s, st in studies.items()}


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="measured 0.99x at seed 1 (energy-aware 0.918 vs magnitude 0.912 of the energy at "
                          "<= 1 point, 400 fine-tuning steps each; 1.01x and 1.02x in two earlier runs): a zero "
                          "weight saves its MAC and weight accesses, not the ifmap/psum traffic that is 71% of "
                          "vgg_small's energy; target 1.5x, paper 1.74x")
def test_energy_aware_pruning_saves_1_5x_more_than_magnitude(pruning_seeds):
    first = pruning_seeds[_SEEDS[0]]
    gain = _at(first, "magnitude")["energy_ratio"] / _at(first, "energy")["energy_ratio"]
    assert gain >= 1.5, gain


@pytest.mark.slow
def test_channel_level_energy_aware_pruning_cuts_energy_within_1_point(pruning_seeds):
    """At every seed, the lowest-energy state within 1 point of validation top-1 has at most 0.85 of
    the energy (measured: seed 1 0.442, seed 2 0.633, seed 3 0.580)."""
    for seed, study in pruning_seeds.items():
        at = _at(study, "structured")
        assert 100 * (study["baseline_val"] - at["val_accuracy"]) <= 1.0 + 1e-9, seed
        assert at["energy_ratio"] <= 0.85, (seed, at["energy_ratio"])


@pytest.mark.slow
def test_channel_level_energy_aware_pruning_cuts_latency_and_energy_within_1_point(pruning_seeds):
    """Zero weights save energy but never cycles on Eyeriss; removing channels can save both. The
    channel-level arm with the latency check in acceptance (``max_latency=1.0``), at every seed: the
    lowest-energy state within 1 point has at most 0.9 of the latency and still 1.5x the weight-magnitude
    energy reduction (measured: latency 0.541 / 0.637 / 0.678, gains 2.06x / 1.63x / 1.55x at seeds
    1 / 2 / 3; without the check seed 2 ended at 2.228x the latency, conv4 64 -> 45 -> 31 channels)."""
    for seed, study in pruning_seeds.items():
        at = _at(study, "structured-latency")
        assert 100 * (study["baseline_val"] - at["val_accuracy"]) <= 1.0 + 1e-9, seed
        assert at["latency_ratio"] <= 0.9, (seed, at["latency_ratio"])
    gains = _gains(pruning_seeds, "structured-latency", "magnitude")
    assert min(gains.values()) >= 1.5, gains


@pytest.mark.slow
def test_channel_level_energy_aware_saves_1_5x_more_than_weight_magnitude(pruning_seeds):
    """Against the paper's baseline, weight-level magnitude pruning (Han et al.), at equal accuracy
    (<= 1 point) and equal fine-tuning, at every seed: ratio of the energy reductions (the paper's
    1.74x measure; measured: seed 1 2.06x (0.912 / 0.442), seed 2 1.51x (0.954 / 0.633), seed 3 1.55x (0.901 /
    0.580))."""
    gains = _gains(pruning_seeds, "structured", "magnitude")
    assert min(gains.values()) >= 1.5, gains


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="measured 1.90x at seed 1 (l1-filter 0.842 / structured 0.442 of the energy at <= 1 "
                          "point) and 1.61x at seed 3 (0.932 / 0.580) but 1.26x at seed 2 (0.797 / 0.633): the "
                          "margin over channel-level magnitude pruning does not hold across training-data orders")
def test_channel_level_energy_aware_saves_1_5x_more_than_l1_filter_pruning(pruning_seeds):
    """Against channel-level magnitude pruning (filter L1 norm, Li et al. 2017), same measure, at
    every seed."""
    gains = _gains(pruning_seeds, "structured", "l1-filter")
    assert min(gains.values()) >= 1.5, gains


@pytest.mark.slow
def test_least_squares_refit_is_what_makes_channel_removal_cheap(pruning_seeds):
    """The ablation: the same channel-level loop without the refit of the consumers reaches less
    within 1 point (first seed; measured: structured 0.442, without the refit 0.802)."""
    first = pruning_seeds[_SEEDS[0]]
    assert _at(first, "structured")["energy_ratio"] < _at(first, "structured-norestore")["energy_ratio"]


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
            "not measured: the builtin:shapes ResNet-18 QAT arm has not run (session 6: its training ran at 3-16 s "
            "per step on the shared machine and was stopped; session 7 trained it, 10 epochs in 487 s on 2 idle "
            "cores, for the agreement test; session 8 ran two arms, fake-quant/integer agreement 100% in both, not "
            "the search, which takes hours on 2 cores; session 9: the w4/a4u arm agrees on 99.95% of 2000 images)")))
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
    if name in _QAT_SHORT:
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=_QAT_SHORT[name]))
    assert q["gain_vs_8"] >= 1.5, q["gain_vs_8"]
    assert 100 * (q["test_float"] - q["test_searched"]) <= 1.0


# measured short of the target (the small CNN meets it since session 9: unsigned ReLU'd inputs, a 400-step
# descent and 5000 validation images, bench/quantize_qat.py: 1.52x at +0.28 test points)
_QAT_SHORT = {
    "resnet18": "not measured end to end: with the bench's defaults (5000 val images, 400-step descent, 42 per-layer "
                "moves) the search is estimated at 2+ hours on 2 idle cores (session 11: ~1.1 s per fine-tuning step "
                "at 4 bits, more at 8 where the exact per-product rounding takes extra convolutions; a fake-quant "
                "evaluation of 500 images 4.6 s, 2x float; the per-layer bias correction that took 58 s of a trial "
                "is now one pass, 7 s). Session 11 started it on 2000 val images: the all-layers 8-bit trial kept "
                "91.85% val (0.80 below float) after 400 steps and took 39 min on a shared machine; stopped. "
                "Session 13, after the ResNet-18 recipe moved to 40000 images / 4 epochs (float 98.75% val, "
                "98.5% test on 2000 / 2000): the uniform 4 (inputs 4u) arm, 1.70x less energy, fell to 77.3% "
                "integer val / 76.25% test after 400 QAT steps (881 s): its folded weights have heavier tails "
                "(max/RMS up to 31 vs 23): one 4-bit format per tensor clips them or zeroes most others. "
                "Earlier recipe (8000 images, 10 epochs): session 9 arm (2000 val / "
                "2000 test, float val 93.55%, test 93.60%): weights 4 / inputs 4 bits with unsigned ReLU'd inputs, "
                "1.70x less energy than 8 bits, after 100 QAT steps integer val 91.60% (1.9 points), test 92.10% "
                "(1.5 points), fake-quant agreement 99.95% -- with signed inputs uniform 4 bits had collapsed to "
                "chance (session 8: 10% after 400 steps); weights 4 / inputs 8, 1.60x: test 0.0 points (session 8, "
                "100 steps, 1000 test images)",
}
