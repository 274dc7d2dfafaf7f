"""Per-channel affine (an unfoldable BatchNorm, layer scale), integer LayerNorm over channels,
permutes and sizes read at run time: the fast kernels equal the golden reference bit for bit, the
1/sqrt stays within its stated bound, converted models track float, and the test vectors carry the
new ops so that each can be recomputed from its file alone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwaware.errors import UnsupportedLayerError
from hwaware.fixedpoint import golden, normalize
from hwaware.fixedpoint.convert import convert
from hwaware.fixedpoint.format import FixedFormat
from hwaware.fixedpoint.golden_graph import mismatches
from hwaware.fixedpoint.graph_ops import PermuteOp, ReshapeOp
from hwaware.fixedpoint.norm_ops import AffineOp, LayerNormOp

ARITHS = [(r, o) for r in ("floor", "nearest") for o in ("wrap", "saturate")]


@pytest.mark.parametrize("rounding,overflow", ARITHS)
def test_affine_and_layer_norm_bit_exact_against_golden(rounding, overflow):
    rng = np.random.default_rng(0)
    for trial in range(24):
        C = int(rng.integers(1, 70))
        dim = 1 if trial % 2 else -1
        shape = (2, C, 3, 2) if dim == 1 else (2, 3, 2, C)
        amp = [1, 5, 300, 32767][trial % 4]
        x = rng.integers(-amp, amp + 1, size=shape).astype(np.int16)
        if trial % 6 == 0:
            x[:] = 7  # all channels equal: V = e (or 1), d = 0
        g = rng.integers(-32768, 32768, C)
        beta = rng.integers(-2**40, 2**40, C)
        fx, fg, fy = (FixedFormat(int(rng.integers(lo, hi))) for lo, hi in ((-3, 20), (0, 16), (-2, 16)))
        e = int(rng.integers(0, 5000))
        kw = {"rounding": rounding, "overflow": overflow}
        a = normalize.layer_norm(x, g, beta, dim=dim, e=e, fx=fx, fg=fg, fy=fy, **kw)
        b = golden.layer_norm(x, g, beta, dim=dim, e=e, fx=fx, fg=fg, fy=fy, **kw)
        assert np.array_equal(a.y, b.y) and a.output_overflows == b.output_overflows, trial
        a = normalize.affine(x, g, beta, dim=dim, fx=fx, fa=fg, fy=fy, **kw)
        b = golden.affine(x, g, beta, dim=dim, fx=fx, fa=fg, fy=fy, **kw)
        assert np.array_equal(a.y, b.y) and a.output_overflows == b.output_overflows, trial


def test_rsqrt_error_is_within_the_stated_bound():
    rng = np.random.default_rng(1)
    V = np.concatenate([np.arange(1, 5000), rng.integers(1, 2**62, 200_000),
                        2 ** np.arange(0, 62, dtype=np.int64), 2 ** np.arange(1, 62, dtype=np.int64) - 1,
                        2 ** np.arange(1, 62, dtype=np.int64) + 1])
    r, t = normalize.rsqrt_codes(V)
    approx = r * np.exp2(-(30 + t / 2))
    rel = np.abs(approx * np.sqrt(V.astype(np.float64)) - 1)
    assert rel.max() <= normalize.RSQRT_MAX_REL
    assert rel.max() >= normalize.RSQRT_MAX_REL / 4  # the bound is tight, not a loose guess
    assert ((2**15 <= r) & (r <= 2**16)).all()
    for v in V[::997]:  # the golden definition (a literal loop for t, math.isqrt) agrees
        assert golden.rsqrt(int(v)) == (int(r[list(V).index(v)]), int(t[list(V).index(v)]))


def test_layer_norm_tracks_float_within_its_error_terms():
    torch.manual_seed(0)
    C = 40
    x = torch.randn(4, C, 3, 3) * 3 + 1
    w, b = torch.randn(C), torch.randn(C)
    fx = FixedFormat(11)
    xq = fx.quantize(x.numpy())
    fg = FixedFormat(13)
    fz = normalize.norm_frac_bits(C)
    fy = FixedFormat(11)
    e = math.floor(C * C * 1e-6 * 2.0 ** (2 * 11) + 0.5)
    gq = fg.quantize(w.numpy())
    bq = np.floor(np.ldexp(b.double().numpy(), fz + 13) + 0.5).astype(np.int64)
    y = normalize.layer_norm(xq, gq, bq, dim=1, e=e, fx=fx, fg=fg, fy=fy, rounding="nearest",
                             overflow="saturate").y
    xd = torch.from_numpy(fx.dequantize(xq)).double()
    ref = F.layer_norm(xd.movedim(1, -1), (C,), w.double(), b.double(), 1e-6).movedim(-1, 1).numpy()
    gmax = float(w.abs().max())
    # 1/sqrt (stated bound) + z rounding (1/2 code of f_z, times |g|) + g and beta codes + y rounding
    bound = (gmax * math.sqrt(C - 1) * normalize.RSQRT_MAX_REL + gmax * 2.0 ** -(fz + 1)
             + math.sqrt(C) * 2.0 ** -(13 + 1) + 2.0 ** -(fz + 13 + 1) + 2.0 ** -(11 + 1))
    err = np.abs(y / 2.0**11 - ref).max()
    assert err <= bound, (err, bound)
    assert err > 0


class DenseLike(nn.Module):
    """A BatchNorm after a concat (DenseNet/MixNet), layer scale, LayerNorm2d-style and
    channels-last LayerNorm + Linear blocks, and a channel shuffle whose sizes come from x.size()."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(12)
        self.c = nn.Conv2d(12, 16, 1)
        self.gamma = nn.Parameter(torch.rand(16) + 0.5)
        self.ln_last = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        y = F.relu(self.bn(y))
        y = self.c(y)
        y = y.mul(self.gamma.reshape(1, -1, 1, 1))
        b, c, h, w = y.size()
        y = y.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)  # shuffle
        z = y.permute(0, 2, 3, 1)
        z = self.fc2(F.gelu(self.fc1(self.ln_last(z))))
        y = y + z.permute(0, 3, 1, 2)
        return self.head(y.mean((2, 3)))


def _randomize_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)


@pytest.mark.parametrize("mode,rounding,overflow", [("wide", "nearest", "saturate"), ("eyeriss", "floor", "wrap")])
def test_new_ops_convert_bit_exact_and_track_float(mode, rounding, overflow):
    torch.manual_seed(0)
    model = DenseLike()
    _randomize_bn(model)
    model.eval()
    x = torch.randn(6, 3, 6, 6)
    fixed = convert(model, x, mode=mode, rounding=rounding, overflow=overflow)
    kinds = {type(op) for op in fixed.int_ops}
    assert {AffineOp, LayerNormOp, PermuteOp, ReshapeOp} <= kinds
    affines = [op for op in fixed.int_ops if isinstance(op, AffineOp)]
    assert {op.op for op in affines} == {"BatchNorm2d", "mul"}
    assert [op.dim for op in fixed.int_ops if isinstance(op, LayerNormOp)] == [-1]
    bad, checked = mismatches(fixed, x)
    assert bad == [] and checked >= 15
    if mode == "wide":
        ref = model(x)
        assert (fixed(x) - ref).abs().max().item() < 0.02 * ref.abs().max().item()
    # sizes are read from the tensor at run time: another batch size runs and still tracks float
    x2 = torch.randn(3, 3, 6, 6)
    assert fixed(x2).shape == (3, 5)
    lns = [lr for lr in fixed.report.layers if lr.op == "LayerNorm"]
    assert lns and all(lr.approx_error > 0 for lr in lns)


def test_layer_norm2d_subclass_axis_is_found():
    timm = pytest.importorskip("timm")
    from timm.layers import LayerNorm2d

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 12, 3), LayerNorm2d(12), nn.Conv2d(12, 4, 1)).eval()
    model[1].weight.data.uniform_(0.5, 1.5)
    model[1].bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(4, 3, 7, 7)
    fixed = convert(model, x, mode="wide", rounding="nearest", overflow="saturate")
    (ln,) = [op for op in fixed.int_ops if isinstance(op, LayerNormOp)]
    assert ln.dim == 1 and ln.op == "LayerNorm2d"
    assert mismatches(fixed, x)[0] == []
    assert (fixed(x) - model(x)).abs().max().item() < 0.01 * model(x).abs().max().item()
    assert timm is not None


def test_unsupported_sizes_and_norms_name_the_module_and_op():
    class Odd(nn.Module):
        def forward(self, x):
            return x.view(x.size(0), x.size(1) ** 1, -1)  # a power: not a supported size expression

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.odd = Odd()

        def forward(self, x):
            return self.odd(x)

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), Inner())
    with pytest.raises(UnsupportedLayerError, match=r"op 'view' in module '2.odd'.*'pow'"):
        convert(model, torch.randn(2, 3, 2, 2))

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.LayerNorm([4, 2, 2]))
    with pytest.raises(UnsupportedLayerError, match=r"layer '1' \(LayerNorm\).*one dim"):
        convert(model, torch.randn(2, 3, 2, 2))


def _golden_from_file(d, arith):
    kind = str(d["kind"])
    kw = {"rounding": arith["rounding"], "overflow": arith["overflow"]}
    fx, fy = FixedFormat(int(d["f_x"])), FixedFormat(int(d["f_y"]))
    if kind == "affine":
        return golden.affine(d["x"], d["a"], d["b"], dim=int(d["dim"]), fx=fx, fa=FixedFormat(int(d["f_a"])),
                             fy=fy, **kw).y
    assert kind == "layer_norm"
    assert int(d["f_z"]) == normalize.norm_frac_bits(len(d["g"]))
    return golden.layer_norm(d["x"], d["g"], d["beta"], dim=int(d["dim"]), e=int(d["e"]), fx=fx,
                             fg=FixedFormat(int(d["f_g"])), fy=fy, **kw).y


def test_vectors_export_affine_and_layer_norm(tmp_path):
    from hwaware.fixedpoint.vectors import export_vectors

    torch.manual_seed(0)
    model = DenseLike()
    _randomize_bn(model)
    model.eval()
    x = torch.randn(4, 3, 6, 6)
    vs = export_vectors(model, tmp_path / "v", inputs=x, mode="wide", rounding="nearest", overflow="saturate")
    manifest = json.loads(vs.manifest.read_text())
    entries = [e for e in manifest["ops"] if e["kind"] in ("affine", "layer_norm")]
    assert sorted({e["kind"] for e in entries}) == ["affine", "layer_norm"]
    for e in entries:
        d = np.load(tmp_path / "v" / e["file"])
        assert np.array_equal(_golden_from_file(d, {"rounding": vs.rounding, "overflow": vs.overflow}), d["y"]), e["name"]
        key = "b" if e["kind"] == "affine" else "beta"
        lines = (tmp_path / "v" / e["hex"][key]).read_text().split()
        back = np.array([int(v, 16) - (1 << 64) if int(v, 16) >= 1 << 63 else int(v, 16) for v in lines])
        assert len(lines[0]) == 16 and np.array_equal(back, d[key])
    # the channels-last Linear layers are written with their rows flattened
    lin = [layer for layer in manifest["layers"] if layer["name"] in ("fc1", "fc2")]
    assert lin and all(len(layer["x_shape"]) == 2 and layer["x_shape"][0] == 4 * 6 * 6 for layer in lin)
