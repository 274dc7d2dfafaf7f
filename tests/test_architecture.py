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


def _module_graph() -> dict[str, set[str]]:
    """hwaware's module import graph: module -> modules it imports (at module level or inside a
    function alike; annotation-only imports left out). ``from pkg import name`` points at the
    submodule ``name`` when it is one, else at the submodule of ``pkg`` that ``pkg/__init__.py``
    re-exports ``name`` from, else at ``pkg`` itself."""
    files = {}
    for path in (ROOT / "hwaware").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        files[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path

    def reexports(pkg: str) -> dict[str, str]:
        path = files.get(pkg)
        if path is None or path.name != "__init__.py":
            return {}
        out = {}
        for target, names in _imports(path, pkg):
            for n in names:
                out[n] = target
        return out

    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        for target, names in _imports(path, module):
            again = reexports(target)
            for n in names:
                full = f"{target}.{n}"
                dest = full if full in files else again.get(n, target)
                if dest in files and dest != module:
                    graph[module].add(dest)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_cycle():
    # the checker itself can fail: a 3-cycle and a self-contained chain
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(g) == [["a", "b", "c"]]


def test_module_import_graph_is_acyclic():
    """No module reaches itself through imports, package ``__init__`` re-exports excepted: a
    package importing its own submodules to re-export them is how the public API is built."""
    graph = _module_graph()
    assert "hwaware.netadapt.blocks" in graph["hwaware.netadapt.loop"]  # the graph is really built
    assert "hwaware.splits" in graph["hwaware.netadapt.loop"]  # through a relative import two levels up
    inits = {m for m in graph if (ROOT / Path(*m.split("."))).is_dir()}
    inner = {m: {w for w in ws if w not in inits} for m, ws in graph.items() if m not in inits}
    assert _cycles(inner) == []


def test_layers_import_leftward_only():
    """The data flow of docs/architecture.md: a lower layer never imports a higher one."""
    order = ["workload", "eyeriss", "compress", "fixedpoint", "netadapt", "recipes", "cli"]
    rank = {name: i for i, name in enumerate(order)}
    graph = _module_graph()
    wrong = []
    for m, ws in graph.items():
        a = m.split(".")[1] if m.count(".") >= 1 else ""
        for w in ws:
            b = w.split(".")[1] if w.count(".") >= 1 else ""
            if a in rank and b in rank and rank[b] > rank[a]:
                wrong.append((m, w))
    assert wrong == []


# -- an open recipe-stage registry -------------------------------------------------------------------

def test_a_recipe_stage_registered_from_outside_runs(tmp_path):
    from hwaware.recipes.options import Option
    from hwaware.recipes.run import run_recipe
    from hwaware.recipes.schema import RecipeError, parse_recipe
    from hwaware.recipes.stages import STAGES, StageDef, StageResult, register_stage

    seen = []

    def run(ctx, stage):
        frac = stage.options["fraction"]
        seen.append(frac)
        model = ctx.model
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    k = int(frac * m.weight.numel())
                    cut = m.weight.abs().flatten().kthvalue(k).values
                    m.weight[m.weight.abs() <= cut] = 0.0
        ctx.set_model(model)
        ctx.snapshot(stage.label)  # as the shipped model-changing stages do
        return StageResult(stage.label, stage.name, 0.0, f"zeroed {frac:.0%} of every conv's weights")

    register_stage(StageDef("zero-weights", "zero the smallest weights of every convolution",
                            (Option("fraction", "float", 0.5, "share of each conv's weights set to zero",
                                    low=0.0, high=1.0),),
                            run=run, describe=lambda ctx, st: "zero weights"))
    try:
        recipe = {"name": "outside", "model": "models/small_cnn.py", "model_args": {"width": 0.25},
                  "profile_images": 2, "stages": [{"zero-weights": {"fraction": 0.75}}]}
        res = run_recipe(parse_recipe(recipe), out=tmp_path / "run", progress=False, log=lambda m: None)
        assert seen == [0.75]
        assert [s.label for s in res.timeline] == ["input", "1-zero-weights", "final"]
        assert res.final.energy < res.input.energy  # zero weights are gated and compressed
        bad = {**recipe, "stages": [{"zero-weights": {"fractoin": 0.5}}]}
        with pytest.raises(RecipeError, match="fraction"):  # its options are checked like any stage's
            parse_recipe(bad)
    finally:
        del STAGES["zero-weights"]
    with pytest.raises(RecipeError, match="zero-weights"):
        parse_recipe(recipe)


# -- one name per thing across the CLI ----------------------------------------------------------------

def _verb_flags():
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {verb: {s: a for a in p._actions for s in a.option_strings} for verb, p in sub.choices.items()}


def test_shared_flags_mean_the_same_in_every_verb():
    flags = _verb_flags()
    # the same option: the same metavar wherever it appears
    for flag, metavar in (("--hardware", "NAME|FILE"), ("--threads", "N"), ("--max-drop", "POINTS"),
                          ("--batch", "N"), ("--batch-size", None), ("--seed", "N"), ("--data", "REF"),
                          ("--model-ref", "REF"), ("--dataflow", "NAME")):
        used = {verb: a.metavar for verb, fl in flags.items() for s, a in fl.items() if s == flag}
        assert len(used) >= 2, flag
        if metavar is not None:
            assert set(used.values()) == {metavar}, (flag, used)
    # --quiet and --no-progress are one flag; --force only where an output directory may exist
    for verb, fl in flags.items():
        if "--quiet" in fl:
            assert fl["--no-progress"] is fl["--quiet"]
    # every verb that writes a main output calls it --out (NetAdapt's --workdir keeps its name)
    assert {v for v, fl in flags.items() if "--out" in fl} == {"run", "prune", "quantize", "export-vectors",
                                                               "netadapt"}
    assert flags["netadapt"]["--out"] is flags["netadapt"]["--workdir"]
    assert flags["netadapt"]["--batch"].dest == "batch"


def test_netadapt_out_and_batch_reach_the_config():
    from hwaware.cli.netadapt import options_from_args

    args = build_parser().parse_args(["netadapt", "m.pt", "--data", "builtin:shapes", "--out", "w",
                                      "--budget", "latency=0.5", "--batch", "4"])
    assert args.workdir == "w"
    assert options_from_args(args)["batch"] == 4


# -- docs/architecture.md describes what is there -----------------------------------------------------

def test_architecture_doc_names_every_package_and_top_level_module():
    """docs/architecture.md names every subpackage (``eyeriss/``) and top-level module
    (``measure.py``) of hwaware, and every file it names exists (files inside a subpackage are
    listed there too, but a new one does not fail this test: the doc is re-read at each release)."""
    import re

    doc = (ROOT / "docs" / "architecture.md").read_text()
    pkg = ROOT / "hwaware"
    missing = [f"{p.name}/" for p in pkg.iterdir() if (p / "__init__.py").is_file() and f"{p.name}/" not in doc]
    missing += [p.name for p in pkg.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
                and not re.search(rf"`{re.escape(p.name)}`", doc)]
    assert missing == []
    named = set(re.findall(r"([a-z_0-9]+\.(?:py|c))\b", doc))
    present = {p.name for p in pkg.rglob("*") if p.suffix in (".py", ".c")}
    present |= {p.name for p in (ROOT / "tests").glob("*.py")}
    assert named - present == set()
