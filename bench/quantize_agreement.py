"""Top-1 agreement of the integer backend with float on trained networks (issue 17, item 2).

Networks: ``trained_shapes_model`` names (default: the trained small CNN, cached after the first
run; ``--models small_cnn,resnet18`` adds the builtin:shapes ResNet-18, ~8 min of training on 2 idle
cores the first time). For each arithmetic (the chip's default
eyeriss/floor/wrap, eyeriss/nearest, wide/floor), each format choice and each of several disjoint
sets of calibration images, the table gives the agreement on the validation images and the
number of disagreements whose float top-1 margin exceeds the median |logit error| of the integer
model (errors, not ties the float model breaks by a hair). Format choices: one bit of headroom (the old rule),
half a bit (the default), ``headroom_bits="auto"`` (each tensor's margin from a tail fit of its
per-image maxima, :mod:`hwaware.fixedpoint.ranges`), half a bit with cross-layer range
equalization, and half a bit with each Conv/Linear's output format searched by the network output's
error (``search_formats=True``, :mod:`hwaware.fixedpoint.format_search`). ``--threads`` repeats every conversion at each thread count: the integer outputs
must be bit-identical (the table says so). Target: >= 0.99 in eyeriss/floor/wrap.

    python bench/quantize_agreement.py                        # 1000 val, 3 x 256 calibration
    python bench/quantize_agreement.py --ariths chip --calib-sets 2 --threads 1,2
"""

from __future__ import annotations

import argparse

import torch

from hwaware.data import first_images, make_loader
from hwaware.fixedpoint.convert import convert
from hwaware.report_table import format_table
from hwaware.train import trained_shapes_model

ARITHS = (("eyeriss", "floor"), ("eyeriss", "nearest"), ("wide", "floor"))
CHOICES = {"1bit": ("1 bit, plain", {"headroom_bits": 1}),
           "0.5bit": ("0.5 bit (default)", {"headroom_bits": 0.5}),
           "auto": ("auto (tail fit)", {"headroom_bits": "auto"}),
           "equalize": ("0.5 bit + equalize", {"headroom_bits": 0.5, "equalize": True}),
           "search": ("0.5 bit + output-format search", {"headroom_bits": 0.5, "search_formats": True})}


def images(split: str, n: int) -> torch.Tensor:
    """The first n builtin:shapes images of a split, as the slow tests take them."""
    return first_images(make_loader("builtin:shapes", split, batch_size=256, shuffle=False), n)


def logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(xb) for xb in x.split(250)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="small_cnn", help="trained_shapes_model names")
    ap.add_argument("--val", type=int, default=1000, help="validation images (default 1000)")
    ap.add_argument("--calib", type=int, default=256, help="calibration images per set (default 256)")
    ap.add_argument("--calib-sets", type=int, default=3, help="disjoint calibration sets (default 3)")
    ap.add_argument("--choices", default=",".join(CHOICES), help=f"format choices ({', '.join(CHOICES)})")
    ap.add_argument("--ariths", default="all", help="'all' or 'chip' (eyeriss/floor only)")
    ap.add_argument("--threads", default="", help="thread counts to convert and run at, e.g. 1,2")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]
    ariths = ARITHS if args.ariths == "all" else ARITHS[:1]
    val = images("val", args.val)
    train = images("train", args.calib * args.calib_sets)
    sets = [train[i * args.calib:(i + 1) * args.calib] for i in range(args.calib_sets)]
    rows = []
    for name in args.models.split(","):
        model = trained_shapes_model(name, progress=True)
        yf = logits(model, val)
        for mode, rounding in ariths:
            for key in args.choices.split(","):
                label, kw = CHOICES[key]
                agree, real, same = [], 0, True
                for cal in sets:
                    outs = []
                    for t in threads:
                        torch.set_num_threads(t)
                        outs.append(logits(convert(model, cal, mode=mode, rounding=rounding, **kw), val))
                    same &= all(torch.equal(outs[0], o) for o in outs[1:])
                    yq = outs[0]
                    bad = yf.argmax(1) != yq.argmax(1)
                    agree.append(1.0 - float(bad.float().mean()))
                    top2 = yf.topk(2, 1).values
                    err = float((yf - yq).abs().max(1).values.median())
                    real += int(((top2[:, 0] - top2[:, 1]) > err)[bad].sum())
                rows.append([name, f"{mode}/{rounding}/wrap", label, " / ".join(f"{a:.3f}" for a in agree),
                             str(real), "yes" if same else "NO", "yes" if min(agree) >= 0.99 else "NO"])
                print(rows[-1], flush=True)
    print(format_table(["model", "arithmetic", "formats", "top-1 agreement per calibration set",
                        "disagreements beyond a tie", f"same at threads {args.threads or threads[0]}",
                        ">= 0.99"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
