"""Recipes: validation before any work (with file, line and key path), overrides, dry runs,
run directories that never overwrite, and a tiny end-to-end run of the shipped quickstart."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

import hwaware
from hwaware.cli import main
from hwaware.errors import HwawareError
from hwaware.recipes.run import make_run_dir
from hwaware.recipes.schema import RecipeError, load_recipe, parse_recipe, schema_markdown

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"

GOOD = """\
name: t
model: models/small_cnn.py
model_args: {width: 0.25}
data: builtin:shapes?n_train=128&n_val=64&n_test=64
batch_size: 32
profile_images: 8
stages:
  - train:
      epochs: 1
      lr: 0.05
  - score: {}
  - prune:
      method: energy
      target_energy: 0.5
  - report
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle`` (computed independently of the loader)."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def problems(path: Path, overrides=()) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides=overrides)
    return [str(p) for p in info.value.problems]


def test_good_recipe_fills_defaults_and_round_trips(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    assert [s.name for s in r.stages] == ["train", "score", "prune", "report"]
    assert r.stages[0].options["momentum"] == 0.9 and r.stages[0].options["epochs"] == 1.0
    assert r.stages[2].options["step"] == 0.3 and r.settings["hardware"] == "eyeriss_v1"
    # the resolved recipe is itself a valid recipe that resolves to the same thing
    again = load_recipe(write(tmp_path, r.to_yaml(), "resolved.yaml"))
    assert again.to_dict() == r.to_dict()


def test_typo_in_stage_option_names_file_line_and_key(tmp_path):
    text = GOOD.replace("target_energy: 0.5", "taget_energy: 0.5")
    p = write(tmp_path, text)
    probs = problems(p)
    assert len(probs) == 1
    n = line_of(text, "taget_energy")
    assert probs[0].startswith(f"{p}:{n}: stages[2].prune.taget_energy: unknown 'prune' option key "
                               "(did you mean 'target_energy'?)")
    # the CLI prints it as one line and exits 2 before any work (no run directory)
    rc = main(["run", str(p), "--runs-dir", str(tmp_path / "runs")])
    assert rc == 2 and not (tmp_path / "runs").exists()


def test_every_problem_is_reported(tmp_path, capsys):
    text = GOOD.replace("hardware", "x").replace("batch_size: 32", "batch_sise: 32") \
        .replace("epochs: 1", "epochs: two").replace("- score: {}", "- scroe: {}") \
        .replace("model: models/small_cnn.py", "model: models/no_such_model.py")
    p = write(tmp_path, text)
    probs = problems(p)
    expect = [
        (line_of(text, "model: models/no_such"), "model:", "no_such_model.py"),
        (line_of(text, "batch_sise"), "batch_sise: unknown recipe key (did you mean 'batch_size'?)", ""),
        (line_of(text, "epochs: two"), "stages[0].train.epochs: must be a number, got 'two'", ""),
        (line_of(text, "scroe"), "stages[1].scroe: unknown stage 'scroe' (did you mean 'score'?)", ""),
    ]
    assert len(probs) == len(expect), probs
    for (n, head, extra), got in zip(sorted(expect), sorted(probs, key=lambda s: int(s.split(":")[1]))):
        assert got.startswith(f"{p}:{n}: {head}"), got
        assert extra in got
    rc = main(["run", str(p)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 4 and all(e.startswith("hwaware run: error: ") for e in err)


@pytest.mark.parametrize("old,new,key,message", [
    ("target_energy: 0.5", "target_energy: 1.5", "stages[2].prune.target_energy", "target_energy is a fraction"),
    ("method: energy", "method: enrgy", "stages[2].prune.method", "unknown pruning method 'enrgy' (did you mean 'energy'?)"),
    ("lr: 0.05", "lr: -1", "stages[0].train.lr", "must be float in (0, inf)"),
    ("lr: 0.05", "lr: 0.05\n      prune_schedule: {method: energy, target: 0.99, max_layer_sparsity: 0.9}",
     "stages[0].train.prune_schedule", "target must be in (0, max_layer_sparsity=0.9]"),
    ("data: builtin:shapes?n_train=128&n_val=64&n_test=64", "data: cifar10:/no/such/dir", "data",
     "dataset path '/no/such/dir' does not exist"),
    ("name: t", "name: t\nhardware: my_chip.yaml", "hardware", "my_chip.yaml"),
    ("- report", "- report\n  - score", "stages[3]", "'report' must be the last stage"),
    ("batch_size: 32", "batch_size: 32\nbatch_size: 16", "batch_size", "duplicate key (first on line 5)"),
])
def test_impossible_and_malformed_values(tmp_path, old, new, key, message):
    text = GOOD.replace(old, new)
    assert text != GOOD
    probs = problems(write(tmp_path, text))
    assert len(probs) == 1, probs
    assert f": {key}: " in probs[0] and message in probs[0], probs[0]
    n = int(probs[0].split(":")[1])
    token = key.split(".")[-1].split("[")[0]
    want = {"stages[3]": "- report"}.get(key)
    # the line named is the one holding the key (or, for a stage, the stage's item)
    lines = text.splitlines()
    assert (want or token) in lines[n - 1] or (want is None and token in lines[n - 1]), (n, lines[n - 1])


def test_netadapt_budget_checked_before_work(tmp_path):
    text = GOOD.replace("  - report", "  - netadapt:\n      budgets: [latency=1.5]\n  - report")
    probs = problems(write(tmp_path, text))
    assert len(probs) == 1 and "stages[3].netadapt.budgets: budget for 'latency': a relative budget" in probs[0]
    assert f":{line_of(text, 'budgets:')}:" in probs[0]


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = GOOD.replace("  - score: {}", "  - score: {table: [}")
    probs = problems(write(tmp_path, text))
    assert len(probs) == 1 and "not valid YAML" in probs[0]
    n = int(probs[0].split(":")[1])
    assert abs(n - line_of(text, "table: [")) <= 1


def test_overrides_are_type_checked_and_recorded(tmp_path):
    p = write(tmp_path, GOOD)
    r = load_recipe(p, overrides=["prune.target_energy=0.4", "train.epochs=2", "batch=4", "stages.1.table=false"])
    assert r.stages[2].options["target_energy"] == 0.4 and r.stages[0].options["epochs"] == 2.0
    assert r.settings["batch"] == 4 and r.stages[1].options["table"] is False
    assert "# --set prune.target_energy=0.4" in r.to_yaml()
    assert problems(p, ["train.epochs=abc"]) == ["--set train.epochs=abc: stages[0].train.epochs: must be a number, got 'abc'"]
    assert "did you mean 'target_energy'" in problems(p, ["prune.target_enrgy=0.3"])[0]
    assert "unknown key 'hardwre' (did you mean 'hardware'?)" in problems(p, ["hardwre=x"])[0]
    assert "unknown stage 'prun' (did you mean 'prune'?)" in problems(p, ["prun.step=0.1"])[0]
    assert "the recipe has 0 'netadapt' stage(s)" in problems(p, ["netadapt.delta=0.1"])[0]
    assert "target_energy is a fraction" in problems(p, ["prune.target_energy=0"])[0]


def test_dry_run_predicts_the_input_model(tmp_path, capsys):
    p = write(tmp_path, GOOD)
    rc = main(["run", str(p), "--dry-run", "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0 and not (tmp_path / "runs").exists()
    energy = float(re.search(r"energy\s+([0-9.e+]+) x one 16-bit MAC", out).group(1))
    # independent: the same model (same seed), the first 8 validation images, scored at batch 1
    torch.manual_seed(0)
    model = hwaware.load_model("models/small_cnn.py", width=0.25)
    from hwaware.data import make_loader

    images = next(iter(make_loader("builtin:shapes?n_train=128&n_val=64&n_test=64", "val", batch_size=8,
                                   shuffle=False)))[0]
    ref = hwaware.score(hwaware.profile(model.eval(), images, progress=False), batch=1)
    assert energy == pytest.approx(ref.total.energy_total, rel=1e-3)
    for n, stage in enumerate(["train", "score", "prune", "report"], start=1):
        assert re.search(rf"^\s+{n}\. {stage}: ", out, re.MULTILINE)
    assert "energy pruning until energy <= 0.5 of the start" in out


def test_run_dirs_never_overwrite(tmp_path):
    now = dt.datetime(2025, 1, 2, 3, 4, 5)
    a = make_run_dir("x", runs_dir=tmp_path, now=now)
    b = make_run_dir("x", runs_dir=tmp_path, now=now)
    c = make_run_dir("x", runs_dir=tmp_path, now=now)
    assert [a.name, b.name, c.name] == ["x-20250102-030405", "x-20250102-030405-1", "x-20250102-030405-2"]
    with pytest.raises(HwawareError, match="already exists"):
        make_run_dir("x", out=a)


def test_shipped_recipes_found_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_recipe("quickstart").source == str(RECIPES / "quickstart.yaml")
    assert load_recipe("recipes/quickstart.yaml").source == str(RECIPES / "quickstart.yaml")
    assert "did you mean 'quickstart'" in problems(Path("quikstart"))[0]


def test_shipped_recipes_validate(tmp_path):
    names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    assert {"quickstart", "alexnet_energy_aware", "mobilenet_netadapt_latency50"} <= set(names)
    (tmp_path / "imagenet").mkdir()
    for name in names:
        over = [f"data=imagefolder:{tmp_path / 'imagenet'}?size=227"] if name == "alexnet_energy_aware" else []
        r = load_recipe(RECIPES / f"{name}.yaml", overrides=over)
        assert r.name == name
    qs = load_recipe(RECIPES / "quickstart.yaml")
    assert qs.settings["data"].startswith("builtin:shapes") and qs.settings["model"] == "models/small_cnn.py"


def test_docs_list_every_option():
    doc = (ROOT / "docs" / "recipes.md").read_text()
    assert schema_markdown() in doc, "docs/recipes.md is out of date: paste hwaware.recipes.schema.schema_markdown()"


def test_python_api_parse_recipe():
    data = yaml.safe_load(GOOD)
    r = parse_recipe(data, overrides=["train.lr=0.1"])
    assert r.stages[0].options["lr"] == 0.1 and r.name == "t"
    with pytest.raises(RecipeError, match=r"<recipe>: missing required key 'model'"):
        parse_recipe({"stages": ["score"]})


TINY = [
    "data=builtin:shapes?n_train=192&n_val=64&n_test=64", "model_args={width: 0.25}", "batch_size=32",
    "profile_images=8", "threads=1", "train.epochs=1", "train.monitor_every=2", "score.table=false",
    "prune.max_steps=2", "prune.local_steps=1", "prune.global_steps=0", "prune.final_steps=2",
    "quantize.samples=32", "quantize.check_images=1",
]


def test_quickstart_tiny_end_to_end(tmp_path, capsys):
    from hwaware.modelref import load_model_file
    from hwaware.workload import Workload

    out = tmp_path / "run"
    rc = main(["run", str(RECIPES / "quickstart.yaml"), "--out", str(out), "--quiet", *[f"--set={s}" for s in TINY]])
    assert rc == 0
    assert "run directory:" in capsys.readouterr().out
    for name in ("recipe.yaml", "model.pt", "workload.json", "score.json", "input_workload.json", "input_score.json",
                 "summary.md", "run.json", "energy_breakdown.png", "energy_breakdown_baseline.png", "tradeoff.png"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((out / "tensorboard" / "1-train").glob("events.out.tfevents.*"))  # the plugin's logs
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "ok"
    from hwaware._io import job_status

    assert job_status(out)["status"] == "finished"  # status.json: written at start, finalized at the end
    assert [s["name"] for s in run["stages"]] == ["train", "score", "prune", "quantize", "export-vectors", "report"]
    q = run["stages"][3]["details"]
    # every op but the input is checked: 4 conv(+BN+ReLU), 3 max pools, the average pool, flatten, fc
    assert q["bit_exact"]["mismatched"] == [] and q["bit_exact"]["ops"] == 10 and q["bits"] == 16
    manifest = json.loads((out / "stages" / "5-export-vectors" / "vectors" / "manifest.json").read_text())
    assert [lay["name"] for lay in manifest["layers"]] == ["conv1", "conv2", "conv3", "conv4", "fc"]
    # the resolved recipe is valid and carries the overrides
    resolved = load_recipe(out / "recipe.yaml")
    assert resolved.settings["batch_size"] == 32 and resolved.stages[2].options["max_steps"] == 2
    # the saved final model scores to the saved score (independent profile + score of the file)
    model, meta = load_model_file(out / "model.pt")
    from hwaware.data import make_loader

    calib = next(iter(make_loader("builtin:shapes?n_train=192&n_val=64&n_test=64", "val", batch_size=8,
                                  shuffle=False)))[0]
    ref = hwaware.score(hwaware.profile(model.eval(), calib, progress=False), batch=1)
    saved = json.loads((out / "score.json").read_text())
    assert saved["total"]["energy_total"] == pytest.approx(ref.total.energy_total, rel=1e-9)
    assert meta["energy"] == pytest.approx(ref.total.energy_total, rel=1e-9)
    wl = Workload.load(out / "workload.json")
    assert [lay.name for lay in wl.layers] == ["conv1", "conv2", "conv3", "conv4", "fc"]
    summary = (out / "summary.md").read_text()
    for layer in ("conv1", "conv2", "conv3", "conv4", "fc"):
        assert re.search(rf"^\| {layer} \| ", summary, re.MULTILINE)
    assert "## Final model per layer" in summary and "![accuracy vs energy and latency](tradeoff.png)" in summary
    # the baseline is the trained model (after 1-train), not the untrained input
    assert run["baseline"] == "1-train"
    trained = next(t for t in run["timeline"] if t["label"] == "1-train")
    final = run["timeline"][-1]
    row = re.search(r"^\| energy \(x one 16-bit MAC, per batch of 1\) \| (.+?) \| (.+?) \| (.+?)× \| (.+?) \|$",
                    summary, re.MULTILINE)
    assert row, summary[:2000]
    assert float(row.group(3)) == pytest.approx(final["energy"] / trained["energy"], abs=6e-4)
    word = "(lower)" if final["energy"] < trained["energy"] else "(higher)"
    assert row.group(4).endswith(word)
    acc = re.search(r"^\| val accuracy \| ([0-9.]+) \| ([0-9.]+) \|\s*\| (.+?) \|$", summary, re.MULTILINE)
    assert acc and float(acc.group(1)) == pytest.approx(trained["accuracy"], abs=1e-4)
    change = 100 * (final["accuracy"] - trained["accuracy"])
    if round(change, 2) != 0:  # the word matches the sign
        assert acc.group(3) == f"{change:+.2f} points, {'a rise' if change > 0 else 'a drop'}"
    # stage times are measured (the report stage too) and add up to the total
    times = dict(re.findall(r"^\| (\S+) \| ([0-9.]+) \|", summary.split("## Stages")[1], re.MULTILINE))
    assert float(times["6-report"]) > 0.0
    parts = sum(float(v) for k, v in times.items() if k != "**total**")
    assert parts == pytest.approx(float(times["**total**"]), abs=0.1 * len(times))
    # every energy in the summary carries its unit and batch
    for line in summary.splitlines():
        if re.search(r"\benergy\b", line) and ("|" in line and "---" not in line) and line.startswith("| ") \
                and not line.startswith("| energy") and "energy" in line.split("|")[1]:
            assert "MAC" in line or "mJ" in line, line
    # training curves next to the plugin's energy curves in the train stage's TensorBoard run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(out / "tensorboard" / "1-train"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"train/loss", "train/accuracy", "train/lr", "energy/total", "latency/total_ms"} <= tags
    steps = [e.step for e in ea.Scalars("train/loss")]
    assert steps == list(range(1, len(steps) + 1))
    assert {e.step for e in ea.Scalars("energy/total")} <= {0, *steps}
    # the same --out again is refused: runs never overwrite
    rc = main(["run", str(RECIPES / "quickstart.yaml"), "--out", str(out), *[f"--set={s}" for s in TINY]])
    assert rc == 2


def test_bit_exact_check_catches_a_wrong_kernel(monkeypatch):
    from hwaware.fixedpoint import ops
    from hwaware.fixedpoint.convert import convert
    from hwaware.fixedpoint.verify import bit_exact_mismatches as bit_exact_check

    model = hwaware.load_model("models/small_cnn.py", width=0.25).eval()
    images = torch.randn(2, 3, 32, 32)
    fixed = convert(model, torch.randn(16, 3, 32, 32), samples=16)
    assert bit_exact_check(fixed, images) == []
    real = ops.conv2d

    def off_by_one(*args, **kwargs):  # a kernel that is wrong in one output value
        r = real(*args, **kwargs)
        y = r.y.copy()
        y.flat[0] += 1
        return type(r)(y, r.product_overflows, r.output_overflows)

    monkeypatch.setattr(ops, "conv2d", off_by_one)
    # ops.linear runs through ops.conv2d too, so the Linear layer is wrong as well
    assert bit_exact_check(fixed, images) == ["conv1", "conv2", "conv3", "conv4", "fc"]


def test_quantize_below_16_bits_is_scored_at_that_width(tmp_path):
    from hwaware.recipes.run import run_recipe

    data = yaml.safe_load(GOOD)
    data["stages"] = [{"quantize": {"bits": 8, "samples": 32, "check_images": 1}}, {"report": {"plots": False}}]
    res = run_recipe(parse_recipe(data), out=tmp_path / "q8", progress=False, log=lambda m: None)
    labels = [s.label for s in res.timeline]
    assert labels == ["input", "1-quantize", "final"]
    # the same model, profiled once: its workload at 8-bit operands, scored independently
    wl = hwaware.Workload.load(tmp_path / "q8" / "workload.json")
    assert {(lay.weight_bits, lay.act_bits) for lay in wl.layers} == {(8, 8)}
    ref = hwaware.score(wl, batch=1).total.energy_total
    assert res.final.energy == pytest.approx(ref, rel=1e-5)  # the file rounds the measured RLC ratio to 1e-6
    assert res.final.energy < res.input.energy  # narrower operands cost less to move and multiply
    q = json.loads((tmp_path / "q8" / "stages" / "1-quantize" / "quantize.json").read_text())
    assert q["bits"] == 8 and q["bit_exact"]["mismatched"] == [] and q["bit_exact"]["ops"] == 10  # every op


def test_a_failing_stage_leaves_a_failed_run_json(tmp_path, monkeypatch, capsys):
    from hwaware.recipes import run as run_mod

    def broken(ctx, stage):
        raise HwawareError("score: something went wrong")

    monkeypatch.setitem(run_mod.STAGE_RUNNERS, "score", broken)
    data = yaml.safe_load(GOOD)
    data["stages"] = ["score", "report"]
    p = write(tmp_path, yaml.safe_dump(data))
    rc = main(["run", str(p), "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "hwaware run: error: score: something went wrong"
    status = json.loads((tmp_path / "run" / "run.json").read_text())
    assert status["status"] == "failed" and status["error"] == "score: something went wrong"
    assert [t["label"] for t in status["timeline"]] == ["input"]
    assert (tmp_path / "run" / "recipe.yaml").is_file()


@pytest.mark.slow
def test_netadapt_stage_tiny(tmp_path):
    from hwaware.recipes.run import run_recipe

    data = yaml.safe_load(GOOD)
    data["stages"] = [{"train": {"max_steps": 4, "monitor_every": None}},
                      {"netadapt": {"budgets": ["latency=0.8"], "delta": 0.15, "short_term_steps": 1,
                                    "holdout": 32, "train_size": 64, "batch_size": 32}}, "report"]
    res = run_recipe(parse_recipe(data), out=tmp_path / "na", progress=False, log=lambda m: None)
    fam = json.loads((tmp_path / "na" / "stages" / "2-netadapt" / "netadapt" / "family.json").read_text())
    lat = [m["resources"]["latency"] for m in fam["members"]]
    assert lat[-1] <= 0.8 * lat[0] + 1e-9 and all(b <= a + 1e-9 for a, b in zip(lat, lat[1:]))
    # the pipeline continues with the last member: its latency is the final model's
    assert res.final.total_latency_ms == pytest.approx(lat[-1], rel=0.05)
    summary = (tmp_path / "na" / "summary.md").read_text()
    assert "### Family: netadapt" in summary and (tmp_path / "na" / "tradeoff.png").is_file()


def test_explain_lists_stage_options(capsys):
    assert main(["run", "--explain", "prune"]) == 0
    out = capsys.readouterr().out
    assert "stage 'prune'" in out and re.search(r"^\s+target_energy\s+float", out, re.M)
    assert main(["run", "--explain", "prun"]) == 2
    assert "unknown stage 'prun' (did you mean 'prune'?)" in capsys.readouterr().err


def test_fine_tune_keeps_pruned_weights_at_zero(tmp_path):
    from hwaware.modelref import load_model_file
    from hwaware.recipes.run import run_recipe

    data = yaml.safe_load(GOOD)
    data["stages"] = [{"prune": {"method": "magnitude", "target_energy": 0.9, "step": 0.5, "max_steps": 1,
                                 "local_steps": 1, "global_steps": 0, "final_steps": 0, "max_drop": 100}},
                      {"fine-tune": {"max_steps": 3, "lr": 0.05, "monitor_every": None}}, {"report": {"plots": False}}]
    res = run_recipe(parse_recipe(data), out=tmp_path / "ft", progress=False, log=lambda m: None)
    hist = json.loads((tmp_path / "ft" / "stages" / "1-prune" / "history.json").read_text())
    assert hist["steps"][0]["accepted"], hist["steps"][0]
    pruned = [s for s in res.timeline if s.label == "1-prune"][0]
    tuned = [s for s in res.timeline if s.label == "2-fine-tune"][0]
    assert tuned.nonzero_weights <= pruned.nonzero_weights  # SGD with momentum moved nothing back
    model, _ = load_model_file(tmp_path / "ft" / "model.pt")
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    zeros = sum(int((m.weight == 0).sum()) for m in convs)
    assert zeros == pytest.approx(sum(m.weight.numel() for m in convs) - pruned.nonzero_weights, abs=0.5)


@pytest.mark.slow
def test_quantize_search_widths_are_scored_per_layer(tmp_path):
    from hwaware.recipes.run import run_recipe

    data = yaml.safe_load(GOOD)
    data["stages"] = [{"quantize": {"search": True, "widths": [8], "max_drop": 100.0, "samples": 32,
                                    "check_images": 1, "mode": "wide", "rounding": "nearest",
                                    "overflow": "saturate"}}, {"report": {"plots": False}}]
    res = run_recipe(parse_recipe(data), out=tmp_path / "qs", progress=False, log=lambda m: None)
    q = json.loads((tmp_path / "qs" / "stages" / "1-quantize" / "quantize.json").read_text())
    # with a 100-point budget every layer takes the narrower width
    assert q["bits"] == {"conv1": 8, "conv2": 8, "conv3": 8, "conv4": 8, "fc": 8}
    wl = hwaware.Workload.load(tmp_path / "qs" / "workload.json")
    assert {lay.name: (lay.weight_bits, lay.act_bits) for lay in wl.layers} == {n: (8, 8) for n in q["bits"]}
    assert q["search"]["energy"] == pytest.approx(q["search"]["energy_8"], rel=1e-9)
    assert res.final.energy < res.input.energy
    assert (tmp_path / "qs" / "stages" / "1-quantize" / "search.txt").is_file()
