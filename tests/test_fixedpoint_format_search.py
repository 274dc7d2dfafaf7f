"""Per-layer output-format search (``convert(..., search_formats=True)``, :mod:`hwaware.fixedpoint.format_search`).

Fast checks: the candidates and the tie rule; the last layer's choice against an independent
computation from the float model (with no layer after it, the finest format holding every
calibration value has the least rounding error, and one bit finer wraps the largest output);
every choice within one bit of the max rule; the user's model untouched; and the same formats and
bit-identical outputs at 1 and 2 threads. The agreement it buys on trained networks is asserted in the
slow tests of tests/test_fixedpoint_agreement.py.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hwaware.fixedpoint.convert import ConvOp, calibrate_batchnorm, convert
from hwaware.fixedpoint.format import FixedFormat, frac_bits_for
from hwaware.fixedpoint.format_search import CANDIDATE_OFFSETS, admissible, candidate_ops, pick
from hwaware.fixedpoint.ranges import TAIL_P, per_image_max, tail_range


def _net() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(16, 5))
    calibrate_batchnorm(m, torch.randn(64, 3, 8, 8))
    return m


def test_pick_takes_the_least_error_and_the_coarsest_of_ties():
    assert pick([3.0, 1.0, 2.0]) == 1
    assert pick([1.0, 1.0 + 1e-9, 0.5]) == 2
    assert pick([1.0, 1.0 + 1e-9, 2.0]) == 0  # equal within the tie tolerance: the first (coarsest)
    assert pick([0.0, 0.0, 0.0]) == 0


def test_candidates_move_f_y_and_the_eyeriss_bias_with_it():
    op = ConvOp("l", "Linear", (0,), FixedFormat(10), FixedFormat(12), FixedFormat(14),
                np.ones((2, 3), np.int16), np.array([100, -7], np.int64))
    cands = candidate_ops(op)
    assert [c.fy.frac_bits for c in cands] == [10 + d for d in CANDIDATE_OFFSETS] == [9, 10, 11]
    # the bias codes are at f_y: one bit coarser halves them (rounded half up), one finer doubles them
    assert cands[0].b.tolist() == [50, -3] and cands[2].b.tolist() == [200, -14]
    assert op.fy.frac_bits == 10 and op.b.tolist() == [100, -7]  # the original is untouched
    # mode wide: the bias codes are at f_x + f_w, which f_y does not move
    assert all(c.b.tolist() == [100, -7] for c in candidate_ops(op, "wide"))


def test_last_layer_gets_the_finest_format_holding_its_calibration_outputs():
    model = _net()
    x = torch.randn(128, 3, 8, 8)
    with torch.no_grad():  # scale the fc so its largest output is 0.9 * 2^k: the max rule's half bit
        top = float(model(x).abs().max())  # of margin then costs a whole bit
        scale = 0.9 * 2.0 ** np.ceil(np.log2(top)) / top
        model[8].weight *= scale
        model[8].bias *= scale
        logits = model(x)
    searched = {lr.name: lr for lr in convert(model, x, search_formats=True).report.layers}
    default = {lr.name: lr for lr in convert(model, x).report.layers}
    # independent: the max rule without margin on the float logits (the fc is the last layer)
    f0 = frac_bits_for(float(logits.abs().max()), 16)
    assert default["8"].f_y == f0 - 1  # the default rule: a bit coarser than the search may go
    assert searched["8"].f_y == f0
    assert searched["8"].output_overflows == 0
    for name in ("0", "4", "8"):  # never more than one bit from the max rule's choice
        assert abs(searched[name].f_y - default[name].f_y) <= 1


def test_search_leaves_the_model_alone_and_does_not_depend_on_threads():
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, probe = torch.randn(64, 3, 8, 8), torch.randn(32, 3, 8, 8)
    threads = torch.get_num_threads()
    got = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            fixed = convert(model, x, search_formats=True)
            with torch.no_grad():
                got.append(([lr.f_y for lr in fixed.report.layers], fixed(probe)))
    finally:
        torch.set_num_threads(threads)
    assert got[0][0] == got[1][0]
    assert torch.equal(got[0][1], got[1][1])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_search_runs_without_bias_correction():
    model = _net()
    x = torch.randn(64, 3, 8, 8)
    fixed = convert(model, x, search_formats=True, bias_correction=False)
    with torch.no_grad():
        err, top = (fixed(x) - model(x)).abs().max(), model(x).abs().max()
    assert float(err) < 0.1 * float(top)


def test_admissible_keeps_a_finer_format_to_the_tail_fit_or_measured_overflows():
    op = ConvOp("l", "Linear", (0,), FixedFormat(12), FixedFormat(10), FixedFormat(12),
                np.ones((2, 3), np.int16), None)  # f_y = 12 (range 32767 / 4096 = 7.99976)
    coarse, same, fine = candidate_ops(op)
    assert admissible(coarse, 12, 0, 1e9) and admissible(same, 12, 0, 1e9)  # never finer than the max rule
    assert admissible(fine, 12, 0, 3.99)  # f_y 13 holds 3.99976: the fitted reach 3.99 fits
    assert not admissible(fine, 12, 0, 4.0)  # no calibration overflow, the reach beyond it: no evidence
    assert admissible(fine, 12, 3, 4.0)  # overflows seen: their cost is in the measured error


def test_search_keeps_the_margin_where_the_tail_fit_reaches_past_the_finer_format():
    model = _net()
    torch.manual_seed(1)
    # per-image scales with a long tail: a few images reach well past the others
    x = torch.randn(128, 3, 8, 8) * torch.distributions.Exponential(1.0).sample((128, 1, 1, 1))
    with torch.no_grad():  # the fc's largest calibration output at 0.9 * 2^k, as in the test above
        top = float(model(x).abs().max())
        scale = 0.9 * 2.0 ** np.ceil(np.log2(top)) / top
        model[8].weight *= scale
        model[8].bias *= scale
        logits = model(x)
    f0 = frac_bits_for(float(logits.abs().max()), 16)  # the finest format holding every output
    reach = tail_range(per_image_max(logits), p=TAIL_P)
    assert reach > FixedFormat(f0).qmax * FixedFormat(f0).lsb  # the case under test: the fit reaches past it
    searched = {lr.name: lr for lr in convert(model, x, search_formats=True).report.layers}
    assert searched["8"].f_y == f0 - 1  # (without the rule: f0, the least rounding error on calibration)
