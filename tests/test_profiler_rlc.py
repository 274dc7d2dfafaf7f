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
