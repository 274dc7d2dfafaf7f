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

Every key, its type, default and meaning is declared here (:data:`RECIPE_OPTIONS`,
:data:`STAGES`); ``hwaware run --explain`` prints them and docs/recipes.md lists them. Checks
run before any work: unknown keys (with a did-you-mean), wrong types, missing files, values the
stage's own config rejects (impossible targets such as ``target_energy: 1.5``), and stage order.
Each problem names the file, the line and the key path (``stages[1].prune.target_energy``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._suggest import did_you_mean
from ..errors import HwawareError

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

Path_ = tuple[Any, ...]


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


# --- located problems ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One validation problem: where (``source`` file or ``--set`` argument, 1-based ``line``),
    which key path, and what is wrong."""

    source: str
    line: int | None
    path: Path_
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        key = format_path(self.path)
        return f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"


class RecipeError(HwawareError):
    """Validation failed; ``problems`` lists every problem found (``str`` is the first one)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")


def format_path(path: Path_) -> str:
    """``("stages", 1, "prune", "target_energy")`` -> ``stages[1].prune.target_energy``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# --- YAML with line numbers ----------------------------------------------------------------------

class _Lines:
    """Line of every key path in the file, and the source name to report."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[Path_, int] = {}
        self.override: dict[Path_, str] = {}  # path -> '--set k=v' text

    def where(self, path: Path_) -> tuple[str, int | None]:
        for n in range(len(path), -1, -1):
            sub = path[:n]
            if sub in self.override:
                return self.override[sub], None
            if sub in self.lines:
                return self.source, self.lines[sub]
        return self.source, None

    def problem(self, path: Path_, message: str) -> Problem:
        src, line = self.where(path)
        return Problem(src, line, path, message)


def _load_yaml(text: str, source: str) -> tuple[Any, _Lines]:
    lines = _Lines(source)
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            what = " ".join(str(exc.problem or exc).split())
            raise RecipeError([Problem(source, line, (), f"not valid YAML: {what}")]) from None
        except yaml.YAMLError as exc:
            raise RecipeError([Problem(source, None, (), f"not valid YAML: {' '.join(str(exc).split())}")]) from None
        if node is None:
            raise RecipeError([Problem(source, 1, (), "the recipe is empty")])
        problems: list[Problem] = []

        def walk(n: yaml.Node, path: Path_) -> Any:
            lines.lines.setdefault(path, n.start_mark.line + 1)
            if isinstance(n, yaml.MappingNode):
                out: dict[Any, Any] = {}
                for k, v in n.value:
                    key = loader.construct_object(k, deep=True)
                    if isinstance(key, (list, dict)):
                        problems.append(Problem(source, k.start_mark.line + 1, path, "a key must be a plain name"))
                        continue
                    if key in out:
                        problems.append(Problem(source, k.start_mark.line + 1, (*path, key),
                                                f"duplicate key (first on line {lines.lines[(*path, key)]})"))
                        continue
                    lines.lines[(*path, key)] = k.start_mark.line + 1
                    out[key] = walk(v, (*path, key))
                return out
            if isinstance(n, yaml.SequenceNode):
                return [walk(v, (*path, i)) for i, v in enumerate(n.value)]
            return loader.construct_object(n, deep=True)

        try:
            data = walk(node, ())
        except yaml.YAMLError as exc:
            raise RecipeError([Problem(source, None, (), f"not valid YAML: {' '.join(str(exc).split())}")]) from None
        if problems:
            raise RecipeError(problems)
        return data, lines
    finally:
        loader.dispose()


# --- schema ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One key: ``type`` is ``int``, ``float``, ``str``, ``bool``, ``list[str]``, ``list[int]``,
    ``dict`` or ``any``; ``nullable`` allows ``null``; ``choices``/``low``/``high`` restrict the
    value (``low_open``: the bound itself is not allowed); ``check`` returns an error text or None;
    ``file``: the value names a file that must exist (``model``, ``data``, ``hardware``, ``path``)."""

    name: str
    type: str
    default: Any = REQUIRED
    doc: str = ""
    nullable: bool = False
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    check: Callable[[Any], str | None] | None = None
    file: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_text(self) -> str:
        t = self.type
        if self.choices:
            t = " | ".join(str(c) for c in self.choices)
        if self.low is not None or self.high is not None:
            lo = "" if self.low is None else (f"({self.low:g}" if self.low_open else f"[{self.low:g}")
            hi = "" if self.high is None else (f"{self.high:g})" if self.high_open else f"{self.high:g}]")
            t += f" in {lo or '(-inf'}, {hi or 'inf)'}"
        return t + (" or null" if self.nullable else "")


@dataclass(frozen=True)
class StageSpec:
    """A stage kind: its options, whether it needs a dataset, and a one-line doc."""

    name: str
    doc: str
    options: tuple[Option, ...]
    needs_data: bool = False
    config_check: Callable[[dict[str, Any], dict[str, Any]], None] | None = None

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


def _check_value(opt: Option, value: Any) -> tuple[Any, str | None]:
    """(converted value, error text)."""
    if value is None:
        return (None, None) if opt.nullable or opt.default is None else (None, f"must be {opt.type_text()}, got null")
    t = opt.type
    if t == "bool":
        if not isinstance(value, bool):
            return value, f"must be true or false, got {value!r}"
    elif t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return value, f"must be an integer, got {value!r}"
    elif t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"must be a number, got {value!r}"
        value = float(value)
        if not math.isfinite(value):
            return value, f"must be a finite number, got {value!r}"
    elif t == "str":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and opt.choices is None:
            value = str(value)
        if not isinstance(value, str):
            return value, f"must be a string, got {value!r}"
    elif t.startswith("list["):
        inner = t[5:-1]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and inner == "str":
            value = [str(value)]
        if not isinstance(value, list):
            return value, f"must be a list of {inner}, got {value!r}"
        for i, v in enumerate(value):
            ok = isinstance(v, str) if inner == "str" else (isinstance(v, int) and not isinstance(v, bool))
            if not ok:
                return value, f"item {i} must be {'a string' if inner == 'str' else 'an integer'}, got {v!r}"
    elif t == "dict":
        if not isinstance(value, dict):
            return value, f"must be a mapping, got {value!r}"
    if opt.choices is not None and value not in opt.choices:
        return value, (f"'{value}' is not allowed{did_you_mean(str(value), [str(c) for c in opt.choices])}; "
                       f"allowed: {', '.join(str(c) for c in opt.choices)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if opt.low is not None and (value < opt.low or (opt.low_open and value == opt.low)):
            return value, f"must be {opt.type_text()}, got {value!r}"
        if opt.high is not None and (value > opt.high or (opt.high_open and value == opt.high)):
            return value, f"must be {opt.type_text()}, got {value!r}"
    if opt.check is not None:
        msg = opt.check(value)
        if msg:
            return value, msg
    return value, None


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


def _check_budgets(value: list[str]) -> str | None:
    from ..netadapt import parse_budgets

    try:
        parse_budgets(value)
    except HwawareError as exc:
        return str(exc)
    return None


def _check_schedule(value: dict[str, Any]) -> str | None:
    from ..plugin import PruneSchedule

    try:
        PruneSchedule.from_dict(value)
    except HwawareError as exc:
        return str(exc).removeprefix("schedule: ")
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

_TRAIN_OPTIONS = (
    Option("epochs", "float", 1.0, "passes over the training data", low=0.0, low_open=True),
    Option("lr", "float", 0.05, "learning rate", low=0.0, low_open=True),
    Option("optimizer", "str", "sgd", "optimizer", choices=("sgd", "adam")),
    Option("momentum", "float", 0.9, "SGD momentum", low=0.0),
    Option("weight_decay", "float", 5e-4, "L2 weight decay", low=0.0),
    Option("lr_schedule", "str", "cosine", "learning-rate schedule", choices=("constant", "cosine")),
    Option("max_steps", "int", None, "stop after this many optimizer steps", nullable=True, low=1),
    Option("monitor_every", "int", 50, "log Eyeriss energy/latency/sparsity to TensorBoard every N steps "
           "with the training plugin (null: off)", nullable=True, low=1),
    Option("prune_schedule", "dict", None, "gradual pruning during training (hwaware.plugin.PruneSchedule: "
           "method, start, end, target, every, scope, max_layer_sparsity, layers)", nullable=True,
           check=_check_schedule),
)


def _dataclass_options(cls: type, docs: Mapping[str, str], skip: Sequence[str] = (),
                       defaults: Mapping[str, Any] | None = None) -> tuple[Option, ...]:
    """Options mirroring a config dataclass (its own __post_init__ checks the ranges)."""
    kinds = {"float": "float", "int": "int", "str": "str", "bool": "bool", "int | None": "int",
             "float | None": "float", "str | None": "str", "tuple[str, ...]": "list[str]"}
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "any")
        default = (defaults or {}).get(f.name, f.default)
        if isinstance(default, tuple):
            default = list(default)
        out.append(Option(f.name, kinds.get(ann, "any"), default, docs.get(f.name, ""),
                          nullable="None" in ann))
    return tuple(out)


def _config_check(build: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    """Run the stage's own config class on the options (so impossible targets fail now)."""
    def check(opts: dict[str, Any], recipe: dict[str, Any]) -> None:
        build(opts, recipe)
    return check


def _prune_options() -> tuple[Option, ...]:
    from ..compress.prune import PruneConfig

    docs = {
        "method": "energy (CVPR 2017: most energy-hungry layer first, least-squares restore), magnitude, "
                  "or structured (whole channels)",
        "target_energy": "stop at this fraction of the starting energy, in (0, 1]",
        "max_drop": "accuracy points (top-1, %) allowed below the start",
        "step": "fraction of the remaining weights (channels) one step removes",
        "min_step": "a layer whose step falls below this is done",
        "local_steps": "fine-tuning steps after each proposal",
        "global_steps": "whole-network fine-tuning steps every finetune_every accepted steps",
        "finetune_every": "accepted steps between whole-network fine-tunes",
        "final_steps": "whole-network fine-tuning steps at the end",
        "lr": "fine-tuning learning rate",
        "max_steps": "proposals at most",
        "restore": "least-squares restoration of the output feature maps (energy method)",
        "ridge": "ridge regularization of the restoration",
        "restore_max_flops": "larger layers skip restoration",
        "round_to": "structured: channel counts rounded up to a multiple of this",
        "seed": "seed of the restoration's sampling",
    }
    return _dataclass_options(PruneConfig, docs, skip=("hardware", "batch"))


def _build_prune(opts: dict[str, Any], recipe: dict[str, Any]) -> Any:
    from ..compress.prune import PruneConfig

    kw = {k: v for k, v in opts.items() if k in PruneConfig.keys()}
    return PruneConfig(**kw, hardware=recipe["hardware"], batch=recipe["batch"])


def _netadapt_options() -> tuple[Option, ...]:
    import re

    from ..netadapt import NetAdaptConfig

    docs: dict[str, str] = {}
    last: list[str] = []
    for line in (NetAdaptConfig.__doc__ or "").splitlines():  # "    delta   ΔR_1, the first step" -> docs
        m = re.match(r"^\s{4}([a-z_]+(?:,\s*[a-z_]+)*)\s+(\S.*)$", line)
        fields_ = {f.name for f in dataclasses.fields(NetAdaptConfig)}
        if m and all(n.strip() in fields_ for n in m.group(1).split(",")):
            last = [n.strip() for n in m.group(1).split(",")]
            for n in last:
                docs[n] = m.group(2).strip()
        elif line.startswith(" " * 6) and line.strip() and last:  # continuation of the last entry
            for n in last:
                docs[n] += " " + line.strip()
        else:
            last = []
    budgets = Option("budgets", "list[str]", REQUIRED, "resource budgets, e.g. [latency=0.5] or "
                     "[energy=60%, macs=abs:2e6]; NetAdapt stops when every one is met", check=_check_budgets)
    member = Option("member", "int", -1, "which family member continues the pipeline (-1: the last)")
    return (budgets, member, *_dataclass_options(NetAdaptConfig, docs, skip=("hardware", "objective", "batch")))


def _build_netadapt(opts: dict[str, Any], recipe: dict[str, Any]) -> Any:
    from ..netadapt import NetAdaptConfig

    cfg = {k: v for k, v in opts.items() if k not in ("budgets", "member", "skip")}
    objective = recipe["objective"] if recipe["objective"] in ("energy", "latency") else "energy"
    return NetAdaptConfig.from_dict({**cfg, "hardware": recipe["hardware"], "objective": objective,
                                     "batch": recipe["batch"]})


def _build_fit(opts: dict[str, Any], recipe: dict[str, Any]) -> None:
    return None


STAGES: dict[str, StageSpec] = {}


_SKIP = Option("skip", "bool", False, "skip this stage (e.g. --set train.skip=true)")


def _register(spec: StageSpec) -> None:
    if spec.option("skip") is None:
        spec = dataclasses.replace(spec, options=(*spec.options, _SKIP))
    STAGES[spec.name] = spec


def _init_stages() -> None:
    if STAGES:
        return
    _register(StageSpec("train", "train the model with SGD/Adam on the training split (the plugin logs "
                        "energy to TensorBoard; optional gradual pruning)", _TRAIN_OPTIONS, needs_data=True))
    _register(StageSpec("fine-tune", "continue training; pruned weights stay zero (masks re-applied after "
                        "every optimizer step)",
                        tuple(dataclasses.replace(o, default=d) if (d := {"lr": 0.01, "lr_schedule": "cosine"}.get(o.name))
                              is not None else o for o in _TRAIN_OPTIONS), needs_data=True))
    _register(StageSpec("profile", "profile the current model (shapes and measured sparsity) and write its workload",
                        (Option("images", "int", None, "validation images profiled (null: profile_images)",
                                nullable=True, low=1),)))
    _register(StageSpec("score", "score the current model on the Eyeriss model and print the per-layer table",
                        (Option("table", "bool", True, "print the per-layer table"),)))
    _register(StageSpec("prune", "pruning loop against the Eyeriss energy (hwaware.compress.prune)",
                        _prune_options(), needs_data=True, config_check=_config_check(_build_prune)))
    _register(StageSpec("netadapt", "NetAdapt against resource budgets (hwaware.netadapt); the family is "
                        "plotted", _netadapt_options(), needs_data=True,
                        config_check=_config_check(_build_netadapt)))
    _register(StageSpec("report", "write summary.md, plots and JSON (always done at the end; list it to "
                        "set options)", (
                            Option("title", "str", "", "report title (default: the recipe name)"),
                            Option("plots", "bool", True, "write the PNG plots"),
                            Option("test_accuracy", "bool", True, "also measure test-split accuracy of the "
                                   "input and final models (when the data has one)"),
                        )))
    _init_extra_stages()


def _init_extra_stages() -> None:
    """Stages whose modules land later (quantize, export-vectors)."""
    from . import stages_extra

    for spec in stages_extra.specs():
        _register(spec)


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


# --- overrides ----------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[str, Any]:
    """``"prune.target_energy=0.4"`` -> ``("prune.target_energy", 0.4)`` (the value is read as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError([Problem(f"--set {text}", None, (), "expected KEY=VALUE, e.g. train.epochs=1 or data=builtin:shapes")])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _apply_override(data: dict[str, Any], lines: _Lines, text: str) -> list[Problem]:
    """Set one ``KEY=VALUE``. KEY is a run-wide key (``data``), ``<stage>.<option>`` for the first
    stage of that kind (``train.epochs``), ``<stage>#<n>.<option>`` for its n-th occurrence
    (1-based), or ``stages.<i>.<option>`` (0-based index)."""
    src = f"--set {text}"
    key, value = parse_override(text)
    parts = key.split(".")
    stages = data.get("stages") if isinstance(data.get("stages"), list) else []
    top = [o.name for o in RECIPE_OPTIONS]
    if len(parts) == 1:
        if parts[0] not in top or parts[0] == "stages":
            names = [n for n in top if n != "stages"] + sorted(STAGES)
            return [Problem(src, None, (), f"unknown key '{parts[0]}'{did_you_mean(parts[0], names)}; "
                            f"run-wide keys: {', '.join(n for n in top if n != 'stages')}; stage options are "
                            "<stage>.<option>")]
        data[parts[0]] = value
        lines.override[(parts[0],)] = src
        return []
    if parts[0] == "stages" and len(parts) == 3 and parts[1].isdigit():
        idx, opt = int(parts[1]), parts[2]
        if idx >= len(stages):
            return [Problem(src, None, ("stages",), f"no stage {idx} (the recipe has {len(stages)}, counted from 0)")]
    elif len(parts) == 2:
        kind, _, nth = parts[0].partition("#")
        opt = parts[1]
        n = int(nth) if nth.isdigit() else 1
        found = [i for i, s in enumerate(stages) if _stage_kind(s) == kind]
        if kind not in STAGES:
            return [Problem(src, None, (), f"unknown stage '{kind}'{did_you_mean(kind, STAGES)}; stages: "
                            f"{', '.join(STAGES)}")]
        if len(found) < n:
            return [Problem(src, None, ("stages",), f"the recipe has {len(found)} '{kind}' stage(s), not {n}")]
        idx = found[n - 1]
    else:
        return [Problem(src, None, (), "expected KEY=VALUE with KEY a run-wide key, <stage>.<option>, "
                        "<stage>#<n>.<option> or stages.<i>.<option>")]
    item = stages[idx]
    kind = _stage_kind(item)
    if isinstance(item, str):
        item = {item: {}}
        stages[idx] = item
    if isinstance(item, dict) and len(item) == 1:
        opts = item[kind]
        if opts is None:
            opts = item[kind] = {}
        if isinstance(opts, dict):
            opts[opt] = value
            lines.override[("stages", idx, kind, opt)] = src
            return []
    return [Problem(src, None, ("stages", idx), "cannot set an option of a malformed stage")]


def _stage_kind(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and len(item) == 1:
        return str(next(iter(item)))
    return ""


# --- validation ----------------------------------------------------------------------------------

def _validate_options(options: Sequence[Option], given: Any, path: Path_, lines: _Lines,
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
        value, err = _check_value(opt, given[opt.name])
        if err:
            problems.append(lines.problem((*path, opt.name), err))
        out[opt.name] = value
    return out


def _validate(data: Any, lines: _Lines, source_path: Path | None) -> Recipe:
    _init_stages()
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
            path: Path_ = ("stages", i)
            kind = _stage_kind(item)
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
        for s in stages:
            order = _order_problem(s, stages)
            if order:
                problems.append(lines.problem(("stages", s.index), order))
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


def _order_problem(stage: Stage, stages: Sequence[Stage]) -> str | None:
    from . import stages_extra

    before = [s.name for s in stages if s.index < stage.index]
    return stages_extra.order_problem(stage.name, before)


# --- entry points --------------------------------------------------------------------------------

def parse_recipe(data: Any, *, source: str = "<recipe>", overrides: Sequence[str] = (),
                 source_path: Path | None = None, lines: _Lines | None = None) -> Recipe:
    """Validate an already-loaded recipe mapping (from Python), applying ``--set`` overrides."""
    import copy

    _init_stages()
    lines = lines or _Lines(source)
    data = copy.deepcopy(data)
    problems: list[Problem] = []
    if isinstance(data, dict):
        for text in overrides:
            problems += _apply_override(data, lines, text)
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
    data, lines = _load_yaml(text, str(p))
    return parse_recipe(data, source=str(p), overrides=overrides, source_path=p, lines=lines)


def explain(stage: str | None = None) -> str:
    """Plain-text reference of the run-wide keys and every stage's options."""
    _init_stages()
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
    _init_stages()

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
