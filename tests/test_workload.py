"""Layer records and workload files: derived shapes, YAML/JSON round trip, bad files rejected."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hwaware.errors import HwawareError
from hwaware.profiler import profile
from hwaware.workload import Layer, UnmodeledOp, Workload, as_workload


def test_layer_letters_follow_the_paper():
    # Eyeriss JSSC 2017 Table III, AlexNet CONV1 at batch 4: H=227 (padded), R=11, U=4 -> E=55.
    conv1 = Layer("CONV1", N=4, M=96, C=3, H=227, W=227, R=11, S=11, U=4)
    assert (conv1.E, conv1.F, conv1.kind) == (55, 55, "conv")
    assert conv1.macs == 4 * 96 * 3 * 55 * 55 * 11 * 11
    # CONV2: unpadded 27 + 2*2 padding = the paper's H=31; two groups of 48 channels per filter.
    conv2 = Layer("CONV2", N=1, M=256, C=48, H=27, W=27, R=5, S=5, padding=2, groups=2)
    assert (conv2.Hp, conv2.E, conv2.in_channels, conv2.weights) == (31, 27, 96, 256 * 48 * 25)
    fc = Layer("fc", N=2, M=10, C=64, H=1, W=1, R=1, S=1)
    assert (fc.kind, fc.macs) == ("fc", 2 * 10 * 64)
    dw = Layer("dw", N=1, M=8, C=1, H=5, W=5, R=3, S=3, groups=8)
    assert dw.kind == "depthwise"


def _sample_workload() -> Workload:
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2))
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            y = torch.relu(self.conv(x)).mean((2, 3))
            return torch.matmul(self.fc(y), self.fc.weight)

    torch.manual_seed(0)
    return profile(Net(), torch.relu(torch.randn(2, 3, 9, 10)), source="net")


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_workload_file_round_trip(tmp_path, suffix):
    wl = _sample_workload()
    conv = wl.layers[0]
    assert wl.unmodeled and conv.U_h != conv.U and conv.padding != conv.padding_w
    path = tmp_path / f"wl{suffix}"
    wl.save(path)
    back = Workload.load(path)
    assert [layer.shape_key() for layer in back] == [layer.shape_key() for layer in wl]
    def labels(w):
        return [(layer.name, layer.kind, layer.op) for layer in w]

    assert labels(back) == labels(wl)
    for a, b in zip(back, wl):
        for k in ("ifmap_zeros", "weight_zeros", "ofmap_zeros"):
            assert getattr(a, k) == pytest.approx(getattr(b, k), abs=1e-6)  # files keep 6 decimals
    assert back.unmodeled == wl.unmodeled
    assert (back.macs, back.weights) == (wl.macs, wl.weights)
    assert as_workload(path).macs == wl.macs


def test_hand_written_yaml_and_bare_list(tmp_path):
    path = tmp_path / "alexnet_conv.yaml"
    path.write_text(
        "layers:\n"
        "  - {name: CONV1, N: 4, M: 96, C: 3, H: 227, W: 227, R: 11, S: 11, U: 4}\n"
        "  - {name: CONV2, N: 4, M: 256, C: 48, H: 27, W: 27, R: 5, S: 5, padding: 2, groups: 2,\n"
        "     ifmap_zeros: 0.387, E: 27}\n"
        "unmodeled:\n"
        "  - {op: matmul, name: attn, macs: 1000}\n"
    )
    wl = Workload.load(path)
    assert [layer.E for layer in wl] == [55, 27]
    assert wl[1].ifmap_zeros == 0.387
    assert wl.unmodeled == (UnmodeledOp("matmul", "attn", 1000),)
    bare = tmp_path / "bare.json"
    fc = {"name": "fc", "N": 1, "M": 10, "C": 20, "H": 1, "W": 1, "R": 1, "S": 1}
    bare.write_text(json.dumps([fc]))
    assert Workload.load(bare).macs == 200


def one(**changes):
    """A one-layer YAML file: a valid 3x3 CONV with keys changed (None removes a key)."""
    d = {"name": "c1", "N": 1, "M": 4, "C": 3, "H": 8, "W": 8, "R": 3, "S": 3}
    d.update(changes)
    body = ", ".join(f"{k}: {v}" for k, v in d.items() if v is not None)
    return f"layers:\n  - {{{body}}}\n"


@pytest.mark.parametrize("text, pattern", [
    (one(S=None), r"layer 'c1': missing key 'S'"),
    (one(paddding=1), r"unknown key 'paddding' \(did you mean 'padding'\?\)"),
    (one(M=0), r"'M' must be positive, got 0"),
    (one(H=-8), r"'H' must be positive"),
    (one(E=7), r"'E' is 7 but the shape gives 6"),
    (one(ifmap_zeros=1.5), r"'ifmap_zeros' is a fraction in \[0, 1\]"),
    (one(C=3.5), r"'C' must be an integer"),
    (one(H=2, W=2), r"does not fit the padded input"),
    (one().replace("layers:", "layer:"),
     r"unknown top-level key 'layer' \(did you mean 'layers'\?\)"),
    (one() + one()[len("layers:\n"):], r"layer name 'c1' appears twice"),
    ("layers: []\n", r"'layers' must be a non-empty list"),
    ("layers:\n  - {name: c1, N: 1\n", r"not valid YAML"),
])
def test_bad_workload_files_are_rejected_with_one_line(tmp_path, text, pattern):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HwawareError, match=pattern) as info:
        Workload.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", [
    one(S=None),
    one(paddding=1),
    one(E=7),
    one(C=3.5),
    one() + one()[len("layers:\n"):],
    "layers:\n  - {name: c1, N: 1\n",
    one(M=0),
    one(ifmap_zeros=1.5),
    one(H=2, W=2),
])
def test_bad_workload_file_errors_name_the_file_and_layer(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HwawareError) as info:
        Workload.load(path)
    assert str(path) in str(info.value)
    if "name: c1, N: 1\n" not in text:  # broken YAML has no layer to name
        assert "'c1'" in str(info.value)


def test_bad_json_and_missing_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"layers": [')
    with pytest.raises(HwawareError, match=r"bad.json: not valid JSON"):
        Workload.load(path)
    with pytest.raises(HwawareError, match="workload file not found"):
        Workload.load(tmp_path / "missing.yaml")


def test_weights_count_a_reused_module_once():
    a = Layer("fc", N=1, M=4, C=4, H=1, W=1, R=1, S=1)
    wl = Workload((a, a.replace(name="fc#1")))
    assert (wl.macs, wl.weights) == (32, 16)
    assert wl.with_batch(3).macs == 96


def test_nonzero_weights_count_each_module_once():
    from hwaware.workload import Layer, Workload

    a = Layer("conv", N=1, M=8, C=4, H=8, W=8, R=3, S=3, weight_zeros=0.25)
    wl = Workload((a, a.replace(name="conv#1"), Layer("fc", N=1, M=10, C=32, H=1, W=1, R=1, S=1)))
    assert wl.weights == 8 * 4 * 9 + 10 * 32
    assert wl.nonzero_weights == 8 * 4 * 9 * 0.75 + 10 * 32
