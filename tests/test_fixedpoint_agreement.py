"""Agreement of the integer backend with float, and the ranges its formats cover.

Fast: the tail fit that sizes each tensor's margin (``headroom_bits="auto"``), against the
quantiles of distributions known in closed form, and the formats convert picks with it, against
an independent computation from forward hooks. Slow (issue 17, item 2): the chip's default
arithmetic (eyeriss/floor/wrap) agrees with float on >= 99% of the validation images of the
trained small CNN with searched output formats (``convert(..., search_formats=True)``), for three
calibration sets and at 1 and 2 threads (same formats, bit-identical integer outputs); the same for
the builtin:shapes ResNet-18 (40000 images, 4 epochs: the first run trains it, 41 min on the 2 cores of a
slow machine).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hwaware.fixedpoint.convert import calibrate_batchnorm, convert, top1_agreement
from hwaware.fixedpoint.format import frac_bits_for
from hwaware.fixedpoint.ranges import TAIL_P, per_image_max, tail_range


def test_tail_range_extrapolates_an_exponential_tail():
    # maxima 10 + Exp(1): the level one image in 1/p exceeds is 10 + ln(1/p) = 19.21 at p = 1e-4;
    # the fit's scale comes from k = 32 excesses (relative standard error 1/sqrt(32) = 18%), so
    # 10 + 9.21 * (1 +- 0.25) bounds it; the calibration max of 256 is near 10 + ln(256) = 15.5
    rng = np.random.default_rng(0)
    m = 10.0 + rng.exponential(1.0, 256)
    q = tail_range(m, p=1e-4)
    assert 10 + 9.21 * 0.75 <= q <= 10 + 9.21 * 1.25
    assert q > m.max()
    # a rarer level lies further out
    assert tail_range(m, p=1e-6) > q


def test_tail_range_bounds():
    assert tail_range(np.full(64, 3.0)) == 3.0  # no tail: the maximum itself
    assert tail_range(np.zeros(64)) == 0.0
    assert tail_range(np.array([1.0, 2.0, 4.0])) == pytest.approx(4.0 * 2 ** 0.5)  # too few to fit
    # a long tail (the 32 largest spread over 1..50): the fit reaches past twice the max, capped at one bit
    heavy = np.concatenate([np.ones(223), np.linspace(1.0, 50.0, 33)])
    assert tail_range(heavy) == 100.0
    with pytest.raises(ValueError, match="p must be within"):
        tail_range(np.arange(1.0, 40.0), p=0)


def test_per_image_max():
    t = torch.tensor([[[1.0, -3.0]], [[0.5, 0.25]]])
    assert np.array_equal(per_image_max(t), [3.0, 0.5])


def test_auto_headroom_formats_cover_each_tensors_tail():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    x = torch.randn(128, 3, 8, 8)
    calibrate_batchnorm(model, x)
    seen = {}
    hooks = [model[i].register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o.detach()))
             for i in (1, 3, 4, 6)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    by_name = {lr.name: lr for lr in convert(model, x, mode="wide", headroom_bits="auto").report.layers}

    def expected(t):  # largest f with the fitted range inside the 16-bit codes
        m = t.abs().reshape(len(t), -1).amax(1).double().numpy()
        r = tail_range(m, p=TAIL_P)
        return max(f for f in range(-8, 40) if r * 2.0 ** f <= 32767)

    assert by_name["0"].f_y == expected(seen[1])  # fused conv+BN+ReLU: the range before the ReLU
    assert by_name["3"].f_y == expected(seen[3])
    assert by_name["4"].f_y == expected(seen[4])
    assert by_name["6"].f_y == expected(seen[6])
    # never finer than the max rule, never more than one bit coarser
    for i, name in ((1, "0"), (3, "3"), (6, "6")):
        f0 = frac_bits_for(float(seen[i].abs().max()), 16)
        assert f0 - 1 <= by_name[name].f_y <= f0


def test_headroom_bits_is_checked():
    from hwaware.errors import HwawareError

    model = nn.Sequential(nn.Linear(4, 2))
    for bad in (-1, "half", True, math.nan):
        with pytest.raises(HwawareError, match="headroom_bits must be"):
            convert(model, torch.randn(8, 4), headroom_bits=bad)


# --- trained networks in the chip's arithmetic (slow: the first run trains and caches them) -----

def _images(split: str, n: int) -> torch.Tensor:
    from hwaware.data import first_images, make_loader

    return first_images(make_loader("builtin:shapes", split, batch_size=256, shuffle=False), n)


def _calibration_sets() -> list[torch.Tensor]:
    """The first 256 training images, and the first 128 / 512 of two shuffled orders."""
    from hwaware.data import first_images, make_loader

    shuffled = [first_images(make_loader("builtin:shapes", "train", batch_size=256, shuffle=True, seed=s), n)
                for s, n in ((1, 128), (2, 512))]
    return [_images("train", 256), *shuffled]


def _chip_agreement(model, calib_sets, val, threads=(1, 2)) -> list[float]:
    """Top-1 agreement in the chip's default arithmetic with searched formats, per calibration set;
    each set converted at every thread count, which must give the same formats and bit-identical
    integer outputs."""
    before = torch.get_num_threads()
    agreement = []
    try:
        for cal in calib_sets:
            outs, formats = [], []
            for t in threads:
                torch.set_num_threads(t)
                fixed = convert(model, cal, search_formats=True)  # eyeriss / floor / wrap
                assert (fixed.report.mode, fixed.report.rounding, fixed.report.overflow) == ("eyeriss", "floor", "wrap")
                formats.append([(lr.f_x, lr.f_w, lr.f_y) for lr in fixed.report.layers])
                with torch.no_grad():
                    outs.append(torch.cat([fixed(v) for v in val.split(250)]))
            assert all(f == formats[0] for f in formats) and all(torch.equal(outs[0], o) for o in outs)
            with torch.no_grad():
                ref = torch.cat([model(v) for v in val.split(250)])
            agreement.append(float((ref.argmax(1) == outs[0].argmax(1)).float().mean()))
    finally:
        torch.set_num_threads(before)
    return agreement


@pytest.mark.slow
def test_trained_small_cnn_agrees_with_float_on_99_percent():
    # measured (1000 val images; calibration sets first 256 / shuffled 128 / shuffled 512): default
    # formats 99.3/99.1/99.1% (98.8-99.0% with the weights another environment trained), searched
    # formats 99.9/99.3/99.4% (99.7/99.4/99.5% before a finer format needed the tail fit's reach)
    from hwaware.train import trained_small_cnn

    model = trained_small_cnn(progress=False)
    val = _images("val", 1000)
    agreement = _chip_agreement(model, _calibration_sets(), val)
    assert min(agreement) >= 0.99, agreement
    cal = _images("train", 256)
    for mode, rounding in (("eyeriss", "nearest"), ("wide", "floor")):
        fixed = convert(model, cal, mode=mode, rounding=rounding)
        assert top1_agreement(model, fixed, val.split(250)) >= 0.99, (mode, rounding)


@pytest.mark.slow
def test_trained_resnet18_agrees_with_float_on_99_percent():
    # measured (1000 val images, the three calibration sets): searched formats 99.7/99.8/99.8%, default
    # formats 99.5/99.8/99.5%; float top-1 98.8% val, median top-2 margin 9.6. The earlier recipe (8000
    # images, 10 epochs) overfit and its weights depended on the machine: 94.5% float gave 99.2/99.1/99.4%
    # searched, 92.9% gave 98.8/98.8/98.9% (the test failed there); the per-product floor cut flips the
    # images with thin float margins (docs/fixedpoint.md, "Agreement with float")
    from hwaware.train import trained_shapes_model

    model = trained_shapes_model("resnet18", progress=False)
    agreement = _chip_agreement(model, _calibration_sets(), _images("val", 1000))
    assert min(agreement) >= 0.99, agreement
