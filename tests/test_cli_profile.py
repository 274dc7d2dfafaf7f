"""``hwaware profile``: tables, JSON output, workload files as targets, one-line errors (exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwaware.cli import main
from hwaware.report_table import format_pct, format_si, format_table
from hwaware.workload import Workload

ROOT = Path(__file__).resolve().parents[1]

NET = '''
import torch
from torch import nn

INPUT_SIZE = (3, 16, 16)


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 16 * 16, 4))


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(8, 8)

    def forward(self, x):                      # x: (N, 3, 16, 16) -> tokens (N, 96, 8)
        t = x.flatten(1).reshape(x.shape[0], -1, 8)
        return torch.matmul(self.q(t), t.transpose(1, 2))


def attn():
    return Attn()
'''

# Independent counts for net() at 1x3x16x16: conv 16*16 outputs x 8 filters x 3*3*3, fc 2048 x 4.
NET_CONV_MACS = 16 * 16 * 8 * 3 * 9
NET_FC_MACS = 8 * 16 * 16 * 4
NET_WEIGHTS = 8 * 3 * 9 + 2048 * 4


@pytest.fixture()
def net_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(NET)
    return path


def run_cli(capsys, *argv):
    rc = main(["profile", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hwaware profile: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_profile_prints_table_with_totals(capsys, net_file):
    rc, out, _ = run_cli(capsys, net_file)
    assert rc == 0
    assert "input 1x3x16x16" in out and "random normal input" in out
    header = next(line for line in out.splitlines() if line.startswith("name"))
    for col in ("kind", "N", "M", "C", "H", "W", "R", "S", "E", "F", "U", "groups", "MACs",
                "weights", "ifmap 0s", "weight 0s", "ofmap 0s"):
        assert f" {col}" in header
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:2] in ("0 ", "3 ")}
    assert rows["0"][1:12] == ["conv", "1", "8", "3", "16", "16", "3", "3", "16", "16", "1"]
    assert rows["3"][1] == "fc"
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert format_si(NET_CONV_MACS + NET_FC_MACS) in total and format_si(NET_WEIGHTS) in total
    assert "unmodeled ops: none" in out
    # the ReLU carries no MACs: said, counted (8x16x16 outputs = 2048 values), and why it matters little
    assert f"not modeled (no MACs, not scored): ReLU x1; {format_si(2048)} element operations in all" in out
    assert f"{format_pct(2048 / (NET_CONV_MACS + NET_FC_MACS), 2)} of the" in out and "Why it matters little" in out


def test_not_modeled_ops_counts_batchnorm_pools_and_residual_adds() -> None:
    import torch
    from torch import nn

    from hwaware.cli.profile import not_modeled_ops

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.pool = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.MaxPool2d(2)

        def forward(self, x):
            return self.pool(self.bn(self.conv(x)) + x)  # one residual add outside any module

    model = Block().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ops = not_modeled_ops(model, torch.randn(2, 4, 8, 8))
    # counted by hand: BN and the add see 2x4x8x8 = 512 values, the pool writes 2x4x4x4 = 128
    assert ops == {"BatchNorm2d": (1, 512), "add": (1, 512), "MaxPool2d": (1, 128)}
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_profile_json_is_a_workload_file(capsys, net_file, tmp_path):
    out_json = tmp_path / "out" / "net.json"
    rc, out, _ = run_cli(capsys, f"{net_file}:net", "--input-size", "2x3x16x16", "--json", out_json)
    assert rc == 0 and f"wrote {out_json}" in out
    data = json.loads(out_json.read_text())
    assert set(data) == {"layers", "unmodeled", "total", "checksum"}  # checksum: verified on load
    assert data["total"] == {"macs": 2 * (NET_CONV_MACS + NET_FC_MACS), "weights": NET_WEIGHTS}
    conv = data["layers"][0]
    for key in ("name", "kind", "N", "M", "C", "H", "W", "R", "S", "E", "F", "U", "groups",
                "padding", "ifmap_zeros", "weight_zeros", "ofmap_zeros", "macs", "weights"):
        assert key in conv
    assert (conv["N"], conv["macs"], conv["weights"]) == (2, 2 * NET_CONV_MACS, 8 * 3 * 9)
    assert data["layers"][1]["C"] == 2048
    # ...and loads back as a workload, which the CLI prints as given.
    assert Workload.load(out_json).macs == data["total"]["macs"]
    rc, out, _ = run_cli(capsys, out_json)
    assert rc == 0 and "zero fractions as given in the file" in out
    assert format_si(data["total"]["macs"]) in out


def test_three_sizes_mean_batch_one(capsys, net_file, tmp_path):
    out_json = tmp_path / "b1.json"
    assert run_cli(capsys, net_file, "--input-size", "3x16x16", "--json", out_json)[0] == 0
    assert json.loads(out_json.read_text())["layers"][0]["N"] == 1


def test_unmodeled_ops_are_listed_with_share(capsys, net_file):
    rc, out, _ = run_cli(capsys, f"{net_file}:attn")
    assert rc == 0
    # q: (96 tokens x 8) x 8; matmul: (96 x 8) @ (8 x 96) -> 96*96*8
    q_macs, mm_macs = 96 * 8 * 8, 96 * 96 * 8
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("unmodeled ops"))
    assert format_pct(mm_macs / (q_macs + mm_macs)) in lines[start]
    row = next(line.split() for line in lines[start:] if line.startswith("matmul"))
    assert row[1] == "Attn" and row[-1] == format_pct(mm_macs / (q_macs + mm_macs))


def test_profile_on_real_data(capsys, tmp_path):
    out_json = tmp_path / "small.json"
    rc, out, _ = run_cli(capsys, ROOT / "models" / "small_cnn.py", "--data", "builtin:shapes",
                         "--batches", "2", "--batch-size", "4", "--json", out_json)
    assert rc == 0
    assert "builtin:shapes" in out and "random" not in out
    data = json.loads(out_json.read_text())
    assert data["layers"][0]["N"] == 4
    # layers after a ReLU see real zeros
    assert all(layer["ifmap_zeros"] > 0.05 for layer in data["layers"][1:])


def test_torchvision_target(capsys, tmp_path):
    out_json = tmp_path / "r18.json"
    rc, _, _ = run_cli(capsys, "torchvision:resnet18", "--input-size", "1x3x64x64",
                       "--json", out_json)
    assert rc == 0
    kinds = [layer["kind"] for layer in json.loads(out_json.read_text())["layers"]]
    assert kinds == ["conv"] * 20 + ["fc"]  # stem + 8 blocks x 2 + 3 projections, then fc


# --- bad input: one line, exit 2 ------------------------------------------------------------------

def test_model_that_does_not_import(capsys, tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\ndef net(:\n")
    rc, _, err = run_cli(capsys, bad)
    assert_one_line_error(rc, err, "broken.py", "SyntaxError")
    rc, _, err = run_cli(capsys, tmp_path / "missing.py")
    assert_one_line_error(rc, err, "missing.py", "not found")


def test_missing_callable(capsys, net_file):
    rc, _, err = run_cli(capsys, f"{net_file}:nett")
    assert_one_line_error(rc, err, "'nett'", "did you mean 'net'")


def test_input_size_that_does_not_fit(capsys, net_file):
    rc, _, err = run_cli(capsys, net_file, "--input-size", "1x3x8x8")
    assert_one_line_error(rc, err, "1x3x8x8", "does not fit", "Linear '3'")


@pytest.mark.parametrize("size", ["1x3xfoo", "0x3x16x16", "x", "1x2x3x4x5x6"])
def test_malformed_input_size(capsys, net_file, size):
    rc, _, err = run_cli(capsys, net_file, "--input-size", size)
    assert_one_line_error(rc, err, f"--input-size '{size}'")


def test_bad_workload_file_target(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  - {name: c1, N: 1, M: 4, C: 3, H: 8, W: 8, R: 3, S: 3, strde: 2}\n")
    rc, _, err = run_cli(capsys, bad)
    assert_one_line_error(rc, err, str(bad), "unknown key 'strde'")
    bad.write_text("layers:\n  - {name: c1, N: 1, M: 4, C: 3, H: 8, W: 8, R: 3, S: 0}\n")
    rc, _, err = run_cli(capsys, bad)
    assert_one_line_error(rc, err, "'S' must be positive")


def test_option_conflicts(capsys, net_file, tmp_path):
    rc, _, err = run_cli(capsys, net_file, "--input-size", "1x3x16x16", "--data", "builtin:shapes")
    assert_one_line_error(rc, err, "--input-size", "--data")
    wl = tmp_path / "w.json"
    fc = {"name": "fc", "N": 1, "M": 2, "C": 3, "H": 1, "W": 1, "R": 1, "S": 1}
    wl.write_text(json.dumps({"layers": [fc]}))
    rc, _, err = run_cli(capsys, wl, "--data", "builtin:shapes")
    assert_one_line_error(rc, err, "--data", "workload file")
    rc, _, err = run_cli(capsys, net_file, "--batches", "0")
    assert_one_line_error(rc, err, "--batches")


def test_console_script_exit_code_and_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": [{"name": "fc", "N": 1, "M": 2, "C": 3, "H": 1, "W": 1, "R": 1}]}')
    exe = shutil.which("hwaware")
    cmd = [exe] if exe else [sys.executable, "-m", "hwaware"]
    env = {k: v for k, v in os.environ.items() if k != "HWAWARE_DEBUG"}
    proc = subprocess.run([*cmd, "profile", str(bad)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"hwaware profile: error: {bad} (layer 0): layer 'fc': missing key 'S' "
        "(required: name, N, M, C, H, W, R, S)"
    ]
    assert proc.stdout == ""


# --- the reusable table formatter -----------------------------------------------------------------

def test_format_table_and_numbers():
    text = format_table(["name", "MACs"], [["conv1", "105.42 M"], None, ["total", "1.00 G"]])
    assert text.splitlines() == ["name       MACs", "-----  --------", "conv1  105.42 M",
                                 "-----  --------", "total    1.00 G"]
    assert format_table(["a", "b"], [["x", 1]], align="rl").splitlines()[2] == "x  1"
    with pytest.raises(ValueError, match="2 columns"):
        format_table(["a", "b"], [["x"]])
    values = (96, 1000, 15_470_264_320, 2.5e12)
    assert [format_si(v) for v in values] == ["96", "1.00 K", "15.47 G", "2.50 T"]
    assert format_pct(0.3871) == "38.7%"
