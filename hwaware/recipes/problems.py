"""Where a recipe problem is: located problems, :class:`RecipeError`, and YAML loading that
remembers the line of every key path (so each problem names the file, line and key)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import HwawareError

__all__ = ["KeyPath", "Lines", "Problem", "RecipeError", "format_path", "load_yaml"]

KeyPath = tuple[Any, ...]


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (``source`` file or ``--set`` argument, 1-based ``line``),
    which key path, and what is wrong."""

    source: str
    line: int | None
    path: KeyPath
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


def format_path(path: KeyPath) -> str:
    """``("stages", 1, "prune", "target_energy")`` -> ``stages[1].prune.target_energy``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class Lines:
    """Line of every key path in the file, and the source name to report."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[KeyPath, int] = {}
        self.override: dict[KeyPath, str] = {}  # path -> '--set k=v' text

    def where(self, path: KeyPath) -> tuple[str, int | None]:
        for n in range(len(path), -1, -1):
            sub = path[:n]
            if sub in self.override:
                return self.override[sub], None
            if sub in self.lines:
                return self.source, self.lines[sub]
        return self.source, None

    def problem(self, path: KeyPath, message: str) -> Problem:
        src, line = self.where(path)
        return Problem(src, line, path, message)


def load_yaml(text: str, source: str) -> tuple[Any, Lines]:
    lines = Lines(source)
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

        def walk(n: yaml.Node, path: KeyPath) -> Any:
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
