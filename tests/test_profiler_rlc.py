"""The profiler's exact RLC size of each layer's input feeds the Eyeriss model's DRAM traffic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hwaware.eyeriss import Scorer
from hwaware.workload.rlc import encode
from hwaware.profiler import profile


def test_measured_rlc_equals_the_codec_on_the_padded_input():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1)
    model = nn.Sequential(nn.ReLU(), conv)
    x = torch.randn(2, 4, 9, 7)
    wl = profile(model, x)
    layer = wl.layers[0]
    padded = torch.nn.functional.pad(torch.relu(x), (1, 1, 1, 1))
    words = len(encode(padded.reshape(-1).ne(0).numpy().astype(np.int16)))  # build the real code
    assert layer.ifmap_rlc == pytest.approx(4 * words / padded.numel())


def test_measured_rlc_drives_dram_traffic():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    wl = profile(model, torch.randn(1, 3, 16, 16))
    second = wl.layers[1]
    assert 0 < second.ifmap_rlc < 4 / 3
    sc = Scorer("eyeriss_v1")
    measured = sc.score(wl).layers[1].accesses["DRAM"]["ifmap"]
    # the same layer with a denser coded input must move more ifmap words from DRAM
    denser = wl.replace_layer(1, second.replace(ifmap_rlc=min(2.0, second.ifmap_rlc * 1.5)))
    assert Scorer("eyeriss_v1").score(denser).layers[1].accesses["DRAM"]["ifmap"] > measured


def _streams(rng: np.random.Generator, count: int):
    """Random zero patterns with long zero runs (32+, across byte edges, at both ends)."""
    for _ in range(count):
        n = int(rng.integers(0, 400))
        mask = rng.random(n) > rng.random()
        for _ in range(int(rng.integers(0, 3))):
            if n:
                a = int(rng.integers(0, n))
                mask[a:int(rng.integers(a, n + 1))] = False
        yield mask


def test_words_for_mask_equals_the_length_of_the_real_code():
    from hwaware.workload.rlc import words_for_mask

    rng = np.random.default_rng(0)
    for mask in _streams(rng, 3000):
        assert words_for_mask(mask) == (len(encode(mask.astype(np.int16))), int(mask.sum()))


def test_device_code_size_equals_the_real_code():
    # the torch path profiles tensors off the CPU; its counts must be the codec's, chunk edges too
    from hwaware.profiler import stats

    rng = np.random.default_rng(1)
    for chunk in (1 << 24, 7, 32):
        stats._CHUNK = chunk
        try:
            for mask in _streams(rng, 300):
                words, nnz = stats.device_words(torch.from_numpy(mask))
                assert (int(words), int(nnz)) == (len(encode(mask.astype(np.int16))), int(mask.sum()))
        finally:
            stats._CHUNK = 1 << 24


def _small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 5, stride=2, padding=2),
                         nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Flatten(), nn.Linear(4 * 16 * 16, 10))


@pytest.mark.parametrize("net,dtype,count,pieces", [("resnet18", torch.float32, 21, False),
                                                    ("resnet18", torch.float32, 21, True),
                                                    ("small", torch.bfloat16, 4, False)])
def test_profiles_equal_an_independent_count_on_every_layer(monkeypatch, net, dtype, count, pieces):
    # zero counts by torch, code sizes by the codec on the F.pad-ded input, per Conv/Linear call;
    # bfloat16 takes the profiler's torch path (NumPy cannot view it), float32 the NumPy one;
    # ``pieces``: every CPU tensor measured in pieces of a few values on 3 threads (piece edges
    # inside planes, packed bytes and zero runs)
    import torchvision

    from hwaware.profiler import stats

    if pieces:
        monkeypatch.setattr(stats, "_MIN_PIECE", 5)
        threads = torch.get_num_threads()
        torch.set_num_threads(3)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10) if net == "resnet18" else _small_net()
    model = model.eval().to(dtype)
    x = torch.relu(torch.randn(2, 3, 32, 32)).to(dtype)
    want = {}

    def hook(mod, args, out):
        i = args[0]
        p = mod.padding if isinstance(mod, nn.Conv2d) else (0, 0)
        padded = torch.nn.functional.pad(i, (p[1], p[1], p[0], p[0])) if isinstance(mod, nn.Conv2d) else i
        want[mod] = ((int((i == 0).sum()), i.numel()), (int((mod.weight == 0).sum()), mod.weight.numel()),
                     (int((out == 0).sum()), out.numel()),
                     (len(encode(padded.reshape(-1).ne(0).numpy().astype(np.int16))), padded.numel()))

    names = {m: n for n, m in model.named_modules()}
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    try:
        wl = profile(model, x)
    finally:
        if pieces:
            torch.set_num_threads(threads)
    assert len(wl.layers) == len(want) == count
    by_name = {layer.name: layer for layer in wl.layers}
    for mod, ((zi, ni), (zw, nw), (zo, no), (words, values)) in want.items():
        layer = by_name[names[mod]]
        assert (layer.ifmap_zeros, layer.weight_zeros, layer.ofmap_zeros) == (zi / ni, zw / nw, zo / no)
        assert layer.ifmap_rlc == min(4.0 * words / values, 2.0)


def test_non_finite_values_named_on_the_torch_path():
    # tensors NumPy cannot view (bfloat16 here, CUDA in training) are checked on their device and
    # reported at the end of the forward pass, naming the first bad tensor in call order
    from hwaware.errors import HwawareError

    model = _small_net().to(torch.bfloat16).eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.bfloat16)
    x[0, 1, 2, 3] = float("inf")
    with pytest.raises(HwawareError, match=r"layer '0': its input holds NaN/inf \(1 of 3072 values\)"):
        profile(model, x)
    with torch.no_grad():
        model[2].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(HwawareError, match=r"layer '2': its weight holds NaN/inf \(1 of 1600 values\)"):
        profile(model, torch.randn(1, 3, 32, 32, dtype=torch.bfloat16))


def test_non_finite_weight_named_when_measured_on_the_worker_thread():
    # CPU weights are measured on a worker while the forward pass runs; the error is the same
    from hwaware.errors import HwawareError

    model = _small_net().eval()
    with torch.no_grad():
        model[4].weight[1, 2, 0, 0] = float("-inf")
    with pytest.raises(HwawareError, match=r"layer '4': its weight holds NaN/inf \(1 of 32 values\)"):
        profile(model, torch.randn(1, 3, 32, 32))
