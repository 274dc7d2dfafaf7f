"""``hwaware export-vectors``: bit-exact int16 test vectors of every Conv/Linear layer for RTL testbenches.

    hwaware export-vectors models/small_cnn.py --data builtin:shapes --out vectors/small_cnn
    hwaware export-vectors torchvision:resnet18 --input-size 3x64x64 --calibrate-bn --out vec/r18 --mode wide
    hwaware export-vectors models/alexnet.py --out vec/alexnet --rounding nearest --overflow saturate
"""

from __future__ import annotations

import argparse
from typing import Any

from .._io import check_output_path
from ..errors import HwawareError
from ._common import input_paths, load_target
from ._flags import (
    add_arithmetic_flags,
    add_force_flag,
    add_model_flags,
    add_quiet_flag,
    add_verb,
    examples,
)

HELP = "write bit-exact int16 test vectors (npz + $readmemh hex + manifest) of every Conv/Linear layer"


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "export-vectors", HELP, details="The arithmetic is the contract in docs/fixedpoint.md.",
                 epilog=examples(__doc__))
    p.add_argument("target", metavar="TARGET", help="model: path.py[:callable], torchvision:NAME or a saved .pt")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--data", metavar="REF",
                   help="calibrate on this data's train split and take the vectors' inputs from its test "
                        "split (builtin:shapes, cifar10:PATH, imagefolder:PATH); default: random normal data")
    p.add_argument("--input-size", metavar="SIZE",
                   help="input size CxHxW or NxCxHxW (N = images in the vectors); data is resized to it; "
                        "default: the model's INPUT_SIZE")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="images in the vectors (default 1)")
    p.add_argument("--samples", type=int, default=64, metavar="K",
                   help="calibration images that set the formats (default 64)")
    add_arithmetic_flags(p)
    p.add_argument("--calibrate-bn", action="store_true",
                   help="first re-estimate BatchNorm statistics on the calibration data (for random weights)")
    p.add_argument("--no-hex", action="store_true", help="write only the .npz files and the manifest")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of random data and fresh weights (default 0)")
    add_quiet_flag(p)
    add_model_flags(p)
    add_force_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..fixedpoint.convert import calibrate_batchnorm
    from ..fixedpoint.vectors import export_vectors
    from ..modelref import default_input_size
    from .profile import parse_input_size

    for flag, v in (("--batch", args.batch), ("--samples", args.samples)):
        if v < 1:
            raise HwawareError(f"{flag} must be a positive integer, got {v}")
    check_output_path(args.out, inputs=input_paths(args), directory=True, force=args.force)
    torch.manual_seed(args.seed)
    model = load_target(args)
    if args.input_size:
        size = parse_input_size(args.input_size)
        shape, batch = size[1:], args.batch
        if len(args.input_size.lower().replace("*", "x").split("x")) == 4:  # NxCxHxW names N
            if args.batch != 1 and size[0] != args.batch:
                raise HwawareError(f"--input-size {args.input_size} has N={size[0]} but --batch is "
                                   f"{args.batch}")
            batch = size[0]
    else:
        shape = tuple(default_input_size(args.target))
        batch = args.batch
    calib, inputs = _data(args, shape, batch)
    if args.calibrate_bn:
        calibrate_batchnorm(model, list(calib.split(16)))
    meta = {"target": args.target, "data": args.data or "random normal", "seed": args.seed}
    vs = export_vectors(model, args.out, inputs=inputs, calibration_data=calib, mode=args.mode,
                        rounding=args.rounding, overflow=args.overflow, samples=args.samples,
                        hex_files=not args.no_hex, meta=meta, progress=not args.quiet, force=args.force)
    _print(vs, args)
    return 0


def _data(args: argparse.Namespace, shape: tuple[int, ...], batch: int):
    import torch

    if args.data is None:
        gen = torch.Generator().manual_seed(args.seed)
        return torch.randn((args.samples, *shape), generator=gen), torch.randn((batch, *shape), generator=gen)
    from ..data import make_loader

    def take(split: str, n: int) -> torch.Tensor:
        got, have = [], 0
        for xb, _ in make_loader(args.data, split, batch_size=min(n, 64), shuffle=split == "train",
                                 seed=args.seed):
            got.append(xb)
            have += xb.shape[0]
            if have >= n:
                break
        x = torch.cat(got)[:n]
        if tuple(x.shape[1:]) != tuple(shape):
            if len(shape) != 3 or x.shape[1] != shape[0]:
                raise HwawareError(f"--data {args.data} gives inputs {tuple(x.shape[1:])}, the model takes "
                                   f"{tuple(shape)}; only the image size can be adapted")
            x = torch.nn.functional.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False)
        return x

    return take("train", args.samples), take("test", batch)


def _print(vs, args: argparse.Namespace) -> None:
    from ..report_table import format_table

    rows = [[lay.index, lay.name, lay.op, "x".join(map(str, lay.x_shape)), "x".join(map(str, lay.w_shape)),
             lay.f_x, lay.f_w, lay.f_y, lay.f_x + lay.f_w - lay.f_y, "yes" if lay.relu else "",
             lay.product_overflows, lay.output_overflows] for lay in vs.layers]
    print(f"{args.target}: mode={vs.mode} rounding={vs.rounding} overflow={vs.overflow}")
    print(format_table(["#", "layer", "op", "x", "w", "f_x", "f_w", "f_y", "shift", "relu", "prod.ovf",
                        "out.ovf"], rows, align="rll" + "r" * 9))
    print(f"\nwrote {len(vs.layers)} layers to {vs.out_dir} (manifest: {vs.manifest})")
