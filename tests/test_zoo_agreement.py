"""Wide-mode top-1 agreement on zoo models (bench/zoo.py's measurement).

Fast: the agreement statistics on hand-made logits. Slow: timm ghostnet_100 and regnety_002 agree on
>= 99% of the held-out images (the issue's bar); timm mobilenetv3_large_100 (depthwise,
squeeze-excitation with hard-sigmoid gates, hard-swish) and torchvision resnet50 converted in wide
mode agree with float on >= 99% of the held-out images the float model decides at 16 bits, and
no worse than the float model against its own +-1/2-code rounding noise.
"""

from __future__ import annotations

import pytest
import torch
from _bench import load_bench


def _zoo():
    return load_bench("zoo")


zoo = _zoo()


def test_agreement_statistics_by_hand():
    yf = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.05, 0.0], [0.0, 0.0, 2.0], [5.0, 4.9, 0.0]])
    # noise narrows image 0's gaps by 0.2 (to class 1) and 0.1 (to class 2); the others not at all
    yn = torch.tensor([[2.9, 1.1, 0.0], [1.0, 1.05, 0.0], [0.0, 0.0, 2.0], [5.0, 4.9, 0.0]])
    yq = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    s = zoo.agreement_statistics(yf, yq, yn)
    # 99th percentile of closings (0, 0, 0, 0.2) by linear interpolation: 0.97 * 0.2
    assert s["tie_margin"] == pytest.approx(0.194)
    # margins 2, 0.05, 2, 0.1: images 0 and 2 are decided, both agree; 1 and 3 disagree
    assert s["decided"] == pytest.approx(0.5)
    assert s["decided_agreement"] == pytest.approx(1.0)
    assert s["agreement"] == pytest.approx(0.5)
    assert s["disagree_margin"] == pytest.approx(0.1)
    assert s["noise_agreement"] == pytest.approx(1.0)
    assert s["median_margin"] == pytest.approx(0.1)  # torch.median: the lower middle value
    # a disagreement on a decided image counts against it
    yq[2] = torch.tensor([1.0, 0.0, 0.0])
    assert zoo.agreement_statistics(yf, yq, yn)["decided_agreement"] == pytest.approx(0.5)


def _bench_agreement(spec):
    """bench/zoo.py's measurement of one model: BN re-estimated, the zoo's conversion rule."""
    pytest.importorskip("timm")
    pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = zoo.build(spec).eval()
    xt, _, xv, _ = zoo.shapes_images(32)
    bn = xt[zoo.CALIB:zoo.CALIB + zoo.BN_IMAGES]
    zoo.calibrate_batchnorm(model, [bn[i:i + 32] for i in range(0, len(bn), 32)])
    return zoo.fixed_point_agreement(model, xt[:zoo.CALIB], xv, overflow="saturate", headroom_bits=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["timm:ghostnet_100", "timm:regnety_002"])
def test_zoo_model_agrees_on_99_percent_in_wide_mode(spec):
    """The issue's bar on all 256 held-out images, on two networks with squeeze-excitation (hard-
    sigmoid gates in ghostnet's depthwise ghost bottlenecks; sigmoid gates after regnety's group
    convolutions)."""
    ag = _bench_agreement(spec)
    assert ag.agreement >= 0.99, ag


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["timm:mobilenetv3_large_100", "tv:resnet50"])
def test_zoo_model_agrees_in_wide_mode(spec):
    ag = _bench_agreement(spec)
    assert ag.decided >= 0.05, ag  # at least 13 of the 256 held-out images are decided
    assert ag.decided_agreement >= 0.99, ag
    # the integer backend flips no more images than +-1/2 code of noise flips in the float model
    # (two points of slack: 256 images, and a different noise draw)
    assert ag.agreement >= ag.noise_agreement - 0.02, ag
