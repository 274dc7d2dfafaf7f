"""Structured pruning and NetAdapt from the CLI on timm models at builtin:shapes sizes (3x32x32,
10 classes), end to end: the verb exits 0, the result loads, is smaller than the original and
still answers 10 classes, and the user's model file is untouched. Slow (minutes per model)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")  # a dev extra (pyproject); CI installs it

from hwaware import load_model, save_model  # noqa: E402
from hwaware.cli import main  # noqa: E402

MODELS = ["mobilenetv2_100", "efficientnet_b0"]
DATA = "builtin:shapes?n_train=128&n_val=32&n_test=32"


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _saved(tmp_path: Path, name: str) -> tuple[Path, int, str]:
    path = tmp_path / f"{name}.pt"
    model = load_model(f"timm:{name}", num_classes=10)
    save_model(model, path)
    return path, _params(model), hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_prune_structured_timm_from_cli(name, tmp_path, capsys):
    src, n_params, digest = _saved(tmp_path, name)
    out = tmp_path / "pruned.pt"
    rc = main(["prune", str(src), "--method", "structured", "--data", DATA, "--out", str(out),
               "--max-steps", "2", "--local-steps", "1", "--global-steps", "0", "--final-steps", "0",
               "--calib-size", "8", "--val-limit", "32", "--train-limit", "32", "--batch-size", "16",
               "--target-energy", "0.97", "--max-drop", "100", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "target reached" in text
    small = load_model(str(out)).eval()
    assert _params(small) < n_params
    with torch.no_grad():
        assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_netadapt_timm_from_cli(name, tmp_path):
    src, n_params, digest = _saved(tmp_path, name)
    work = tmp_path / "job"
    rc = main(["netadapt", str(src), "--budget", "macs=98%", "--data", DATA, "--workdir", str(work),
               "--short-term-steps", "1", "--holdout", "16", "--train-size", "32", "--batch-size", "8",
               "--max-iterations", "3", "--quiet"])
    assert rc == 0
    members = json.loads((work / "family.json").read_text())["members"]
    assert len(members) >= 2  # the original and at least one adapted network
    final = load_model(str(work / members[-1]["model"])).eval()
    assert _params(final) < n_params
    with torch.no_grad():
        assert final(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
