"""The seams issue 13 put in: registries used without name branches, one arithmetic default,
CLI flags generated from config classes, did-you-mean, and the import rules of docs/architecture.md."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

from hwaware.cli import build_parser, main
from hwaware.errors import HwawareError

ROOT = Path(__file__).resolve().parents[1]


# -- pruning criteria registry ----------------------------------------------------------------------

def test_a_registered_criterion_drives_the_pruner_without_name_branches():
    from hwaware.compress import criteria
    from hwaware.compress.prune import PruneConfig, Pruner

    calls = []

    @criteria.register_criterion("first-conv-half")
    class FirstConvHalf(criteria.Criterion):
        def candidates(self, pruner):
            return [] if pruner.done else ["0"]

        def propose(self, pruner, target, fraction):
            calls.append((target, fraction))
            conv = pruner.model[0]
            with torch.no_grad():
                conv.weight[: conv.weight.shape[0] // 2] = 0
            pruner.done.add(target)
            return "half of conv 0 zeroed"

    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                              nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        x = torch.randn(4, 3, 16, 16)
        data = [(x, torch.zeros(4, dtype=torch.long))]
        cfg = PruneConfig(method="first-conv-half", target_energy=0.01, local_steps=0, global_steps=0,
                          final_steps=0, max_steps=3)
        pruner = Pruner(model, train=data, val=data, config=cfg, evaluate_fn=lambda m: 1.0)
        steps = list(pruner.steps())
        assert calls == [("0", cfg.step)]
        assert steps[0].accepted and steps[0].message == "half of conv 0 zeroed"
        assert pruner.current.energy < pruner.baseline.energy  # zeros lower the Eyeriss energy
        assert bool((model[0].weight != 0).all())  # the user's model is untouched
    finally:
        criteria.CRITERIA.pop("first-conv-half")
    with pytest.raises(HwawareError, match="unknown pruning method 'first-conv-half'"):
        PruneConfig(method="first-conv-half")


def test_pruner_has_no_method_name_branches():
    src = (ROOT / "hwaware" / "compress" / "prune.py").read_text()
    tree = ast.parse(src)
    compared = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Compare)
                and "method" in ast.unparse(n.left) and any(isinstance(c, ast.Constant) for c in n.comparators)]
    assert compared == []


# -- one arithmetic -----------------------------------------------------------------------------------

def test_one_arithmetic_default_everywhere():
    from hwaware.fixedpoint.convert import convert
    from hwaware.fixedpoint.format import DEFAULT_ARITHMETIC, Arithmetic
    from hwaware.fixedpoint.quantize import BitWidthSearch, quantize
    from hwaware.fixedpoint.vectors import export_vectors
    from hwaware.recipes.schema import STAGES

    assert DEFAULT_ARITHMETIC == Arithmetic("eyeriss", "floor", "wrap")  # the chip's (JSSC 2017)
    for fn in (convert, quantize, BitWidthSearch.__init__, export_vectors):
        params = inspect.signature(fn).parameters
        assert {k: params[k].default for k in ("mode", "rounding", "overflow")} == DEFAULT_ARITHMETIC.as_dict(), fn
    q = STAGES["quantize"]
    assert {k: q.option(k).default for k in ("mode", "rounding", "overflow")} == DEFAULT_ARITHMETIC.as_dict()
    for verb in ("quantize", "export-vectors"):
        args = build_parser().parse_args([verb, "models/small_cnn.py", "--data", "builtin:shapes", "--out", "o"])
        assert Arithmetic(args.mode, args.rounding, args.overflow) == DEFAULT_ARITHMETIC
    with pytest.raises(HwawareError, match="rounding must be one of floor, nearest, got 'up'"):
        Arithmetic(rounding="up")


# -- CLI ----------------------------------------------------------------------------------------------

def test_prune_flags_come_from_prune_config():
    from hwaware.cli.prune import _MAIN_FLAGS, _OPTION_FLAGS
    from hwaware.compress.prune import PruneConfig

    parser = build_parser()
    args = parser.parse_args(["prune", "m.py", "--data", "random", "--out", "o.pt"])
    assert all(getattr(args, n) is None for n in _MAIN_FLAGS + _OPTION_FLAGS)  # the class default applies
    sub = parser._subparsers._group_actions[0].choices["prune"]
    helps = {a.dest: a.help for a in sub._actions}
    for f in dataclasses.fields(PruneConfig):
        if f.name in _MAIN_FLAGS + _OPTION_FLAGS and f.type != "bool":
            d = f.default
            shown = f"{d:g}" if isinstance(d, float) else str(d)
            assert helps[f.name].endswith(f"(default {shown})"), f.name


@pytest.mark.parametrize("verb", ["run", "prune", "netadapt", "quantize", "export-vectors"])
def test_quiet_everywhere_with_the_old_spelling(verb):
    need = {"prune": ["--data", "r", "--out", "o.pt"], "netadapt": ["--data", "r", "--workdir", "w"],
            "quantize": ["--data", "r", "--out", "o"], "export-vectors": ["--out", "o"], "run": []}[verb]
    for flag in ("--quiet", "--no-progress"):
        assert build_parser().parse_args([verb, "m.py", *need, flag]).quiet is True


def test_misspelled_verb_and_flag_get_a_suggestion(capsys):
    with pytest.raises(SystemExit) as e:
        main(["prnue"])
    assert e.value.code == 2
    assert "did you mean 'prune'?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["prune", "m.py", "--data", "random", "--out", "o.pt", "--stpe", "0.2"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("usage: hwaware prune") and "did you mean '--step'?" in err


# -- import rules -------------------------------------------------------------------------------------

def _imports(path: Path, module: str):
    """(imported module, names) pairs of one file, annotation-only imports left out."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(x) for s in node.body for x in ast.walk(s))
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.ImportFrom):
            continue
        base = pkg.split(".")
        if node.level:
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.startswith("hwaware"):
            yield target, [a.name for a in node.names]


def test_no_underscore_names_imported_across_modules():
    known: set[tuple[str, str]] = set()  # none left
    found = set()
    for path in (ROOT / "hwaware").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        for target, names in _imports(path, module):
            for n in names:
                is_module = (ROOT / Path(*target.split(".")) / f"{n}.py").exists()
                if n.startswith("_") and not n.startswith("__") and not is_module:
                    found.add((module, n))
    assert found <= known, found - known
