"""``hwaware run``: run a recipe (a YAML file describing a whole job) into a new run directory.

    hwaware run recipes/quickstart.yaml
    hwaware run recipes/quickstart.yaml --dry-run                 # validate + predicted energy, no work
    hwaware run recipes/quickstart.yaml --set train.epochs=1 --set data=builtin:shapes?n_train=2000
    hwaware run recipes/alexnet_energy_aware.yaml --set data=imagefolder:/data/imagenet --out runs/alex1
    hwaware run --explain prune                                   # every option of a stage

--set KEY=VALUE: KEY is a run-wide key (data, hardware, batch_size, ...), <stage>.<option> for the
first stage of that kind, <stage>#<n>.<option> for its n-th, or stages.<i>.<option>; VALUE is read
as YAML (0.4, true, [3, 32, 32]). Every problem in the recipe is reported (file:line: key path:
what is wrong) before any work starts, and the command exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._flags import TRUST_HELP, add_quiet_flag, add_verb

HELP = "run a recipe: train, profile, score, prune, quantize, NetAdapt, report (see recipes/)"


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "run", HELP, epilog=__doc__)
    p.add_argument("recipe", metavar="RECIPE", nargs="?", help="recipe YAML file (e.g. recipes/quickstart.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, print the input model's predicted energy/latency and the plan; write nothing")
    p.add_argument("--out", metavar="DIR", help="run directory (must not exist; default runs/<name>-<time>)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="parent of new run directories (default runs)")
    p.add_argument("--explain", nargs="?", const="", metavar="STAGE",
                   help="print the recipe keys and stage options (of one STAGE) and exit")
    add_quiet_flag(p)
    p.add_argument("--trust-source", action="store_true", help=TRUST_HELP)
    p.add_argument("--status", metavar="DIR",
                   help="print whether a run (or NetAdapt) directory is running, finished, failed or was killed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HwawareError
    from ..recipes.schema import RecipeError, explain, load_recipe

    if args.status:
        from .._io import job_status

        st = job_status(args.status)
        if not st:
            raise HwawareError(f"'{args.status}' has no status.json (not a run or NetAdapt directory of this hwaware)")
        print(f"{args.status}: {st['status']} (pid {st.get('pid')} on {st.get('host')}, started {st.get('started')})"
              + (f": {st['error']}" if st.get("error") else ""))
        return 0
    if args.explain is not None:
        print(explain(args.explain or None))
        return 0
    if not args.recipe:
        raise HwawareError("give a RECIPE file (e.g. recipes/quickstart.yaml), or --explain")
    try:
        recipe = load_recipe(args.recipe, overrides=args.overrides)
    except RecipeError as exc:
        for problem in exc.problems:  # every problem, one line each
            print(f"hwaware run: error: {problem}", file=sys.stderr)
        return 2
    if args.dry_run:
        from ..recipes.run import dry_run

        print(dry_run(recipe, trust_source=args.trust_source))
        return 0
    from ..recipes.run import run_recipe

    result = run_recipe(recipe, runs_dir=args.runs_dir, out=args.out, progress=not args.quiet,
                        trust_source=args.trust_source)
    base, final = result.baseline, result.final
    acc = f", val accuracy {final.accuracy:.4f}" if final.accuracy is not None else ""
    what = "the input model" if base is result.input else f"the model after '{base.label}'"
    print(f"run finished in {result.seconds:.1f} s: energy {final.energy:.4g} per batch ({final.energy / base.energy:.3f}x "
          f"of {what}), latency {final.total_latency_ms:.3f} ms{acc}")
    print(f"run directory: {result.run_dir}  (summary: {result.run_dir / 'summary.md'})")
    return 0
