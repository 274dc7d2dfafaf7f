"""bench/zoo.py's closed-form linear-probe head: the ridge solution, the penalty choice, and that
only the model's own final Linear changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _bench import load_bench
from torch import nn

zoo = load_bench("zoo")


def test_ridge_matches_an_augmented_least_squares_solution():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(40, 6, generator=g, dtype=torch.float64) * torch.arange(1, 7) + 3.0
    t = torch.randn(40, 3, generator=g, dtype=torch.float64)
    w, b = zoo.ridge(f, t, 0.5)
    # independent: centre, then ordinary least squares on [F; sqrt(lam) I] against [T; 0]
    fc, tc = (f - f.mean(0)).numpy(), (t - t.mean(0)).numpy()
    lam = 0.5 * np.trace(fc.T @ fc) / 6
    a = np.vstack([fc, np.sqrt(lam) * np.eye(6)])
    want = np.linalg.lstsq(a, np.vstack([tc, np.zeros((6, 3))]), rcond=None)[0].T
    np.testing.assert_allclose(w.numpy(), want, rtol=1e-10, atol=1e-12)
    # the unpenalised bias puts the mean prediction on the mean target
    np.testing.assert_allclose((f @ w.T + b).mean(0).numpy(), t.mean(0).numpy(), atol=1e-12)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.aux = nn.Linear(16, zoo.NUM_CLASSES)  # not the final head: comes first
        self.fc = nn.Linear(16, zoo.NUM_CLASSES)

    def forward(self, x):
        return self.fc(self.body(x))


def test_probe_head_learns_a_linearly_decodable_label_and_touches_only_the_head():
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(400, 3, 8, 8)
    with torch.no_grad():
        feats = net.body(x)
    # labels a linear function of the features decides (so a linear probe can reach 100%)
    proj = torch.randn(16, zoo.NUM_CLASSES, generator=torch.Generator().manual_seed(1))
    y = ((feats - feats.mean(0)) @ proj).argmax(1)  # affine in the features
    assert len(set(y.tolist())) >= 5
    before = {k: v.clone() for k, v in net.state_dict().items()}
    alpha = zoo.fit_probe_head(net, x[:300], y[:300], alphas=(1e-6, 1e-3, 1.0))
    assert alpha in (1e-6, 1e-3, 1.0)
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}
    acc, _ = zoo.float_top1(net, x[300:], y[300:])
    chance = float(torch.bincount(y[300:]).max()) / 100
    # least squares to one-hot is not a perfect classifier of 10 argmax regions, but far above chance
    assert acc >= 3 * chance, (acc, chance)


def test_probe_head_needs_a_final_linear_with_the_class_count():
    with pytest.raises(ValueError, match="no nn.Linear with 10 outputs"):
        zoo.fit_probe_head(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), torch.randn(8, 12),
                           torch.zeros(8, dtype=torch.long))
