"""``hwaware quantize``: per-layer bit widths stepped down from uniform 8 bits (``--start``), layers
ordered by energy saved per accuracy lost, with quantization-aware fine-tuning of each trial
(``--finetune-steps``; 0 for post-training) in clipped narrow formats.

    hwaware quantize models/small_cnn.py --data builtin:shapes --max-drop 1.0 --out quant.json
    hwaware quantize runs/trained.pt --data cifar10:data/cifar --widths 8,6,4 --out q.json --mode wide
"""

from __future__ import annotations

import argparse
from typing import Any

from .._io import check_output_path
from ..errors import HwawareError
from ._common import input_paths, load_target
from ._flags import (
    HARDWARE_METAVAR,
    add_arithmetic_flags,
    add_dataflow_flag,
    add_model_flags,
    add_quiet_flag,
    add_verb,
    examples,
    fold_dataflow,
)

HELP = "energy-aware quantization: narrowest per-layer widths (from 8 bits down) within an accuracy drop"


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "quantize", HELP, epilog=examples(__doc__),
                 details="Accuracy is measured with the integer backend on the validation split; energy with "
                         "the Eyeriss model.")
    p.add_argument("target", metavar="TARGET", help="model: path.py[:callable], torchvision:NAME or a saved .pt")
    p.add_argument("--data", required=True, metavar="REF",
                   help="calibration from its train split, accuracy on its val split")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                   help="allowed top-1 drop below the float model, in percentage points (default 1.0)")
    p.add_argument("--out", required=True, metavar="PATH", help="write the result as JSON here")
    p.add_argument("--widths", default="12,10,8,6,4", metavar="LIST",
                   help="candidate widths below 16, comma-separated (default 12,10,8,6,4)")
    p.add_argument("--start", type=int, default=8, metavar="BITS",
                   help="uniform width the search starts from and steps layers down from (default 8; 16 when 8 "
                        "bits already loses more than --max-drop)")
    p.add_argument("--samples", type=int, default=256, metavar="K", help="calibration images (default 256)")
    p.add_argument("--val-samples", type=int, default=1000, metavar="K",
                   help="validation images per accuracy measurement (default 1000)")
    add_arithmetic_flags(p)
    p.add_argument("--hardware", default="eyeriss_v1", metavar=HARDWARE_METAVAR, help="hardware preset or file (default eyeriss_v1)")
    add_dataflow_flag(p)
    p.add_argument("--finetune-steps", type=int, default=8, metavar="N",
                   help="quantization-aware fine-tuning steps (batch 64, train split) per trial; 0: post-training "
                        "search (default 8: a modest budget; more steps reach narrower widths)")
    p.add_argument("--separate-widths", action="store_true",
                   help="step each layer's weights and input activations apart (JSON act_bits: the inputs' widths "
                        "where they differ from bits)")
    p.add_argument("--signed-inputs", action="store_true",
                   help="keep ReLU'd inputs in signed codes (default with fine-tuning: unsigned codes 0..2**a-1, "
                        "JSON unsigned_inputs)")
    p.add_argument("--descent-steps", type=int, default=None, metavar="N",
                   help="fine-tuning steps of each all-layers trial (default: --finetune-steps)")
    p.add_argument("--descent-to", type=int, default=None, metavar="BITS",
                   help="narrowest width of the all-layers descent, then per-layer steps (default: the narrowest of "
                        "--widths)")
    p.add_argument("--final-steps", type=int, default=0, metavar="N",
                   help="fine-tuning steps of the chosen widths after the search (default 0)")
    p.add_argument("--finetune-lr", type=float, default=0.001, metavar="LR",
                   help="SGD learning rate of the fine-tuning (default 0.001; BN is folded, so 0.01 wrecks a trained net)")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="energies are scored per batch of N images (default 1, as in recipes and summary.md)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of fresh weights and sampling (default 0)")
    add_quiet_flag(p)
    add_model_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from .._io import write_json
    from ..data import make_loader
    from ..fixedpoint.quantize import quantize

    try:
        widths = [int(w) for w in args.widths.split(",") if w.strip()]
    except ValueError:
        raise HwawareError(f"--widths '{args.widths}': expected comma-separated integers like 12,10,8,6,4") from None
    for flag, v in (("--samples", args.samples), ("--val-samples", args.val_samples)):
        if v < 1:
            raise HwawareError(f"{flag} must be a positive integer, got {v}")
    if args.finetune_steps < 0:
        raise HwawareError(f"--finetune-steps must be >= 0, got {args.finetune_steps}")
    for flag, v in (("--descent-steps", args.descent_steps), ("--final-steps", args.final_steps)):
        if v is not None and v < 0:
            raise HwawareError(f"{flag} must be >= 0, got {v}")
    if not args.finetune_lr > 0:
        raise HwawareError(f"--finetune-lr must be > 0, got {args.finetune_lr}")
    hardware = fold_dataflow({"hardware": args.hardware}, args)["hardware"]
    check_output_path(args.out, inputs=input_paths(args))
    torch.manual_seed(args.seed)
    model = load_target(args, labelled_data=args.data)
    calib = make_loader(args.data, "train", batch_size=64, limit=args.samples, seed=args.seed)
    val = make_loader(args.data, "val", batch_size=250, limit=args.val_samples, seed=args.seed)
    train = make_loader(args.data, "train", batch_size=64, shuffle=True, seed=args.seed) if args.finetune_steps else None
    res = quantize(model, calibration_data=calib, val_data=val, max_drop=args.max_drop, widths=widths,
                   mode=args.mode, rounding=args.rounding, overflow=args.overflow, hardware=hardware,
                   samples=args.samples, train_data=train, finetune_steps=args.finetune_steps,
                   finetune_lr=args.finetune_lr, batch=args.batch, start=args.start, separate=args.separate_widths,
                   descent_steps=args.descent_steps, final_steps=args.final_steps, descent_to=args.descent_to,
                   unsigned_inputs=not args.signed_inputs, progress=not args.quiet)
    write_json(args.out, {"target": args.target, "data": args.data, **res.to_dict()})
    print(f"{args.target} on {args.data}")
    print(res.table())
    print(f"\nwrote {args.out}")
    return 0
