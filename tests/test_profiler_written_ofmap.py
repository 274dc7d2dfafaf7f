"""The ofmap a layer writes as the Eyeriss chip writes it: after the ReLU fused into the layer (through a
folded BatchNorm), before any pooling (JSSC 2017 Sec. III: no pooling unit; Sec. IV-B: ofmaps leave
through the ReLU module and the RLC encoder). Expected values are computed here with torch and the
codec's own encoder, independently of the profiler's counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hwaware.eyeriss import Scorer
from hwaware.eyeriss.score import written_ratio
from hwaware.profiler import profile
from hwaware.workload import Layer, Workload
from hwaware.workload.rlc import encode, rlc_ratio


def _coded_ratio(t: torch.Tensor) -> float:
    """RLC words of ``t``'s NCHW stream (the real code, built) x 4 / values."""
    words = len(encode(t.reshape(-1).ne(0).numpy().astype(np.int16)))
    return 4 * words / t.numel()


def _net(*mods: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*mods).eval()


def test_relu_output_before_pooling_is_measured():
    net = _net(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 4, 3))
    x = torch.randn(2, 3, 12, 12)
    wl = profile(net, x)
    written = torch.relu(net[0](x))
    first = wl.layers[0]
    assert first.ofmap_relu_zeros == pytest.approx(float((written == 0).float().mean()))
    assert first.ofmap_rlc == pytest.approx(_coded_ratio(written))
    # the pooled tensor the next layer reads has fewer zeros than what the layer writes
    assert wl.layers[1].ifmap_zeros < first.ofmap_relu_zeros
    # the last layer has no ReLU after it: not measured
    assert wl.layers[1].ofmap_relu_zeros is None and wl.layers[1].ofmap_rlc == 0.0


def test_batchnorm_is_folded_and_inplace_relu6_counts():
    bn = nn.BatchNorm2d(8)
    bn.running_mean.fill_(0.3)
    bn.running_var.fill_(2.0)
    net = _net(nn.Conv2d(3, 8, 3), bn, nn.ReLU6(inplace=True), nn.Conv2d(8, 4, 1))
    x = torch.randn(1, 3, 10, 10)
    wl = profile(net, x)
    written = torch.nn.functional.relu6(bn(net[0](x)))
    assert wl.layers[0].ofmap_relu_zeros == pytest.approx(float((written == 0).float().mean()))
    assert wl.layers[0].ofmap_rlc == pytest.approx(_coded_ratio(written))


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(torch.relu(self.a(x)))
        y += x  # the add is not the chip's: b's ReLU'd output is not what b writes
        return torch.relu(y)


def test_add_or_pooling_before_the_relu_leaves_the_layer_unmeasured():
    net = _net(_Residual())
    wl = profile(net, torch.randn(1, 4, 8, 8))
    a, b = wl.layers
    assert a.ofmap_relu_zeros is not None and a.ofmap_rlc > 0
    assert b.ofmap_relu_zeros is None and b.ofmap_rlc == 0.0
    pooled_first = _net(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(4, 4, 1))
    wl = profile(pooled_first, torch.randn(1, 3, 10, 10))
    assert wl.layers[0].ofmap_relu_zeros is None


def test_batches_are_pooled_by_values():
    net = _net(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    xs = [torch.randn(1, 3, 6, 6), torch.randn(3, 3, 6, 6) + 0.5]
    wl = profile(net, iter(xs))
    outs = [torch.relu(net[0](x)) for x in xs]
    zeros = sum(int((o == 0).sum()) for o in outs)
    assert wl.layers[0].ofmap_relu_zeros == pytest.approx(zeros / sum(o.numel() for o in outs))


def test_workload_files_keep_the_fields_and_old_files_load():
    lay = Layer("c", N=1, M=8, C=4, H=6, W=6, R=3, S=3, ifmap_zeros=0.2, ofmap_relu_zeros=0.6, ofmap_rlc=0.55)
    back = Workload.from_dict(Workload((lay,)).to_dict())
    assert back.layers[0].ofmap_relu_zeros == 0.6 and back.layers[0].ofmap_rlc == 0.55
    old = {"layers": [{"name": "c", "N": 1, "M": 8, "C": 4, "H": 6, "W": 6, "R": 3, "S": 3}]}
    assert Workload.from_dict(old).layers[0].ofmap_relu_zeros is None
    with pytest.raises(Exception, match="ofmap_relu_zeros"):
        Layer("c", N=1, M=8, C=4, H=6, W=6, R=3, S=3, ofmap_relu_zeros=1.5)
    with pytest.raises(Exception, match="ofmap_rlc"):
        Layer("c", N=1, M=8, C=4, H=6, W=6, R=3, S=3, ofmap_rlc=-0.1)


def test_the_model_codes_the_written_ofmap():
    """Measured code first, then the stated zeros, else (older files) the zeros the next layer reads."""
    lay = Layer("c", N=1, M=8, C=4, H=16, W=16, R=3, S=3, ifmap_zeros=0.1)
    assert written_ratio(lay, 0.3) == rlc_ratio(14 * 14, 0.3)
    assert written_ratio(lay, None) == rlc_ratio(14 * 14, 0.1)
    assert written_ratio(lay.replace(ofmap_relu_zeros=0.7), 0.3) == rlc_ratio(14 * 14, 0.7)
    assert written_ratio(lay.replace(ofmap_relu_zeros=0.7, ofmap_rlc=0.25), 0.3) == 0.25
    rep = Scorer("eyeriss_v1").score([lay.replace(ofmap_rlc=0.25)])
    # DRAM ofmap writes: N*M*E*F words, coded
    assert rep.layers[0].accesses["DRAM"]["psum"] == pytest.approx(8 * 14 * 14 * 0.25)


def test_the_torch_path_counts_like_the_numpy_path():
    """Tensors NumPy cannot read (other devices; here bfloat16 on the CPU) are counted by torch ops
    as 0-d tensors; they must give the same zeros and code size."""
    from hwaware.profiler.stats import written_stats

    torch.manual_seed(0)
    t = torch.relu(torch.randn(2, 5, 9, 11))
    t[0, 1] = 0  # a run longer than 32
    z_np, w_np, n_np = written_stats(t)
    z_t, w_t, n_t = written_stats(t.to(torch.bfloat16))
    assert (int(z_t), int(w_t), n_t) == (z_np, w_np, n_np)
    assert w_np == len(encode(t.reshape(-1).ne(0).numpy().astype(np.int16)))


def test_score_json_and_profile_table_show_the_written_ofmap():
    """The score JSON carries the written-ofmap fields per layer (null where not measured); the
    profile table prints them ("-" where not measured). Expected values from torch and the codec."""
    from hwaware.cli.profile import workload_table
    from hwaware.report_table import format_pct

    net = _net(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 4, 3))
    x = torch.randn(2, 3, 12, 12)
    wl = profile(net, x)
    written = torch.relu(net[0](x))
    z, rlc = float((written == 0).float().mean()), _coded_ratio(written)
    d = Scorer("eyeriss_v1").score(wl).to_dict()
    first, last = d["layers"][0], d["layers"][1]
    assert first["ofmap_relu_zeros"] == pytest.approx(z) and first["ofmap_rlc"] == pytest.approx(rlc)
    assert last["ofmap_relu_zeros"] is None and last["ofmap_rlc"] is None
    assert first["ofmap_zeros"] == pytest.approx(float((net[0](x) == 0).float().mean()))
    lines = workload_table(wl).splitlines()
    header = next(line for line in lines if line.startswith("name"))
    assert "written 0s" in header and "written RLC" in header
    row0 = next(line for line in lines if line.startswith(wl.layers[0].name + " ")).split()
    row1 = next(line for line in lines if line.startswith(wl.layers[1].name + " ")).split()
    assert row0[-2:] == [format_pct(z), f"{rlc:.3f}"]
    assert row1[-2:] == ["-", "-"]
