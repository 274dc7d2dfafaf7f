"""A model built for another label set is refused before any work (its accuracy would mean
nothing), and ``--model-arg KEY=VALUE`` builds a model reference with keyword arguments."""

from __future__ import annotations

import argparse
import hashlib

import pytest
import torch
from torch import nn

from hwaware.cli import main
from hwaware.cli._common import model_args
from hwaware.data import check_classifier_width
from hwaware.errors import HwawareError

DATA = "builtin:shapes?n_train=64&n_val=32&n_test=32"


def _net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, width))


def _digest(m: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in m.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def test_wrong_head_width_is_an_error_naming_both_counts():
    with pytest.raises(HwawareError, match=r"has 1000 outputs but data 'builtin:shapes.*' has 10 classes.*"
                                           r"--model-arg num_classes=10"):
        check_classifier_width(_net(1000), DATA, "model 'x'")
    with pytest.raises(HwawareError, match="has 3 outputs"):
        check_classifier_width(_net(3), DATA, "model 'x'")


def test_right_head_width_passes_and_the_model_is_untouched():
    m = _net(10).train()
    before = _digest(m)
    check_classifier_width(m, DATA, "model 'x'")
    assert m.training and _digest(m) == before  # train mode kept, BN statistics unchanged


def test_model_arg_values_are_yaml_scalars():
    ns = argparse.Namespace(model_arg=["num_classes=10", "width_mult=0.5", "pretrained=false", "name=abc"])
    assert model_args(ns) == {"num_classes": 10, "width_mult": 0.5, "pretrained": False, "name": "abc"}
    for bad in (["num_classes"], ["=3"], ["a b=1"], ["k=[1, 2]"], ["k=1", "k=2"]):
        with pytest.raises(HwawareError, match="--model-arg"):
            model_args(argparse.Namespace(model_arg=bad))


@pytest.mark.parametrize("verb", [
    ["quantize", "torchvision:resnet18", "--data", DATA, "--out", "{tmp}/q.json"],
    ["prune", "torchvision:resnet18", "--data", DATA, "--target-energy", "0.5", "--out", "{tmp}/p.pt"],
    ["netadapt", "torchvision:resnet18", "--data", DATA, "--budget", "latency=0.5", "--workdir", "{tmp}/na"],
])
def test_cli_refuses_a_1000_class_model_on_10_class_data(verb, tmp_path, capsys):
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in verb])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "has 1000 outputs but data" in err[0] and "--model-arg num_classes=10" in err[0]
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []  # nothing written


def test_cli_model_arg_builds_the_model(capsys):
    assert main(["score", "torchvision:resnet18", "--model-arg", "num_classes=10", "--input-size", "3x32x32"]) == 0
    with pytest.raises(SystemExit):  # argparse: the flag needs a value
        main(["score", "torchvision:resnet18", "--model-arg"])
    rc = main(["score", "torchvision:resnet18", "--model-arg", "no_such_arg=1", "--input-size", "3x32x32"])
    assert rc == 2 and "no_such_arg" in capsys.readouterr().err


def test_recipe_with_a_mismatched_head_stops_before_work(tmp_path, capsys):
    r = tmp_path / "r.yaml"
    r.write_text(f"name: t\nmodel: torchvision:resnet18\ndata: {DATA}\nstages:\n  - score: {{}}\n")
    rc = main(["run", str(r), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and "has 1000 outputs but data" in err and "model_args: {num_classes: 10}" in err
