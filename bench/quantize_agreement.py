"""Top-1 agreement of the integer backend with float on the trained small CNN (issue 17, item 2).

For each arithmetic (the chip's default eyeriss/floor/wrap, eyeriss/nearest, wide/floor) and each of
three disjoint sets of calibration images, the table compares the old format choice (one bit of
headroom) with the current default (half a bit) and with half a bit plus BN folding and cross-layer
range equalization (``equalize=True``, :mod:`hwaware.fixedpoint.equalize`). Target: >= 0.99.

    python bench/quantize_agreement.py               # 1000 val images, 3 x 256 calibration images
    python bench/quantize_agreement.py --val 500 --calib-sets 1
"""

from __future__ import annotations

import argparse

import torch

from hwaware.data import make_loader
from hwaware.fixedpoint.convert import convert, top1_agreement
from hwaware.report_table import format_table
from hwaware.train import trained_small_cnn

ARITHS = (("eyeriss", "floor"), ("eyeriss", "nearest"), ("wide", "floor"))
CHOICES = (("1 bit, plain", {"headroom_bits": 1, "equalize": False}),
           ("0.5 bit (default)", {"headroom_bits": 0.5, "equalize": False}),
           ("0.5 bit + equalize", {"headroom_bits": 0.5, "equalize": True}))


def images(split: str, n: int) -> torch.Tensor:
    got, seen = [], 0  # the first n images, as the slow test takes them
    for xb, _ in make_loader("builtin:shapes", split, batch_size=256, shuffle=False):
        got.append(xb)
        seen += len(xb)
        if seen >= n:
            break
    return torch.cat(got)[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--val", type=int, default=1000, help="validation images (default 1000)")
    ap.add_argument("--calib", type=int, default=256, help="calibration images per set (default 256)")
    ap.add_argument("--calib-sets", type=int, default=3, help="disjoint calibration sets (default 3)")
    args = ap.parse_args(argv)
    model = trained_small_cnn(progress=True)
    val = images("val", args.val)
    train = images("train", args.calib * args.calib_sets)
    sets = [train[i * args.calib:(i + 1) * args.calib] for i in range(args.calib_sets)]
    rows = []
    for mode, rounding in ARITHS:
        for label, kw in CHOICES:
            agree = [top1_agreement(model, convert(model, cal, mode=mode, rounding=rounding, **kw), val.split(250))
                     for cal in sets]
            rows.append([f"{mode}/{rounding}/wrap", label, " / ".join(f"{a:.3f}" for a in agree),
                         "yes" if min(agree) >= 0.99 else "NO"])
    print(format_table(["arithmetic", "formats", "top-1 agreement per calibration set", ">= 0.99"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
