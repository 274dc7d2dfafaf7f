"""bench/zoo.py's brief training on builtin:shapes: deterministic, it learns, it leaves eval mode,
and the caller's random stream is untouched."""

from __future__ import annotations

import pytest
import torch
from _bench import load_bench
from torch import nn


def _zoo():
    return load_bench("zoo")


pytest.importorskip("tqdm")
zoo = _zoo()


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, 10))


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model.eval()(x), y))


@pytest.fixture(scope="module")
def shapes():
    xt, yt, xv, yv = zoo.shapes_images(32)
    # the splits the bench keeps apart are different images
    assert not any(torch.equal(xv[0], a) for a in xt)
    return xt[:256, :, ::2, ::2].contiguous(), yt[:256]  # 16x16 keeps the test fast


def test_training_is_deterministic_and_lowers_the_loss(shapes):
    x, y = shapes
    before = _net()
    loss0 = _loss(before, x, y)
    a, b = _net(), _net()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    ra = zoo.train_on_shapes(a, x, y, steps=30, batch=32, lr=1e-2)
    assert torch.equal(torch.get_rng_state(), state)  # dropout draws come from its own seeded stream
    rb = zoo.train_on_shapes(b, x, y, steps=30, batch=32, lr=1e-2)
    assert ra.steps == rb.steps == 30
    assert not a.training and not b.training
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k  # same seed, same threads: bit-identical weights
    # it learned something: the training loss falls below its value at initialization
    assert _loss(a, x, y) < 0.95 * loss0  # measured 2.33 -> 2.17 (shapes is hard for 30 steps)
    c = _net()
    zoo.train_on_shapes(c, x, y, steps=5, batch=32, lr=1e-2, seed=1)
    a5 = _net()
    zoo.train_on_shapes(a5, x, y, steps=5, batch=32, lr=1e-2)
    # another seed draws other batches: other weights
    assert any(not torch.equal(va, vc) for va, vc in zip(a5.state_dict().values(), c.state_dict().values()))


def test_zero_steps_keeps_the_random_weights(shapes):
    x, y = shapes
    a, b = _net(), _net()
    assert zoo.train_on_shapes(a, x, y, steps=0) is None
    for va, vb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(va, vb)


def test_float_top1_counts_correct_images():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(3, 4))
    x = torch.tensor([[5.0, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0], [5, 0, 0, 0]]).view(4, 1, 2, 2)
    acc, logits = zoo.float_top1(net, x, torch.tensor([0, 1, 0, 0]))
    assert acc == pytest.approx(0.75)
    assert logits.shape == (4, 3)
