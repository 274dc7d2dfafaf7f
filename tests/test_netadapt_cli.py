"""``hwaware netadapt`` end to end: SIGKILL + --resume, and 2 gloo processes, against one
uninterrupted single-process run of the same job (run in this process)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwaware.cli import main

MODEL = '''
import torch
from torch import nn

INPUT_SIZE = (3, 32, 32)


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )
'''
JOB = ["--budget", "latency=0.5", "--budget", "macs=60%", "--data", "builtin:shapes?n_train=400&n_val=20&n_test=100",
       "--holdout", "64", "--train-size", "192", "--short-term-steps", "2", "--batch-size", "32",
       "--set", "profile_images=2", "--set", "report=[macs]", "--threads", "1", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HWAWARE_DEBUG": ""}


def family(workdir: Path) -> list:
    """What must be identical between two runs of the job (not timings or paths)."""
    data = json.loads((workdir / "family.json").read_text())
    return [{k: v for k, v in m.items() if k not in ("seconds", "model")} for m in data["members"]]


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("netadapt_cli")
    (root / "tiny.py").write_text(MODEL)
    ref = root / "reference"
    # the uninterrupted single-process run, in this process (the same code path as the CLI's)
    assert main(["netadapt", str(root / "tiny.py"), *JOB, "--workdir", str(ref)]) == 0
    fam = family(ref)
    assert len(fam) >= 4  # the original and at least three iterations: room to kill in between
    return {"root": root, "family": fam}


def test_sigkill_then_resume_reaches_the_same_family(job: dict, capsys) -> None:
    root, workdir = job["root"], job["root"] / "killed"
    cmd = [sys.executable, "-m", "hwaware", "netadapt", "tiny.py", *JOB, "--workdir", str(workdir)]
    proc = subprocess.Popen(cmd, cwd=root, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = workdir / "state.json"
    done = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if state.is_file():
                done = len(json.loads(state.read_text())["records"])  # never a half-written file
                if done >= 2:  # the original and iteration 1 are complete
                    break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    assert done >= 2
    assert not (workdir / "family.json").is_file() or len(family(workdir)) < len(job["family"])

    assert main(["netadapt", str(root / "tiny.py"), *JOB, "--workdir", str(workdir)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    resumed = subprocess.run([*cmd, "--resume"], cwd=root, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert family(workdir) == job["family"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_reach_the_same_family(job: dict) -> None:
    root, workdir = job["root"], job["root"] / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "hwaware", "netadapt", "tiny.py", *JOB, "--workdir", str(workdir), "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=root, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("NetAdapt family") == 1  # only rank 0 reports
    assert family(workdir) == job["family"]
    # both ranks computed proposals: with 3 blocks, rank 1 owns block index 1 every iteration
    members = json.loads((workdir / "family.json").read_text())["members"]
    assert any(p["index"] == 1 for m in members for p in m["proposals"])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--budget", "latncy=0.5"], "did you mean 'latency'"),
        ([], "at least one --budget"),
        (["--budget", "latency=0.5", "--set", "short_term_step=3"], "did you mean 'short_term_steps'"),
        (["--budget", "latency=0.5", "--pick", "accuracy", "--set", "nonsense"], "expected KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv: list[str], fragment: str) -> None:
    rc = main(["netadapt", "models/small_cnn.py", "--data", "builtin:shapes", "--workdir", str(tmp_path / "w"),
               *argv])
    err = capsys.readouterr().err
    assert rc == 2 and fragment in err
    assert err.startswith("hwaware netadapt: error: ") and err.count("\n") == 1
