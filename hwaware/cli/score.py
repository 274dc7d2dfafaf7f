"""``hwaware score``: energy, DRAM traffic, latency and power of a network on the Eyeriss model.

    hwaware score models/alexnet.py --batch 4
    hwaware score torchvision:resnet50 --objective latency --json resnet50_score.json
    hwaware score models/small_cnn.py --data builtin:shapes --batches 2
    hwaware score workload.yaml --hardware my_chip.yaml
    hwaware score models/alexnet.py --batch 16 --hardware eyeriss_isca256 --dataflow ws
"""

from __future__ import annotations

import argparse
from typing import Any

from .._checks import check_dim
from .._io import check_output_path
from ..errors import HwawareError
from ._common import input_paths
from ._flags import (
    HARDWARE_METAVAR,
    add_dataflow_flag,
    add_force_flag,
    add_model_flags,
    add_verb,
    fold_dataflow,
)

HELP = "score a model or workload on the embedded Eyeriss model (energy, DRAM, latency, power)"


def register(subparsers: Any) -> None:
    from ..eyeriss import OBJECTIVES, PRESETS

    p = add_verb(subparsers, "score", HELP, epilog=__doc__)
    p.add_argument("target", metavar="TARGET",
                   help="model (path.py[:callable], torchvision:NAME, saved model .pt) or a workload file")
    p.add_argument("--hardware", default="eyeriss_v1", metavar=HARDWARE_METAVAR,
                   help=f"hardware preset ({', '.join(PRESETS)}) or a YAML hardware file (default eyeriss_v1)")
    add_dataflow_flag(p)
    p.add_argument("--batch", type=int, metavar="N", help="images per inference N the hardware scores, for every layer (default: as profiled)")
    p.add_argument("--objective", default="energy", choices=OBJECTIVES,
                   help="what the mapper minimizes per layer (default energy)")
    p.add_argument("--tolerance", type=float, metavar="FRAC",
                   help="near-optimality slack of the mapper (default 0.02; 0 = strict optimum)")
    p.add_argument("--input-size", metavar="SIZE", help="random input NxCxHxW for a model (default: its INPUT_SIZE)")
    p.add_argument("--data", metavar="REF", help="profile on real data: builtin:shapes, cifar10:PATH, imagefolder:PATH")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="data loader batch size while profiling with --data (default 16)")
    p.add_argument("--batches", type=int, metavar="K", help="batches to profile (default 1)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random input (default 0)")
    p.add_argument("--strict", action="store_true", help="fail on a layer the hardware cannot run (default: list it)")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--eyexam", action="store_true",
                   help="also print Eyexam's seven MAC/cycle bounds per layer and the binding step")
    p.add_argument("--eyexam-png", metavar="PATH", help="write the roofline-style Eyexam figure (implies --eyexam)")
    p.add_argument("--export-timeloop", metavar="DIR", help="also write each layer as a Timeloop problem file")
    add_model_flags(p)
    add_force_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..eyeriss import Scorer
    from ..eyeriss.mapper import DEFAULT_TOLERANCE
    from ..modelref import is_workload_file
    from ..workload import Workload
    from .profile import workload_from_args

    if args.batch is not None and args.batch < 1:
        raise HwawareError(f"--batch must be a positive integer, got {args.batch}")
    if args.batch is not None:
        check_dim(args.batch, "N", "--batch")
    check_output_path(args.json, inputs=input_paths(args), flag="--json")
    check_output_path(args.export_timeloop, inputs=input_paths(args), flag="--export-timeloop", directory=True,
                      force=args.force)
    tol = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    scorer = Scorer(fold_dataflow({"hardware": args.hardware}, args)["hardware"], args.objective, tolerance=tol)
    if is_workload_file(args.target):
        if args.input_size or args.data:
            raise HwawareError(f"--input-size/--data apply to a model; '{args.target}' is a workload file")
        wl = Workload.load(args.target)
        source = f"workload file {args.target}"
    else:
        wl, source = workload_from_args(args)
    report = scorer.score(wl, batch=args.batch, on_unsupported="raise" if args.strict else "report")
    print(source)
    print(report.table())
    if args.eyexam or args.eyexam_png:
        print()
        print(report.eyexam_table())
    if args.eyexam_png:
        from ..plots import save_png

        save_png(report.eyexam_figure(), args.eyexam_png)
        print(f"wrote {args.eyexam_png}")
    if args.json:
        from .._io import write_json

        d = report.to_dict()
        d["source"] = args.target
        write_json(args.json, d)
        print(f"\nwrote {args.json}")
    if args.export_timeloop:
        from ..eyeriss.timeloop import export

        paths = export(wl if args.batch is None else wl.with_batch(args.batch), args.export_timeloop)
        print(f"wrote {len(paths)} Timeloop problem files to {args.export_timeloop}")
    return 0
