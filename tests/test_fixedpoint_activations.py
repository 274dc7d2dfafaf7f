"""Integer activations, multiply and pooling forms: fast kernels bit-exact against the golden
reference, and the golden reference against float PyTorch (exact ops within the final rounding,
table ops within the stated gate error)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwaware.fixedpoint import activations as act
from hwaware.fixedpoint import golden, pooling
from hwaware.fixedpoint.format import FixedFormat

ARITH = [("floor", "wrap"), ("nearest", "saturate")]


def _codes(shape, seed=0, lo=-32768, hi=32767):
    return np.random.default_rng(seed).integers(lo, hi + 1, size=shape).astype(np.int16)


def _deq(codes, f):
    return np.ldexp(codes.astype(np.float64), -f)


@pytest.mark.parametrize("rounding,overflow", ARITH)
@pytest.mark.parametrize("fx,fy", [(12, 12), (8, 13), (14, 9), (-1, 3), (20, 15)])
def test_fast_equals_golden(rounding, overflow, fx, fy):
    x = _codes((2, 3, 5, 7), seed=fx + 40)
    x.ravel()[:6] = [-32768, 32767, 0, -1, 1, 3 << max(fx, 0) if fx < 13 else 5]
    Fx, Fy = FixedFormat(fx), FixedFormat(fy)
    kw = {"fx": Fx, "fy": Fy, "rounding": rounding, "overflow": overflow}
    for fn in ("hardsigmoid", "hardswish"):
        a, b = getattr(act, fn)(x, **kw), getattr(golden, fn)(x, **kw)
        assert np.array_equal(a.y, b.y) and a.output_overflows == b.output_overflows, fn
    for fn in act.LUT_FUNCTIONS:
        a, b = act.lut(x, fn, **kw), golden.lut(x, fn, **kw)
        assert np.array_equal(a.y, b.y) and a.output_overflows == b.output_overflows, fn
    a = act.leaky_relu(x, 1311, 17, **kw)
    b = golden.leaky_relu(x, 1311, 17, **kw)
    assert np.array_equal(a.y, b.y) and a.output_overflows == b.output_overflows
    assert np.array_equal(act.clamp(x, 0.0, 6.0, fx=Fx).y, golden.clamp(x, 0.0, 6.0, fx=Fx).y)
    assert np.array_equal(act.clamp(x, -1.0, 1.0, fx=Fx).y, golden.clamp(x, -1.0, 1.0, fx=Fx).y)
    g = _codes((2, 3, 1, 1), seed=3)
    a = act.mul(x, g, fa=Fx, fb=FixedFormat(14), fy=Fy, rounding=rounding, overflow=overflow)
    b = golden.mul(x, g, fa=Fx, fb=FixedFormat(14), fy=Fy, rounding=rounding, overflow=overflow)
    assert np.array_equal(a.y, b.y) and a.output_overflows == b.output_overflows


def test_exact_ops_match_float_within_final_rounding():
    """ReLU6, Hardtanh, Hardswish, Hardsigmoid: one rounding of the exact value (nearest: 1/2 LSB)."""
    fx, fy = 11, 12
    x = _codes((4096,), seed=1, lo=-8 * 2**fx, hi=8 * 2**fx - 1)
    xf = torch.from_numpy(_deq(x, fx))
    lsb = 2.0**-fy
    for fn, ref in (("hardswish", F.hardswish), ("hardsigmoid", F.hardsigmoid)):
        y = getattr(act, fn)(x, fx=FixedFormat(fx), fy=FixedFormat(fy), rounding="nearest", overflow="saturate")
        assert np.abs(_deq(y.y, fy) - ref(xf).numpy()).max() <= lsb / 2 + 1e-15, fn
    y = act.clamp(x, 0.0, 6.0, fx=FixedFormat(fx)).y
    assert np.array_equal(_deq(y, fx), F.relu6(xf).numpy())  # exact
    y = act.clamp(x, -2.0, 3.0, fx=FixedFormat(fx)).y
    assert np.array_equal(_deq(y, fx), F.hardtanh(xf, -2.0, 3.0).numpy())
    y = act.leaky_relu(x, 1, 3, fx=FixedFormat(fx), fy=FixedFormat(fx), rounding="nearest", overflow="saturate")
    assert np.abs(_deq(y.y, fx) - F.leaky_relu(xf, 0.125).numpy()).max() <= 2.0**-fx / 2  # slope 1/8 exact


@pytest.mark.parametrize("gate,fn", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                                     ("phi", lambda t: 0.5 * (1 + torch.erf(t / math.sqrt(2))))])
def test_gate_error_is_within_the_stated_bound(gate, fn):
    """Sweep every input the table sees (16 fractional bits over [-17, 17]) against float64."""
    u = np.arange(-17 * 2**16, 17 * 2**16, dtype=np.int64)
    g = act.gate_codes(u, gate, fx=FixedFormat(16))
    err = np.abs(np.ldexp(g.astype(np.float64), -15) - fn(torch.from_numpy(np.ldexp(u.astype(np.float64), -16))).numpy())
    assert err.max() <= act.GATE_MAX_ERROR[gate]
    assert err.max() > act.GATE_MAX_ERROR[gate] / 4  # the stated bound is tight, not padding


def test_silu_gelu_error_follows_the_gate_bound():
    fx, fy = 11, 11
    x = _codes((8192,), seed=2, lo=-12 * 2**fx, hi=12 * 2**fx - 1)
    xf = torch.from_numpy(_deq(x, fx))
    for fn, ref, gate in (("silu", F.silu, "sigmoid"), ("gelu", F.gelu, "phi")):
        y = act.lut(x, fn, fx=FixedFormat(fx), fy=FixedFormat(fy), rounding="nearest", overflow="saturate")
        err = np.abs(_deq(y.y, fy) - ref(xf).numpy())
        assert (err <= np.abs(xf.numpy()) * (act.GATE_MAX_ERROR[gate] + 2.0**-15) + 2.0**-fy).all(), fn


@pytest.mark.parametrize("rounding,overflow", ARITH)
@pytest.mark.parametrize("k,s,p,ceil,incl", [(3, 2, 1, False, False), (3, 2, 1, True, True),
                                              (3, 2, 0, True, False), (2, 2, 0, True, True), (3, 1, 1, False, True)])
def test_avg_pool_forms(rounding, overflow, k, s, p, ceil, incl):
    x = _codes((2, 3, 7, 8), seed=k + s)
    fx, fy = FixedFormat(10), FixedFormat(11)
    H, W = x.shape[2:]
    got = pooling.avg_pool(x, pooling.pool_windows(H, k, s, p, ceil), pooling.pool_windows(W, k, s, p, ceil),
                           count_padded=incl, fx=fx, fy=fy, rounding=rounding, overflow=overflow)
    want = golden.avg_pool2d_ext(x, k, s, p, ceil_mode=ceil, count_include_pad=incl, fx=fx, fy=fy,
                                 rounding=rounding, overflow=overflow)
    assert np.array_equal(got.y, want.y) and got.output_overflows == want.output_overflows
    # the golden windows and divisors are PyTorch's: same shape, values within one rounding
    ref = F.avg_pool2d(torch.from_numpy(_deq(x, 10)), k, s, p, ceil_mode=ceil, count_include_pad=incl)
    assert want.y.shape == tuple(ref.shape)
    inside = np.abs(ref.numpy()) < 15.9  # outputs the 11-bit-fraction format can hold
    if overflow == "saturate":
        assert np.abs(_deq(want.y, 11) - ref.numpy())[inside].max() <= 2.0**-11 + 1e-12
    m = pooling.max_pool(x, (k, k), (s, s), (p, p) if p * 2 <= k else (0, 0), ceil)
    gm = golden.max_pool2d_ext(x, k, s, p if p * 2 <= k else 0, ceil_mode=ceil)
    assert np.array_equal(m.y, gm.y)


@pytest.mark.parametrize("out", [(1, 1), (3, 3), (2, 5)])
def test_adaptive_avg_pool_uneven(out):
    x = _codes((1, 2, 7, 9), seed=5)
    fx, fy = FixedFormat(9), FixedFormat(9)
    got = pooling.avg_pool(x, pooling.adaptive_windows(7, out[0]), pooling.adaptive_windows(9, out[1]),
                           count_padded=True, fx=fx, fy=fy, rounding="nearest", overflow="saturate")
    want = golden.adaptive_avg_pool2d(x, out, fx=fx, fy=fy, rounding="nearest", overflow="saturate")
    assert np.array_equal(got.y, want.y)
    ref = F.adaptive_avg_pool2d(torch.from_numpy(_deq(x, 9)), out).numpy()
    assert np.abs(_deq(want.y, 9) - ref).max() <= 2.0**-10 + 1e-12
