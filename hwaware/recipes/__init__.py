"""Recipe-driven runs: ``hwaware run recipes/quickstart.yaml``.

- :mod:`.schema` -- YAML loading with line numbers, the declared schema, ``--set`` overrides and
  validation (every problem names the file, line and key path);
- :mod:`.stages` -- one module per stage kind (options, config check, runner, dry-run text), registered by name;
- :mod:`.context` -- the state stages share (:class:`~.context.RunContext`) and the per-stage snapshots;
- :mod:`.run` -- the run directory and the run itself (``run_recipe``, ``dry_run``);
- :mod:`.report` -- ``summary.md`` and the PNG plots.
"""

from .schema import Recipe, RecipeError, Stage, explain, load_recipe, parse_recipe

__all__ = [
    "Recipe",
    "RecipeError",
    "RunResult",
    "Stage",
    "dry_run",
    "explain",
    "load_recipe",
    "parse_recipe",
    "run_recipe",
]


def __getattr__(name: str):
    if name in ("run_recipe", "dry_run", "RunResult"):
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'hwaware.recipes' has no attribute {name!r}")
