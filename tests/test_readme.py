"""Every command of the README, and of the ```bash blocks in docs/, works as written, in order.

The blocks are read from the files themselves (so a command edited there is the command tested) and
run in a scratch directory that holds only links to ``models/`` and ``recipes/``, as on a fresh
clone. Small data settings are *appended* to some commands (``--set`` overrides, loop caps), never
substituted: what runs is the README's command plus those settings. ``$IMAGENET`` (a placeholder for
the user's ImageNet folder) points at a generated ImageFolder with ImageNet's 1000 classes, one
tiny image each.

``test_fast_commands_run`` runs the quick ones (profile, score, ``--dry-run``, ``--explain``)
in-process in the fast suite; ``test_every_command_runs_in_order`` (slow) runs all of them with
``bash`` as a user would, the quickstart, NetAdapt (with ``--resume`` and ``torchrun``), prune and
quantize included.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# commands that are not run here, and why
SKIP = {
    "pip install": "the install itself: CI runs it before the tests",
    "python -m pytest": "the test suite itself",
}

# small data settings appended to the commands of a kind (keys a command sets itself are not appended)
QUICKSTART_SMALL = [
    "data=builtin:shapes?n_train=192&n_val=64&n_test=64", "model_args={width: 0.25}", "batch_size=32",
    "profile_images=8", "threads=1", "train.epochs=1", "train.monitor_every=2", "score.table=false",
    "prune.max_steps=2", "prune.local_steps=1", "prune.global_steps=0", "prune.final_steps=2",
    "quantize.samples=32", "quantize.check_images=1",
]
NETADAPT_SMALL = ["--holdout", "64", "--train-size", "128", "--short-term-steps", "1", "--batch-size", "32",
                  "--delta", "0.25", "--threads", "1", "--no-progress", "--set", "profile_images=2"]
PRUNE_SMALL = ["--max-steps", "2", "--local-steps", "1", "--global-steps", "0", "--final-steps", "1",
               "--train-limit", "64", "--val-limit", "64", "--calib-size", "8", "--threads", "1", "--no-progress"]
QUANTIZE_SMALL = ["--samples", "16", "--val-samples", "64"]


@dataclass(frozen=True)
class Command:
    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def commands(path: Path) -> list[Command]:
    """The commands of ``path``'s ```bash blocks: one per line, ``\\`` continuations joined,
    comment-only and blank lines left out."""
    out: list[Command] = []
    in_block, pending, start = False, "", 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = line.strip() == "```bash" if not in_block else False
            continue
        if not in_block:
            continue
        if pending:
            pending += " " + line.strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            pending, start = line.strip(), n
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        if pending:
            out.append(Command(str(path.relative_to(ROOT)), start, pending))
            pending = ""
    return out


def all_commands() -> list[Command]:
    return [c for f in FILES for c in commands(f)]


def skip_reason(cmd: Command) -> str | None:
    return next((why for start, why in SKIP.items() if cmd.text.startswith(start)), None)


def is_fast(cmd: Command) -> bool:
    words = cmd.text.split()
    return words[:2] in (["hwaware", "profile"], ["hwaware", "score"]) or "--dry-run" in words or "--explain" in words


def with_small_settings(text: str) -> str:
    """``text`` plus the small settings of its kind (shell-quoted), before any trailing comment."""
    body, _, comment = text.partition("  #")
    words = shlex.split(body)
    extra: list[str] = []
    if words[:3] == ["hwaware", "run", "recipes/quickstart.yaml"] and "--explain" not in words:
        given = {words[i + 1].split("=", 1)[0] for i, w in enumerate(words[:-1]) if w == "--set"}
        extra = [a for kv in QUICKSTART_SMALL if kv.split("=", 1)[0] not in given for a in ("--set", kv)]
    elif words[:3] == ["hwaware", "run", "recipes/alexnet_energy_aware.yaml"]:
        extra = ["--set", "profile_images=2"]
    elif "netadapt" in words[:5]:
        extra = NETADAPT_SMALL
    elif words[:2] == ["hwaware", "prune"] and "--max-steps" not in words:
        extra = PRUNE_SMALL
    elif words[:2] == ["hwaware", "quantize"]:
        extra = QUANTIZE_SMALL
    return body.rstrip() + "".join(" " + shlex.quote(a) for a in extra)


def scratch(tmp_path: Path) -> Path:
    """A directory like a fresh clone's root: models/ and recipes/ (linked), and $IMAGENET's folder."""
    from PIL import Image

    work = tmp_path / "clone"
    work.mkdir()
    for d in ("models", "recipes"):
        (work / d).symlink_to(ROOT / d)
    images = [Image.new("RGB", (8, 8), (k, 255 - k, 0)) for k in range(0, 256, 51)]
    for split in ("train", "val"):
        for k in range(1000):  # ImageNet's class count: the recipe's AlexNet has 1000 outputs
            folder = tmp_path / "imagenet" / split / f"n{k:08d}"
            folder.mkdir(parents=True)
            images[k % len(images)].save(folder / "0.jpg")
    return work


def environment(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, IMAGENET=str(tmp_path / "imagenet"), OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                HWAWARE_CACHE=os.environ.get("HWAWARE_CACHE", str(tmp_path / "cache")))


# --- the extraction itself ------------------------------------------------------------------------

def test_commands_are_found_and_every_skip_says_why():
    cmds = all_commands()
    texts = [c.text for c in cmds]
    assert 'pip install -e ".[dev]"' in texts[0]  # the README's first command
    assert any(t.startswith("hwaware run recipes/quickstart.yaml") for t in texts)
    assert any(t.startswith("hwaware netadapt model.pt") and t.endswith("--resume") for t in texts)
    # continuations are joined into one command
    assert any(t.startswith("hwaware prune models/alexnet.py") and "--val-limit 16" in t for t in texts)
    skipped = [c for c in cmds if skip_reason(c)]
    assert {c.text.split()[0] for c in skipped} <= {"pip", "python"} and len(skipped) == 2


SHELL_WORDS = ("hwaware ", "python ", "torchrun ", "pip ", "$ ", "cp ", "bash ")
SYNOPSIS = re.compile(r"\.\.\.|\[|\b[A-Z][A-Z_]{2,}\b")  # ..., [--optional], a placeholder (TARGET, MODEL)


def unlabelled_command_lines(path: Path) -> list[Command]:
    """Command lines inside blocks that are not ```bash (unlabelled, text, console, sh): these are
    not run, so each must read as a synopsis or sample output, never as a concrete command."""
    out: list[Command] = []
    lang: str | None = None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            lang = line[3:].strip() if lang is None else None
            continue
        if lang in ("", "text", "console", "sh", "shell") and line.lstrip().startswith(SHELL_WORDS):
            out.append(Command(str(path.relative_to(ROOT)), n, line.strip()))
    return out


def test_every_concrete_command_is_in_a_bash_block():
    """A concrete command outside a ```bash block would never be tested: it must be labelled bash
    (then the tests below run it) or be a synopsis (placeholders in capitals, ``...``, ``[...]``)."""
    lines = [c for f in FILES for c in unlabelled_command_lines(f)]
    concrete = [str(c) for c in lines if not SYNOPSIS.search(c.text)]
    assert not concrete, "concrete commands outside ```bash blocks:\n" + "\n".join(concrete)
    assert any("docs/netadapt.md" in c.file for c in lines)  # the synopsis there is seen, and passes
    assert not SYNOPSIS.search("hwaware quantize runs/small_cnn.pt --data builtin:shapes --out quant.json")
    # the docs' former unlabelled commands are now run
    texts = [c.text for c in all_commands()]
    assert "hwaware profile models/alexnet.py" in texts
    assert any(t.startswith("hwaware quantize models/small_cnn.py --data builtin:shapes") for t in texts)
    assert any(t.startswith("hwaware export-vectors torchvision:resnet18") for t in texts)


def test_small_settings_are_appended_not_substituted():
    cmd = "hwaware run recipes/quickstart.yaml --set train.epochs=2    # override any key"
    got = with_small_settings(cmd)
    assert got.startswith("hwaware run recipes/quickstart.yaml --set train.epochs=2 ")
    assert "train.epochs=1" not in got and "'data=builtin:shapes?n_train=192&n_val=64&n_test=64'" in got
    na = "hwaware netadapt model.pt --budget latency=0.5 --data builtin:shapes --workdir job1 --resume"
    assert with_small_settings(na).startswith(na + " --holdout 64")


def test_the_resume_line_repeats_the_job_it_resumes():
    """A --resume line must name the same budgets and options as the job line before it (else the
    job is refused): compare them word for word, without --resume."""
    for f in FILES:
        cmds = commands(f)
        for i, c in enumerate(cmds):
            if c.text.split()[:2] == ["hwaware", "netadapt"] and "--resume" in c.text.split():
                job = c.text.split("  #")[0].split()
                job.remove("--resume")
                before = [p.text.split("  #")[0].split() for p in cmds[:i]]
                assert job in before, f"{c}: no earlier line starts the same job"


# --- running them ---------------------------------------------------------------------------------

def test_fast_commands_run(tmp_path, monkeypatch, capsys):
    """The quick commands, in order, in-process (the CLI's own entry point), exit code 0."""
    from hwaware.cli import main

    work = scratch(tmp_path)
    monkeypatch.chdir(work)
    for k, v in environment(tmp_path).items():
        monkeypatch.setenv(k, v)
    ran = 0
    for cmd in all_commands():
        if skip_reason(cmd) or not is_fast(cmd):
            continue
        argv = shlex.split(os.path.expandvars(with_small_settings(cmd.text)))
        assert argv[0] == "hwaware", cmd
        rc = main(argv[1:])
        out = capsys.readouterr()
        assert rc == 0, f"{cmd}\n{out.err[-2000:]}"
        ran += 1
    assert ran >= 8
    assert (work / "resnet50.json").is_file() and (work / "alexnet.json").is_file()


@pytest.mark.slow
def test_every_command_runs_in_order(tmp_path):
    """Every command (but the install and the test suite), in file order, with bash, each must exit 0."""
    work = scratch(tmp_path)
    env = environment(tmp_path)
    for cmd in all_commands():
        if skip_reason(cmd):
            continue
        text = with_small_settings(cmd.text)
        if text.startswith(("python ", "torchrun ")):  # this interpreter, its torchrun
            text = re.sub(r"^python ", f"{shlex.quote(sys.executable)} ", text)
            text = re.sub(r"^torchrun ", f"{shlex.quote(sys.executable)} -m torch.distributed.run ", text)
        out = subprocess.run(["bash", "-c", text], cwd=work, env=env, capture_output=True, text=True,
                             timeout=1800, check=False)
        assert out.returncode == 0, f"{cmd}\nran: {text}\n{out.stderr[-3000:]}"
        assert "{'" not in out.stderr, f"{cmd}: a raw Python dict in the output"
    assert (work / "job1" / "state.json").is_file() and (work / "pruned.pt").is_file()
