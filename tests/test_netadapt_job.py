"""NetAdapt jobs: workdir identity, checkpoints, in-process resume, outputs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hwaware.errors import HwawareError
from hwaware.netadapt import NetAdapt, NetAdaptConfig, netadapt
from hwaware.netadapt.job import Workdir, model_fingerprint

DATA = "builtin:shapes?n_train=400&n_val=20&n_test=100"
FAST = NetAdaptConfig(holdout=64, train_size=192, short_term_steps=2, batch_size=32, profile_images=2,
                      report=("macs",))


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def family(members) -> list:  # noqa: ANN001
    """Everything that must be identical between two runs of one job (not timings or paths)."""
    return [(m.iteration, m.kind, m.block, m.channels, m.resources, m.accuracy, m.test_accuracy, m.step,
             m.targets, [p.to_dict() for p in m.proposals]) for m in members]


# --- the workdir guard ---------------------------------------------------------------------------

IDENT = {"model": "abc", "data": "builtin:shapes", "budgets": [], "config": {"delta": 0.025}}


def _record(wd: Workdir, i: int) -> None:
    rel = f"models/iter_{i:04d}.pt"
    (wd.path / "models").mkdir(exist_ok=True)
    (wd.path / rel).write_bytes(b"x")
    wd.commit({"iteration": i, "model": rel})


def test_workdir_guards(tmp_path) -> None:
    path = tmp_path / "job"
    wd = Workdir(path, IDENT, resume=False)
    assert json.loads((path / "job.json").read_text())["hash"] == wd.hash
    wd.close()
    wd = Workdir(path, IDENT, resume=False)  # nothing done yet: starting again is harmless
    _record(wd, 0)
    wd.close()
    with pytest.raises(HwawareError, match="already holds this job with 1 completed iteration.*--resume"):
        Workdir(path, IDENT, resume=False)
    again = Workdir(path, IDENT, resume=True)
    assert again.resumed and again.records == [{"iteration": 0, "model": "models/iter_0000.pt"}]
    again.close()
    other = {**IDENT, "config": {"delta": 0.05}}
    with pytest.raises(HwawareError, match=r"holds another netadapt job.*config\.delta \(0\.025 there, 0\.05 here\)"):
        Workdir(path, other, resume=True)
    (path / "models" / "iter_0000.pt").unlink()
    with pytest.raises(HwawareError, match="checkpoint 'models/iter_0000.pt' of iteration 0 is missing"):
        Workdir(path, IDENT, resume=True)


def test_workdir_refuses_foreign_directories(tmp_path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(HwawareError, match="not empty and holds no netadapt job"):
        Workdir(tmp_path, IDENT, resume=False)
    with pytest.raises(HwawareError, match="is a file"):
        Workdir(tmp_path / "mine.txt", IDENT, resume=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "job.json").write_text("{ half a file")
    with pytest.raises(HwawareError, match="not a hwaware netadapt job file"):
        Workdir(bad, IDENT, resume=True)
    # a job that stopped before completing anything may be replaced by another one
    fresh = tmp_path / "fresh"
    Workdir(fresh, IDENT, resume=False).close()
    Workdir(fresh, {**IDENT, "model": "def"}, resume=False).close()


def test_model_fingerprint_sees_weights_and_shape() -> None:
    a, b = tiny(), tiny()
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b[0].weight[0, 0, 0, 0] += 1e-6
    assert model_fingerprint(a) != model_fingerprint(b)


# --- resume --------------------------------------------------------------------------------------

def test_resume_after_stop_equals_uninterrupted_run(tmp_path) -> None:
    budgets = ["latency=0.75", "macs=0.7"]
    full = netadapt(tiny(), budgets=budgets, data=DATA, config=FAST, workdir=tmp_path / "a",
                    progress=False, threads=1)
    assert full.iterations >= 2

    na = NetAdapt(tiny(), budgets=budgets, data=DATA, config=FAST, workdir=tmp_path / "b",
                  progress=False, threads=1)
    assert na.step().kind == "original"
    assert na.step().iteration == 1
    na.close()  # as if killed here: only the checkpoints remain
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert [r["iteration"] for r in state["records"]] == [0, 1]

    with pytest.raises(HwawareError, match="--resume"):
        NetAdapt(tiny(), budgets=budgets, data=DATA, config=FAST, workdir=tmp_path / "b", progress=False)
    with pytest.raises(HwawareError, match="holds another netadapt job") as err:
        NetAdapt(tiny(), budgets=["latency=0.6", "macs=0.7"], data=DATA, config=FAST,
                 workdir=tmp_path / "b", resume=True, progress=False)
    # the difference is shown as the user wrote it, never as a raw Python dict
    assert "latency=0.75 macs=0.7 there, latency=0.6 macs=0.7 here" in str(err.value)
    assert "{" not in str(err.value) and "'resource'" not in str(err.value)
    resumed = NetAdapt(tiny(), budgets=budgets, data=DATA, config=FAST, workdir=tmp_path / "b", resume=True,
                       progress=False, threads=1)
    assert resumed.resumed and [m.iteration for m in resumed.members] == [0, 1]
    result = resumed.finish()
    assert family(result.members) == family(full.members)

    # every iteration's network is on disk and loads back with its recorded channels
    for m in result.members:
        model = result.model(m.iteration)
        convs = [c.out_channels for c in model if isinstance(c, nn.Conv2d)]
        assert convs == [m.channels[k] for k in ("0", "4", "8")]

    # outputs: family table, JSON, Pareto PNG, TensorBoard curves of every resource and accuracy
    out = tmp_path / "b"
    assert json.loads((out / "family.json").read_text())["members"][-1]["channels"] == result.final.channels
    table = (out / "family.md").read_text()
    assert table.count("\n| ") == len(result.members) + 1
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"resource/latency", "resource/macs", "relative/latency", "accuracy/heldout"} <= tags
    steps = sorted({e.step for e in acc.Scalars("accuracy/heldout")})
    assert steps == [m.iteration for m in result.members]
