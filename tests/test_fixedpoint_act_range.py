"""A bounded activation's output format holds the op's result for every input code: calibration
data that keep a SiLU or an SE-style Sigmoid gate small must not make a larger (representable)
input wrap to a wrong-signed output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hwaware.fixedpoint.convert import convert

GATE_BOUND = {"silu": 9e-5, "sigmoid": 9e-5}  # docs/fixedpoint.md, the sigmoid table's stated bound


@pytest.mark.parametrize("name,act,calib_lo,calib_hi,probe", [
    # calibration: max|x| = 1 (input at f = 14), SiLU outputs <= 0.27 (the max rule alone: f = 16)
    ("silu", nn.SiLU(), -1.0, 0.3, [1.875, 1.5, -1.0, 0.25]),
    # calibration: a gate driven shut (x in [-8, -2]: sigmoid <= 0.12, the max rule alone: f = 17)
    ("sigmoid", nn.Sigmoid(), -8.0, -2.0, [5.0, 0.0, -2.0, 9.5]),
])
def test_activation_output_never_wraps_on_a_representable_input(name, act, calib_lo, calib_hi, probe):
    torch.manual_seed(0)
    model = nn.Sequential(act).eval()
    calib = calib_lo + (calib_hi - calib_lo) * torch.rand(64, 1, 8, 8)
    calib[0, 0, 0, 0] = calib_lo
    fixed = convert(model, calib, samples=64)
    fx, op = fixed.int_ops[0].fy, fixed.int_ops[1]
    # the probe values are exact at the input format and inside its range
    x = torch.tensor(probe, dtype=torch.float32).reshape(1, 1, 1, -1)
    assert all(abs(v) * 2**fx.frac_bits < 32767 and (v * 2**fx.frac_bits).is_integer() for v in probe)
    run = fixed.run(fixed.quantize_input(x), keep=True)
    assert run.output_overflows[1] == 0
    got = op.fy.dequantize(run.values[1]).reshape(-1)
    want = act(x.double()).reshape(-1).numpy()
    # stated bound: the gate table's error (times |x| for SiLU), |x|*2**-15 for SiLU's product, one code
    xs = np.abs(np.asarray(probe))
    bound = (GATE_BOUND[name] * xs + xs * 2.0**-15 if name == "silu" else GATE_BOUND[name]) + 2.0**-op.fy.frac_bits
    assert np.all(np.abs(got - want) <= bound), (got, want)
    # no input code at all overflows, and the format is the finest with that property (the max
    # rule alone was finer here, so one bit finer must overflow for some code)
    codes = np.arange(-32768, 32768, dtype=np.int16)
    assert op.run([codes], fixed.arith).output_overflows == 0
    op.fy = type(op.fy)(op.fy.frac_bits + 1, op.fy.bits)
    assert op.run([codes], fixed.arith).output_overflows > 0


def test_under_saturate_the_max_rule_format_is_kept_and_a_larger_input_clips():
    """Under ``saturate`` an activation value beyond its range clips like every other op's, so the
    never-overflow widening (a wrap-mode guard) is not applied: the finer calibration format stays."""
    from hwaware.fixedpoint.verify import bit_exact_mismatches

    torch.manual_seed(0)
    act = nn.SiLU()
    model = nn.Sequential(act).eval()
    calib = -1.0 + 1.3 * torch.rand(64, 1, 8, 8)
    calib[0, 0, 0, 0] = -1.0
    wrap = convert(model, calib, samples=64, mode="wide", overflow="wrap").int_ops[1].fy
    fixed = convert(model, calib, samples=64, mode="wide", overflow="saturate")
    op = fixed.int_ops[1]
    # max rule by hand: max |SiLU| on [-1, 0.3] is |SiLU(-1)| = 0.2689; x 2**0.5 headroom = 0.380;
    # 0.380 * 2**16 = 24921 fits 32767, 2**17 would not: f_y = 16 (wrap widens it for input 1.875)
    assert op.fy.frac_bits == 16 and wrap.frac_bits < 16
    x = torch.tensor([1.875, 1.5, -1.0, 0.25]).reshape(1, 1, 1, -1)
    run = fixed.run(fixed.quantize_input(x), keep=True)
    got = op.fy.dequantize(run.values[1]).reshape(-1)
    # beyond the range: the largest code, never a wrapped wrong-signed value
    assert run.values[1].reshape(-1)[:2].tolist() == [32767, 32767]
    assert run.output_overflows[1] == 2
    want = act(x.double()).reshape(-1).numpy()[2:]
    xs = np.abs(x.reshape(-1).numpy()[2:])
    assert np.all(np.abs(got[2:] - want) <= GATE_BOUND["silu"] * xs + xs * 2.0**-15 + 2.0**-16)
    assert bit_exact_mismatches(fixed, x) == []
