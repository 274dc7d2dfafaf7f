"""``hwaware netadapt``: adapt a trained network to resource budgets (NetAdapt, ECCV 2018).

    hwaware netadapt trained.pt --budget latency=0.5 --budget energy=0.6 \\
        --data builtin:shapes --workdir runs/na            # later: add --resume after a kill
    torchrun --nproc_per_node 2 -m hwaware netadapt ...    # proposals spread over 2 processes
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ..errors import HwawareError
from ._common import load_target
from ._flags import (
    add_config_flags,
    add_dataflow_flag,
    add_model_flags,
    add_quiet_flag,
    add_threads_flag,
    config_options,
    fold_dataflow,
)

# NetAdaptConfig fields with their own flag (name, type, default and help from the class); any
# other field is set with --set KEY=VALUE
_OPTION_FLAGS = ("delta", "decay", "channel_step", "min_channels", "short_term_steps", "long_term_steps", "lr",
                 "batch_size", "holdout", "train_size", "pick", "seed", "hardware", "batch", "max_iterations")


def register(subparsers: Any) -> None:
    from ..netadapt.config import PICK_RULES, NetAdaptConfig

    p = subparsers.add_parser(
        "netadapt",
        help="adapt a trained network to latency/energy/MAC budgets with NetAdapt (resumable)",
        description="NetAdapt (Yang et al., ECCV 2018): shrink one block per iteration, choosing among "
                    "short-term fine-tuned proposals by held-out accuracy, until every budget is met. "
                    "Every iteration is checkpointed in --workdir; the family of networks, a table and "
                    "a Pareto plot are written there.",
    )
    p.add_argument("target", metavar="TARGET",
                   help="the trained model: a saved model .pt, path.py[:callable], torchvision:NAME")
    p.add_argument("--budget", action="append", default=[], metavar="NAME=VALUE",
                   help="a budget (repeatable): latency=0.5, energy=60%%, macs=abs:2e6; resources: "
                        "latency, energy (Eyeriss model), macs, weights, measured (this machine)")
    p.add_argument("--data", required=True, metavar="REF",
                   help="dataset reference (builtin:shapes, cifar10:PATH, imagefolder:PATH); proposals are "
                        "ranked on images held out from its training split")
    p.add_argument("--workdir", "--out", dest="workdir", required=True, metavar="DIR",
                   help="checkpoints and outputs of this job (--out: the same flag, the name other verbs use)")
    p.add_argument("--resume", action="store_true", help="continue the job in --workdir after an interruption")
    p.add_argument("--logdir", metavar="DIR", help="TensorBoard directory (default WORKDIR/tb)")
    g = p.add_argument_group("NetAdapt options (defaults: docs/netadapt.md)")
    add_config_flags(g, NetAdaptConfig, _OPTION_FLAGS, choices={"pick": PICK_RULES})
    add_dataflow_flag(g)
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other option, e.g. --set profile_images=16 --set test_eval=false")
    x = p.add_argument_group("execution (does not change the result)")
    x.add_argument("--device", choices=("cpu", "cuda"), help="where fine-tunes run (cpu; cuda per rank under torchrun)")
    add_threads_flag(x)
    add_quiet_flag(x)
    add_model_flags(p)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """NetAdaptConfig options from the flags and ``--set KEY=VALUE`` (YAML-typed values)."""
    opts: dict[str, Any] = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise HwawareError(f"--set {item!r}: expected KEY=VALUE, e.g. --set profile_images=16")
        try:
            opts[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise HwawareError(f"--set {item!r}: cannot read the value '{raw}'") from None
    opts.update(config_options(args, _OPTION_FLAGS))
    return fold_dataflow(opts, args)


def run(args: argparse.Namespace) -> int:
    from ..netadapt import NetAdaptConfig, netadapt, parse_budgets

    if not args.budget:
        raise HwawareError("give at least one --budget, e.g. --budget latency=0.5")
    budgets = parse_budgets(args.budget)  # bad budgets fail before the model is loaded
    config = NetAdaptConfig.from_dict(options_from_args(args), where="netadapt options")
    model = load_target(args, labelled_data=args.data)
    result = netadapt(model, budgets=budgets, data=args.data, workdir=args.workdir, resume=args.resume,
                      logdir=args.logdir, config=config, progress=not args.quiet,
                      device=args.device, threads=args.threads)
    if result.outputs:  # rank 0 wrote them; other ranks stay quiet
        print(result.table())
        final = result.final
        status = ", ".join(f"{b.resource} {100 * result.relative(final, b.resource):.1f}% (budget {b})"
                           for b in result.budgets)
        print(f"final network (iteration {final.iteration}): {status}; held-out accuracy "
              f"{final.accuracy:.4f} vs {result.original.accuracy:.4f} originally")
        for name, path in result.outputs.items():
            print(f"wrote {path}")
    return 0
