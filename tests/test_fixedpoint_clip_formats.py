"""Narrow formats chosen for the least clipping-and-rounding error, and convert taking given formats
(the clipped narrow input: an opt-in extension of the fixed-point contract)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwaware.errors import HwawareError
from hwaware.fixedpoint.clip_formats import clip_error, clip_frac_bits, narrow_formats
from hwaware.fixedpoint.convert import calibrate_batchnorm, convert
from hwaware.modelref import load_model


def test_worked_example_of_the_docstring():
    """99 values of 1.0 and one of 8.0 at 4 bits, nearest: errors worked by hand."""
    x = torch.tensor([1.0] * 99 + [8.0])
    assert clip_error(x, -1, 4, "nearest") == pytest.approx(0.99)  # LSB 2: every 1.0 becomes 2, 8 exact
    assert clip_error(x, 0, 4, "nearest") == pytest.approx(0.01)  # LSB 1: 8 clips to 7
    assert clip_error(x, 1, 4, "nearest") == pytest.approx(4.5 ** 2 / 100)  # 8 clips to 3.5
    assert clip_frac_bits(x, 4, rounding="nearest") == 0


@pytest.mark.parametrize("bits,rounding", [(3, "floor"), (4, "floor"), (4, "nearest"), (6, "nearest")])
def test_choice_is_the_brute_force_least_square_error(bits, rounding):
    """Against an independent search in NumPy over every format from 12 bits coarser to 12 finer."""
    g = torch.Generator().manual_seed(bits)
    x = torch.relu(torch.randn(20000, generator=g)) ** 2 * 3.0  # a long-tailed ReLU output
    a = x.double().numpy()
    half = 2 ** (bits - 1)

    def err(f):
        v = np.ldexp(a, f)
        q = np.floor(v + 0.5) if rounding == "nearest" else np.floor(v)
        return float(np.mean((np.ldexp(np.clip(q, -half, half - 1), -f) - a) ** 2))

    fs = list(range(-12, 13))
    want = fs[int(np.argmin([err(f) for f in fs]))]
    got = clip_frac_bits(x, bits, rounding=rounding, span=12)
    assert got == want
    top = float(x.max())
    assert top * 2.0 ** got > half - 1  # it clips: finer than the max rule
    assert clip_frac_bits(x, bits, rounding=rounding, finest=got - 1) == got - 1  # capped


@pytest.fixture(scope="module")
def small():
    from hwaware.data import make_loader
    from hwaware.fixedpoint.qat import fold_batchnorm

    torch.manual_seed(5)
    model = load_model("models/small_cnn.py:small_cnn", width=0.25)
    x = torch.cat([xb for xb, _ in make_loader("builtin:shapes", "train", batch_size=64, limit=96)])
    calibrate_batchnorm(model, list(x.split(48)))
    return fold_batchnorm(model), x


def test_convert_takes_the_given_formats_and_clips_the_narrowed_input(small):
    from hwaware.fixedpoint.golden_graph import mismatches

    folded, x = small
    bits = {"conv2": 4, "conv3": 3, "fc": 5}
    fm = narrow_formats(folded, bits, x[:64], rounding="floor")
    assert set(fm) == set(bits)
    fixed = convert(folded, x[:64], bits=bits, narrow_formats=fm, bias_correction=False)
    ops = {op.name: op for op in fixed.int_ops}
    for n, (f_in, f_w) in fm.items():
        assert (ops[n].fxq.frac_bits, ops[n].fw.frac_bits, ops[n].clip_input) == (f_in, f_w, True)
    assert not ops["conv1"].clip_input and ops["conv1"].fxq is None
    # the narrowed input saturates: its largest codes sit at the top of the range, never wrapped negative
    run = fixed.run(fixed.quantize_input(x[64:]), keep=True)
    conv3 = ops["conv3"]
    xin = run.values[conv3.inputs[0]]  # ReLU output (>= 0) at the producer's 16-bit format
    xq = conv3.prepare(xin, fixed.arith)
    assert xq.min() >= 0 and (xq == conv3.fxq.qmax).any()
    over = np.floor(np.ldexp(xin.astype(np.float64), conv3.fxq.frac_bits - conv3.fx.frac_bits)) > conv3.fxq.qmax
    assert over.any()  # some values did exceed the narrow range (and were clipped, above)
    # the fast kernels and the golden reference agree op by op, clipping included
    bad, checked = mismatches(fixed, x[64:80])
    assert bad == [] and checked > 5


def test_given_formats_are_checked(small):
    folded, x = small
    with pytest.raises(HwawareError, match="narrow_formats names layer 'conv1', which bits does not narrow"):
        convert(folded, x[:32], bits={"conv2": 4}, narrow_formats={"conv1": (1, 4)})
    with pytest.raises(HwawareError, match=r"narrow_formats\['conv2'\] must be \(f_in, f_w\)"):
        convert(folded, x[:32], bits={"conv2": 4}, narrow_formats={"conv2": (1.5, 4)})
    with pytest.raises(HwawareError, match="'nope' is not a Conv/Linear"):
        narrow_formats(folded, {"nope": 4}, x[:32], rounding="floor")
