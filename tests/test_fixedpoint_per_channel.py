"""Per-output-channel weight formats: the opt-in extension of the fixed-point contract.

``convert(per_channel_weights=True)`` gives each output channel of a Conv/Linear its own weight
format (``f_w_channels``); the default contract (one ``f_w`` per tensor) is unchanged. Checked: a
hand-computed example, the fast kernels bit-identical to the golden reference in every arithmetic
and grouping, conversion (default untouched; each channel's codes fill their range; golden
recomputation of every op), and the exported vectors recomputed from their files alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from hwaware.fixedpoint import golden, ops
from hwaware.fixedpoint.convert import calibrate_batchnorm, convert
from hwaware.fixedpoint.format import FixedFormat
from hwaware.fixedpoint.vectors import export_vectors
from hwaware.fixedpoint.verify import bit_exact_mismatches


@pytest.mark.parametrize("impl", [golden, ops])
def test_each_channel_shifts_by_its_own_format(impl):
    # x = 1000 at f_x = 10; both weights are code 3, at f = 8 (value 3/256) and f = 12 (3/4096);
    # f_y = 10: s = 8 and 12. eyeriss floors each product 3000: 3000 >> 8 = 11, 3000 >> 12 = 0;
    # wide shifts the exact sum plus bias (here 2 * 3000 + 0): 6000 >> 8 = 23, 6000 >> 12 = 1
    x = np.full((1, 2, 1, 1), 1000, dtype=np.int16)
    w = np.full((2, 2, 1, 1), 3, dtype=np.int16)
    kw = {"fx": FixedFormat(10), "fw": FixedFormat(8), "fy": FixedFormat(10), "fw_channels": (8, 12)}
    assert impl.conv2d(x, w, None, mode="eyeriss", **kw).y.ravel().tolist() == [22, 0]
    assert impl.conv2d(x, w, None, mode="wide", **kw).y.ravel().tolist() == [23, 1]
    with pytest.raises(Exception, match="fw_channels"):
        impl.conv2d(x, w, None, mode="wide", **{**kw, "fw_channels": (8,)})


@pytest.mark.parametrize("mode", ["eyeriss", "wide"])
@pytest.mark.parametrize("groups,C,M", [(1, 6, 5), (6, 6, 6), (2, 6, 4), (3, 6, 6)])
def test_fast_kernels_match_golden(mode, groups, C, M):
    rng = np.random.default_rng(groups * 10 + M)
    for rounding, overflow in (("floor", "wrap"), ("nearest", "saturate")):
        x = rng.integers(-3000, 3000, (2, C, 5, 5)).astype(np.int16)
        w = rng.integers(-3000, 3000, (M, C // groups, 3, 3)).astype(np.int16)
        b = rng.integers(-500, 500, M)
        fws = tuple(int(v) for v in rng.integers(9, 15, M))
        kw = {"fx": FixedFormat(12), "fw": FixedFormat(9), "fy": FixedFormat(11), "stride": (1, 2), "padding": 1,
                  "groups": groups, "mode": mode, "rounding": rounding, "overflow": overflow, "relu": True, "fw_channels": fws}
        a, c = golden.conv2d(x, w, b, **kw), ops.conv2d(x, w, b, **kw)
        assert np.array_equal(a.y, c.y)
        assert (a.product_overflows, a.output_overflows) == (c.product_overflows, c.output_overflows)


class _DepthwiseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pw = nn.Conv2d(3, 8, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.pw(x)))
        x = torch.relu(self.bn2(self.dw(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def depthwise_net():
    torch.manual_seed(0)
    model = _DepthwiseNet()
    x = torch.randn(64, 3, 8, 8)
    calibrate_batchnorm(model, x)
    with torch.no_grad():  # a nearly dead channel: BN folding blows its weights up 100x
        model.bn2.running_var[3] = 1e-4 * model.bn2.running_var[3]
    return model, x


@pytest.mark.parametrize("mode", ["eyeriss", "wide"])
def test_conversion_with_per_channel_weights(depthwise_net, mode, tmp_path):
    model, x = depthwise_net
    plain = convert(model, x, mode=mode)
    assert all(getattr(op, "fw_channels", None) is None for op in plain.int_ops)  # default unchanged
    fixed = convert(model, x, mode=mode, per_channel_weights=True)
    dw = next(op for op in fixed.int_ops if getattr(op, "name", "") == "dw")
    assert len(dw.fw_channels) == 8 and min(dw.fw_channels) == dw.fw.frac_bits
    assert dw.fw == next(op for op in plain.int_ops if getattr(op, "name", "") == "dw").fw
    assert max(dw.fw_channels) >= dw.fw.frac_bits + 5  # the dead channel no longer sets the others'
    top = np.abs(dw.w.reshape(8, -1)).max(1)
    assert ((top >= 2**14) & (top <= 2**15 - 1)).all()  # every channel's codes fill their range
    assert bit_exact_mismatches(fixed, x[:4]) == []
    # vectors carry the formats; an independent recomputation from the files alone gives y
    from test_fixedpoint_vectors import recompute

    export_vectors(fixed, tmp_path, inputs=x[:2])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for entry in manifest["layers"]:
        v = np.load(tmp_path / entry["file"])
        assert list(v["f_w_channels"]) == entry["f_w_channels"]
        assert entry["shifts"] == [entry["f_x"] + f - entry["f_y"] for f in entry["f_w_channels"]]
        assert np.array_equal(recompute(v), v["y"]), entry["name"]
