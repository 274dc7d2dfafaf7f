"""``verify.bit_exact_mismatches`` checks every op the converter emits against the golden
reference, not only Conv/Linear: a wrong activation, multiply or channels-last Linear is named."""

from __future__ import annotations

import torch
from torch import nn

from hwaware.fixedpoint import activations
from hwaware.fixedpoint.convert import convert
from hwaware.fixedpoint.verify import bit_exact_mismatches


class _SEChannelsLast(nn.Module):
    """conv -> SiLU -> squeeze-excitation (mean, Sigmoid gate, multiply) -> permute -> Linear on
    channels-last rows -> permute back -> mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.SiLU()
        self.gate_fc = nn.Conv2d(8, 8, 1)
        self.gate = nn.Sigmoid()
        self.fc = nn.Linear(8, 6)

    def forward(self, x):
        x = self.act(self.conv(x))
        x = x * self.gate(self.gate_fc(x.mean((2, 3), keepdim=True)))
        x = self.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x.mean((2, 3))


def _wrong_by_one(real):
    def wrong(*args, **kwargs):
        r = real(*args, **kwargs)
        y = r.y.copy()
        y.flat[0] += 1
        return type(r)(y, r.product_overflows, r.output_overflows)
    return wrong


def test_every_op_is_checked_and_a_wrong_one_is_named(monkeypatch):
    torch.manual_seed(0)
    model = _SEChannelsLast().eval()
    x = torch.randn(8, 3, 12, 12)
    for mode in ("wide", "eyeriss"):
        fixed = convert(model, x, mode=mode, samples=8)
        # the channels-last Linear is run row by row, as the fast backend does (no shape mismatch)
        assert bit_exact_mismatches(fixed, x[:2]) == []
    fixed = convert(model, x, mode="wide", samples=8)
    with monkeypatch.context() as m:
        m.setattr(activations, "mul", _wrong_by_one(activations.mul))
        assert bit_exact_mismatches(fixed, x[:2]) == ["mul"]
    with monkeypatch.context() as m:  # SiLU and Sigmoid both run through the gate table
        m.setattr(activations, "lut", _wrong_by_one(activations.lut))
        assert bit_exact_mismatches(fixed, x[:2]) == ["act", "gate"]
