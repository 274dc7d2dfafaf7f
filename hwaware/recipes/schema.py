"""Recipe files: YAML loading with line numbers, the declared schema, ``--set`` overrides, validation.

A recipe is a mapping of run-wide settings plus an ordered list of stages::

    name: quickstart
    model: models/small_cnn.py
    data: builtin:shapes
    hardware: eyeriss_v1
    stages:
      - train: {epochs: 2, lr: 0.05}
      - prune: {method: energy, target_energy: 0.6}
      - report

Every key, its type, default and meaning is declared once (:data:`RECIPE_OPTIONS` here, each
stage's options in its module under :mod:`hwaware.recipes.stages`); ``hwaware run --explain``
prints them and docs/recipes.md lists them. This module only loads and validates. Checks run
before any work: unknown keys (with a did-you-mean), wrong types, missing files, values the
stage's own config rejects (impossible targets such as ``target_energy: 1.5``), and the place of
``report`` (last, at most once).
Each problem names the file, the line and the key path (``stages[1].prune.target_energy``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._suggest import did_you_mean
from ..errors import HwawareError
from .options import REQUIRED, Option, check_value
from .overrides import apply_override, parse_override, stage_kind
from .problems import KeyPath, Lines, Problem, RecipeError, format_path, load_yaml
from .stages import STAGES, StageDef

__all__ = [
    "RECIPE_OPTIONS",
    "STAGES",
    "Option",
    "Problem",
    "Recipe",
    "RecipeError",
    "Stage",
    "StageSpec",
    "explain",
    "format_path",
    "load_recipe",
    "parse_override",
    "parse_recipe",
    "schema_markdown",
]

StageSpec = StageDef  # the name this module exported before stages had their own package


# --- run-wide keys -------------------------------------------------------------------------------

def _check_model(value: str) -> str | None:
    from ..modelref import parse_ref

    try:
        parse_ref(value)
    except HwawareError as exc:
        return str(exc)
    return None


def _check_data(value: str) -> str | None:
    from ..data import parse_data_ref

    try:
        r = parse_data_ref(value)
    except HwawareError as exc:
        return str(exc)
    if r.path is not None and not r.path.exists():
        return f"dataset path '{r.path}' does not exist"
    return None


def _check_hardware(value: str) -> str | None:
    from ..eyeriss import resolve_hardware

    try:
        resolve_hardware(value)
    except (HwawareError, OSError) as exc:
        return " ".join(str(exc).split())
    return None


def _positive_size(value: list[int]) -> str | None:
    if len(value) != 3 or any(v <= 0 for v in value):
        return f"must be three positive integers [C, H, W], got {value!r}"
    return None


RECIPE_OPTIONS: tuple[Option, ...] = (
    Option("name", "str", None, "run name (run directory runs/<name>-<time>); default: the file's stem",
           nullable=True),
    Option("description", "str", "", "free text, copied into the report"),
    Option("model", "str", REQUIRED, "model reference: path.py[:callable], torchvision:NAME or a saved .pt",
           check=_check_model, file="model"),
    Option("model_args", "dict", {}, "keyword arguments of the model callable (e.g. {num_classes: 10})"),
    Option("data", "str", None, "dataset: builtin:shapes, cifar10:PATH or imagefolder:PATH (needed by "
           "train, prune, fine-tune, netadapt, quantize)", nullable=True, check=_check_data, file="data"),
    Option("hardware", "str", "eyeriss_v1", "Eyeriss preset (eyeriss_v1, eyeriss_isca256) or a hardware YAML file",
           check=_check_hardware, file="hardware"),
    Option("objective", "str", "energy", "what the mapper minimizes per layer", choices=("energy", "latency", "edp")),
    Option("batch", "int", 1, "N (images per inference) the energy and latency are scored at", low=1),
    Option("input_size", "list[int]", None, "[C, H, W] of one input; default: the model's INPUT_SIZE or the data's",
           nullable=True, check=_positive_size),
    Option("seed", "int", 0, "seed of the data order and the model initialization", low=0),
    Option("threads", "int", None, "torch threads (null: torch's default)", nullable=True, low=1),
    Option("batch_size", "int", 64, "training and evaluation batch size", low=1),
    Option("train_limit", "int", None, "use at most this many training images (null: all)", nullable=True, low=1),
    Option("val_limit", "int", None, "use at most this many validation images (null: all)", nullable=True, low=1),
    Option("profile_images", "int", 64, "validation images whose activations give the measured sparsity",
           low=1),
    Option("stages", "list", REQUIRED, "the ordered stages (see below)"),
)


# --- parsed recipe -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One validated stage: its kind, position in the list, and every option (defaults filled)."""

    name: str
    index: int
    options: dict[str, Any]
    line: int | None = None

    @property
    def label(self) -> str:
        return f"{self.index + 1}-{self.name}"


@dataclass(frozen=True)
class Recipe:
    """A validated recipe with every default filled in (what ``recipe.yaml`` in the run holds)."""

    settings: dict[str, Any]
    stages: tuple[Stage, ...]
    source: str
    overrides: tuple[str, ...] = ()
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def name(self) -> str:
        return str(self.settings["name"])

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.settings.items() if k != "stages"}
        d["stages"] = [{s.name: dict(s.options)} for s in self.stages]
        return d

    def to_yaml(self) -> str:
        from .. import __version__

        head = [f"# resolved recipe (hwaware {__version__}): every default filled in",
                f"# source: {self.source}"]
        head += [f"# --set {o}" for o in self.overrides]
        body = yaml.safe_dump(_plain(self.to_dict()), sort_keys=False, default_flow_style=False, width=100)
        return "\n".join(head) + "\n" + body


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# --- validation ----------------------------------------------------------------------------------

def _validate_options(options: Sequence[Option], given: Any, path: KeyPath, lines: Lines,
                      problems: list[Problem], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if given is None:
        given = {}
    if not isinstance(given, dict):
        problems.append(lines.problem(path, f"{what} must be a mapping of options, got {given!r}"))
        return out
    names = [o.name for o in options]
    for key in given:
        if key not in names:
            allowed = ", ".join(names) if names else "none"
            problems.append(lines.problem((*path, key), f"unknown {what} key{did_you_mean(str(key), names)}; "
                                          f"allowed: {allowed}"))
    for opt in options:
        if opt.name not in given:
            if opt.required:
                problems.append(lines.problem(path, f"missing required key '{opt.name}' ({opt.doc})"))
            else:
                out[opt.name] = list(opt.default) if isinstance(opt.default, list) else (
                    dict(opt.default) if isinstance(opt.default, dict) else opt.default)
            continue
        value, err = check_value(opt, given[opt.name])
        if err:
            problems.append(lines.problem((*path, opt.name), err))
        out[opt.name] = value
    return out


def _validate(data: Any, lines: Lines, source_path: Path | None) -> Recipe:
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise RecipeError([lines.problem((), f"a recipe is a mapping of keys (model, data, stages, ...), got "
                                         f"{type(data).__name__}")])
    top = [o for o in RECIPE_OPTIONS if o.name != "stages"]
    raw_stages = data.get("stages")
    settings = _validate_options(top, {k: v for k, v in data.items() if k != "stages"}, (), lines, problems,
                                 "recipe")
    if "stages" not in data:
        problems.append(lines.problem((), "missing required key 'stages' (the ordered list of stages)"))
    if settings.get("name") is None:
        settings["name"] = source_path.stem if source_path is not None else "run"
    elif not str(settings["name"]).replace("-", "").replace("_", "").replace(".", "").isalnum():
        problems.append(lines.problem(("name",), f"'{settings['name']}' must be letters, digits, '-', '_' or '.' "
                                      "(it names the run directory)"))
    stages: list[Stage] = []
    if "stages" in data:
        if not isinstance(raw_stages, list) or not raw_stages:
            problems.append(lines.problem(("stages",), "must be a non-empty list, e.g. [train: {epochs: 1}, score]"))
            raw_stages = []
        for i, item in enumerate(raw_stages):
            path: KeyPath = ("stages", i)
            kind = stage_kind(item)
            if not kind:
                problems.append(lines.problem(path, "a stage is a name (- score) or a one-key mapping "
                                              "(- train: {epochs: 1}), got " + repr(item)[:60]))
                continue
            spec = STAGES.get(kind)
            if spec is None:
                problems.append(lines.problem((*path, kind) if isinstance(item, dict) else path,
                                              f"unknown stage '{kind}'{did_you_mean(kind, STAGES)}; stages: "
                                              f"{', '.join(STAGES)}"))
                continue
            given = item[kind] if isinstance(item, dict) else {}
            n_before = len(problems)
            opts = _validate_options(spec.options, given, (*path, kind), lines, problems, f"'{kind}' option")
            if len(problems) == n_before and spec.config_check is not None and _settings_ok(problems):
                try:
                    spec.config_check(opts, settings)
                except HwawareError as exc:
                    msg = str(exc)
                    key = next((o.name for o in spec.options if f"'{o.name}'" in msg or msg.startswith(o.name + " ")
                                or f" {o.name} " in msg or f"{o.name}=" in msg), None)
                    problems.append(lines.problem((*path, kind, key) if key else (*path, kind), msg))
            if spec.needs_data and not opts.get("skip") and settings.get("data") is None \
                    and not _has_data_problem(problems):
                problems.append(lines.problem(path, f"stage '{kind}' needs a dataset: set the run-wide key "
                                              "'data' (e.g. data: builtin:shapes)"))
            stages.append(Stage(kind, i, opts, lines.lines.get(path)))
        reports = [s for s in stages if s.name == "report"]
        if len(reports) > 1:
            problems.append(lines.problem(("stages", reports[1].index), "only one 'report' stage is allowed"))
        if reports and reports[0].index != len(raw_stages) - 1:
            problems.append(lines.problem(("stages", reports[0].index), "'report' must be the last stage"))
    if problems:
        raise RecipeError(problems)
    base = source_path.parent if source_path is not None else Path.cwd()
    overrides = tuple(dict.fromkeys(v.removeprefix("--set ") for v in lines.override.values()))
    return Recipe(settings, tuple(stages), lines.source, overrides, base)


def _settings_ok(problems: list[Problem]) -> bool:
    """The run-wide keys a stage config reads (hardware, batch, objective) are valid."""
    return not any(p.path[:1] in (("hardware",), ("batch",), ("objective",)) for p in problems)


def _has_data_problem(problems: list[Problem]) -> bool:
    return any(p.path[:1] == ("data",) or "needs a dataset" in p.message for p in problems)


# --- entry points --------------------------------------------------------------------------------

def parse_recipe(data: Any, *, source: str = "<recipe>", overrides: Sequence[str] = (),
                 source_path: Path | None = None, lines: Lines | None = None) -> Recipe:
    """Validate an already-loaded recipe mapping (from Python), applying ``--set`` overrides."""
    import copy

    lines = lines or Lines(source)
    data = copy.deepcopy(data)
    problems: list[Problem] = []
    if isinstance(data, dict):
        for text in overrides:
            problems += apply_override(data, lines, text, RECIPE_OPTIONS)
    if problems:
        raise RecipeError(problems)
    return _validate(data, lines, source_path)


def _find_recipe(p: Path) -> Path | None:
    """``p`` itself, else ``p.yaml``, else the same relative path (or a bare name) among the
    recipes shipped in the hwaware source tree (so ``hwaware run quickstart`` works anywhere)."""
    from ..modelref import source_root

    candidates = [p, p.with_suffix(".yaml")] if not p.suffix else [p]
    if not p.is_absolute():
        root = source_root()
        candidates += [root / c for c in list(candidates)]
        candidates += [root / "recipes" / c.name for c in list(candidates[:2])]
    return next((c for c in candidates if c.is_file()), None)


def load_recipe(path: str | os.PathLike[str], *, overrides: Sequence[str] = ()) -> Recipe:
    """Read, override and validate a recipe file; raises :class:`RecipeError` listing every problem.

    A path that does not exist is also looked up as ``PATH.yaml`` and in the shipped ``recipes/``
    folder of the source tree (``load_recipe("quickstart")``)."""
    p = _find_recipe(Path(path))
    if p is None:
        from ..modelref import source_root

        shipped = sorted(q.stem for q in (source_root() / "recipes").glob("*.yaml"))
        hint = did_you_mean(Path(path).stem, shipped)
        raise RecipeError([Problem(str(path), None, (), f"recipe file not found{hint}; shipped recipes: "
                                   f"{', '.join(shipped) or 'none'} (in {source_root() / 'recipes'})")])
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([Problem(str(path), None, (), f"cannot read: {exc}")]) from None
    data, lines = load_yaml(text, str(p))
    return parse_recipe(data, source=str(p), overrides=overrides, source_path=p, lines=lines)


def explain(stage: str | None = None) -> str:
    """Plain-text reference of the run-wide keys and every stage's options."""
    out: list[str] = []

    def block(title: str, options: Sequence[Option]) -> None:
        out.append(title)
        for o in options:
            default = "required" if o.required else yaml.safe_dump(_plain(o.default), default_flow_style=True).strip()
            default = default.removesuffix("\n...").removesuffix("...").strip()
            out.append(f"  {o.name:<18} {o.type_text():<26} default {default:<10} {o.doc}")

    if stage is None:
        block("run-wide keys:", RECIPE_OPTIONS)
        names = list(STAGES)
    else:
        if stage not in STAGES:
            raise HwawareError(f"unknown stage '{stage}'{did_you_mean(stage, STAGES)}; stages: {', '.join(STAGES)}")
        names = [stage]
    for n in names:
        spec = STAGES[n]
        out.append("")
        block(f"stage '{n}': {spec.doc}" + (" [needs data]" if spec.needs_data else ""), spec.options)
    return "\n".join(out)


def schema_markdown() -> str:
    """The reference tables of docs/recipes.md (generated; a test keeps the doc in sync)."""

    def table(options: Sequence[Option]) -> list[str]:
        rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
        for o in options:
            default = "required" if o.required else yaml.safe_dump(_plain(o.default), default_flow_style=True).strip()
            default = default.removesuffix("...").strip()
            rows.append(f"| `{o.name}` | {o.type_text()} | `{default}` | {o.doc.replace('|', '/')} |")
        return rows

    out = ["### Run-wide keys", "", *table(RECIPE_OPTIONS)]
    for n, spec in STAGES.items():
        out += ["", f"### `{n}`", "", spec.doc + (" Needs `data`." if spec.needs_data else ""), ""]
        out += table(spec.options) if spec.options else ["(no options)"]
    return "\n".join(out) + "\n"
