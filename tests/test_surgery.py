"""Structured channel surgery (hwaware.compress.surgery).

The central relation: a shrunk network computes the same outputs as the original network in which
the removed channels are forced to exactly zero (forward hooks on the producers; BatchNorm made
zero-preserving with beta = running_mean = 0). Expected group structures are written out by hand
from the architectures.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import random
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from hwaware.compress.surgery import (
    ChannelGraph,
    channel_groups,
    count_params,
    l2_ranking,
    prune_channels,
    shrink,
)
from hwaware.errors import HwawareError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread is faster and does not fight other processes for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _load(stem: str):
    spec = importlib.util.spec_from_file_location(f"_models_{stem}", ROOT / "models" / f"{stem}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


class Zoo(nn.Module):
    """Every pattern at once: concat, grouped conv, depthwise x2, residual add, SE gate, a module
    called twice, Conv1d, PReLU, flatten -> Linear, BatchNorm1d."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.b1 = nn.Conv2d(8, 6, 1)
        self.b2 = nn.Conv2d(8, 10, 3, padding=1)
        self.bn_cat = nn.BatchNorm2d(16)
        self.g = nn.Conv2d(16, 12, 3, padding=1, groups=2)
        self.dw = nn.Conv2d(12, 24, 3, padding=1, groups=12)
        self.pw = nn.Conv2d(24, 12, 1)
        self.se1 = nn.Linear(12, 4)
        self.se2 = nn.Linear(4, 12)
        self.shared = nn.Conv2d(12, 12, 1)
        self.c1d = nn.Conv1d(12, 8, 3)
        self.prelu = nn.PReLU(8)
        self.fc1 = nn.Linear(8 * 62, 16)
        self.bn_fc = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.c1(x)))
        x = torch.cat([self.b1(x), self.b2(x)], dim=1)
        x = self.bn_cat(x).relu()
        y = self.g(x)
        x = y + self.pw(F.relu(self.dw(y)))
        s = torch.sigmoid(self.se2(F.relu(self.se1(x.mean((2, 3))))))
        x = x * s.view(s.size(0), -1, 1, 1)
        x = x + self.shared(x)
        x = self.shared(F.relu(x))
        x = self.prelu(self.c1d(x.flatten(2)))
        x = F.relu(self.bn_fc(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def _alexnet_no_lrn():
    m = _load("alexnet").alexnet(num_classes=10)
    m.norm1 = nn.Identity()
    m.norm2 = nn.Identity()
    return m


MODELS = {
    "zoo": (Zoo, (2, 3, 8, 8)),
    "small_cnn": (lambda: _load("small_cnn").small_cnn(), (2, 3, 32, 32)),
    "mobilenet_v1": (lambda: _load("mobilenet_v1").mobilenet_v1(num_classes=10, width_mult=0.25, input_size=64),
                     (2, 3, 64, 64)),
    "alexnet_no_lrn": (_alexnet_no_lrn, (1, 3, 227, 227)),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (2, 3, 64, 64)),
    "resnet50": (lambda: torchvision.models.resnet50(num_classes=10), (1, 3, 64, 64)),
}


def _randomize(model: nn.Module, *, zero_preserving_bn: bool) -> nn.Module:
    """Random BN statistics; with zero_preserving_bn, beta and running_mean are 0 so BN(0) == 0."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.running_var = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.zeros(n) if zero_preserving_bn else torch.randn(n, generator=g)
            m.running_mean = torch.zeros(n) if zero_preserving_bn else torch.randn(n, generator=g)
    return model.eval()


def _random_keep(graph: ChannelGraph, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    keep = {}
    for grp in graph.prunable_groups():
        n = rng.randint(1, grp.size)
        keep[grp.name] = sorted(rng.sample(range(grp.size), n))
    return keep


def _masked_output(model: nn.Module, graph: ChannelGraph, keep, x):
    """Original model whose removed output channels are zeroed as they are produced."""
    removed: dict[str, set[int]] = {}
    for grp in graph.groups:
        if grp.name not in keep:
            continue
        for u, unit in enumerate(grp.units):
            if u not in keep[grp.name]:
                for name, ch in unit:
                    removed.setdefault(name, set()).add(ch)
    mods = dict(model.named_modules())
    handles = []
    for name, chans in removed.items():
        idx = torch.tensor(sorted(chans))

        def hook(_m, _inp, out, idx=idx):
            out = out.clone()
            out[:, idx] = 0
            return out

        handles.append(mods[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("name", list(MODELS))
def test_shrunk_equals_masked_original(name):
    torch.manual_seed(0)
    factory, shape = MODELS[name]
    model = _randomize(factory(), zero_preserving_bn=True)
    x = torch.randn(*shape)
    graph = ChannelGraph(model, x)
    assert graph.prunable_groups(), name
    for seed in (0, 1):
        keep = _random_keep(graph, seed)
        small = graph.shrink(keep).eval()
        with torch.no_grad():
            got = small(x)
        want = _masked_output(model, graph, keep, x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        # relation: surgery never adds weights or MACs
        assert count_params(small) <= count_params(model)
        assert _macs(small, x) <= _macs(model, x)
    if name != "resnet50":
        # removing half of every prunable group strictly shrinks the network
        half = {g.name: graph.ranking(g)[: max(1, g.size // 2)] for g in graph.prunable_groups()}
        small = graph.shrink(half)
        assert count_params(small) < count_params(model)
        assert _macs(small, x) < _macs(model, x)


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    """Independent MAC count: output elements x (in_channels / groups) x kernel size."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.modules.conv._ConvNd):
            total += out.numel() * (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())
        else:
            total += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    with torch.no_grad():
        model.eval()(x)
    for h in hs:
        h.remove()
    return total


def test_small_cnn_by_hand_with_nonzero_bn():
    """Chain network: zero conv filters AND their BN gamma/beta by hand; the shrunk net matches."""
    torch.manual_seed(0)
    model = _randomize(_load("small_cnn").small_cnn(), zero_preserving_bn=False)
    x = torch.randn(3, 3, 32, 32)
    groups = {g.name: g for g in channel_groups(model, x)}
    assert [(n, g.size, g.prunable) for n, g in groups.items()] == [
        ("conv1", 32, True), ("conv2", 64, True), ("conv3", 128, True), ("conv4", 128, True),
        ("fc", 10, False)]
    assert "output" in groups["fc"].reason
    assert groups["conv2"].producers == ("conv2",)
    assert groups["conv2"].consumers == ("conv3",)
    assert groups["conv2"].channelwise == ("bn2",)
    assert groups["conv4"].consumers == ("fc",)
    keep = {"conv1": list(range(0, 32, 2)), "conv2": list(range(40)), "conv4": [3, 7, 100]}
    small = shrink(model, x, keep).eval()
    masked = copy.deepcopy(model)
    for name, kept in keep.items():
        i = name[-1]
        gone = [c for c in range(getattr(masked, name).out_channels) if c not in kept]
        getattr(masked, name).weight.data[gone] = 0
        getattr(masked, f"bn{i}").weight.data[gone] = 0
        getattr(masked, f"bn{i}").bias.data[gone] = 0
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-4, atol=1e-5)
    assert (small.conv1.out_channels, small.conv2.in_channels, small.conv2.out_channels) == (16, 16, 40)
    assert small.fc.in_features == 3 and small.bn4.num_features == 3
    torch.testing.assert_close(small.bn1.running_mean, model.bn1.running_mean[0::2])
    torch.testing.assert_close(small.fc.weight, model.fc.weight[:, [3, 7, 100]])


def test_model_is_never_modified():
    model = _load("small_cnn").small_cnn().train()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    small = prune_channels(model, x, "conv3", 100)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running stats untouched by the analysis forward
    assert small is not model and small.conv3.out_channels == 28 and model.conv3.out_channels == 128


def test_resnet_groups_by_hand():
    model = torchvision.models.resnet18(num_classes=10)
    groups = {g.name: g for g in channel_groups(model, torch.randn(1, 3, 64, 64))}
    stem = groups["conv1"]
    assert stem.producers == ("conv1", "layer1.0.conv2", "layer1.1.conv2")
    assert set(stem.consumers) == {"layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1",
                                   "layer2.0.downsample.0"}
    assert set(stem.channelwise) == {"bn1", "layer1.0.bn2", "layer1.1.bn2"}
    l2 = groups["layer2.0.conv2"] if "layer2.0.conv2" in groups else groups["layer2.0.downsample.0"]
    assert set(l2.producers) == {"layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"}
    # 1 stem/residual group per stage (4) + conv1 of each of 8 blocks + fc
    assert len(groups) == 4 + 8 + 1
    assert groups["layer1.0.conv1"].size == 64 and groups["layer1.0.conv1"].producers == ("layer1.0.conv1",)


def test_mobilenet_depthwise_partners():
    model = _load("mobilenet_v1").mobilenet_v1(num_classes=10, width_mult=0.25, input_size=32)
    x = torch.randn(1, 3, 32, 32)
    graph = ChannelGraph(model, x)
    stem = graph.group("stem.conv")
    assert stem.producers == ("stem.conv", "block1.dw")
    assert stem.consumers == ("block1.dw", "block1.pw")
    assert stem.channelwise == ("stem.bn", "block1.dw_bn")
    small = graph.prune("stem.conv", 3)
    assert small.block1.dw.groups == small.block1.dw.in_channels == small.block1.dw.out_channels == 5
    assert small.block1.pw.in_channels == 5 and small.stem.bn.num_features == 5


def test_alexnet_grouped_convs_keep_groups():
    model = _load("alexnet").alexnet(num_classes=10)
    graph = ChannelGraph(model, torch.randn(1, 3, 227, 227))
    sizes = {g.name: (g.size, g.width, g.prunable) for g in graph.groups}
    # CONV2/4/5 have two groups: channel i of each conv group goes together
    assert sizes == {"conv1": (48, 96, True), "conv2": (128, 256, True), "conv3": (192, 384, True),
                     "conv4": (192, 384, True), "conv5": (128, 256, True), "fc6": (4096, 4096, True),
                     "fc7": (4096, 4096, True), "fc8": (10, 10, False)}
    assert graph.group("conv1").units[5] == (("conv1", 5), ("conv1", 53))
    assert graph.group("conv1").channels_per_unit == 2 and graph.group("conv3").channels_per_unit == 2
    assert any("LocalResponseNorm" in c for c in graph.group("conv1").caveats)
    keep = list(range(0, 128, 4))  # 32 units of CONV5 = 64 filters
    small = graph.shrink({"conv5": keep, "conv1": list(range(40))})
    assert (small.conv5.out_channels, small.conv5.groups) == (64, 2)
    assert (small.conv1.out_channels, small.conv2.in_channels, small.conv2.groups) == (80, 80, 2)
    assert small.conv2.weight.shape == (256, 40, 5, 5)
    assert small.fc6.in_features == 64 * 36
    # flatten -> Linear: kept channel c keeps its block of 36 columns
    chans = keep + [k + 128 for k in keep]
    cols = [c * 36 + j for c in chans for j in range(36)]
    torch.testing.assert_close(small.fc6.weight, model.fc6.weight[:, cols])
    assert small(torch.randn(1, 3, 227, 227)).shape == (1, 10)


def test_l2_ranking_and_prune_channels_remove_smallest():
    model = _load("small_cnn").small_cnn()
    with torch.no_grad():
        w = model.conv2.weight
        w.copy_(torch.ones_like(w))
        w[[5, 9, 60]] *= 0.01  # the three smallest filters
        w[7] *= 10
    x = torch.randn(1, 3, 32, 32)
    graph = ChannelGraph(model, x)
    order = l2_ranking(model, graph.group("conv2"))
    assert order[0] == 7 and set(order[-3:]) == {5, 9, 60}
    small = prune_channels(model, x, "conv2", 3)
    assert small.conv2.out_channels == 61
    assert torch.allclose(small.conv2.weight.abs().sum((1, 2, 3)).min(), torch.tensor(w[0].numel()) * 1.0)


def test_round_to_rounds_up_with_best_ranked():
    model = _load("small_cnn").small_cnn()
    with torch.no_grad():
        model.conv2.weight.mul_(0.0).add_(torch.arange(64.0).view(64, 1, 1, 1))  # norm grows with index
    x = torch.randn(1, 3, 32, 32)
    small = shrink(model, x, {"conv2": [0, 1, 2, 3, 4]}, round_to=4)
    assert small.conv2.out_channels == 8
    kept = small.conv2.weight[:, 0, 0, 0].tolist()
    assert kept == [0, 1, 2, 3, 4, 61, 62, 63]
    # width 96 with pairs (AlexNet CONV1): 7 units = 14 channels -> next multiple of 8 is 16 (8 units)
    alex = _alexnet_no_lrn()
    small = shrink(alex, torch.randn(1, 3, 227, 227), {"conv1": list(range(7))}, round_to=8)
    assert small.conv1.out_channels == 16
    assert shrink(model, x, {"conv2": list(range(63))}, round_to=8).conv2.out_channels == 64


def test_save_load_round_trip(tmp_path):
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    graph = ChannelGraph(model, x)
    small = graph.shrink(_random_keep(graph, 3)).eval()
    buf = io.BytesIO()
    torch.save(small, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False).eval()
    # the state_dict loads strictly into another model of the same shrunk architecture
    twin = graph.shrink(_random_keep(graph, 3))
    twin.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
        assert torch.equal(twin.eval()(x), small(x))


def test_torch_prune_masks_are_sliced():
    import torch.nn.utils.prune as tprune

    model = _load("small_cnn").small_cnn().eval()
    tprune.l1_unstructured(model.conv2, "weight", amount=0.5)
    x = torch.randn(2, 3, 32, 32)
    small = prune_channels(model, x, "conv2", 10)
    assert small.conv2.weight_orig.shape == small.conv2.weight_mask.shape == (54, 32, 3, 3)
    assert small.conv3.weight.shape == (128, 54, 3, 3)
    small(x)  # the pruning hook recomputes weight from the sliced orig and mask


def test_blocked_patterns_explain_why():
    class Literal(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 6 * 6, 2)

        def forward(self, x):
            return self.fc(self.conv(x).view(-1, 144))

    graph = ChannelGraph(Literal(), torch.randn(1, 3, 8, 8))
    conv = graph.group("conv")
    assert not conv.prunable and "literal size 144" in conv.reason
    with pytest.raises(HwawareError, match="cannot be pruned"):
        graph.shrink({"conv": [0, 1]})
    graph.shrink({"conv": [0, 1, 2, 3]})  # keeping everything is always allowed

    class Transpose(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.head = nn.Conv2d(6, 2, 1)

        def forward(self, x):
            return self.head(self.conv(x).transpose(1, 2))

    g = ChannelGraph(Transpose(), torch.randn(1, 3, 8, 8)).group("conv")
    assert not g.prunable and "transpose" in g.reason


class _MixedDW(nn.Module):
    """timm MixedConv2d's pattern: split by sizes held in ``self.splits``, one conv per branch, cat."""

    def __init__(self, c: int, sizes: list[int]):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(n, n, 2 * i + 3, padding=i + 1, groups=n) for i, n in enumerate(sizes))
        self.splits = list(sizes)
        self.in_channels = c

    def forward(self, x):
        parts = torch.split(x, self.splits, 1)
        return torch.cat([conv(parts[i]) for i, conv in enumerate(self.convs)], 1)


class _MixNet(nn.Module):
    def __init__(self, literal: bool = False):
        super().__init__()
        self.pw = nn.Conv2d(3, 7, 1)
        self.mix = _MixedDW(7, [4, 3])
        self.head = nn.Conv2d(7, 2, 1)
        self.literal = literal

    def forward(self, x):
        y = torch.relu(self.pw(x))
        if self.literal:  # sizes no attribute holds: surgery cannot rewrite them
            parts = torch.split(y, [4, 3], 1)
            return self.head(torch.cat([parts[0], parts[1]], 1))
        return self.head(torch.relu(self.mix(y)))


def _shrinks_to_masked(model, graph, keep, zeroed, x):
    """``graph.shrink(keep)`` computes ``model`` with the output channels ``zeroed`` ((module, channel)
    pairs: weights and bias) set to zero; returns the shrunk model."""
    small = graph.shrink(keep).eval()
    masked = copy.deepcopy(model)
    for name, c in zeroed:
        conv = masked.get_submodule(name)
        conv.weight.data[c] = 0
        conv.bias.data[c] = 0
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-6)
    return small


def test_split_sizes_held_by_an_attribute_are_rewritten():
    torch.manual_seed(0)
    model = _MixNet().eval()
    x = torch.randn(2, 3, 9, 9)
    graph = ChannelGraph(model, x)
    g = graph.group("pw")
    assert g.prunable and g.size == 7
    assert set(g.producers) == {"pw", "mix.convs.0", "mix.convs.1"}
    keep = {"pw": [0, 2, 5]}  # two channels of branch 0, one of branch 1
    gone = [c for c in range(7) if c not in keep["pw"]]  # and the branch convs' copies of them
    small = _shrinks_to_masked(model, graph, keep, [("pw", c) for c in gone] +
                               [(f"mix.convs.{c // 4}", c % 4) for c in gone], x)
    assert small.mix.splits == [2, 1] and small.mix.in_channels == 3
    assert model.mix.splits == [4, 3]  # the user's model is untouched
    # a branch is never emptied: its best-ranked channel comes back
    kept = graph.kept_units({"pw": [0, 1]})["pw"]
    assert kept[:2] == [0, 1] and len(kept) == 3 and kept[2] in range(4, 7)
    assert kept[2] == min(range(4, 7), key=graph.ranking("pw").index)
    assert graph.shrink({"pw": [0, 1]}).mix.splits == [2, 1]
    blocked = ChannelGraph(_MixNet(literal=True), x).group("pw")
    assert not blocked.prunable and "literal sizes [4, 3]" in blocked.reason


class _Res2(nn.Module):
    """Res2Net's multi-scale block: equal parts of one size read from ``self.width``."""

    def __init__(self, width: int = 3, scale: int = 4):
        super().__init__()
        self.width, self.scale = width, scale
        self.conv1 = nn.Conv2d(3, width * scale, 1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, 4, 1)

    def forward(self, x):
        parts = torch.split(torch.relu(self.conv1(x)), self.width, 1)
        outs, sp = [], None
        for i, conv in enumerate(self.convs):
            sp = parts[i] if sp is None else sp + parts[i]
            sp = torch.relu(conv(sp))
            outs.append(sp)
        return self.conv3(torch.cat([*outs, parts[-1]], 1))


def test_split_size_held_by_an_int_attribute_is_rewritten():
    torch.manual_seed(0)
    model = _Res2().eval()
    x = torch.randn(2, 3, 7, 7)
    graph = ChannelGraph(model, x)
    g = graph.group("conv1")
    # unit i is channel i of every part: the parts stay equal
    assert g.prunable and g.size == 3 and g.width == 12
    assert sorted(c for m, c in g.units[1] if m == "conv1") == [1, 4, 7, 10]
    # convs.0/1's outputs are added to parts 1/2: coupled with them
    small = _shrinks_to_masked(model, graph, {"conv1": [0, 2]}, [("conv1", c) for c in (1, 4, 7, 10)] +
                               [("convs.0", 1), ("convs.1", 1)], x)
    assert small.width == 2 and small.conv1.out_channels == 8 and small.convs[1].out_channels == 2
    assert model.width == 3  # the user's model is untouched
    # no attribute holds the size (width 4, scale 6; split by 3): blocked, as a literal
    class Literal(_Res2):
        def forward(self, x):
            return self.conv3(torch.cat(torch.split(torch.relu(self.conv1(x)), 3, 1), 1))

    blocked = ChannelGraph(Literal(width=4, scale=6), torch.randn(1, 3, 5, 5)).group("conv1")
    assert blocked.prunable is False and "literal sizes" in blocked.reason


class _CrossStage(nn.Module):
    """CSPNet's stage: split into two halves by ``self.expand_chs // 2`` (the attribute holds the total)."""

    def __init__(self):
        super().__init__()
        self.expand_chs = 6
        self.conv_exp = nn.Conv2d(3, 6, 1)
        self.block = nn.Conv2d(3, 3, 3, padding=1)
        self.conv_transition = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        xs, xb = torch.relu(self.conv_exp(x)).split(self.expand_chs // 2, dim=1)
        return self.conv_transition(torch.cat([xs, torch.relu(self.block(xb))], 1))


def test_split_size_from_an_attribute_holding_the_total_is_rewritten():
    torch.manual_seed(0)
    model = _CrossStage().eval()
    x = torch.randn(2, 3, 6, 6)
    graph = ChannelGraph(model, x)
    g = graph.group("conv_exp")
    assert g.prunable and g.size == 3 and g.width == 6  # unit i: channel i of each half
    small = _shrinks_to_masked(model, graph, {"conv_exp": [0, 2]}, [("conv_exp", 1), ("conv_exp", 4)], x)
    assert small.expand_chs == 4 and small.block.in_channels == 2 and small.conv_transition.in_channels == 5
    assert model.expand_chs == 6


class _LayerScale(nn.Module):
    """timm MetaFormer's ``Scale``: a per-channel parameter viewed to a shape held in ``self.shape``."""

    def __init__(self, literal: bool = False):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)
        self.scale = nn.Parameter(torch.randn(4))
        self.shape, self.literal = (None if literal else (4, 1, 1)), literal

    def forward(self, x):
        gamma = self.scale.view(4, 1, 1) if self.literal else self.scale.view(self.shape)
        return self.head(torch.relu(self.conv(x)) * gamma)


def test_parameter_shape_held_by_an_attribute_is_rewritten():
    torch.manual_seed(0)
    model = _LayerScale().eval()
    x = torch.randn(2, 3, 5, 5)
    graph = ChannelGraph(model, x)
    assert graph.group("conv").prunable
    small = _shrinks_to_masked(model, graph, {"conv": [0, 3]}, [("conv", 1), ("conv", 2)], x)
    assert small.shape == (2, 1, 1) and small.scale.shape == (2,) and model.shape == (4, 1, 1)
    blocked = ChannelGraph(_LayerScale(literal=True), x).group("conv")
    assert not blocked.prunable and "literal shape (4, 1, 1)" in blocked.reason


class _PartialResidual(nn.Module):
    """RexNet's block: the shortcut is added to the first ``in_channels`` of a wider output."""

    def __init__(self, literal: bool = False):
        super().__init__()
        self.in_channels, self.literal = 3, literal
        self.stem = nn.Conv2d(2, 3, 1)
        self.pw = nn.Conv2d(3, 5, 3, padding=1)
        self.head = nn.Conv2d(5, 2, 1)

    def forward(self, x):
        shortcut = torch.relu(self.stem(x))
        y = self.pw(shortcut)
        if self.literal:
            return self.head(torch.cat([y[:, 0:3] + shortcut, y[:, 3:]], 1))
        return self.head(torch.cat([y[:, 0:self.in_channels] + shortcut, y[:, self.in_channels:]], 1))


def test_channel_slice_bound_held_by_an_int_attribute_is_rewritten():
    torch.manual_seed(0)
    model = _PartialResidual().eval()
    x = torch.randn(2, 2, 6, 6)
    graph = ChannelGraph(model, x)
    g = graph.group("stem")
    # units: the shortcut's channel c added to pw's channel c (c < 3), and pw's channels 3 and 4 alone
    assert g.prunable and g.size == 5 and set(g.producers) == {"stem", "pw"}
    assert sorted(sorted(u) for u in g.units) == [[("pw", 0), ("stem", 0)], [("pw", 1), ("stem", 1)],
                                                  [("pw", 2), ("stem", 2)], [("pw", 3)], [("pw", 4)]]
    gone = {("stem", 1), ("pw", 3)}
    keep = [i for i, u in enumerate(g.units) if not gone & set(u)]
    small = _shrinks_to_masked(model, graph, {"stem": keep}, [("stem", 1), ("pw", 1), ("pw", 3)], x)
    assert small.in_channels == 2 and small.pw.out_channels == 3 and small.head.in_channels == 3
    assert model.in_channels == 3  # the user's model is untouched
    # a literal equal to the attribute looks the same in the trace; the shrunk model's sizes tell:
    # one shortcut channel would broadcast against y[:, 0:3] and run, silently wrong, without that check
    literal = ChannelGraph(_PartialResidual(literal=True), x)
    g = literal.group("stem")
    one = [i for i, u in enumerate(g.units) if not {("stem", 1), ("stem", 2)} & set(u)]
    with pytest.raises(HwawareError, match=r"node 'getitem' into \[3\] after surgery, not the kept \[1\].*'in_channels'"):
        literal.shrink({"stem": one})
    literal.shrink({"stem": one}, check=False)  # what the check stops: it runs


def test_untraceable_model_names_the_module():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.branchy = Branchy()

        def forward(self, x):
            return self.branchy(self.conv(x))

    with pytest.raises(HwawareError, match=r"module 'branchy \(Branchy\)'"):
        ChannelGraph(Net(), torch.randn(1, 3, 8, 8))


def test_bad_keep_and_names():
    model = _load("small_cnn").small_cnn()
    x = torch.randn(1, 3, 32, 32)
    graph = ChannelGraph(model, x)
    with pytest.raises(HwawareError, match="did you mean 'conv2'"):
        graph.shrink({"conv22": [0]})
    with pytest.raises(HwawareError, match="outside"):
        graph.shrink({"conv2": [64]})
    with pytest.raises(HwawareError, match="empty"):
        graph.shrink({"conv2": []})
    with pytest.raises(HwawareError, match="repeated"):
        graph.shrink({"conv2": [1, 1]})
    with pytest.raises(HwawareError, match="n_remove"):
        graph.prune("conv2", 64)
    with pytest.raises(HwawareError, match="round_to"):
        graph.shrink({"conv2": [1]}, round_to=0)
    with pytest.raises(HwawareError, match="does not run"):
        ChannelGraph(model, torch.randn(1, 5, 32, 32))
