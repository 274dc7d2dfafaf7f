"""Mode wide keeps a Conv/Linear bias exact at f_x + f_w, beyond int32 (never clipped), and raises,
naming the layer, when even the int64 accumulator cannot hold it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hwaware.errors import UnsupportedLayerError
from hwaware.fixedpoint.convert import convert
from hwaware.fixedpoint.verify import bit_exact_mismatches


def _tiny_input_linear() -> tuple[nn.Module, torch.Tensor]:
    """Inputs ~1e-5 put f_x near 29; weights ~0.3 put f_w near 16: a bias of 0.1 is then a code of
    0.1 * 2**45 ~ 3.5e12 (42 bits), which the former int32 bias cut to 2**31 (6e-5, not 0.1)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([0.1, -0.25, 0.03, 0.0]))
    return model.eval(), torch.randn(32, 8) * 1e-5


@pytest.mark.parametrize("bias_correction", [False, True])
def test_wide_bias_beyond_int32_is_kept_exact(bias_correction):
    model, x = _tiny_input_linear()
    fixed = convert(model, x, mode="wide", samples=32, bias_correction=bias_correction)
    op = fixed.int_ops[1]
    fb = op.fx.frac_bits + op.fw.frac_bits
    assert fb >= 40  # the case this test is about: the bias needs more than 32 bits
    assert np.abs(op.b).max() > 2**31
    if not bias_correction:  # the codes are the bias itself, rounded half up at f_x + f_w
        want = [int(np.floor(v * 2.0**fb + 0.5)) for v in model[0].bias.double().tolist()]
        assert op.b.tolist() == want
    with torch.no_grad():
        err = float((fixed(x) - model(x)).abs().max())
    # one rounding of the output (floor: < 1 code) plus the weights' rounding, tiny here (|x| ~ 1e-5)
    w_err = 8 * float(x.abs().max()) * 2.0 ** -(op.fw.frac_bits + 1)
    assert err <= 2.0**-op.fy.frac_bits + w_err
    assert bit_exact_mismatches(fixed, x[:4]) == []  # fast kernels == golden with the int64 bias


def test_wide_bias_beyond_int64_raises_naming_the_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Identity(), nn.Linear(8, 4)).eval()
    with torch.no_grad():
        model[1].weight.mul_(1e-8)
        model[1].bias.fill_(1.0)
    with pytest.raises(UnsupportedLayerError, match=r"layer '1' \(Linear\): its bias .* int64"):
        convert(model, torch.randn(32, 8) * 1e-12, mode="wide", samples=32)
