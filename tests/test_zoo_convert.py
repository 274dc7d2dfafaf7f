"""The four zoo models that need the per-channel affine, LayerNorm and run-time sizes convert to
fixed point (random weights, small inputs): timm mixnet_s and densenet121 (a BatchNorm after a
concat), timm convnext_atto (LayerNorm2d, layer scale), torchvision shufflenet_v2_x1_0 (channel
shuffle with sizes unpacked from ``x.size()``). Every op of the converted model re-run through the
golden reference gives the same codes (Conv/Linear too in the slow variant; they are checked bit for
bit on their own in test_fixedpoint_ops/vectors), the result tracks the float model, and the
user's model -- given in train mode -- is left untouched (state_dict hash, every training flag)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from hwaware.fixedpoint.convert import convert
from hwaware.fixedpoint.golden_graph import mismatches
from hwaware.fixedpoint.graph_ops import ConvOp, ReshapeOp
from hwaware.fixedpoint.norm_ops import AffineOp, LayerNormOp

timm = pytest.importorskip("timm")  # a dev extra (pyproject); CI installs it
torchvision = pytest.importorskip("torchvision")


def _build(spec: str) -> torch.nn.Module:
    src, name = spec.split(":")
    if src == "timm":
        return timm.create_model(name, pretrained=False, num_classes=10)
    return torchvision.models.get_model(name, weights=None, num_classes=10)


def _fingerprint(model: torch.nn.Module) -> tuple[str, tuple[bool, ...]]:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest(), tuple(m.training for m in model.modules())


def _calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Running statistics from data (random-weight BatchNorms start at mean 0, var 1)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)


def _new_op(fixed, spec: str) -> bool:
    ops = fixed.int_ops
    if spec in ("timm:mixnet_s", "timm:densenet121"):
        return any(isinstance(op, AffineOp) and op.op == "BatchNorm2d" for op in ops)
    if spec == "timm:convnext_atto":
        return any(isinstance(op, LayerNormOp) and op.dim == 1 for op in ops) and \
            any(isinstance(op, AffineOp) and op.op == "mul" for op in ops)
    return any(isinstance(op, ReshapeOp) and op.shape and any(not isinstance(v, int) and v[0] != "size"
                                                              for v in op.shape) for op in ops)


def _check(spec: str, *, convs: bool) -> None:
    torch.manual_seed(0)
    model = _build(spec)
    x = torch.rand(2, 3, 32, 32)
    _calibrate_bn(model, torch.rand(8, 3, 32, 32))
    model.train()  # the user's model as a training script holds it
    before = _fingerprint(model)
    fixed = convert(model, x, mode="wide", rounding="nearest", overflow="saturate", samples=2)
    assert _fingerprint(model) == before
    assert _new_op(fixed, spec)
    bad, checked = mismatches(fixed, x[:1], skip=() if convs else (ConvOp,))
    assert bad == [] and checked > 20, bad
    model.eval()
    with torch.no_grad():
        ref = model(x)
    got = fixed(x)
    assert got.shape == ref.shape
    scale = float(ref.abs().max())
    assert float((got - ref).abs().max()) < 0.05 * scale, (spec, float((got - ref).abs().max()), scale)


ZOO = ["timm:mixnet_s", "timm:densenet121", "timm:convnext_atto", "tv:shufflenet_v2_x1_0"]
#: densenet121 (120 convolutions) needs the same op as mixnet_s: slow only
FAST = [pytest.param(s, marks=pytest.mark.slow) if s == "timm:densenet121" else s for s in ZOO]


@pytest.mark.parametrize("spec", FAST)
def test_zoo_model_converts_and_matches_golden(spec):
    _check(spec, convs=False)


@pytest.mark.slow
@pytest.mark.parametrize("spec", ZOO)
def test_zoo_model_matches_golden_including_convolutions(spec):
    _check(spec, convs=True)
