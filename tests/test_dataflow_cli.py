"""Every loop targets the other dataflows and Eyeriss v2 from the command line (issue 16, item 3):
``hwaware prune`` and ``hwaware netadapt`` with ``--hardware eyeriss_v2`` and with ``--dataflow``,
checked on what they report and record (the hardware the loop scored against)."""

from __future__ import annotations

import json

import pytest
import torch

from hwaware.cli import main

_TINY = "builtin:shapes?n_train=96&n_val=32&n_test=32"
_PRUNE_FAST = ["--max-steps", "1", "--local-steps", "1", "--global-steps", "1", "--final-steps", "1",
               "--batch-size", "32", "--calib-size", "8", "--no-progress", "--max-drop", "100"]
NET = '''
import torch
from torch import nn

INPUT_SIZE = (3, 32, 32)


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
'''


@pytest.fixture()
def saved_cnn(tmp_path):
    from hwaware.checkpoint import save_model
    from hwaware.modelref import build_model

    torch.manual_seed(0)
    path = tmp_path / "in.pt"
    save_model(build_model("models/small_cnn.py:small_cnn", width=0.25), path, model_ref="models/small_cnn.py:small_cnn", model_args={"width": 0.25})
    return path


@pytest.mark.parametrize("flags, hardware", [
    (["--hardware", "eyeriss_v2"], "eyeriss_v2"),
    (["--hardware", "eyeriss_isca256", "--dataflow", "ws"], "eyeriss_isca256:ws"),
])
def test_prune_cli_targets_the_hardware(saved_cnn, tmp_path, capsys, flags, hardware):
    from hwaware.modelref import load_model_file

    out = tmp_path / "out.pt"
    rc = main(["prune", str(saved_cnn), "--method", "magnitude", "--data", _TINY, "--out", str(out),
               "--target-energy", "0.99", *flags, *_PRUNE_FAST])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert f"pruning on {hardware} " in text
    _, meta = load_model_file(out)
    assert meta["prune"]["config"]["hardware"] == hardware


@pytest.mark.parametrize("flags, hardware, dataflow", [
    (["--hardware", "eyeriss_v2"], "eyeriss_v2", "v2"),
    (["--dataflow", "nlr"], "eyeriss_v1:nlr", "nlr"),
])
def test_netadapt_cli_targets_the_hardware(tmp_path, capsys, flags, hardware, dataflow):
    from hwaware.eyeriss import resolve_hardware

    (tmp_path / "tiny.py").write_text(NET)
    work = tmp_path / "work"
    rc = main(["netadapt", str(tmp_path / "tiny.py"), "--budget", "energy=90%", "--data", _TINY,
               "--workdir", str(work), "--holdout", "16", "--train-size", "32", "--short-term-steps", "1",
               "--batch-size", "16", "--max-iterations", "1", "--threads", "1", "--quiet", *flags])
    assert rc == 0, capsys.readouterr()
    job = json.loads((work / "job.json").read_text())
    assert json.dumps(job).count(f'"hardware": "{hardware}"') >= 1
    assert resolve_hardware(hardware).dataflow == dataflow


def test_bad_dataflow_on_v2_is_one_line_exit_2(saved_cnn, tmp_path, capsys):
    rc = main(["prune", str(saved_cnn), "--data", _TINY, "--out", str(tmp_path / "o.pt"),
               "--hardware", "eyeriss_v2", "--dataflow", "ws", *_PRUNE_FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Eyeriss v2 is a chip with its own model" in err[0]


def test_quantize_cli_takes_the_dataflow(saved_cnn, tmp_path, capsys, monkeypatch):
    """``hwaware quantize --dataflow os_b`` hands the loop ``eyeriss_v1:os_b``; an unknown dataflow is
    one line and exit 2 before any work."""
    import importlib

    q = importlib.import_module("hwaware.fixedpoint.quantize")  # the module (the package attribute is the function)

    seen = {}

    class Result:
        def to_dict(self):
            return {"hardware": seen["hardware"]}

        def table(self):
            return "stub"

    def fake_quantize(model, **kw):
        seen.update(kw)
        return Result()

    monkeypatch.setattr(q, "quantize", fake_quantize)
    out = tmp_path / "q.json"
    args = ["quantize", str(saved_cnn), "--data", _TINY, "--out", str(out), "--samples", "8", "--val-samples", "8",
            "--finetune-steps", "0", "--quiet"]
    assert main([*args, "--dataflow", "os_b"]) == 0
    assert seen["hardware"] == "eyeriss_v1:os_b"
    assert json.loads(out.read_text())["hardware"] == "eyeriss_v1:os_b"
    capsys.readouterr()
    assert main([*args[:5], str(tmp_path / "q2.json"), *args[6:], "--dataflow", "xs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown dataflow 'xs'" in err[0]
