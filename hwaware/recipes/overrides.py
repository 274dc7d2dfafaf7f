"""``--set KEY=VALUE`` overrides of a loaded recipe (before validation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from .._suggest import did_you_mean
from .options import Option
from .problems import Lines, Problem, RecipeError
from .stages import STAGES

__all__ = ["apply_override", "parse_override", "stage_kind"]


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


def apply_override(data: dict[str, Any], lines: Lines, text: str, recipe_options: Sequence[Option]) -> list[Problem]:
    """Set one ``KEY=VALUE``. KEY is a run-wide key (``data``), ``<stage>.<option>`` for the first
    stage of that kind (``train.epochs``), ``<stage>#<n>.<option>`` for its n-th occurrence
    (1-based), or ``stages.<i>.<option>`` (0-based index)."""
    src = f"--set {text}"
    key, value = parse_override(text)
    parts = key.split(".")
    stages = data.get("stages") if isinstance(data.get("stages"), list) else []
    top = [o.name for o in recipe_options]
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
        found = [i for i, s in enumerate(stages) if stage_kind(s) == kind]
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
    kind = stage_kind(item)
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


def stage_kind(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and len(item) == 1:
        return str(next(iter(item)))
    return ""
