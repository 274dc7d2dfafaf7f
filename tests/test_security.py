"""Issue 15: loading never runs code from a file; inputs are never overwritten; jobs never collide.

Every hostile file here would create ``MARKER`` if any of its code ran; the tests assert it never
appears, through the CLI, the Python API and a recipe dry run.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import hwaware
from hwaware import checkpoint
from hwaware.cli import main
from hwaware.errors import HwawareError
from hwaware.modelref import load_model, load_model_file

REPO = Path(__file__).resolve().parents[1]


class _Evil:
    """Unpickling this runs ``os.system`` (what a hostile pickle does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_legacy(path: Path, marker: Path) -> Path:
    """A format-1 style file: the model is a pickle that runs a command."""
    torch.save({"format": "hwaware-model", "format_version": 1, "meta": {"input_size": [3, 32, 32]},
                "state_dict": {}, "model": _Evil(marker)}, path)
    return path


def _evil_v2(path: Path, marker: Path) -> Path:
    """Claims the current format but hides a hostile object among the tensors."""
    torch.save({"format": "hwaware-model", "format_version": 2, "header": "{}",
                "state_dict": {"w": _Evil(marker)}, "checksum": "0"}, path)
    return path


def _evil_source(tmp_path: Path, marker: Path) -> Path:
    """A model file that writes the marker when imported, and a saved model recording it."""
    src = tmp_path / "evilnet.py"
    src.write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\nfrom torch import nn\n"
                   "def evilnet():\n    return nn.Linear(2, 2)\n")
    model = nn.Linear(2, 2)
    out = checkpoint.save_model(model, tmp_path / "sourced.pt", model_ref=f"{src}:evilnet")
    marker.unlink(missing_ok=True)
    return out


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "code from a file ran while loading it"


@pytest.mark.parametrize("make", [_evil_legacy, _evil_v2], ids=["format1-pickle", "format2-smuggled"])
def test_hostile_pickle_never_runs(tmp_path, marker, make, capsys, monkeypatch):
    evil = make(tmp_path / "evil.pt", marker)
    with pytest.raises(HwawareError):
        hwaware.load_model(str(evil))
    with pytest.raises(HwawareError):
        checkpoint.read_meta(evil)
    assert main(["score", str(evil)]) == 2
    assert main(["profile", str(evil)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: evil\nmodel: {evil}\ninput_size: [3, 32, 32]\nstages:\n  - score: {{}}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(recipe), "--dry-run"]) == 2
    assert not (tmp_path / "runs").exists()


def test_old_format_gets_a_clear_message(tmp_path, marker):
    evil = _evil_legacy(tmp_path / "old.pt", marker)
    with pytest.raises(HwawareError, match=r"old hwaware saved model \(format 1.*never does.*upgrade"):
        load_model_file(evil)


def test_recorded_user_source_needs_consent(tmp_path, marker, capsys):
    saved = _evil_source(tmp_path, marker)
    with pytest.raises(HwawareError, match="evilnet.py:evilnet.*--trust-source"):
        hwaware.load_model(str(saved))
    assert main(["score", str(saved)]) == 2
    assert "--trust-source" in capsys.readouterr().err
    assert checkpoint.read_meta(saved)["class"] == "torch.nn.modules.linear.Linear"  # meta: no import
    assert not marker.exists()
    # the user names the code (a reference of their own): the recorded file is not imported
    model, _ = load_model_file(saved, model_ref=nn.Linear(2, 2))
    assert isinstance(model, nn.Linear) and not marker.exists()
    # explicit consent imports it (that is what the flag is for)
    hwaware.load_model(str(saved), trust_source=True)
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("ref", ["models/../tests/conftest.py", "../evilnet.py:evilnet", "os:system",
                                 "subprocess:run"])
def test_recorded_refs_outside_the_bundled_models_are_refused(tmp_path, marker, ref):
    saved = checkpoint.save_model(nn.Linear(2, 2), tmp_path / "x.pt", model_ref=ref,
                                  model_args={"args": f"touch {marker}", "shell": True})
    with pytest.raises(HwawareError, match="consent"):
        hwaware.load_model(str(saved))


def test_bundled_ref_never_taken_from_the_working_directory(tmp_path, marker, monkeypatch):
    model = load_model("models/small_cnn.py", width=0.25).eval()
    saved = checkpoint.save_model(model, tmp_path / "sc.pt")
    planted = tmp_path / "cwd" / "models"
    planted.mkdir(parents=True)
    (planted / "small_cnn.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    monkeypatch.chdir(tmp_path / "cwd")
    loaded = hwaware.load_model(str(saved))
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))


def test_flipped_bytes_are_detected(tmp_path):
    model = load_model("models/small_cnn.py", width=0.25)
    path = checkpoint.save_model(model, tmp_path / "m.pt")
    with zipfile.ZipFile(path) as zf:  # flip one byte inside the largest tensor record
        info = max(zf.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    pos = start + info.file_size // 2
    data[pos] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(HwawareError, match="corrupt|not a readable"):
        load_model_file(path)


def test_files_load_with_weights_only(tmp_path):
    model = load_model("models/small_cnn.py", width=0.25)
    path = checkpoint.save_model(model, tmp_path / "m.pt", meta={"note": "x"})
    raw = torch.load(path, weights_only=True)  # plain tensors and strings: any tool can read it
    assert raw["format_version"] == checkpoint.FORMAT_VERSION
    assert raw["state_dict"].keys() == model.state_dict().keys()


def test_pruned_and_masked_models_round_trip(tmp_path):
    from torch.nn.utils import prune as tprune

    from hwaware.compress.surgery import channel_groups, prune_channels

    torch.manual_seed(0)
    model = load_model("models/small_cnn.py", width=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    g = next(g for g in channel_groups(model, x) if g.prunable)
    small = prune_channels(model, x, g.name, 3)
    tprune.l1_unstructured(dict(small.named_modules())[g.name], "weight", amount=0.5)
    path = checkpoint.save_model(small, tmp_path / "p.pt")
    loaded, meta = load_model_file(path)
    assert torch.equal(loaded(x), small(x))
    assert dict(loaded.named_modules())[g.name].out_channels == dict(small.named_modules())[g.name].out_channels
    # the wrong architecture is a one-line error, not a silent partial load
    with pytest.raises(HwawareError, match="module|tensors do not match"):
        load_model_file(path, model_ref="models/alexnet.py")


def test_timm_and_torchvision_refs_are_recorded(tmp_path):
    pytest.importorskip("timm")
    x = torch.randn(1, 3, 64, 64)
    for ref in ("torchvision:resnet18", "timm:resnet18"):
        model = load_model(ref, num_classes=4).eval()
        path = checkpoint.save_model(model, tmp_path / "m.pt")
        assert torch.equal(hwaware.load_model(str(path))(x), model(x))
    with pytest.raises(HwawareError, match="pretrained not accepted"):
        load_model("timm:resnet18", pretrained=True)


def test_model_without_reference_needs_one(tmp_path):
    path = checkpoint.save_model(nn.Sequential(nn.Linear(2, 3)), tmp_path / "m.pt")
    with pytest.raises(HwawareError, match="records no model reference.*--model-ref"):
        hwaware.load_model(str(path))
    m, _ = load_model_file(path, model_ref=nn.Sequential(nn.Linear(2, 3)))
    assert m[0].weight.shape == (3, 2)


# --- outputs never destroy inputs ---------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    return checkpoint.save_model(load_model("models/small_cnn.py", width=0.25), tmp_path / "in.pt")


@pytest.mark.parametrize("argv", [
    ["quantize", "{in}", "--data", "builtin:shapes", "--out", "{in}"],
    ["profile", "{in}", "--json", "{in}"],
    ["score", "{in}", "--json", "{in}"],
    ["score", "{in}", "--json", "{link}"],            # a hard link: same inode, other name
    ["prune", "{in}", "--data", "builtin:shapes", "--out", "{in}"],
    ["prune", "{in}", "--data", "builtin:shapes", "--out", "{tmp}/o.pt", "--checkpoint", "{in}"],
    ["export-vectors", "{in}", "--out", "{tmp}", "--force"],  # a folder holding the input
    ["score", "{hw}", "--hardware", "{hw}", "--json", "{hw}"],
])
def test_no_command_writes_over_its_input(tmp_path, saved, argv, capsys):
    link = tmp_path / "link.json"
    os.link(saved, link)
    hw = tmp_path / "w.yaml"
    hw.write_text("layers: []\n")
    before = {p: p.read_bytes() for p in (saved, hw)}
    args = [a.format(**{"in": saved, "link": link, "tmp": tmp_path, "hw": hw}) for a in argv]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert "is an input of this command" in err and len(err.strip().splitlines()) == 1
    assert not out  # refused before any work
    assert all(p.read_bytes() == b for p, b in before.items())


def test_non_empty_output_directory_needs_force(tmp_path, capsys):
    d = tmp_path / "tl"
    d.mkdir()
    (d / "mine.txt").write_text("keep")
    assert main(["score", "models/small_cnn.py", "--export-timeloop", str(d)]) == 2
    assert "non-empty directory" in capsys.readouterr().err
    assert main(["export-vectors", "models/small_cnn.py", "--out", str(d)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["score", "models/small_cnn.py", "--export-timeloop", str(d), "--force"]) == 0
    assert (d / "mine.txt").read_text() == "keep" and len(list(d.iterdir())) > 1


def _tamper(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_json_outputs_carry_a_checksum_verified_on_load(tmp_path, capsys):
    """Every JSON hwaware writes has a "checksum" (SHA-256 of its canonical content); every JSON it
    reads back (workload, NetAdapt job/state, status.json, the latency LUT) is verified, and a changed
    file is a one-line error naming it. Hand-written workload JSON (no checksum) still loads."""
    import json
    import warnings

    import numpy as np

    from hwaware._io import read_json, write_json
    from hwaware.netadapt.job import Workdir
    from hwaware.netadapt.lut import LatencyLUT
    from hwaware.workload import Layer

    # round trip of what writers hand in (tuples, numpy scalars, int keys); checksum over the content
    obj = {"a": (1, 2), "b": np.float32(0.5), "c": {3: "x"}, "d": float("inf")}
    write_json(tmp_path / "o.json", obj)
    raw = json.loads((tmp_path / "o.json").read_text())
    assert raw["checksum"].startswith("sha256:") and len(raw["checksum"]) == 7 + 64
    assert read_json(tmp_path / "o.json") == {"a": [1, 2], "b": 0.5, "c": {"3": "x"}, "d": float("inf")}
    _tamper(tmp_path / "o.json", '"x"', '"y"')
    with pytest.raises(HwawareError, match=r"^/.*o\.json: checksum mismatch"):
        read_json(tmp_path / "o.json")

    # workload JSON written by `hwaware profile --json`, read by `hwaware score`
    wl = tmp_path / "wl.json"
    assert main(["profile", "models/small_cnn.py", "--json", str(wl)]) == 0
    assert "checksum" in json.loads(wl.read_text())
    assert main(["score", str(wl)]) == 0
    capsys.readouterr()
    _tamper(wl, '"M": 64', '"M": 65')
    assert main(["score", str(wl)]) == 2
    err = capsys.readouterr().err
    assert f"{wl}: checksum mismatch" in err and len(err.strip().splitlines()) == 1, err
    hand = tmp_path / "hand.json"  # written by hand: no checksum, accepted
    hand.write_text(json.dumps({"layers": [Layer(name="fc", N=1, M=4, C=8, H=1, W=1, R=1, S=1).to_dict()]}))
    assert main(["score", str(hand)]) == 0

    # NetAdapt workdir: state.json and job.json
    wd = tmp_path / "job"
    w = Workdir(wd, IDENT, resume=False)
    w.set_extra("note", 1)
    w.close()
    _tamper(wd / "state.json", '"note": 1', '"note": 2')
    with pytest.raises(HwawareError, match=r"state\.json is unusable: /.*state\.json: checksum mismatch"):
        Workdir(wd, IDENT, resume=True)
    _tamper(wd / "job.json", '"kind"', '"kind" ')  # whitespace only: same content, still valid
    _tamper(wd / "job.json", '"abc"', '"abd"')
    with pytest.raises(HwawareError, match=r"job\.json is not a hwaware netadapt job file \(.*checksum mismatch"):
        Workdir(wd, IDENT, resume=True)

    # status.json of a run directory (hwaware run --status)
    _tamper(wd / "status.json", '"finished"', '"running"')
    assert main(["run", "--status", str(wd)]) == 2
    err = capsys.readouterr().err
    assert "status.json: checksum mismatch" in err and len(err.strip().splitlines()) == 1, err

    # the latency LUT is only a cache: a changed one is ignored with a warning and timed again
    lut = LatencyLUT(tmp_path / "lut", timer=lambda layer: 1.0, step=1)
    layer = Layer(name="fc", N=1, M=4, C=8, H=1, W=1, R=1, S=1)
    lut.layer_latency(layer)
    lut.save()
    _tamper(lut.path, "1.0", "0.5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = LatencyLUT(tmp_path / "lut", timer=lambda layer: 1.0, step=1)
    assert again.entries == {} and any("checksum mismatch" in str(c.message) for c in caught)


def test_export_vectors_api_refuses_a_non_empty_directory(tmp_path):
    """The Python API refuses what the CLI refuses (before converting anything); force=True writes."""
    from hwaware.fixedpoint.vectors import export_vectors

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    x = torch.randn(2, 3, 8, 8)
    d = tmp_path / "vec"
    d.mkdir()
    (d / "mine.txt").write_text("keep")
    with pytest.raises(HwawareError, match=r"out_dir '.*vec' is a non-empty directory.*force=True"):
        export_vectors(model, d, inputs=x)
    assert [p.name for p in d.iterdir()] == ["mine.txt"]
    vs = export_vectors(model, d, inputs=x, force=True)
    assert len(vs.layers) == 2 and (d / "manifest.json").is_file() and (d / "mine.txt").read_text() == "keep"
    assert len(export_vectors(model, tmp_path / "new", inputs=x).layers) == 2  # a new directory needs nothing


def test_planted_kernel_in_a_shared_cache_never_runs(tmp_path, monkeypatch, capsys):
    """Case 3 from a user's command: `hwaware export-vectors` with HWAWARE_CACHE holding a planted
    library at the kernel's predictable path. The planted constructor never runs; the command
    rebuilds the kernel, warns once and writes correct vectors (tests/test_fixedpoint_kernel_cache.py
    checks every other planted variant: forged manifests, symlinks, modes, owners)."""
    import shutil
    import warnings

    from hwaware.fixedpoint import _native

    kc = pytest.importorskip("test_fixedpoint_kernel_cache")
    if shutil.which(os.environ.get("CC", "cc")) is None or _native.library() is None:
        pytest.skip("no C compiler: the exact torch path runs, no kernel is loaded")
    marker = kc.plant_in_a_fresh_cache(tmp_path, monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export-vectors", "models/small_cnn.py", "--out", str(tmp_path / "vec")]) == 0
    assert not marker.exists()
    assert any("cached kernel rejected" in str(c.message) for c in caught)
    assert (tmp_path / "vec" / "manifest.json").is_file()


def test_unwritable_output_fails_before_the_work(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["score", "models/alexnet.py", "--json", str(blocker / "r.json")]) == 2
    out, err = capsys.readouterr()
    assert not out and "cannot write there" in err
    assert main(["profile", "models/alexnet.py", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_outputs_honour_the_umask(tmp_path, mask):
    from hwaware._io import write_json

    old = os.umask(mask)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
        checkpoint.save_model(nn.Linear(2, 2), tmp_path / "m.pt")
    finally:
        os.umask(old)
    for name in ("r.json", "m.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask


# --- jobs never collide; a killed job is told apart from a live one --------------------------------

IDENT = {"model": "abc", "data": "builtin:shapes", "budgets": [], "config": {}}


def _holder(code: str, tmp_path: Path):
    """A child process that runs ``code`` (which takes a lock), says 'ready' and sleeps."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", code + "\nprint('ready', flush=True)\nimport time\n"
                             "time.sleep(120)"], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_two_netadapt_jobs_on_one_workdir(tmp_path, capsys):
    from hwaware._io import job_status
    from hwaware.netadapt.job import Workdir

    wd = tmp_path / "na"
    proc = _holder(f"from hwaware.netadapt.job import Workdir\nw = Workdir({str(wd)!r}, {IDENT!r}, resume=False)",
                   tmp_path)
    try:
        assert job_status(wd)["status"] == "running"
        with pytest.raises(HwawareError, match=r"in use by another hwaware netadapt job \(pid \d+"):
            Workdir(wd, IDENT, resume=True)
        rc = main(["netadapt", "models/small_cnn.py", "--budget", "macs=0.9", "--data",
                   "builtin:shapes?n_train=64&n_val=32&n_test=32", "--holdout", "16", "--workdir", str(wd), "--resume",
                   "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and "in use by another hwaware netadapt job" in err and len(err.strip().splitlines()) == 1
    finally:
        proc.kill()
        proc.wait()
    # killed: status.json still says running, but nobody holds the lock
    st = job_status(wd)
    assert st["status"] == "killed" and st["pid"] == proc.pid
    assert main(["run", "--status", str(wd)]) == 0
    assert f"{wd}: killed (pid {proc.pid}" in capsys.readouterr().out
    w = Workdir(wd, IDENT, resume=True)  # and the job can be resumed
    assert job_status(wd)["status"] == "running"
    w.close()
    assert job_status(wd)["status"] == "finished"


def test_unwritable_prune_output_is_one_line(tmp_path, saved, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["prune", str(saved), "--data", "builtin:shapes", "--out", str(blocker / "sub" / "p.pt")]) == 2
    assert "cannot write there" in capsys.readouterr().err


def test_resume_on_an_empty_workdir_is_an_error(tmp_path):
    from hwaware.netadapt.job import Workdir

    for wd in (tmp_path / "new", tmp_path):
        with pytest.raises(HwawareError, match="--resume: workdir .* holds no netadapt job to resume"):
            Workdir(wd, IDENT, resume=True)
    assert not (tmp_path / "new").exists() and not list(tmp_path.iterdir())


def test_two_prune_jobs_on_one_output(tmp_path, saved, capsys):
    from hwaware._io import JobLock

    out = tmp_path / "p.pt"
    with JobLock(out, what="prune job writing this --out"):
        assert main(["prune", str(saved), "--data", "builtin:shapes", "--out", str(out)]) == 2
    assert "in use by another hwaware prune job" in capsys.readouterr().err
    assert not out.exists()


def test_recipe_model_args_typo_before_the_run_directory(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\nmodel: models/small_cnn.py\nmodel_args: {widht: 0.5}\nstages:\n  - score: {}\n")
    assert main(["run", str(recipe), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "no argument 'widht' (did you mean 'width'?)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# --- sizes validated up front ---------------------------------------------------------------------

def test_huge_sizes_are_one_line_errors_before_work(tmp_path, capsys):
    import time

    from hwaware.workload import Layer

    big = tmp_path / "big.yaml"
    big.write_text("layers:\n  - {name: big, N: 1, M: 1000000000, C: 1000000000, H: 1, W: 1, R: 1, S: 1}\n")
    cases = [
        (["score", str(big)], "'M' = 1000000000 exceeds 1048576"),
        (["score", "models/small_cnn.py", "--batch", "1000000000"], "'N' = 1000000000 exceeds 65536"),
        (["profile", "models/small_cnn.py", "--input-size", "1x3x100000x100000"], "is 120 GB"),
        (["export-vectors", "models/small_cnn.py", "--input-size", "1x3x100000x100000", "--out",
          str(tmp_path / "v")], "is 120 GB"),
    ]
    for argv, needle in cases:
        t0 = time.perf_counter()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert time.perf_counter() - t0 < 30  # was minutes (mapper) or a MemoryError traceback
    with pytest.raises(HwawareError, match="'C' = 2000000 exceeds"):
        Layer(name="x", N=1, M=4, C=2_000_000, H=1, W=1, R=1, S=1)
    Layer(name="x", N=65536, M=1 << 20, C=1 << 20, H=1, W=1, R=1, S=1)  # the limits themselves are fine


def test_huge_sizes_in_the_python_api_and_recipes(tmp_path, capsys):
    """The Python API and recipes use the CLI's helper (``_checks.check_input_size``): same limits,
    same one-line errors, before any tensor is allocated or any forward pass runs."""
    import time

    model = load_model("models/small_cnn.py", width=0.25)
    t0 = time.perf_counter()
    with pytest.raises(HwawareError, match=r"^score: input_size: a 1x3x100000x100000 input is 120 GB"):
        hwaware.score(model, input_size=(1, 3, 100_000, 100_000))
    with pytest.raises(HwawareError, match=r"^score: input_size: 'N' = 1000000000 exceeds 65536"):
        hwaware.score(model, input_size=(10**9, 3, 32, 32))
    with pytest.raises(HwawareError, match=r"^score: input_size: expected positive integer sizes"):
        hwaware.score(model, input_size=(1, 3, -32, 32))
    big = torch.empty(70_000, 1, 1, 1).expand(70_000, 3, 32, 32)  # no memory: a view of one column
    with pytest.raises(HwawareError, match=r"^profile: the input batch: 'N' = 70000 exceeds 65536"):
        hwaware.profile(model, big)
    assert time.perf_counter() - t0 < 30
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: big\nmodel: models/small_cnn.py\ninput_size: [3, 100000, 100000]\nstages:\n  - score: {}\n")
    assert main(["run", str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "input_size: a 1x3x100000x100000 input is 120 GB" in err and len(err.strip().splitlines()) == 1, err


# --- NaN / inf anywhere ---------------------------------------------------------------------------

def _nan_model(tmp_path, value=float("nan")):
    torch.manual_seed(0)
    m = load_model("models/small_cnn.py", width=0.25)
    with torch.no_grad():
        m.conv2.weight[0, 0, 0, 0] = value
    return m, checkpoint.save_model(m, tmp_path / "nan.pt")


@pytest.mark.parametrize("verb", [["score"], ["profile"], ["prune", "--data", "builtin:shapes", "--out", "{tmp}/p.pt"],
                                  ["quantize", "--data", "builtin:shapes", "--out", "{tmp}/q.json"]])
def test_nan_weights_named_by_every_verb(tmp_path, capsys, verb):
    _model, path = _nan_model(tmp_path)
    argv = [verb[0], str(path), *[a.format(tmp=tmp_path) for a in verb[1:]]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "weight 'conv2.weight' holds NaN/inf (1 of" in err and len(err.strip().splitlines()) == 1


def test_nan_and_inf_activations_named_by_the_profiler():
    model = load_model("models/small_cnn.py", width=0.25).eval()
    x = torch.randn(1, 3, 32, 32)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(HwawareError, match="layer 'conv1': its input holds NaN/inf"):
        hwaware.profile(model, x)
    with torch.no_grad():
        model.conv1.weight.fill_(1e38)  # finite weights, overflowing outputs
    with pytest.raises(HwawareError, match="layer 'conv1': its output holds NaN/inf"):
        hwaware.profile(model, torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("field,value", [("core_MHz", ".inf"), ("e_DRAM", ".nan"), ("e_GLB", "-.inf")])
def test_non_finite_hardware_fields(tmp_path, capsys, field, value):
    hw = tmp_path / "hw.yaml"
    hw.write_text(f"base: eyeriss_v1\n{field}: {value}\n")
    assert main(["score", "models/small_cnn.py", "--hardware", str(hw)]) == 2
    err = capsys.readouterr().err
    assert f"'{field}' must be a finite number" in err and len(err.strip().splitlines()) == 1


def test_finite_check_counts_exactly_and_accepts_huge_finite_values():
    from hwaware._checks import check_finite_tensor

    check_finite_tensor(torch.full((4,), 3e38), "big")  # the float32 sum overflows; every value is finite
    t = torch.ones(100)
    t[3], t[7] = float("nan"), float("-inf")
    with pytest.raises(HwawareError, match=r"x holds NaN/inf \(2 of 100 values\)"):
        check_finite_tensor(t, "x")


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_upgrading_a_legacy_file_reads_its_tensors_and_runs_nothing(tmp_path):
    import hwaware
    from hwaware.checkpoint import _upgrade

    marker = tmp_path / "pwned"
    torch.manual_seed(0)
    model = hwaware.load_model(str(REPO / "models/small_cnn.py"))
    old = tmp_path / "old.pt"
    torch.save({"format_version": 1, "meta": {"note": "x", "sources": ["/evil.py"]},
                "state_dict": model.state_dict(), "model": _Hostile(marker)}, old)
    new = tmp_path / "new.pt"
    assert _upgrade(["upgrade", str(old), str(new), "--model-ref", str(REPO / "models/small_cnn.py")]) == 0
    assert not marker.exists()
    back = hwaware.load_model(str(new), model_ref=str(REPO / "models/small_cnn.py"))
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    # a state_dict that does not fit the reference is refused in one line, nothing written
    assert _upgrade(["upgrade", str(old), str(tmp_path / "no.pt"), "--model-ref", "torchvision:resnet18"]) == 2
    assert not (tmp_path / "no.pt").exists() and not marker.exists()


def test_legacy_reader_header_is_unpickled_restricted_too(tmp_path):
    """torch's legacy (non-zip) reader unpickles the file header with ``pickle_module.load``: a
    global there becomes inert instead of being called, and real legacy files still load."""
    import io
    import pickle

    from hwaware.checkpoint import _TensorsOnly

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buf = io.BytesIO()
    pickle.dump(Evil(), buf)
    buf.seek(0)
    assert type(_TensorsOnly.load(buf)).__name__ == "_Inert" and not marker.exists()
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(3.0)}, path, _use_new_zipfile_serialization=False)
    got = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TensorsOnly)
    assert torch.equal(got["w"], torch.arange(3.0))
