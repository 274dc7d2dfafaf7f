"""Fast integer kernels are bit-identical to the golden reference; the golden reference is the contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwaware.errors import HwawareError
from hwaware.fixedpoint import _native, golden, ops
from hwaware.fixedpoint.format import FixedFormat, frac_bits_for, shift_cut

MODES = ["eyeriss", "wide"]
ROUNDINGS = ["floor", "nearest"]
OVERFLOWS = ["wrap", "saturate"]
SETTINGS = settings(deadline=None, max_examples=int(__import__("os").environ.get("HWAWARE_HYP_EXAMPLES", 60)),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(params=["native", "native-tiled", "scalar", "torch"])
def backend(request, monkeypatch):
    """Run kernel tests on every exact path: the C kernels (AVX-512 eyeriss loop where the CPU has
    it), the same with tiles of 64 rows (tile remainders), the scalar C eyeriss loop, and the torch
    fallback."""
    if request.param == "torch":
        monkeypatch.setenv("HWAWARE_NO_NATIVE", "1")
        return request.param
    if _native.library() is None:
        pytest.skip("no C compiler here: the native kernel cannot be built")
    if request.param == "scalar":
        monkeypatch.setenv("HWAWARE_NO_SIMD", "1")
    if request.param == "native-tiled":
        monkeypatch.setattr(ops, "_TILE_BYTES", 1)
    return request.param


def codes(draw, shape, extreme_p=0.2):
    """int16 codes with many extremes (-32768, 32767, -32767, 0)."""
    n = int(np.prod(shape))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = rng.integers(-32768, 32768, n)
    kind = rng.random(n)
    a[kind < extreme_p] = rng.choice([-32768, 32767, -32767, 0], (kind < extreme_p).sum())
    scale = draw(st.sampled_from([1, 1, 8, 256]))  # small codes too (fewer overflows)
    a = np.where(kind < extreme_p, a, a // scale)
    return a.astype(np.int16).reshape(shape)


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 1, 2, 3, "dw"]))
    Cg = 1 if groups == "dw" else draw(st.integers(1, 3))
    g = draw(st.integers(2, 4)) if groups == "dw" else groups
    # up to 40 channels: the AVX-512 loop's blocks of 16 and 32 channels and their remainders
    Mg = 1 if groups == "dw" else draw(st.sampled_from([1, 2, 3, 5, 16, 17, 33, 40]))
    R, S = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    U, Uw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    P, Pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, R - 2 * P), 6))
    W = draw(st.integers(max(1, S - 2 * Pw), 6))
    N = draw(st.integers(1, 3 if Mg < 16 else 2))
    mode = draw(st.sampled_from(MODES))
    fx, fw = draw(st.integers(-4, 20)), draw(st.integers(-4, 20))
    fy = fx + fw - draw(st.sampled_from([-20, -3, -1, 0, 1, 2, 7, 13, 15, 16, 29, 30, 31, 40, 70]))
    fy = max(-32, min(48, fy))
    bits = draw(st.sampled_from([16, 16, 16, 8, 4]))
    x = codes(draw, (N, Cg * g, H, W))
    w = codes(draw, (Mg * g, Cg, R, S))
    b = None
    if draw(st.booleans()):
        b = codes(draw, (Mg * g,)).astype(np.int64)
        if mode == "wide":
            b = b * draw(st.sampled_from([1, 3, 65536]))  # int32 at fx + fw
    kw = {"fx": FixedFormat(fx), "fw": FixedFormat(fw), "fy": FixedFormat(fy, bits), "stride": (U, Uw),
              "padding": (P, Pw), "groups": g, "mode": mode, "rounding": draw(st.sampled_from(ROUNDINGS)),
              "overflow": draw(st.sampled_from(OVERFLOWS)), "relu": draw(st.booleans())}
    return x, w, b, kw


def same(a, b):
    assert a.y.dtype == np.int16 and b.y.dtype == np.int16
    assert a.y.shape == b.y.shape
    assert np.array_equal(a.y, b.y)
    assert (a.product_overflows, a.output_overflows) == (b.product_overflows, b.output_overflows)


@SETTINGS
@given(case=conv_cases())
def test_conv2d_matches_golden(backend, case):
    x, w, b, kw = case
    same(ops.conv2d(x, w, b, **kw), golden.conv2d(x, w, b, **kw))


@SETTINGS
@given(case=conv_cases())
def test_conv1d_and_linear_match_golden(backend, case):
    x, w, b, kw = case
    x1, w1 = x[:, :, 0, :], w[:, :, 0, :]
    same(ops.conv1d(x1, w1, b, **{**kw, "stride": kw["stride"][1], "padding": kw["padding"][1]}),
         golden.conv1d(x1, w1, b, **{**kw, "stride": kw["stride"][1], "padding": kw["padding"][1]}))
    xl = x.reshape(x.shape[0], -1)[:, :7]
    wl = np.resize(w.reshape(-1), (3, xl.shape[1])).astype(np.int16)
    lkw = {k: v for k, v in kw.items() if k not in ("stride", "padding", "groups")}
    bl = None if b is None else np.resize(b, 3)
    same(ops.linear(xl, wl, bl, **lkw), golden.linear(xl, wl, bl, **lkw))


@st.composite
def pool_cases(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    H, W = draw(st.integers(k[0], 7)), draw(st.integers(k[1], 7))
    x = codes(draw, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W))
    fx = draw(st.integers(-5, 20))
    fy = fx + draw(st.sampled_from([-35, -3, -1, 0, 1, 2, 5, 35]))
    return x, k, stride, pad, FixedFormat(fx), FixedFormat(max(-32, min(48, fy)), draw(st.sampled_from([16, 6])))


@SETTINGS
@given(case=pool_cases(), rounding=st.sampled_from(ROUNDINGS), overflow=st.sampled_from(OVERFLOWS))
def test_pooling_matches_golden(backend, case, rounding, overflow):
    x, k, stride, pad, fx, fy = case
    same(ops.max_pool2d(x, k, stride, pad), golden.max_pool2d(x, k, stride, pad))
    same(ops.avg_pool2d(x, k, stride, pad, fx=fx, fy=fy, rounding=rounding, overflow=overflow),
         golden.avg_pool2d(x, k, stride, pad, fx=fx, fy=fy, rounding=rounding, overflow=overflow))
    # float reference for the average: mean value, rounded per the contract, when nothing overflows
    ref = torch.nn.functional.avg_pool2d(torch.from_numpy(x).double(), k, stride, pad)
    r = golden.avg_pool2d(x, k, stride, pad, fx=fx, fy=fy, rounding=rounding, overflow=overflow)
    scaled = ref.numpy() * 2.0 ** (fy.frac_bits - fx.frac_bits)
    expect = np.floor(scaled + (0.5 if rounding == "nearest" else 0.0))
    if r.output_overflows == 0 and abs(fy.frac_bits - fx.frac_bits) < 20:
        # float64 rounding can move an exact tie; allow those to differ by one code
        assert np.abs(expect - r.y).max() <= 1
        assert np.mean(expect == r.y) > 0.9


@SETTINGS
@given(data=st.data(), rounding=st.sampled_from(ROUNDINGS), overflow=st.sampled_from(OVERFLOWS),
       relu=st.booleans())
def test_add_concat_requantize_flatten_relu_match_golden(backend, data, rounding, overflow, relu):
    shape = (2, 3, 2, 2)
    a, b = codes(data.draw, shape), codes(data.draw, shape)
    f = [data.draw(st.integers(-30, 46)) for _ in range(3)]
    fa, fb, fy = FixedFormat(f[0]), FixedFormat(f[1]), FixedFormat(f[2], data.draw(st.sampled_from([16, 5])))
    same(ops.add(a, b, fa=fa, fb=fb, fy=fy, rounding=rounding, overflow=overflow, relu=relu),
         golden.add(a, b, fa=fa, fb=fb, fy=fy, rounding=rounding, overflow=overflow, relu=relu))
    same(ops.concat([a, b], fxs=[fa, fb], fy=fy, rounding=rounding, overflow=overflow),
         golden.concat([a, b], fxs=[fa, fb], fy=fy, rounding=rounding, overflow=overflow))
    same(ops.requantize(a, fx=fa, fy=fy, rounding=rounding, overflow=overflow),
         golden.requantize(a, fx=fa, fy=fy, rounding=rounding, overflow=overflow))
    same(ops.flatten(a), golden.flatten(a))
    same(ops.relu(a), golden.relu(a))


# --- the golden reference against independent computations ------------------------------------

@pytest.mark.parametrize("groups", [1, 2, 4])
def test_golden_geometry_matches_torch_conv(groups):
    # s = 0 and small codes: no rounding, no overflow, so y is the exact integer convolution
    rng = np.random.default_rng(3)
    x = rng.integers(-20, 20, (2, 4, 7, 6)).astype(np.int16)
    w = rng.integers(-20, 20, (8, 4 // groups, 3, 2)).astype(np.int16)
    b = rng.integers(-50, 50, 8)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                     torch.from_numpy(b).double(), stride=(2, 1), padding=(1, 2),
                                     groups=groups)
    for mode in MODES:
        r = golden.conv2d(x, w, b, fx=FixedFormat(3), fw=FixedFormat(5), fy=FixedFormat(8),
                          stride=(2, 1), padding=(1, 2), groups=groups, mode=mode)
        assert np.array_equal(r.y, ref.numpy().astype(np.int16))
        assert r.product_overflows == r.output_overflows == 0


def test_worked_example_from_format_docstring():
    # 1.5 at f=14 is 24576; 24576^2 >> 14 = 36864 does not fit: wrap -> -28672, saturate -> 32767
    x = np.array([[24576]], np.int16)
    kw = {"fx": FixedFormat(14), "fw": FixedFormat(14), "fy": FixedFormat(14)}
    for mode in MODES:
        assert golden.linear(x, x, mode=mode, overflow="wrap", **kw).y[0, 0] == 36864 - 65536
        assert golden.linear(x, x, mode=mode, overflow="saturate", **kw).y[0, 0] == 32767


def test_eyeriss_rounds_each_product_wide_rounds_once():
    # x = [1, 1], w = [1, 1], s = 1: eyeriss floor(1/2) + floor(1/2) = 0; wide floor(2/2) = 1
    x, w = np.array([[1, 1]], np.int16), np.array([[1, 1]], np.int16)
    kw = {"fx": FixedFormat(1), "fw": FixedFormat(0), "fy": FixedFormat(0)}
    assert golden.linear(x, w, mode="eyeriss", **kw).y[0, 0] == 0
    assert golden.linear(x, w, mode="wide", **kw).y[0, 0] == 1
    # nearest rounds half up, also for negatives: -1/2 -> 0, -3/2 -> -1
    assert golden.linear(np.array([[-1]], np.int16), np.array([[1]], np.int16), mode="eyeriss",
                         rounding="nearest", **kw).y[0, 0] == 0
    assert golden.linear(np.array([[-3]], np.int16), np.array([[1]], np.int16), mode="eyeriss",
                         rounding="nearest", **kw).y[0, 0] == -1
    assert golden.linear(np.array([[-3]], np.int16), np.array([[1]], np.int16), mode="eyeriss",
                         rounding="floor", **kw).y[0, 0] == -2


def test_eyeriss_adder_wraps_and_counts_the_overflow():
    # 3 products of 20000 each (s = 0): exact sum 60000 leaves 16 bits, the adder wraps to -5536
    x = np.array([[20000, 20000, 20000]], np.int16)
    w = np.array([[1, 1, 1]], np.int16)
    kw = {"fx": FixedFormat(0), "fw": FixedFormat(0), "fy": FixedFormat(0), "mode": "eyeriss"}
    for overflow in OVERFLOWS:  # the adder wraps whatever the product overflow rule
        r = golden.linear(x, w, overflow=overflow, **kw)
        assert (r.y[0, 0], r.product_overflows, r.output_overflows) == (60000 - 65536, 0, 1)
        assert np.array_equal(ops.linear(x, w, overflow=overflow, **kw).y, r.y)
    # wide: one cut at the end follows the overflow rule
    assert golden.linear(x, w, **{**kw, "mode": "wide"}, overflow="saturate").y[0, 0] == 32767


@settings(deadline=None, max_examples=300)
@given(v=st.integers(-(2**60), 2**60), s=st.integers(-80, 80), rounding=st.sampled_from(ROUNDINGS),
       overflow=st.sampled_from(OVERFLOWS), bits=st.sampled_from([16, 8, 2]))
def test_shift_cut_matches_python_integers(v, s, rounding, overflow, bits):
    q = v * 2 ** (-s) if s <= 0 else (v + (2 ** (s - 1) if rounding == "nearest" else 0)) // 2**s
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    expect = ((q - lo) % 2**bits + lo) if overflow == "wrap" else min(max(q, lo), hi)
    for arr in (np.array([v], np.int64), torch.tensor([v], dtype=torch.int64)):
        y, over = shift_cut(arr, s, rounding, overflow, bits)
        assert int(y[0]) == expect and bool(over[0]) == (not lo <= q <= hi)


def test_frac_bits_rule():
    assert frac_bits_for(1.0) == 14  # 1.0 * 2**14 = 16384 <= 32767 < 32768
    assert frac_bits_for(32767.0) == 0 and frac_bits_for(32767.5) == -1
    assert frac_bits_for(0.999) == 15
    assert frac_bits_for(1.0, headroom=1) == 13
    assert frac_bits_for(0.0) == 48


def test_bad_formats_and_options_are_clear_errors():
    with pytest.raises(HwawareError, match="frac_bits must be within -32..48, got 60"):
        FixedFormat(60)
    with pytest.raises(HwawareError, match="bits must be within 2..16"):
        FixedFormat(3, 32)
    x = np.zeros((1, 2, 3, 3), np.int16)
    w = np.zeros((2, 2, 1, 1), np.int16)
    f = FixedFormat(0)
    with pytest.raises(HwawareError, match="mode must be one of eyeriss, wide, got 'narrow'"):
        ops.conv2d(x, w, fx=f, fw=f, fy=f, mode="narrow")
    with pytest.raises(HwawareError, match="rounding must be one of"):
        ops.conv2d(x, w, fx=f, fw=f, fy=f, rounding="even")
    with pytest.raises(HwawareError, match="codes must fit int16"):
        ops.conv2d(x.astype(np.int32) + 40000, w, fx=f, fw=f, fy=f)
    with pytest.raises(HwawareError, match="groups"):
        ops.conv2d(x, w, fx=f, fw=f, fy=f, groups=2)
    with pytest.raises(HwawareError, match="NaN"):
        f.quantize(np.array([1.0, np.nan]))


def test_without_a_compiler_the_torch_path_is_used_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("HWAWARE_CACHE", str(tmp_path))
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_tried", False)
    with pytest.warns(RuntimeWarning, match="native kernel unavailable"):
        assert _native.library() is None
    x = np.array([[3, -5]], np.int16)
    f = FixedFormat(0)
    r = ops.linear(x, x, fx=f, fw=f, fy=f)  # still exact: 9 + 25
    assert r.y[0, 0] == 34


@pytest.mark.parametrize("s", [1, 14, 15, 16, 17, 30])
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("overflow", OVERFLOWS)
def test_extreme_codes_on_every_path(backend, monkeypatch, s, rounding, overflow):
    # -32768 * -32768 = 2**30 (the largest product): overflows at s <= 15, fits from s = 16 on;
    # 7 rows x 19 channels x 5 products: row blocks of 4 and 1, channel blocks of 16 and 3, odd K
    vals = np.array([-32768, 32767, -32767, -1, 0, 1, -32768], np.int16)
    x = np.resize(vals, (7, 5)).astype(np.int16)
    w = np.resize(vals[::-1], (19, 5)).astype(np.int16)
    w[0] = -32768
    x[0] = -32768
    calls = []
    for name in ("_conv_wide_nhwc", "_conv_eyeriss_nhwc"):
        real = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    for mode in MODES:
        kw = {"fx": FixedFormat(s), "fw": FixedFormat(0), "fy": FixedFormat(0), "mode": mode,
              "rounding": rounding, "overflow": overflow}
        b = np.arange(19) * (1 if mode == "eyeriss" else 977)
        same(ops.linear(x, w, b, **kw), golden.linear(x, w, b, **kw))
    if backend.startswith("native"):  # the fast paths did run (the AVX-512 one where the CPU has it)
        assert "_conv_wide_nhwc" in calls
        assert ("_conv_eyeriss_nhwc" in calls) == bool(_native.simd())
    else:
        assert "_conv_eyeriss_nhwc" not in calls


@pytest.mark.parametrize("overflow", OVERFLOWS)
def test_long_sums_flush_the_overflow_counters(backend, overflow):
    # K = 9001 products per output (> 2 * 2048 pairs: the AVX-512 loop's 16-bit overflow counters
    # are flushed twice), almost every product overflowing at s = 3
    rng = np.random.default_rng(5)
    x = rng.choice(np.array([-32768, 32767, -20000, 20000, 5], np.int16), (5, 9001))
    w = rng.choice(np.array([-32768, 32767, -30000, 3], np.int16), (18, 9001))
    for mode in MODES:
        kw = {"fx": FixedFormat(3), "fw": FixedFormat(0), "fy": FixedFormat(0), "mode": mode,
              "overflow": overflow}
        got, ref = ops.linear(x, w, **kw), golden.linear(x, w, **kw)
        same(got, ref)
        assert mode == "wide" or ref.product_overflows > 65536  # the counters really did fill up


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("threads", [2, 3])
def test_conv2d_split_over_threads_matches_golden(mode, threads):
    """Layers big enough to be split across threads (each slice of rows one pipeline on one thread)
    give the golden result, overflow counts included, and leave torch's thread count as it was."""
    if _native.library() is None:
        pytest.skip("no C compiler here: the native kernel cannot be built")
    rng = np.random.default_rng(threads)
    x = rng.integers(-32768, 32768, (2, 5, 17, 15)).astype(np.int16)
    w = rng.integers(-32768, 32768, (33, 5, 3, 3)).astype(np.int16)
    b = rng.integers(-32768, 32768, 33).astype(np.int64)
    kw = {"fx": FixedFormat(8), "fw": FixedFormat(12), "fy": FixedFormat(9), "stride": 1, "padding": 1,
          "mode": mode, "rounding": "nearest", "overflow": "wrap", "relu": False}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        r = ops.conv2d(x, w, b, **kw)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    g = golden.conv2d(x, w, b, **kw)
    assert r.product_overflows + r.output_overflows > 0  # the counts summed over slices are checked
    same(r, g)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("k", [(1, 1), (2, 2), (3, 2), (2, 3), (3, 3)])
def test_max_pool_non_overlapping_windows_match_golden(k, ceil_mode):
    """Pools with kernel == stride and no padding take the strided-view path (whole windows), and
    fall back to max_pool2d for ceil_mode's partial last window: both equal the golden maximum,
    extremes (-32768 in every window of a plane) included."""
    from hwaware.fixedpoint import pooling

    rng = np.random.default_rng(sum(k))
    for H, W in [(6, 6), (7, 8), (k[0], k[1]), (9, 5)]:
        x = rng.integers(-32768, 32768, (2, 3, H, W)).astype(np.int16)
        x[0, 0] = -32768
        got = pooling.max_pool(x, k, k, (0, 0), ceil_mode)
        want = golden.max_pool2d_ext(x, k, k, 0, ceil_mode=ceil_mode)
        assert got.y.dtype == np.int16 and np.array_equal(got.y, want.y)
