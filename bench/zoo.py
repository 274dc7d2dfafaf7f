"""Real networks end to end: timm and torchvision models through profile, score, surgery, fixed point.

Per model (random weights, nothing downloaded; inputs are builtin:shapes images at their native
32x32; BatchNorm statistics re-estimated on 64 training images so activations have realistic
ranges):

- profile: modeled + unmodeled MACs equal an independent count (forward hooks on Conv/Linear:
  output elements x input channels per group x kernel size);
- unscored: the share of MACs the Eyeriss model does not score;
- groups: prunable channel groups found by hwaware's ChannelGraph vs Torch-Pruning's
  DependencyGraph (groups rooted at a Conv/Linear, the classifier ignored);
- exact: every prunable group shrunk at once (random units kept, seeded) gives the output of the
  original whose removed channels are zeroed, in float64 (max |difference| <= 1e-9 x max |output|);
  groups whose kept channels change by design (LayerNorm over channels) are checked to run only;
- fixed point: ``convert(mode="wide")`` calibrated on 64 training images, and top-1 agreement
  with the float model on 256 validation images (the "Done when" asks >= 99%). Random-weight
  networks have near-tied logits: the table also gives the median |logit error| of the integer
  model and the largest float top-1 margin among the disagreeing images. A disagreement whose
  margin is below the logit error is a tie the float model itself breaks by noise (a 2**-13 input
  perturbation alone flips some of them). "float+noise agreement" is the float model against
  itself with uniform noise of +-1/2 code of each Conv/Linear output's fixed-point format added
  to that output: the rounding noise of the formats alone, no integer backend. Where it is as low
  as the fixed-point agreement, the network (random weights amplify small perturbations layer
  after layer) and not the backend sets the agreement; ``--train-steps N`` trains each model
  briefly on builtin:shapes first (AdamW, batch 32);
- seconds for all of the above.

    python bench/zoo.py                      # the whole zoo
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
from tqdm import tqdm

from hwaware.compress.channel_graph import ChannelGraph
from hwaware.eyeriss.score import score
from hwaware.fixedpoint.convert import calibrate_batchnorm, convert
from hwaware.profiler import profile

#: model -> input side (square): builtin:shapes' 32x32, so the zoo runs on 2 cores
ZOO: dict[str, int] = {
    "timm:resnet18": 32, "timm:resnet50d": 32, "timm:mobilenetv2_100": 32,
    "timm:mobilenetv3_large_100": 32, "timm:efficientnet_b0": 32, "timm:regnety_002": 32,
    "timm:densenet121": 32, "timm:convnext_atto": 32, "timm:ghostnet_100": 32, "timm:mixnet_s": 32,
    "timm:tf_efficientnetv2_b0": 32,
    "tv:mobilenet_v2": 32, "tv:efficientnet_b0": 32, "tv:googlenet": 32,
    "tv:shufflenet_v2_x1_0": 32, "tv:resnet50": 32,
}
CALIB, HELD_OUT = 64, 256
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
    logit_error: float | None = None  # median over images of max |float - fixed-point logit|
    disagree_margin: float | None = None  # largest float top-1 margin among disagreeing images
    noise_agreement: float | None = None  # float vs float with +-1/2-code noise per Conv/Linear output


def shapes_images(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, their labels, validation images) of builtin:shapes at ``size``."""
    from hwaware.data import load_dataset

    ref = f"builtin:shapes?n_train=512&n_val={HELD_OUT}&n_test=16"
    tr, va = load_dataset(ref, "train"), load_dataset(ref, "val")
    xt, xv = tr.images, va.images
    if size != xt.shape[-1]:
        xt = nn.functional.interpolate(xt, size=size, mode="bilinear", align_corners=False)
        xv = nn.functional.interpolate(xv, size=size, mode="bilinear", align_corners=False)
    return xt, tr.labels, xv


def train_briefly(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """``steps`` AdamW steps (lr 1e-3, batch 32) on the images, so the logits depend on them."""
    if steps <= 0:
        return
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    for _ in range(steps):
        i = torch.randint(0, len(x), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def noisy_float(model: nn.Module, fixed: nn.Module, x: torch.Tensor, *, seed: int = 1) -> torch.Tensor:
    """The float model with uniform noise of +-1/2 code of each Conv/Linear output's fixed-point
    format added to that output: the rounding noise of 16-bit formats alone, with no backend."""
    f_y = {lr.name: lr.f_y for lr in fixed.report.layers}
    g = torch.Generator().manual_seed(seed)

    def hook(_m, _inp, out, f):
        return out + (torch.rand(out.shape, generator=g) - 0.5) * 2.0 ** -f

    hs = [m.register_forward_hook(lambda m_, i_, o_, f=f_y[n]: hook(m_, i_, o_, f))
          for n, m in model.named_modules() if n in f_y and isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in hs:
            h.remove()


def fixed_point_agreement(model: nn.Module, calib: torch.Tensor, held: torch.Tensor):
    """(agreement, median max |logit error|, largest float margin among disagreements, agreement
    of the float model with itself under +-1/2-code noise at every Conv/Linear output)."""
    fixed = convert(model, calib, mode="wide", samples=len(calib))
    with torch.no_grad():
        yf = torch.cat([model(held[i:i + 64]) for i in range(0, len(held), 64)])
        yq = torch.cat([fixed(held[i:i + 64]) for i in range(0, len(held), 64)])
    yn = torch.cat([noisy_float(model, fixed, held[i:i + 64], seed=i + 1) for i in range(0, len(held), 64)])
    top2 = yf.topk(2, 1).values
    margin = top2[:, 0] - top2[:, 1]
    bad = yf.argmax(1) != yq.argmax(1)
    agree = 1.0 - float(bad.float().mean())
    err = float((yf - yq).abs().max(1).values.median())
    noise_agree = float((yf.argmax(1) == yn.argmax(1)).float().mean())
    return agree, err, (float(margin[bad].max()) if bad.any() else None), noise_agree


def run_one(spec: str, size: int, *, fixedpoint: bool, train_steps: int = 0) -> Row:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = build(spec).eval()
    xt, yt, held = shapes_images(size)
    x = xt[:2]
    train_briefly(model, xt, yt, train_steps)
    calib = xt[:CALIB]
    calibrate_batchnorm(model, [calib[i:i + 16] for i in range(0, CALIB, 16)])
    wl = profile(model, x, progress=False)
    profile_ok = wl.macs + wl.unmodeled_macs == independent_macs(model, x)
    unscored = score(wl).unscored_share()
    graph, sc = check_shrink(model, x)
    tp_n = torch_pruning_groups(copy.deepcopy(model), x)
    conv_ok, agree, err, lerr, dmargin, nagree = None, None, "", None, None, None
    if fixedpoint:
        try:
            agree, lerr, dmargin, nagree = fixed_point_agreement(model, calib, held)
            conv_ok = True
        except Exception as exc:  # noqa: BLE001 -- reported in the table
            conv_ok, err = False, str(exc).splitlines()[0][:160]
    return Row(spec, profile_ok, unscored, sc.prunable, tp_n, sc.exact, sc.caveat, sc.max_rel_error,
               sc.ok, conv_ok, agree, err, time.perf_counter() - t0, lerr, dmargin, nagree)


def _mark(v: bool | None) -> str:
    return "-" if v is None else ("✓" if v else "✗")


def table(rows: list[Row]) -> str:
    head = ("| model | profile | unscored MACs | groups (hwaware / Torch-Pruning) | shrink exact "
            "| fixed point | wide top-1 agreement | median logit err | max margin of a disagreement "
            "| float+noise agreement | s |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        groups = f"{r.groups} / {r.torch_pruning}" + (f" ({r.caveat} LayerNorm caveat)" if r.caveat else "")
        exact = f"{_mark(r.shrink_ok)} ({r.exact} groups, rel. err {r.shrink_rel_error:.1e})"
        fp = _mark(r.convert_ok) + (f" {r.convert_error}" if r.convert_error else "")
        agree = "-" if r.agreement is None else f"{100 * r.agreement:.1f}%"
        lerr = "-" if r.logit_error is None else f"{r.logit_error:.3g}"
        dm = "-" if r.disagree_margin is None else f"{r.disagree_margin:.3g}"
        na = "-" if r.noise_agreement is None else f"{100 * r.noise_agreement:.1f}%"
        lines.append(f"| {r.model} | {_mark(r.profile_ok)} | {100 * r.unscored_share:.1f}% | {groups} "
                     f"| {exact} | {fp} | {agree} | {lerr} | {dm} | {na} | {r.seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated timm:NAME / tv:NAME (default: the zoo)")
    ap.add_argument("--size", type=int, help="input side for every model (default: per model, 64)")
    ap.add_argument("--skip-fixedpoint", action="store_true")
    ap.add_argument("--train-steps", type=int, default=0,
                    help="AdamW steps on builtin:shapes before measuring (default 0: random weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    specs = args.models.split(",") if args.models else list(ZOO)
    rows = []
    bar = tqdm(specs, desc="zoo", unit="model")
    for spec in bar:
        bar.set_postfix_str(spec)
        row = run_one(spec, args.size or ZOO.get(spec, 32), fixedpoint=not args.skip_fixedpoint,
                      train_steps=args.train_steps)
        rows.append(row)
        bar.write(table([row]).splitlines()[-1])
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
