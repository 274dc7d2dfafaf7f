"""Real networks end to end: timm and torchvision models through profile, score, surgery, fixed point.

Per model (random weights, nothing downloaded; BatchNorm statistics re-estimated on the bench
inputs so activations have realistic ranges):

- profile: modeled + unmodeled MACs equal an independent count (forward hooks on Conv/Linear:
  output elements x input channels per group x kernel size);
- unscored: the share of MACs the Eyeriss model does not score;
- groups: prunable channel groups found by hwaware's ChannelGraph vs Torch-Pruning's
  DependencyGraph (groups rooted at a Conv/Linear, the classifier ignored);
- exact: every prunable group shrunk at once (random units kept, seeded) gives the output of the
  original whose removed channels are zeroed, in float64 (max |difference| <= 1e-9 x max |output|);
  groups whose kept channels change by design (LayerNorm over channels) are checked to run only;
- fixed point: ``convert(mode="wide")`` and top-1 agreement with the float model on held-out
  inputs (the "Done when" asks >= 99%);
- seconds for all of the above.

    python bench/zoo.py                      # the whole zoo (about 10 minutes on 2 loaded cores)
    python bench/zoo.py --models timm:resnet18,tv:mobilenet_v2
    python bench/zoo.py --skip-fixedpoint --json zoo.json
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from hwaware.compress.channel_graph import ChannelGraph
from hwaware.eyeriss.score import score
from hwaware.fixedpoint.convert import calibrate_batchnorm, convert, top1_agreement
from hwaware.profiler import profile

#: model -> input side (square); small so the zoo runs on 2 cores
ZOO: dict[str, int] = {
    "timm:resnet18": 64, "timm:resnet50d": 64, "timm:mobilenetv2_100": 64,
    "timm:mobilenetv3_large_100": 64, "timm:efficientnet_b0": 64, "timm:regnety_002": 64,
    "timm:densenet121": 64, "timm:convnext_atto": 64, "timm:ghostnet_100": 64, "timm:mixnet_s": 64,
    "timm:tf_efficientnetv2_b0": 64,
    "tv:mobilenet_v2": 64, "tv:efficientnet_b0": 64, "tv:googlenet": 64,
    "tv:shufflenet_v2_x1_0": 64, "tv:resnet50": 64,
}
NUM_CLASSES = 10


def build(spec: str) -> nn.Module:
    """A model from ``timm:NAME`` or ``tv:NAME`` (random weights, 10 classes)."""
    src, name = spec.split(":", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if src == "timm":
            import timm

            return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES)
        import torchvision

        kw = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
        return torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES, **kw)


def independent_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of every Conv/Linear call: output elements x (input channels / groups) x kernel size."""
    total = 0

    def hook(m: nn.Module, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.modules.conv._ConvNd):
            k = 1
            for s in m.kernel_size:
                k *= s
            total += out.numel() * (m.in_channels // m.groups) * k
        else:
            total += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hs:
            h.remove()
    return total


def torch_pruning_groups(model: nn.Module, x: torch.Tensor) -> int | str:
    """Torch-Pruning's group count (Conv/Linear roots, classifier ignored); 'error' if it fails."""
    try:
        import torch_pruning as tp
    except ImportError:
        return "n/a"
    head = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == NUM_CLASSES]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
            return len(list(dg.get_all_groups(ignored_layers=head, root_module_types=[nn.Conv2d, nn.Linear])))
    except Exception as exc:  # noqa: BLE001 -- a third-party crash is a result here
        return f"error ({type(exc).__name__})"


def zero_preserving(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random BatchNorm statistics with beta = running_mean = 0, so BN(0) == 0 (masked reference)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.running_var = torch.rand(n, generator=g) + 0.5
            m.bias.data.zero_()
            m.running_mean = torch.zeros(n)
    return model.eval()


def masked_output(model: nn.Module, graph: ChannelGraph, keep: dict[str, list[int]], x: torch.Tensor):
    """The original model with the removed output channels zeroed as they are produced (hooks)."""
    removed: dict[str, set[int]] = {}
    for grp in graph.groups:
        for u, unit in enumerate(grp.units):
            if grp.name in keep and u not in keep[grp.name]:
                for name, ch in unit:
                    removed.setdefault(name, set()).add(ch)
    mods = dict(model.named_modules())
    hs = []
    for name, chans in removed.items():
        idx = torch.tensor(sorted(chans))
        last = isinstance(mods[name], nn.Linear)  # Linear: channels are the last dim

        def hook(_m, _inp, out, idx=idx, last=last):
            out = out.clone()
            if last:
                out[..., idx] = 0
            else:
                out[:, idx] = 0
            return out

        hs.append(mods[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in hs:
            h.remove()


@dataclass
class ShrinkCheck:
    groups: int
    prunable: int
    exact: int  # prunable groups without caveats, checked against the masked original
    caveat: int  # prunable groups whose kept outputs change by design (run-checked only)
    max_rel_error: float
    ok: bool


def check_shrink(model: nn.Module, x: torch.Tensor, *, seed: int = 0) -> tuple[ChannelGraph, ShrinkCheck]:
    """Shrink every prunable group at once and compare with the masked original in float64."""
    m64 = zero_preserving(copy.deepcopy(model)).double()
    x64 = x.double()
    graph = ChannelGraph(m64, x64)
    rng = random.Random(seed)
    exact = [g for g in graph.prunable_groups() if not g.caveats]
    caveat = [g for g in graph.prunable_groups() if g.caveats]
    keep = graph.kept_units({g.name: sorted(rng.sample(range(g.size), rng.randint(1, g.size))) for g in exact})
    small = graph.shrink(keep).eval()
    with torch.no_grad():
        got = small(x64)
    want = masked_output(m64, graph, keep, x64)
    rel = float((got - want).abs().max() / want.abs().max().clamp_min(1e-300))
    if caveat:  # runs and keeps the output shape (checked inside shrink)
        graph.shrink({g.name: list(range(max(1, g.size // 2))) for g in caveat})
    return graph, ShrinkCheck(len(graph.groups), len(exact) + len(caveat), len(exact), len(caveat),
                              rel, rel <= 1e-9)


@dataclass
class Row:
    model: str
    profile_ok: bool
    unscored_share: float
    groups: int
    torch_pruning: int | str
    exact: int
    caveat: int
    shrink_rel_error: float
    shrink_ok: bool
    convert_ok: bool | None
    agreement: float | None
    convert_error: str
    seconds: float


def run_one(spec: str, size: int, *, fixedpoint: bool, samples: int = 64) -> Row:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = build(spec).eval()
    x = torch.randn(2, 3, size, size)
    calib = torch.randn(samples, 3, size, size)
    calibrate_batchnorm(model, [calib[i:i + 16] for i in range(0, samples, 16)])
    wl = profile(model, x, progress=False)
    profile_ok = wl.macs + wl.unmodeled_macs == independent_macs(model, x)
    unscored = score(wl).unscored_share()
    graph, sc = check_shrink(model, x)
    tp_n = torch_pruning_groups(copy.deepcopy(model), x)
    conv_ok, agree, err = None, None, ""
    if fixedpoint:
        try:
            fixed = convert(model, calib, mode="wide", samples=samples)
            held = torch.randn(samples, 3, size, size, generator=torch.Generator().manual_seed(7))
            agree = top1_agreement(model, fixed, [held[i:i + 16] for i in range(0, samples, 16)])
            conv_ok = True
        except Exception as exc:  # noqa: BLE001 -- reported in the table
            conv_ok, err = False, str(exc).splitlines()[0][:160]
    return Row(spec, profile_ok, unscored, sc.prunable, tp_n, sc.exact, sc.caveat, sc.max_rel_error,
               sc.ok, conv_ok, agree, err, time.perf_counter() - t0)


def _mark(v: bool | None) -> str:
    return "-" if v is None else ("✓" if v else "✗")


def table(rows: list[Row]) -> str:
    head = ("| model | profile | unscored MACs | groups (hwaware / Torch-Pruning) | shrink exact "
            "| fixed point | wide top-1 agreement | s |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        groups = f"{r.groups} / {r.torch_pruning}" + (f" ({r.caveat} LayerNorm caveat)" if r.caveat else "")
        exact = f"{_mark(r.shrink_ok)} ({r.exact} groups, rel. err {r.shrink_rel_error:.1e})"
        fp = _mark(r.convert_ok) + (f" {r.convert_error}" if r.convert_error else "")
        agree = "-" if r.agreement is None else f"{100 * r.agreement:.1f}%"
        lines.append(f"| {r.model} | {_mark(r.profile_ok)} | {100 * r.unscored_share:.1f}% | {groups} "
                     f"| {exact} | {fp} | {agree} | {r.seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated timm:NAME / tv:NAME (default: the zoo)")
    ap.add_argument("--size", type=int, help="input side for every model (default: per model, 64)")
    ap.add_argument("--skip-fixedpoint", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    specs = args.models.split(",") if args.models else list(ZOO)
    rows = []
    for spec in specs:
        row = run_one(spec, args.size or ZOO.get(spec, 64), fixedpoint=not args.skip_fixedpoint)
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
