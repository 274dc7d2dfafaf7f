"""Shapes mapped on a background thread during profiling (hwaware/eyeriss/background_search.py) give
the same report as profiling first and searching afterwards, and every winner is still what an
exhaustive ``mapper.search`` on the measured statistics picks. That the statistics may come after
the search is proved in tests/test_mapping_cache.py (the shortlist holds the winner for any
statistics)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hwaware
from hwaware.eyeriss import Scorer
from hwaware.eyeriss.background_search import BackgroundSearch
from hwaware.eyeriss.mapper import make_problem, search
from hwaware.eyeriss.score import clear_mapping_cache
from hwaware.profiler import Profiler, profile


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 1), nn.ReLU(),
        nn.Conv2d(32, 32, 1), nn.ReLU(),  # the same shape again: searched once
        nn.Conv2d(32, 8, (1, 15)),  # S=15 exceeds the chip's filter width: reported, not mapped
        nn.Flatten(), nn.LazyLinear(10),
    )
    net(torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_((torch.rand_like(m.weight) > 0.4).float())  # sparse weights
    return net.eval()


def test_background_search_gives_the_report_of_a_search_after_profiling():
    net = _net()
    x = torch.randn(2, 3, 32, 32)
    for objective in ("energy", "latency"):
        clear_mapping_cache()
        serial = Scorer("eyeriss_v1", objective).score(profile(net, x)).to_dict()
        clear_mapping_cache()
        sc = Scorer("eyeriss_v1", objective)
        overlapped = hwaware.score(net, data=x, scorer=sc)
        assert overlapped.to_dict() == serial
        assert sc.cache_info()["searched"] == 4  # 5 runnable layers, 4 distinct shapes
        assert [u.name for u in overlapped.unscored] == ["9"]
        # and each winner is an exhaustive search's on the measured statistics
        layers = profile(net, x).layers  # (all records: the next layer's zeros may be an unscored one's)
        index = {layer.name: i for i, layer in enumerate(layers)}
        for ls in overlapped.layers:
            i = index[ls.name]
            nxt = layers[i + 1].ifmap_zeros if i + 1 < len(layers) else None
            pb = make_problem(ls.layer, sc.hardware, **dict(zip(("rlc_if", "rlc_of", "rlc_w"),
                                                                 sc._ratios(ls.layer, i == 0, nxt))))
            assert ls.mapping == search(pb, sc.hardware, objective)


def test_on_layer_sees_each_record_once_with_its_shape_before_the_pass_ends():
    net = _net()
    seen: list[tuple[str, float]] = []
    done: list[str] = []
    net[-1].register_forward_pre_hook(lambda *a: done.append(f"last layer starts after {len(seen)}"))
    with Profiler(net, on_layer=lambda layer: seen.append((layer.name, layer.ifmap_zeros))) as prof:
        prof.run(torch.randn(2, 3, 32, 32))
        prof.run(torch.randn(2, 3, 32, 32))
    wl = prof.workload()
    assert [name for name, _ in seen] == [layer.name for layer in wl.layers]  # once each, in order
    assert all(z == 0.0 for _, z in seen)  # shapes only: statistics are measured later
    assert wl.layers[1].ifmap_zeros > 0.2  # (the ReLU output it reads is about half zeros)
    # reported while the first pass runs, before the next layer starts
    assert done == [f"last layer starts after {len(wl.layers) - 1}", f"last layer starts after {len(wl.layers)}"]


def test_background_search_queues_each_shape_once_and_reraises_search_errors(monkeypatch):
    net = _net()
    x = torch.randn(2, 3, 32, 32)
    clear_mapping_cache()
    sc = Scorer("eyeriss_v1")
    with BackgroundSearch(sc) as bg:
        wl = profile(net, x, on_layer=bg.submit)
    assert bg.submitted == len({layer.shape_key() for layer in wl.layers}) == 5
    assert sc.cache_info()["searched"] == 4  # the S=15 layer cannot run: skipped, not an error
    again = Scorer("eyeriss_v1")
    again.score(wl)
    assert again.cache_info() == {"mappings": 4, "searched": 0, "layers": 5}  # all from the cache

    def broken(self, layer):
        raise RuntimeError("search failed")

    clear_mapping_cache()
    monkeypatch.setattr(Scorer, "_shortlist", broken)
    with pytest.raises(RuntimeError, match="search failed"):
        hwaware.score(net, data=x)
