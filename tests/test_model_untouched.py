"""The user's model is never modified: tracing (channel surgery), profiling, scoring and fixed-point
conversion leave its state_dict (hashed byte for byte), every module's training flag and its hooks
exactly as given -- in train mode, where a forward would update BatchNorm statistics, and in eval."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torchvision
from torch import nn

from hwaware.compress.surgery import ChannelGraph
from hwaware.eyeriss.score import score
from hwaware.fixedpoint.convert import convert
from hwaware.profiler import profile

timm = pytest.importorskip("timm")  # a dev extra (pyproject); CI installs it


def _fingerprint(model: nn.Module) -> tuple:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    flags = tuple(m.training for m in model.modules())
    hooks = tuple((len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for m in model.modules())
    inplace = tuple(getattr(m, "inplace", None) for m in model.modules())
    return h.hexdigest(), flags, hooks, inplace


def _models():
    return [
        ("timm:mobilenetv2_100", lambda: timm.create_model("mobilenetv2_100", pretrained=False, num_classes=10)),
        ("tv:mobilenet_v2", lambda: torchvision.models.mobilenet_v2(num_classes=10)),
    ]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name,factory", _models())
def test_no_mode_modifies_the_model(name, factory, train):
    torch.manual_seed(0)
    model = factory().train(train)
    model.features[0].register_forward_hook(lambda *a: None) if hasattr(model, "features") else \
        model.conv_stem.register_forward_hook(lambda *a: None)  # a user's hook must survive too
    x = torch.randn(2, 3, 32, 32)
    before = _fingerprint(model)
    ChannelGraph(model, x)
    assert _fingerprint(model) == before, "ChannelGraph"
    wl = profile(model, x, progress=False)
    assert _fingerprint(model) == before, "profile"
    score(model, data=x)
    assert _fingerprint(model) == before, "score"
    convert(model, x, mode="wide", samples=2)
    assert _fingerprint(model) == before, "convert"
    assert wl.macs > 0
