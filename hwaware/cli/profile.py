"""``hwaware profile``: per-layer shapes, MACs, weights and zero fractions of a network.

    hwaware profile models/alexnet.py                         # random input of the model's size
    hwaware profile torchvision:vgg16 --input-size 1x3x224x224 --json vgg16.json
    hwaware profile models/small_cnn.py --data builtin:shapes --batches 4 --batch-size 32
    hwaware profile vgg16.json                                # print a workload file's table
"""

from __future__ import annotations

import argparse
from typing import Any

from .._checks import check_input_size
from .._io import check_output_path
from ..errors import HwawareError
from ..report_table import format_pct, format_si, format_table
from ..workload import Workload
from ._common import input_paths, load_target
from ._flags import add_model_flags, add_verb, examples

HELP = "profile a model with forward hooks: per-layer shapes, MACs, weights, zero fractions"


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "profile", HELP, epilog=examples(__doc__))
    p.add_argument("target", metavar="TARGET",
                   help="model (path.py[:callable], torchvision:NAME, saved model .pt) or a "
                        "workload file (.yaml/.yml/.json)")
    p.add_argument("--input-size", metavar="SIZE",
                   help="input tensor size NxCxHxW (e.g. 1x3x224x224) or CxHxW (batch 1); "
                        "default: the model's INPUT_SIZE at batch 1")
    p.add_argument("--data", metavar="REF",
                   help="profile on real data (test split): builtin:shapes, cifar10:PATH, "
                        "imagefolder:PATH")
    p.add_argument("--batch-size", type=int, default=16, metavar="B",
                   help="batch size with --data (default 16)")
    p.add_argument("--batches", type=int, metavar="K",
                   help="number of batches to profile (default 1)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the random input and of a freshly built model's weights "
                        "(default 0)")
    p.add_argument("--json", metavar="PATH",
                   help="also write the workload as JSON (a workload file)")
    add_model_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..modelref import is_workload_file

    if args.batches is not None and args.batches < 1:
        raise HwawareError(f"--batches must be a positive integer, got {args.batches}")
    if args.batch_size < 1:
        raise HwawareError(f"--batch-size must be a positive integer, got {args.batch_size}")
    seen: dict[str, Any] = {}
    check_output_path(args.json, inputs=input_paths(args), flag="--json")
    if is_workload_file(args.target):
        given = [flag for flag, v in (("--input-size", args.input_size), ("--data", args.data),
                                      ("--batches", args.batches)) if v is not None]
        if given:
            raise HwawareError(f"{given[0]} applies to a model; '{args.target}' is a workload file")
        wl = Workload.load(args.target)
        title = f"workload file {args.target} (zero fractions as given in the file)"
    else:
        wl, title = workload_from_args(args, keep=seen)
    print(workload_table(wl, title=title))
    if seen:
        print(not_modeled_text(seen["model"], seen["example"], wl))
    if args.json:
        from .._io import write_json

        write_json(args.json, wl.to_dict())
        print(f"\nwrote {args.json}")
    return 0


def workload_from_args(args: argparse.Namespace, *, keep: dict[str, Any] | None = None) -> tuple[Workload, str]:
    """Profile the model named by the parsed ``profile``/``score`` arguments (random input or --data).
    ``keep``: receives the loaded ``model`` and one ``example`` input batch."""
    import torch

    from ..modelref import default_input_size
    from ..profiler import profile

    if args.data and args.input_size:
        raise HwawareError("give either --input-size (random input) or --data (real data), "
                           "not both")
    torch.manual_seed(args.seed)  # freshly initialized models give the same table every run
    model = load_target(args)
    k = args.batches or 1
    if args.data:
        from ..data import make_loader

        loader = make_loader(args.data, "test", batch_size=args.batch_size)
        wl = profile(model, loader, batches=k, source=args.target)
        if keep is not None:
            keep.update(model=model, example=next(iter(loader))[0])
        title = (f"{args.target} on {args.data} (test split, {k} batch{'es' if k > 1 else ''} of "
                 f"up to {args.batch_size}; zero fractions measured on this data)")
        return wl, title
    if args.input_size:
        size = parse_input_size(args.input_size)
    else:
        size = (1, *default_input_size(args.target))
    gen = torch.Generator().manual_seed(args.seed)
    batches = (torch.randn(size, generator=gen) for _ in range(k))
    size_text = "x".join(map(str, size))
    wl = profile(model, batches, batches=k, source=args.target)  # names the size if it does not fit
    if keep is not None:
        keep.update(model=model, example=torch.randn(size, generator=torch.Generator().manual_seed(args.seed)))
    title = (f"{args.target}, input {size_text} (random normal input: activation zero fractions "
             "come from random data, not real images; use --data for real ones)")
    return wl, title


def parse_input_size(text: str) -> tuple[int, ...]:
    """``'1x3x224x224' -> (1, 3, 224, 224)``; three sizes ``CxHxW`` get batch 1 prepended."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if not size or any(v <= 0 for v in size) or len(size) > 5:
        raise HwawareError(f"--input-size '{text}': expected positive sizes like 1x3x224x224 "
                           "(NxCxHxW) or 3x224x224 (batch 1)")
    size = (1, *size) if len(size) == 3 else size
    return check_input_size(size, f"--input-size {text}")


def workload_table(wl: Workload, *, title: str = "") -> str:
    """The per-layer table, totals, and the unmodeled ops with their share of all MACs."""
    headers = ["name", "kind", "N", "M", "C", "H", "W", "R", "S", "E", "F", "U", "pad", "groups",
               "MACs", "weights", "ifmap 0s", "weight 0s", "ofmap 0s", "written 0s", "written RLC"]
    rows: list[list[Any] | None] = []
    for layer in wl.layers:
        rows.append([
            layer.name, layer.kind, layer.N, layer.M, layer.C, layer.H, layer.W, layer.R, layer.S,
            layer.E, layer.F, _pair(layer.U, layer.U_h), _pair(layer.padding, layer.padding_w),
            layer.groups, format_si(layer.macs), format_si(layer.weights),
            format_pct(layer.ifmap_zeros), format_pct(layer.weight_zeros),
            format_pct(layer.ofmap_zeros),
            # the ofmap after its ReLU, before pooling (what an accelerator with a ReLU unit writes)
            "-" if layer.ofmap_relu_zeros is None else format_pct(layer.ofmap_relu_zeros),
            f"{layer.ofmap_rlc:.3f}" if layer.ofmap_rlc > 0 else "-",
        ])
    rows.append(None)
    rows.append([f"total ({len(wl.layers)} layers)", *[""] * 13, format_si(wl.macs),
                 format_si(wl.weights), "", "", "", "", ""])
    lines = [title] if title else []
    lines.append(format_table(headers, rows, align="ll" + "r" * (len(headers) - 2)))
    lines.append("")
    if wl.unmodeled:
        total = wl.macs + wl.unmodeled_macs
        lines.append(f"unmodeled ops (carry MACs but are not scored): "
                     f"{format_si(wl.unmodeled_macs)} MACs, {format_pct(wl.unmodeled_share())} "
                     f"of all {format_si(total)} MACs")
        urows = [[u.op, u.name, format_si(u.macs), format_pct(u.macs / total if total else 0.0)]
                 for u in wl.unmodeled]
        lines.append(format_table(["op", "in module", "MACs", "share"], urows, align="llrr"))
    else:
        lines.append("unmodeled ops: none (every MAC is in a profiled Conv/Linear layer)")
    return "\n".join(lines)


# Element-wise functions (outside any module) that carry no MACs: counted as "not modeled".
_ELEMENTWISE = ("add", "add_", "__add__", "__iadd__", "__radd__", "mul", "mul_", "__mul__", "__imul__",
                "cat", "relu", "relu_", "sigmoid", "hardswish", "gelu", "silu", "softmax", "flatten")
_LAYOUT = {"flatten", "cat"}  # data layout only: no arithmetic


def not_modeled_ops(model: Any, example: Any) -> dict[str, tuple[int, int]]:
    """``{kind: (calls, output values)}`` of the operations the workload leaves out because they
    carry no multiply-accumulates: leaf modules other than Conv/Linear (BatchNorm, ReLU, pooling,
    ...) and element-wise tensor functions called outside modules (residual adds, ...). One forward
    pass under ``torch.no_grad()`` with hooks removed afterwards; the model is not modified."""
    from collections import defaultdict

    import torch
    from torch.overrides import TorchFunctionMode

    from ..profiler import COUNTED

    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    depth = [0]

    def pre(mod: Any, _args: Any) -> None:
        depth[0] += 1

    def post(mod: Any, _args: Any, out: Any) -> None:
        depth[0] -= 1
        if not isinstance(mod, COUNTED) and not list(mod.children()):
            name = type(mod).__name__
            if name in ("Identity", "Flatten", "Dropout", "Dropout2d"):
                return
            rec = found[name]
            rec[0] += 1
            rec[1] += out.numel() if isinstance(out, torch.Tensor) else 0

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            name = getattr(func, "__name__", "")
            if depth[0] == 0 and name in _ELEMENTWISE and name not in _LAYOUT and isinstance(out, torch.Tensor):
                rec = found[name.strip("_").rstrip("_")]
                rec[0] += 1
                rec[1] += out.numel()
            return out

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [h for m in leaves for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), Mode():
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {k: (v[0], v[1]) for k, v in found.items()}


def not_modeled_text(model: Any, example: Any, wl: Workload) -> str:
    """What the workload leaves out (no MACs) and why it matters little, with the numbers."""
    ops = not_modeled_ops(model, example)
    if not ops:
        return "not modeled: nothing (every operation of the model is a profiled Conv/Linear layer)"
    values = sum(v for _, v in ops.values())
    listed = ", ".join(f"{k} x{n}" for k, (n, _) in sorted(ops.items(), key=lambda kv: -kv[1][1]))
    macs = wl.macs + wl.unmodeled_macs
    share = values / macs if macs else 0.0
    return (f"not modeled (no MACs, not scored): {listed}; {format_si(values)} element operations in all, "
            f"{format_pct(share, 2)} of the {format_si(macs)} MACs.\n"
            "Why it matters little: each is one cheap operation per activation (BatchNorm folds into the "
            "preceding conv's weights and bias at inference; ReLU and pooling are applied as a conv's "
            "output is written back), against hundreds of MACs per activation in a conv. Not counted: the "
            "extra buffer/DRAM traffic when such an op is not fused into its conv (its activations read and "
            "written once more), which can matter for networks with many element-wise layers.")


def _pair(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}x{b}"
