"""``hwaware score``: the per-layer table, the JSON report contract, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hwaware.cli import main

LEVELS = {"DRAM", "GLB", "array", "RF"}
TYPES = {"ifmap", "filter", "psum"}


@pytest.fixture(scope="module")
def alexnet_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("score") / "alexnet.json"
    assert main(["score", "models/alexnet.py", "--batch", "4", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_json_report_contract(alexnet_json):
    d = alexnet_json
    assert [L["name"] for L in d["layers"]] == [f"conv{i}" for i in range(1, 6)] + ["fc6", "fc7", "fc8"]
    for L in d["layers"]:
        assert set(L["shape"]) >= {"N", "M", "C", "H", "W", "R", "S", "E", "F", "U", "groups"}
        assert set(L["mapping"]) == {"m", "n", "e", "p", "q", "r", "t"}
        assert set(L["accesses"]) == LEVELS and all(set(v) == TYPES for v in L["accesses"].values())
        assert set(L["energy"]) == LEVELS | {"MAC"}
        for key in ("macs", "active_pes", "energy_total", "dram_MB", "glb_MB", "processing_latency_ms",
                    "total_latency_ms", "power_mW"):
            assert key in L
        s = L["shape"]
        assert L["macs"] == s["N"] * s["M"] * s["C"] * s["E"] * s["F"] * s["R"] * s["S"]
        assert L["shape"]["N"] == 4
    for L in d["layers"]:  # Eyexam: seven non-increasing bounds, in order (issue 10)
        assert [b["step"] for b in L["eyexam"]] == list(range(1, 8))
        assert [b["name"] for b in L["eyexam"]][:3] == ["layer shape", "dataflow", "number of PEs"]
        bounds = [b["macs_per_cycle"] for b in L["eyexam"]]
        assert all(a >= b for a, b in zip(bounds, bounds[1:]))
        ms = L["processing_latency_ms"]
        assert bounds[-1] == pytest.approx(L["macs"] / (ms * 1e-3 * 200e6), rel=1e-9)
    t = d["total"]
    for key in ("macs", "energy_total", "dram_MB", "glb_MB", "processing_latency_ms", "total_latency_ms"):
        assert t[key] == pytest.approx(sum(L[key] for L in d["layers"]), rel=1e-9)
    assert set(t["energy"]) == LEVELS | {"MAC"}
    assert t["accesses"]["DRAM"]["filter"] == pytest.approx(sum(L["accesses"]["DRAM"]["filter"] for L in d["layers"]))


def test_table_printed(capsys):
    assert main(["score", "models/alexnet.py", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "DRAM MB" in out and "total" in out and "frames/s" in out


def test_workload_file_target(tmp_path, capsys):
    wl = tmp_path / "w.yaml"
    wl.write_text("layers:\n- {name: a, N: 1, M: 16, C: 3, H: 32, W: 32, R: 3, S: 3, padding: 1}\n"
                  "- {name: b, N: 1, M: 32, C: 16, H: 32, W: 32, R: 3, S: 3, U: 2, ifmap_zeros: 0.5}\n")
    assert main(["score", str(wl), "--objective", "latency"]) == 0
    assert "objective=latency" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["score", "models/alexnet.py", "--hardware", "eyeriss_v9"], "unknown hardware 'eyeriss_v9'"),
    (["score", "models/nope.py"], "nope.py"),
    (["score", "models/alexnet.py", "--batch", "0"], "--batch"),
])
def test_bad_input_one_line_exit_2(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert match in err


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "hwaware", "score", "missing.yaml"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "missing.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_timeloop_export(tmp_path):
    import yaml

    out = tmp_path / "tl"
    assert main(["score", "models/alexnet.py", "--batch", "4", "--export-timeloop", str(out)]) == 0
    files = sorted(out.glob("*.yaml"))
    assert len(files) == 8
    conv2 = yaml.safe_load(files[1].read_text())["problem"]
    # paper AlexNet CONV2 per group: 128 filters of 48 channels, 5x5, 27x27 output, batch 4
    assert (conv2["M"], conv2["C"], conv2["R"], conv2["P"], conv2["N"]) == (128, 48, 5, 27, 4)
    assert "groups: 2" in files[1].read_text()


def test_eyexam_flag_prints_bounds_and_writes_png(tmp_path, capsys):
    png = tmp_path / "eyexam.png"
    assert main(["score", "models/alexnet.py", "--batch", "4", "--eyexam-png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "Eyexam bounds" in out and "instantaneous bandwidth" in out and "binding step" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
