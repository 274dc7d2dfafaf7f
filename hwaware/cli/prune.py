"""``hwaware prune``: prune a network against its Eyeriss energy (or by magnitude, or by channels).

    hwaware prune small_cnn_trained.pt --method energy --data builtin:shapes --out pruned.pt
    hwaware prune small_cnn_trained.pt --method magnitude --max-drop 1.0 --data builtin:shapes \\
        --out mag.pt --logdir runs/mag
    hwaware prune models/alexnet.py --method structured --data random --out alex_small.pt
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from .._io import check_output_path
from ..errors import HwawareError
from ._common import input_paths, load_target
from ._flags import (
    add_config_flags,
    add_dataflow_flag,
    add_model_flags,
    add_quiet_flag,
    add_threads_flag,
    add_verb,
    config_options,
    fold_dataflow,
)

HELP = "prune a network: energy-aware (CVPR 2017), magnitude (Han 2015) or structured channels"

# PruneConfig fields with a flag of the same name (type, default and help from PruneConfig itself)
_MAIN_FLAGS = ("method", "target_energy", "max_drop")
_OPTION_FLAGS = ("step", "min_step", "local_steps", "global_steps", "finetune_every", "final_steps", "lr",
                 "max_steps", "restore", "ridge", "restore_max_flops", "round_to", "max_latency", "hardware", "batch", "seed")

def register(subparsers: Any) -> None:
    from ..compress.prune import METHODS, PruneConfig

    p = add_verb(subparsers, "prune", HELP, epilog=__doc__,
                 details="Steps are accepted while validation accuracy stays within --max-drop points; the "
                         "loop stops at --target-energy (fraction of the starting Eyeriss energy) or when "
                         "nothing more can be pruned, and keeps the best model found.")
    p.add_argument("target", metavar="TARGET",
                   help="the model: a saved model .pt (trained), path.py[:callable], torchvision:NAME")
    add_config_flags(p, PruneConfig, _MAIN_FLAGS, choices={"method": METHODS},
                     metavars={"target_energy": "FRAC"})
    p.add_argument("--data", required=True, metavar="REF",
                   help="builtin:shapes, cifar10:PATH, imagefolder:PATH, or 'random' (random images; "
                        "'accuracy' = agreement with the unpruned model, for random-weight models)")
    p.add_argument("--out", required=True, metavar="PATH", help="where the pruned model is saved (.pt)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="best model so far, rewritten atomically after every accepted step "
                        "(default OUT with suffix .ckpt.pt; removed when the run completes)")
    p.add_argument("--logdir", metavar="DIR", help="TensorBoard scalars: energy by level and data type, "
                                                   "accuracy, per-layer sparsity")
    g = p.add_argument_group("loop options (docs/pruning.md)")
    add_config_flags(g, PruneConfig, _OPTION_FLAGS)
    add_dataflow_flag(g)
    d = p.add_argument_group("data")
    d.add_argument("--batch-size", type=int, default=64, metavar="B", help="fine-tuning batch size (64)")
    d.add_argument("--calib-size", type=int, default=64, metavar="K",
                   help="training images used to profile the energy and fit the restoration (64)")
    d.add_argument("--val-limit", type=int, metavar="K", help="validation images deciding each step (all)")
    d.add_argument("--train-limit", type=int, metavar="K", help="training images used for fine-tuning (all)")
    add_threads_flag(d)
    add_quiet_flag(d)
    add_model_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._io import JobLock

    with JobLock(Path(args.out), what="prune job writing this --out"):  # two jobs never share an output
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import save_model
    from ..compress.prune import PruneConfig, Pruner
    from ..compress.prune_log import PruneLog

    options = fold_dataflow(config_options(args, _MAIN_FLAGS + _OPTION_FLAGS), args)
    config = PruneConfig(**options)
    out = Path(args.out)
    if out.suffix.lower() not in (".pt", ".pth"):
        raise HwawareError(f"--out '{out}' must end in .pt (a saved hwaware model)")
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_name(out.stem + ".ckpt.pt")
    for path, flag in ((out, "--out"), (ckpt, "--checkpoint")):
        check_output_path(path, inputs=input_paths(args), flag=flag)
    for flag in ("calib_size", "batch_size", "val_limit", "train_limit", "threads"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise HwawareError(f"--{flag.replace('_', '-')} must be a positive integer, got {v}")
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(config.seed)
    model = load_target(args, labelled_data=None if args.data == "random" else args.data).eval()
    train, val, test, calib, data_note = _loaders(model, args, config.seed)

    writer = _writer(args.logdir)
    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.max_steps, desc=f"prune ({config.method})", unit="step", file=sys.stderr)
    log = PruneLog(writer=writer, bar=bar,
                   checkpoint=lambda p: save_model(p.model, ckpt, meta=_meta(args, config, p, partial=True)))
    try:
        pruner = Pruner(model, train=train, val=val, calib=calib, config=config)
        log.start(pruner)
        for step in pruner.steps():
            log(step, pruner)
        result = pruner.result()
    except KeyboardInterrupt:
        if ckpt.exists():
            print(f"hwaware prune: interrupted; the best model so far is in {ckpt}", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()

    test_before = test_after = None
    if test is not None:
        from ..train import evaluate

        test_before, test_after = evaluate(model, test), evaluate(result.model, test)
    save_model(result.model, out, meta=_meta(args, config, pruner, partial=False,
                                             test=(test_before, test_after)))
    with contextlib.suppress(FileNotFoundError):
        if ckpt.resolve() != out.resolve():
            os.unlink(ckpt)
    print(summary_table(result, test=(test_before, test_after), data_note=data_note))
    print(result.message)
    print(f"wrote {out}")
    return 0


def summary_table(result: Any, *, test: tuple[float | None, float | None] = (None, None),
                  data_note: str = "") -> str:
    """Before/after table: energy, latency, weights, MACs, accuracy."""
    from ..report_table import format_si, format_table

    b, f = result.baseline, result.final

    def ratio(x: float, y: float) -> str:
        return f"{y / x:.3f}x" if x else "-"

    def acc(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    rows: list[list[Any] | None] = [
        ["Eyeriss energy (x MAC)", format_si(b.energy), format_si(f.energy), ratio(b.energy, f.energy)],
        *[[f"  {lv}", format_si(b.energy_by_level[lv]), format_si(f.energy_by_level[lv]),
           ratio(b.energy_by_level[lv], f.energy_by_level[lv])] for lv in b.energy_by_level],
        ["latency (ms)", f"{b.latency_ms:.3f}", f"{f.latency_ms:.3f}", ratio(b.latency_ms, f.latency_ms)],
        ["weights", format_si(b.weights), format_si(f.weights), ratio(b.weights, f.weights)],
        ["non-zero weights", format_si(b.nonzero_weights), format_si(f.nonzero_weights),
         ratio(b.nonzero_weights, f.nonzero_weights)],
        ["MACs", format_si(b.macs), format_si(f.macs), ratio(b.macs, f.macs)],
        ["non-zero MACs", format_si(b.nonzero_macs), format_si(f.nonzero_macs), ratio(b.nonzero_macs, f.nonzero_macs)],
        None,
        ["val accuracy", acc(b.accuracy), acc(f.accuracy), ""],
    ]
    if test[0] is not None:
        rows.append(["test accuracy", acc(test[0]), acc(test[1]), ""])
    title = (f"{result.config.method} pruning on {result.config.hardware} (energy per inference at N="
             f"{result.config.batch}, normalized to one 16-bit MAC){data_note}")
    return title + "\n" + format_table(["", "before", "after", "after/before"], rows)


def _meta(args: argparse.Namespace, config: Any, pruner: Any, *, partial: bool,
          test: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "source_model": args.target,
        "prune": {"config": asdict(config), "partial": partial, "data": args.data,
                  "baseline": {"energy": pruner.baseline.energy, "accuracy": pruner.baseline.accuracy},
                  "current": {"energy": pruner.current.energy, "accuracy": pruner.current.accuracy},
                  "test_accuracy_before": test[0], "test_accuracy_after": test[1]},
    }


def _loaders(model: Any, args: argparse.Namespace, seed: int) -> tuple[Any, Any, Any, Any, str]:
    import torch

    if args.data == "random":
        from ..modelref import default_input_size

        size = default_input_size(args.target)
        g = torch.Generator().manual_seed(seed)
        n_train = args.train_limit or 64
        n_val = args.val_limit or 32
        xs = torch.randn(n_train + n_val, *size, generator=g)
        with torch.no_grad():  # labels: the unpruned model's own predictions
            ys = torch.cat([model(xs[i:i + 16]).argmax(1) for i in range(0, len(xs), 16)])
        bs = min(args.batch_size, 16)
        train = [(xs[i:i + bs], ys[i:i + bs]) for i in range(0, n_train, bs)]
        val = [(xs[n_train + i:n_train + i + 16], ys[n_train + i:n_train + i + 16]) for i in range(0, n_val, 16)]
        calib = xs[: min(args.calib_size, n_train, 16)]
        note = (" -- random input: 'accuracy' is agreement with the unpruned model's predictions "
                f"on {n_val} random images")
        return train, val, None, calib, note
    from ..data import make_loader
    from ..splits import val_split

    split = val_split(args.data, batch_size=args.batch_size, seed=seed, train_limit=args.train_limit,
                      val_limit=args.val_limit)
    calib_loader = make_loader(args.data, "train", batch_size=args.calib_size, shuffle=True, seed=seed + 1)
    calib = next(iter(calib_loader))[0]
    return split.train, split.val, split.test, calib, ""


def _writer(logdir: str | None) -> Any:
    if not logdir:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=logdir)
