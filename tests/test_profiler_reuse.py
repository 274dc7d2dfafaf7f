"""Each tensor is measured once per forward pass even when several layers read it, and nothing the
profiler keeps can go stale: an in-place write between two reads, or weights pruned through
``.data`` between two profiles, are measured again."""

from __future__ import annotations

import torch
from torch import nn

import hwaware.profiler.hooks as hooks
from hwaware.profiler import profile


class _Fork(nn.Module):
    """One ReLU output read by three convs (two with the same padding); optionally zeroed in place
    between the first and the second read."""

    def __init__(self, zero_between: bool = False) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 1)
        self.zero_between = zero_between

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x)
        ya = self.a(h)
        if self.zero_between:
            h.mul_(0)  # an in-place write: the tensor's version counter moves
        return ya + self.b(h) + self.c(h)


def _counting(monkeypatch) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    real = hooks.input_stats

    def counted(inp, layer, *args):
        calls.append((layer.padding, layer.padding_w))
        return real(inp, layer, *args)

    monkeypatch.setattr(hooks, "input_stats", counted)
    return calls


def test_a_tensor_read_by_several_layers_is_measured_once_per_padding(monkeypatch):
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8, 8)
    wl = profile(_Fork().eval(), x)
    assert sorted(calls) == [(0, 0), (1, 1)]  # a and b share one measurement, c has its own
    z = float((torch.relu(x) == 0).sum()) / x.numel()  # independent count
    assert [layer.ifmap_zeros for layer in wl.layers] == [z, z, z]
    assert wl.layers[0].ifmap_rlc == wl.layers[1].ifmap_rlc != wl.layers[2].ifmap_rlc


def test_an_in_place_write_between_two_reads_is_measured_again(monkeypatch):
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8, 8)
    wl = profile(_Fork(zero_between=True).eval(), x)
    assert len(calls) == 3
    assert wl.layers[0].ifmap_zeros == float((torch.relu(x) == 0).sum()) / x.numel() < 1.0
    assert wl.layers[1].ifmap_zeros == wl.layers[2].ifmap_zeros == 1.0


def test_weights_pruned_through_data_between_profiles_are_measured_again():
    # pruning code writes through .data, which leaves the parameter's version counter unchanged:
    # nothing measured in one profile may be reused by the next
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))
    x = torch.randn(1, 3, 8, 8)
    before = profile(model, x)
    assert all(layer.weight_zeros == 0.0 for layer in before.layers)
    version = model[2].weight._version
    model[2].weight.data[:4] = 0  # half of the filters
    model[4].weight.data.mul_(0)
    assert model[2].weight._version == version
    after = profile(model, x)
    assert [layer.weight_zeros for layer in after.layers] == [0.0, 0.5, 1.0]
