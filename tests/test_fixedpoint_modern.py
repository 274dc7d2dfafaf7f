"""Converting modern activations, squeeze-excitation, pooling forms and Conv2dSame: every integer op
of the converted model re-run through the golden reference gives the same codes, the result tracks
the float model, and table activations report their stated error bound per layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwaware.fixedpoint import golden
from hwaware.fixedpoint.act_ops import ClampOp, HardOp, LeakyReluOp, LutOp, MulOp, WindowPoolOp
from hwaware.fixedpoint.convert import convert
from hwaware.errors import UnsupportedLayerError


class Modern(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.a1 = nn.ReLU6()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.a2 = nn.Hardswish()
        self.se_r = nn.Conv2d(8, 4, 1)
        self.se_e = nn.Conv2d(4, 8, 1)
        self.c3 = nn.Conv2d(8, 8, 1)
        self.pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
        self.mp = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.a1(self.c1(x))
        x = self.a2(self.c2(x))
        s = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(self.se_e(F.silu(self.se_r(s))))
        x = x * s
        x = F.gelu(self.c3(x))
        x = F.leaky_relu(x, 0.125) + torch.tanh(x)
        x = self.mp(self.pool(F.hardsigmoid(x) * x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def _golden_run(op, xs, arith):
    kw = {"rounding": arith["rounding"], "overflow": arith["overflow"]}
    if isinstance(op, ClampOp):
        return golden.clamp(xs[0], op.lo, op.hi, fx=op.fy).y
    if isinstance(op, LeakyReluOp):
        return golden.leaky_relu(xs[0], op.slope_code, op.fs, fx=op.fx, fy=op.fy, **kw).y
    if isinstance(op, HardOp):
        return getattr(golden, op.fn)(xs[0], fx=op.fx, fy=op.fy, **kw).y
    if isinstance(op, LutOp):
        return golden.lut(xs[0], op.fn, fx=op.fx, fy=op.fy, **kw).y
    if isinstance(op, MulOp):
        return golden.mul(xs[0], xs[1], fa=op.fa, fb=op.fb, fy=op.fy, **kw).y
    if isinstance(op, WindowPoolOp):
        if op.kind == "max":
            return golden.max_pool2d_ext(xs[0], op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode).y
        if op.adaptive is not None:
            y = golden.adaptive_avg_pool2d(xs[0], op.adaptive, fx=op.fx, fy=op.fy, **kw).y
        else:
            y = golden.avg_pool2d_ext(xs[0], op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode,
                                      count_include_pad=op.count_include_pad, fx=op.fx, fy=op.fy, **kw).y
        return y if op.keepdim else y.reshape(y.shape[:2])
    return None


@pytest.mark.parametrize("mode,rounding,overflow", [("wide", "nearest", "saturate"), ("eyeriss", "floor", "wrap")])
def test_modern_ops_bit_exact_against_golden(mode, rounding, overflow):
    torch.manual_seed(0)
    model = Modern().eval()
    x = torch.randn(6, 3, 9, 9)
    fixed = convert(model, x, mode=mode, rounding=rounding, overflow=overflow)
    kinds = {type(op) for op in fixed.int_ops}
    assert {ClampOp, HardOp, LutOp, MulOp, LeakyReluOp, WindowPoolOp} <= kinds
    run = fixed.run(fixed.quantize_input(x), keep=True)
    checked = 0
    for k, op in enumerate(fixed.int_ops):
        want = _golden_run(op, [run.values[j] for j in op.inputs], fixed.arith)
        if want is not None:
            assert np.array_equal(run.values[k], want), op.name
            checked += 1
    assert checked >= 10
    if mode == "wide":
        err = (fixed(x) - model(x)).abs().max().item()
        assert err < 0.02 * model(x).abs().max().item()
    luts = [lr for lr in fixed.report.layers if lr.op in ("sigmoid", "silu", "gelu", "tanh")]
    assert luts and all(lr.approx_error > 0 for lr in luts)
    assert all(lr.approx_error == 0 for lr in fixed.report.layers if lr.op in ("ReLU6", "Hardswish"))


class _Pools(nn.Module):
    """Pooling as functions (``functional=True``) or as the modules they compute."""

    def __init__(self, functional: bool, dims: int = 2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.functional, self.dims = functional, dims
        self.c1, self.c2, self.fc = conv(3, 6, 3, padding=1), conv(6, 6, 3, padding=1), nn.Linear(6, 4)
        if dims == 2:
            self.m1, self.m2 = nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d(2)
            self.a1, self.a2 = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), nn.AdaptiveAvgPool2d(1)
        else:
            self.m1, self.m2 = nn.MaxPool1d(3, 2, 1, ceil_mode=True), nn.MaxPool1d(2)
            self.a1, self.a2 = nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False), nn.AdaptiveAvgPool1d(1)

    def forward(self, x):
        x = F.relu(self.c1(x))
        if not self.functional:
            x = self.a1(self.m2(F.relu(self.c2(self.m1(x)))))
            return self.fc(self.a2(x).flatten(1))
        if self.dims == 2:  # positional, keyword and torch.* spellings
            x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
            x = torch.max_pool2d(F.relu(self.c2(x)), 2)
            x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        x = F.max_pool1d(x, 3, 2, 1, ceil_mode=True)
        x = F.max_pool1d(F.relu(self.c2(x)), 2)
        x = F.avg_pool1d(x, 3, 2, 1, True, False)
        return self.fc(F.adaptive_avg_pool1d(x, 1).flatten(1))


@pytest.mark.parametrize("dims", [2, 1])
@pytest.mark.parametrize("mode", ["wide", "eyeriss"])
def test_pooling_functions_convert_as_their_modules(mode, dims):
    """F.max_pool*/torch.max_pool2d/F.avg_pool*/F.adaptive_avg_pool* give the integer ops of the
    equivalent modules: the same codes at every op, and (2-D) the golden reference's codes."""
    torch.manual_seed(0)
    mods = _Pools(False, dims).eval()
    funs = _Pools(True, dims).eval()
    funs.load_state_dict(mods.state_dict())
    x = torch.randn(5, 3, 11, 11) if dims == 2 else torch.randn(5, 3, 23)
    assert torch.equal(funs(x), mods(x))
    fa, fb = convert(mods, x, mode=mode), convert(funs, x, mode=mode)
    pools = [op for op in fb.int_ops if isinstance(op, WindowPoolOp)]
    assert [op.kind for op in pools] == ["max", "max", "avg", "avg"]
    ra, rb = fa.run(fa.quantize_input(x), keep=True), fb.run(fb.quantize_input(x), keep=True)
    assert len(ra.values) == len(rb.values)
    for k, (a, b) in enumerate(zip(ra.values, rb.values)):
        assert np.array_equal(a, b), fb.int_ops[k].name
    if dims == 2:
        for k, op in enumerate(fb.int_ops):
            if isinstance(op, WindowPoolOp):
                want = _golden_run(op, [rb.values[j] for j in op.inputs], fb.arith)
                assert np.array_equal(rb.values[k], want), op.name
    kind = "pool2d" if dims == 2 else "pool1d"
    assert [lr.op for lr in fb.report.layers if "pool" in lr.op] == [
        f"max_{kind}", f"max_{kind}", f"avg_{kind}", f"adaptive_avg_{kind}"]  # reports name the function


def test_pooling_function_errors_name_the_function():
    class M(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(x, 2, divisor_override=3)

    with pytest.raises(UnsupportedLayerError, match=r"avg_pool2d.*divisor_override"):
        convert(nn.Sequential(nn.Conv2d(3, 3, 1), M()), torch.randn(2, 3, 4, 4))


def test_conv2d_same_converts_as_the_padded_conv():
    timm = pytest.importorskip("timm")
    from timm.layers import Conv2dSame

    torch.manual_seed(0)
    model = nn.Sequential(Conv2dSame(3, 4, 3, stride=2), nn.ReLU()).eval()
    x = torch.randn(4, 3, 8, 8)
    fixed = convert(model, x, mode="wide", rounding="nearest", overflow="saturate")
    conv = fixed.int_ops[1]
    assert conv.pad_same == (0, 1, 0, 1)  # TF SAME: total 1, the extra row/column after
    assert (fixed(x) - model(x)).abs().max().item() < 1e-2
    assert timm is not None


def test_errors_name_module_path_and_op():
    class Inner(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    model = nn.Sequential(nn.Conv2d(3, 3, 1), Inner())
    with pytest.raises(UnsupportedLayerError, match=r"op 'cumsum' in module '1'"):
        convert(model, torch.randn(2, 3, 4, 4))


def test_convert_says_where_it_ran():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU6())
    fixed = convert(model, torch.randn(2, 3, 4, 4))
    assert fixed.report.device == "cpu" and fixed.report.model_device == "cpu"
    assert "ran on cpu" in fixed.report.table()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_convert_cuda_model_and_data():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.SiLU()).cuda()
    x = torch.randn(2, 3, 4, 4, device="cuda")
    fixed = convert(model, x)
    assert fixed.report.model_device.startswith("cuda") and fixed.report.device == "cpu"
    assert next(model.parameters()).is_cuda  # the user's model stays where it was
    assert fixed(x).shape == model(x).shape


def _golden_from_file(d, arith) -> np.ndarray:
    """An exported op's y recomputed from its .npz alone (inputs, formats, parameters)."""
    from hwaware.fixedpoint.format import FixedFormat

    kind = str(d["kind"])
    f = {k: FixedFormat(int(d[k])) for k in ("f_x", "f_x2", "f_y") if k in d}
    kw = {"rounding": arith["rounding"], "overflow": arith["overflow"]}
    x = d["x"]
    if kind == "clamp":
        return golden.clamp(x, float(d["lo"]), float(d["hi"]), fx=f["f_x"]).y
    if kind == "leaky_relu":
        return golden.leaky_relu(x, int(d["slope_code"]), int(d["f_slope"]), fx=f["f_x"], fy=f["f_y"], **kw).y
    if kind in ("hardswish", "hardsigmoid"):
        return getattr(golden, kind)(x, fx=f["f_x"], fy=f["f_y"], **kw).y
    if kind == "lut":
        return golden.lut(x, str(d["fn"]), fx=f["f_x"], fy=f["f_y"], **kw).y
    if kind == "mul":
        return golden.mul(x, d["x2"], fa=f["f_x"], fb=f["f_x2"], fy=f["f_y"], **kw).y
    if kind == "add":
        return golden.add(x, d["x2"], fa=f["f_x"], fb=f["f_x2"], fy=f["f_y"], relu=bool(d["relu"]), **kw).y
    assert kind == "pool"
    k, s, p, ceil = tuple(d["kernel"]), tuple(d["stride"]), tuple(d["padding"]), bool(d["ceil_mode"])
    if str(d["pool"]) == "max":
        return golden.max_pool2d_ext(x, k, s, p, ceil_mode=ceil).y
    if d["adaptive"].size:
        y = golden.adaptive_avg_pool2d(x, tuple(d["adaptive"]), fx=f["f_x"], fy=f["f_y"], **kw).y
    else:
        y = golden.avg_pool2d_ext(x, k, s, p, ceil_mode=ceil, count_include_pad=bool(d["count_include_pad"]),
                                  fx=f["f_x"], fy=f["f_y"], **kw).y
    return y if bool(d["keepdim"]) else y.reshape(y.shape[:2])


@pytest.mark.parametrize("mode,rounding,overflow", [("wide", "nearest", "saturate"), ("eyeriss", "floor", "wrap")])
def test_vectors_export_modern_ops(tmp_path, mode, rounding, overflow):
    """Every activation, multiply, add and pooling op is exported; its y follows from its file."""
    import json
    import math

    from hwaware.fixedpoint.vectors import export_vectors

    torch.manual_seed(0)
    x = torch.randn(3, 3, 9, 9)
    vs = export_vectors(Modern().eval(), tmp_path / "v", inputs=x, mode=mode, rounding=rounding,
                        overflow=overflow)
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    kinds = {e["kind"] for e in manifest["ops"]}
    assert {"clamp", "hardswish", "hardsigmoid", "lut", "mul", "add", "leaky_relu", "pool"} <= kinds
    assert len(vs.ops) == len(manifest["ops"]) and [e["name"] for e in manifest["layers"]][-1] == "fc"
    pools = {(e["pool"], e["ceil_mode"], e["count_include_pad"], e["adaptive"] is not None)
             for e in manifest["ops"] if e["kind"] == "pool"}
    assert {("avg", True, False, False), ("max", True, True, False), ("avg", False, True, True)} <= pools
    arith = {"rounding": rounding, "overflow": overflow}
    for e in manifest["ops"]:
        d = np.load(tmp_path / "v" / e["file"])
        assert list(d["y"].shape) == e["y_shape"]
        assert np.array_equal(_golden_from_file(d, arith), d["y"]), e["name"]
        if e["kind"] == "lut":  # the table the hardware loads: round(g(-16 + k/16) * 2**15)
            g = {"sigmoid": lambda v: 1 / (1 + math.exp(-v)), "tanh": math.tanh,
                 "phi": lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))}[e["gate"]]
            want = [math.floor(g(-16 + k / 16) * 2**15 + 0.5) for k in (0, 256, 300, 512)]
            assert d["table"][[0, 256, 300, 512]].tolist() == want
        assert (tmp_path / "v" / e["hex"]["y"]).read_text().count("\n") == d["y"].size


def test_split_parts_convert_as_channel_slices():
    """timm MixedConv2d's pattern: torch.split by sizes, one conv per part, cat."""

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.pw = nn.Conv2d(3, 6, 1)
            self.convs = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(2, 2, 5, padding=2)])

        def forward(self, x):
            parts = torch.split(F.relu(self.pw(x)), [4, 2], 1)
            y = torch.cat([conv(parts[i]) for i, conv in enumerate(self.convs)], 1)
            a, b = y.chunk(2, dim=1)
            return a * b

    torch.manual_seed(0)
    model = Mixed().eval()
    x = torch.randn(4, 3, 8, 8)
    fixed = convert(model, x, mode="wide", rounding="nearest", overflow="saturate")
    run = fixed.run(fixed.quantize_input(x), keep=True)
    slices = [(k, op) for k, op in enumerate(fixed.int_ops) if op.op == "split"]
    assert [(op.start, op.stop) for _, op in slices] == [(0, 4), (4, 6), (0, 3), (3, 6)]
    for k, op in slices:  # codes and format of the part are the input's, unchanged
        assert op.fy == fixed.int_ops[op.inputs[0]].fy
        assert np.array_equal(run.values[k], run.values[op.inputs[0]][:, op.start:op.stop])
    assert (fixed(x) - model(x)).abs().max().item() < 0.01 * model(x).abs().max().item()


def test_channel_range_index_converts_as_a_slice():
    """timm GhostModule: ``torch.cat([a, b], 1)[:, :out_chs]``; other indexing names the module."""

    class Ghost(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(4, 4, 3, padding=1, groups=4)

        def forward(self, x):
            y = self.a(x)
            return torch.cat([y, self.b(y)], 1)[:, :6]

    torch.manual_seed(0)
    model = Ghost().eval()
    x = torch.randn(3, 3, 6, 6)
    fixed = convert(model, x, mode="wide", rounding="nearest", overflow="saturate")
    sl = [op for op in fixed.int_ops if op.op == "slice"]
    assert [(op.dim, op.start, op.stop) for op in sl] == [(1, 0, 6)]
    assert fixed(x).shape == model(x).shape
    assert (fixed(x) - model(x)).abs().max().item() < 0.01 * model(x).abs().max().item()

    class Rows(nn.Module):
        def forward(self, x):
            return x[:, :, 1:]

    with pytest.raises(UnsupportedLayerError, match=r"only x\[:, a:b\]"):
        convert(nn.Sequential(nn.Conv2d(3, 3, 1), Rows()), x)


class _Fuse(nn.Module):
    """timm HRNet's fuse layer: a low-resolution branch upsampled (nearest) and added to the high one."""

    def __init__(self, functional: bool):
        super().__init__()
        self.hi = nn.Conv2d(3, 4, 3, padding=1)
        self.lo = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.lo2 = nn.Conv2d(4, 4, 3, stride=3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up2 = nn.UpsamplingNearest2d(scale_factor=6)
        self.functional = functional

    def forward(self, x):
        lo = F.relu(self.lo(x))
        lo2 = self.lo2(lo)
        if self.functional:
            up, up2 = F.interpolate(lo, scale_factor=2), F.interpolate(lo2, size=(12, 12), mode="nearest-exact")
        else:
            up, up2 = self.up(lo), self.up2(lo2)
        return F.relu(self.hi(x) + up) + up2


@pytest.mark.parametrize("functional", [False, True])
def test_nearest_upsampling_repeats_the_codes(functional):
    """Nearest upsampling by whole factors (module or interpolate, scale_factor or size) keeps the
    format and repeats each code; the golden reference indexes input floor(o * in / out) for output o."""
    from hwaware.fixedpoint.golden_graph import mismatches
    from hwaware.fixedpoint.graph_ops import UpsampleOp

    torch.manual_seed(0)
    model = _Fuse(functional).eval()
    x = torch.randn(4, 3, 12, 12)
    fixed = convert(model, x, mode="eyeriss")
    ups = [(k, op) for k, op in enumerate(fixed.int_ops) if isinstance(op, UpsampleOp)]
    assert [op.scale for _, op in ups] == [(2, 2), (6, 6)]
    run = fixed.run(fixed.quantize_input(x), keep=True)
    for k, op in ups:
        src = run.values[op.inputs[0]]
        assert op.fy == fixed.int_ops[op.inputs[0]].fy
        s = op.scale[0]
        assert np.array_equal(run.values[k][:, :, ::s, ::s], src)  # every code at its block's corner ...
        assert np.array_equal(run.values[k][:, :, s - 1::s, s - 1::s], src)  # ... and the opposite one
    bad, checked = mismatches(fixed, x)
    assert not bad and checked >= len(fixed.int_ops) - 1
    y = model(x)
    assert (fixed(x) - y).abs().max().item() < 0.01 * y.abs().max().item()
    # another input size: a scale_factor repeats by the same factor, a fixed size= cannot be kept
    assert [op.size for _, op in ups] == [None, (12, 12) if functional else None]
    x2 = torch.randn(2, 3, 24, 24)
    if functional:
        with pytest.raises(UnsupportedLayerError, match=r"upsamples to the fixed size \(12, 12\)"):
            fixed(x2)
    else:
        assert fixed(x2).shape == model(x2).shape


def test_upsampling_errors_name_the_layer_and_what_is_allowed():
    class Bilinear(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="bilinear")

    class Ratio(nn.Module):
        def forward(self, x):
            return F.interpolate(x, size=(6, 6))

    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(UnsupportedLayerError, match=r"\(interpolate\): mode 'bilinear' is not supported"):
        convert(nn.Sequential(nn.Conv2d(3, 3, 1), Bilinear()), x)
    with pytest.raises(UnsupportedLayerError, match=r"\(6, 6\) is not a whole multiple of the input's \(4, 4\)"):
        convert(nn.Sequential(nn.Conv2d(3, 3, 1), Ratio()), x)
    with pytest.raises(UnsupportedLayerError, match=r"UpsamplingBilinear2d\): mode 'bilinear'"):
        convert(nn.Sequential(nn.Conv2d(3, 3, 1), nn.UpsamplingBilinear2d(scale_factor=2)), x)


def test_eca_attention_with_expand_as_converts():
    """timm's EcaModule: the channel means through a Conv1d along the channels, a sigmoid, and
    ``x * y.expand_as(x)``: expand_as broadcasts the codes (format kept), every op golden-exact."""
    from hwaware.fixedpoint.golden_graph import mismatches
    from hwaware.fixedpoint.graph_ops import ExpandOp

    class Eca(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 8, 3, padding=1)
            self.eca = nn.Conv1d(1, 1, 3, padding=1, bias=False)

        def forward(self, x):
            x = F.relu(self.c(x))
            y = self.eca(x.mean((2, 3)).view(x.shape[0], 1, -1))
            y = torch.sigmoid(y).view(x.shape[0], -1, 1, 1)
            return x * y.expand_as(x)

    torch.manual_seed(0)
    model = Eca().eval()
    x = torch.randn(3, 3, 6, 6)
    fixed = convert(model, x, mode="eyeriss")
    run = fixed.run(fixed.quantize_input(x), keep=True)
    (k, op), = [(k, op) for k, op in enumerate(fixed.int_ops) if isinstance(op, ExpandOp)]
    assert run.values[k].shape == (3, 8, 6, 6) and op.fy == fixed.int_ops[op.inputs[0]].fy
    assert np.array_equal(run.values[k], np.tile(run.values[op.inputs[0]], (1, 1, 6, 6)))
    bad, _ = mismatches(fixed, x)
    assert not bad
    y = model(x)
    assert (fixed(x) - y).abs().max().item() < 0.02 * y.abs().max().item()


def test_functional_conv_with_weights_from_parameters_converts_as_the_module():
    """A Conv2d subclass that standardizes its weight in forward and calls ``F.conv2d`` (timm's
    ScaledStdConv2d, NF-ResNets), and ``F.linear`` on a scaled weight: each converts as the plain
    module holding the computed weight would -- same name as the profile's, BatchNorm folded, ReLU
    fused, the same codes -- and golden-exact. A weight computed from activations stays unsupported."""
    from hwaware.fixedpoint.golden_graph import mismatches

    class StdConv(nn.Conv2d):
        def forward(self, x):
            w = self.weight
            w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
            return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = StdConv(3, 8, 3, padding=1, stride=2)
            self.bn = nn.BatchNorm2d(8)
            self.gain = nn.Parameter(torch.full((4, 8), 0.5))
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            x = F.relu(self.bn(self.conv(x))).mean((2, 3))
            return F.linear(x, self.fc.weight * self.gain, self.fc.bias)

    torch.manual_seed(0)
    model = Net().eval()
    model.bn.running_mean.uniform_(-0.2, 0.2)
    model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(16, 3, 12, 12)

    class Plain(nn.Module):  # the same function with the computed weights in plain modules
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, stride=2)
            self.bn = model.bn
            self.fc = nn.Linear(8, 4)
            w = model.conv.weight.detach()
            with torch.no_grad():
                self.conv.weight.copy_((w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5))
                self.conv.bias.copy_(model.conv.bias)
                self.fc.weight.copy_(model.fc.weight * model.gain)
                self.fc.bias.copy_(model.fc.bias)

        def forward(self, x):
            return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))

    plain = Plain().eval()
    assert torch.allclose(model(x), plain(x), atol=1e-6)
    for mode in ("eyeriss", "wide"):
        fixed, ref = convert(model, x, mode=mode), convert(plain, x, mode=mode)
        names = [(lr.name, lr.op, lr.relu) for lr in fixed.report.layers]
        assert names[0] == ("conv", "Conv2d", True) and names[-1][1] == "Linear"  # BN folded, ReLU fused
        for a, b in zip(fixed.int_ops, ref.int_ops):
            if hasattr(a, "w"):
                assert np.array_equal(a.w, b.w) and np.array_equal(a.b, b.b) and a.fy == b.fy
        assert torch.equal(fixed(x), ref(x))
        bad, _ = mismatches(fixed, x)
        assert not bad

    class Dynamic(nn.Module):  # the weight comes from the input: not a layer
        def forward(self, x):
            return F.conv2d(x, x)

    with pytest.raises(UnsupportedLayerError, match="op 'conv2d'"):
        convert(Dynamic().eval(), torch.randn(2, 3, 5, 5))


@pytest.mark.parametrize("mode", ["eyeriss", "wide"])
def test_dilated_convolutions_convert_as_their_spanned_kernels(mode):
    """Conv2d (dense and depthwise) and Conv1d with dilation: the same integer outputs as the plain
    convolution whose kernel is the dilated one spelled out with zeros between the taps (built here
    in float), golden-exact, close to float."""
    from hwaware.fixedpoint.golden_graph import mismatches

    def spelled(conv: nn.Module) -> nn.Module:  # the dilated kernel written out, zeros between taps
        d = conv.dilation
        k = [(n - 1) * di + 1 for n, di in zip(conv.kernel_size, d)]
        cls = nn.Conv1d if isinstance(conv, nn.Conv1d) else nn.Conv2d
        plain = cls(conv.in_channels, conv.out_channels, tuple(k), conv.stride, conv.padding,
                    groups=conv.groups, bias=conv.bias is not None)
        with torch.no_grad():
            plain.weight.zero_()
            if cls is nn.Conv1d:
                plain.weight[..., ::d[0]] = conv.weight
            else:
                plain.weight[..., ::d[0], ::d[1]] = conv.weight
            plain.bias.copy_(conv.bias)
        return plain

    class Net(nn.Module):
        def __init__(self, a, b, c):
            super().__init__()
            self.a, self.b, self.c = a, b, c

        def forward(self, x):
            x = F.relu(self.b(F.relu(self.a(x))))
            return self.c(x.flatten(2)).mean(2)

    torch.manual_seed(0)
    a = nn.Conv2d(3, 8, 3, padding=2, dilation=2)
    b = nn.Conv2d(8, 8, 3, stride=2, padding=(3, 1), dilation=(3, 1), groups=8)
    c = nn.Conv1d(8, 4, 3, padding=3, dilation=3)
    model = Net(a, b, c).eval()
    plain = Net(spelled(a), spelled(b), spelled(c)).eval()
    x = torch.randn(4, 3, 11, 11)
    assert torch.allclose(model(x), plain(x), atol=1e-5)
    fixed, ref = convert(model, x, mode=mode), convert(plain, x, mode=mode)
    assert torch.equal(fixed(x), ref(x))
    bad, _ = mismatches(fixed, x)
    assert not bad
    y = model(x)
    assert (fixed(x) - y).abs().max().item() < 0.01 * y.abs().max().item()
