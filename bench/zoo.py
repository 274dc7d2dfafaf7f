"""Real networks end to end: timm and torchvision models through profile, score, surgery, fixed point.

Per model (nothing downloaded; inputs are builtin:shapes images at their native 32x32). Images are
used apart: ``--train-steps N`` trains on the training split (default 0: random weights, see
below); BatchNorm statistics are re-estimated on training images [256, 512); fixed-point formats
are calibrated on training images [0, 256); everything measured is on the 256 validation images.

- profile: modeled + unmodeled MACs equal an independent count (torch's FlopCounterMode: convolutions,
  linear layers and matrix products, FLOPs / 2);
- unscored: the share of MACs the Eyeriss model does not score;
- groups: prunable channel groups found by hwaware's ChannelGraph vs Torch-Pruning's
  DependencyGraph (groups rooted at a Conv/Linear, the classifier -- a Linear or a final 1x1 Conv --
  ignored; Torch-Pruning gets ``TP_SECONDS``, past them the cell reads ``error (TimeoutError)``);
- exact: every prunable group shrunk at once (random units kept, seeded) gives the output of the
  original whose removed channels are zeroed, in float64 (max |difference| <= 1e-9 x max |output|);
  groups whose kept channels change by design (LayerNorm over channels) are checked to run only;
- float top-1 of the model on the validation images (10 classes: 10% is chance) and its median
  top-1 margin (top logit minus the second);
- fixed point: ``convert(mode="wide", overflow="saturate", headroom_bits=0.5)`` -- one rule for
  every model: ranges cover 2**0.5 x the calibration maxima, and a held-out value beyond them
  clips instead of wrapping; the table counts those values per op ("held-out overflows").
  Top-1 agreement with float (the "Done when" asks >= 99%), and "float+noise agreement", the
  noise control: the float model against itself with uniform noise of +-1/2 code of each
  Conv/Linear output's format added to that output (rounding alone, no integer backend).
  Random-weight networks have near-tied logits, so that noise alone flips several percent of
  images. "agreement on decided images" counts only images whose float margin exceeds the tie
  margin: the 99th percentile over images of how far the noise control narrows the gap between
  the float top-1 and any other class (:func:`agreement_statistics`); the share of such images
  and the tie margin are given with it. A disagreement there is a conversion error, not a tie.
  Also: median |logit error| of the integer model, the largest float margin among disagreements;
- seconds for all of the above (and of the training).

Why random weights by default: a brief training does not make these networks decide. Measured on
this CPU (Adam or SGD, batch 32, 32x32): timm mobilenetv2_100 stays at chance (10-15% held-out)
after 100-300 steps, timm resnet18 reaches 21% after 150 (the small CNN needs ~500 steps of 128
images for 93%), at ~0.3-0.7 s a step per model. ``--train-steps`` is there for a faster machine.
``--head probe`` (a ridge linear probe as the final Linear, :func:`fit_probe_head`) does not help
either: held-out top-1 stays at chance on random backbones and its held-out logits leave the
calibrated range (measured in the closing note of issue 11).

    python bench/zoo.py                      # the whole zoo
    python bench/zoo.py --models timm:resnet18,tv:mobilenet_v2
    python bench/zoo.py --skip-fixedpoint --json zoo.json
"""


from __future__ import annotations

import argparse
import contextlib
import copy
import json
import random
import signal
import sys
import threading
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
CALIB, BN_IMAGES, HELD_OUT, N_TRAIN = 256, 256, 256, 1024
TRAIN_STEPS = 0
HEADS = ("random", "probe")
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
    """MACs of one forward pass counted by torch itself (``torch.utils.flop_counter.FlopCounterMode``:
    convolutions, linear layers and matrix products, attention's included; FLOPs / 2), independent of
    hwaware's profiler. Conv/Linear forward hooks would miss the matmuls of attention blocks (timm
    edgenext_xx_small: 1.2% of its MACs)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


#: seconds Torch-Pruning may take on one model (its group search ran > 13 minutes on timm rexnet_100)
TP_SECONDS = 300


@contextlib.contextmanager
def time_limit(seconds: int):
    """Raise TimeoutError in the calling (main) thread after ``seconds`` (SIGALRM; no limit where
    there is no SIGALRM or off the main thread)."""
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0:
        yield
        return

    def alarm(_signum, _frame):
        raise TimeoutError(f"no result within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def torch_pruning_groups(model: nn.Module, x: torch.Tensor, seconds: int = TP_SECONDS) -> int | str:
    """Torch-Pruning's group count (Conv/Linear roots, classifier ignored); 'error (...)' if it fails,
    'error (TimeoutError)' if it takes more than ``seconds``."""
    try:
        import torch_pruning as tp
    except ImportError:
        return "n/a"
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    head = [m for m in layers if isinstance(m, nn.Linear) and m.out_features == NUM_CLASSES]
    if layers and isinstance(layers[-1], nn.Conv2d) and layers[-1].out_channels == NUM_CLASSES:
        head.append(layers[-1])  # a convolutional classifier (SqueezeNet's): its outputs are the classes
    try:
        with warnings.catch_warnings(), time_limit(seconds):
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
    train_steps: int = 0
    float_top1: float | None = None  # float model's top-1 on the held-out images
    train_seconds: float = 0.0
    median_margin: float | None = None  # median float top-1 margin on the held-out images
    overflows: dict[str, int] | None = None  # held-out output overflows by op (wide mode)
    tie_margin: float | None = None  # float margins below this are ties at 16 bits (noise control)
    decided: float | None = None  # share of held-out images with a float margin above tie_margin
    decided_agreement: float | None = None  # top-1 agreement on those images
    head: str = "random"  # the final Linear: "random" (as built) or "probe" (ridge fit, see fit_probe_head)
    probe_alpha: float | None = None  # the ridge penalty fit_probe_head chose


def shapes_images(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, their labels, validation images, their labels) of builtin:shapes at ``size``.

    The training split feeds training, BatchNorm statistics and calibration (disjoint slices, see
    :func:`run_one`); the validation split, a different generator stream, is only evaluated."""
    from hwaware.data import load_dataset

    ref = f"builtin:shapes?n_train={N_TRAIN}&n_val={HELD_OUT}&n_test=16"
    tr, va = load_dataset(ref, "train"), load_dataset(ref, "val")
    xt, xv = tr.images, va.images
    if size != xt.shape[-1]:
        xt = nn.functional.interpolate(xt, size=size, mode="bilinear", align_corners=False)
        xv = nn.functional.interpolate(xv, size=size, mode="bilinear", align_corners=False)
    return xt, tr.labels, xv, va.labels


def train_on_shapes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, batch: int = 32,
                    lr: float = 2e-3, optimizer: str = "adam", seed: int = 0, progress: bool = False):
    """Train ``model`` in place for ``steps`` Adam steps (cosine decay from ``lr``, batches of
    ``batch`` drawn from ``x``/``y`` by a seeded shuffle, reshuffled every pass) and leave it in
    eval mode. Deterministic for a given seed and thread count. Returns :class:`hwaware.train.FitResult`,
    or None when ``steps`` is 0 (the model keeps its random weights)."""
    from hwaware.train import fit

    if steps <= 0:
        return None
    g = torch.Generator().manual_seed(seed)
    batches = []
    while len(batches) < steps:
        order = torch.randperm(len(x), generator=g)
        batches += [(x[order[i:i + batch]], y[order[i:i + batch]])
                    for i in range(0, len(x) - batch + 1, batch)]
    with torch.random.fork_rng(devices=[]):  # dropout / drop-path draws: seeded, caller's RNG kept
        torch.manual_seed(seed)
        result = fit(model, batches[:steps], epochs=1, lr=lr, optimizer=optimizer, schedule="cosine",
                     progress=progress, tag="zoo")
    model.eval()
    return result


def classifier(model: nn.Module) -> nn.Linear:
    """The model's own final Linear: the last ``nn.Linear`` with ``NUM_CLASSES`` outputs."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == NUM_CLASSES]
    if not heads:
        raise ValueError(f"{type(model).__name__}: no nn.Linear with {NUM_CLASSES} outputs to fit as the head")
    return heads[-1]


def head_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the model's final Linear receives on ``x`` (eval mode, batches of 64), flattened to 2-D."""
    head, feats = classifier(model), []
    h = head.register_forward_pre_hook(lambda _m, inp: feats.append(inp[0].detach().flatten(1)))
    try:
        with torch.no_grad():
            for i in range(0, len(x), 64):
                model(x[i:i + 64])
    finally:
        h.remove()
    return torch.cat(feats).double()


def ridge(f: torch.Tensor, t: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares ``f @ w.T + b ~ t`` with penalty ``alpha * mean eigenvalue * |w|^2`` on
    centred features (the bias is not penalised). Returns (w, b) in float64."""
    mu, tm = f.mean(0), t.mean(0)
    fc = f - mu
    gram = fc.T @ fc
    lam = alpha * float(torch.trace(gram)) / gram.shape[0]
    w = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=f.dtype), fc.T @ (t - tm)).T
    return w, tm - w @ mu


PROBE_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def fit_probe_head(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                   alphas: tuple[float, ...] = PROBE_ALPHAS, holdout: float = 0.25) -> float:
    """Set the model's final Linear to a closed-form linear probe: ridge regression of one-hot
    labels ``y`` on the features the head receives for images ``x``. The penalty is chosen among
    ``alphas`` by top-1 on the last ``holdout`` share of ``x`` (fitted on the rest), then the head
    is refitted on all of ``x``. The backbone is untouched. Returns the chosen alpha."""
    f = head_features(model, x)
    t = nn.functional.one_hot(y, NUM_CLASSES).double()
    n_fit = len(f) - int(holdout * len(f))
    best, best_acc = alphas[0], -1.0
    for a in alphas:
        w, b = ridge(f[:n_fit], t[:n_fit], a)
        acc = float(((f[n_fit:] @ w.T + b).argmax(1) == y[n_fit:]).double().mean())
        if acc > best_acc:
            best, best_acc = a, acc
    w, b = ridge(f, t, best)
    head = classifier(model)
    with torch.no_grad():
        head.weight.copy_(w.to(head.weight.dtype))
        if head.bias is None:
            raise ValueError(f"{type(model).__name__}: its final Linear has no bias to fit")
        head.bias.copy_(b.to(head.bias.dtype))
    return best


def float_top1(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(top-1 accuracy of ``model`` on ``x``/``y``, its logits), eval mode, batches of 64."""
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 64]) for i in range(0, len(x), 64)])
    return float((logits.argmax(1) == y).float().mean()), logits


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


@dataclass
class Agreement:
    """Fixed point (wide mode) against float on the held-out images."""

    agreement: float  # top-1 agreement
    logit_error: float  # median over images of max |float - fixed-point logit|
    median_margin: float  # median float top-1 margin (top logit - second): what rounding must not cross
    disagree_margin: float | None  # largest float margin among the disagreeing images
    noise_agreement: float  # float vs float with +-1/2-code noise at every Conv/Linear output
    overflows: dict[str, int]  # output values beyond the format's range on the held-out images, by op
    tie_margin: float  # 99th percentile over images of how far the noise control closes the top-1 gap
    decided: float  # share of held-out images whose float margin exceeds tie_margin
    decided_agreement: float | None  # top-1 agreement on those images (None if there are none)


def fixed_point_agreement(model: nn.Module, calib: torch.Tensor, held: torch.Tensor,
                          **convert_options: Any) -> Agreement:
    """Convert ``model`` in wide mode on ``calib`` and compare it with float on ``held``."""
    fixed = convert(model, calib, mode="wide", samples=len(calib), **convert_options)
    names = [op.name for op in fixed.int_ops]
    overflows: dict[str, int] = {}
    yq = []
    for i in range(0, len(held), 64):
        r = fixed.run(fixed.quantize_input(held[i:i + 64]))
        yq.append(torch.from_numpy(fixed.output_format.dequantize(r.values[fixed.output_index])).float())
        for name, n in zip(names, r.output_overflows):
            if n:
                overflows[name] = overflows.get(name, 0) + int(n)
    yq = torch.cat(yq)
    with torch.no_grad():
        yf = torch.cat([model(held[i:i + 64]) for i in range(0, len(held), 64)])
    yn = torch.cat([noisy_float(model, fixed, held[i:i + 64], seed=i + 1) for i in range(0, len(held), 64)])
    return Agreement(overflows=overflows, **agreement_statistics(yf, yq, yn))


def agreement_statistics(yf: torch.Tensor, yq: torch.Tensor, yn: torch.Tensor) -> dict[str, Any]:
    """Top-1 agreement of logits ``yq`` with float logits ``yf``, and the same on the images the
    float model decides at 16 bits: ``yn`` are the float logits with +-1/2 code of noise at every
    Conv/Linear output (the noise control). Per image, ``closing`` is how far that noise narrows
    the gap between the float top-1 and any other class; ``tie_margin`` is its 99th percentile
    over the images, and an image is *decided* when its float margin exceeds it. A disagreement on
    a decided image is a conversion error, not a tie the formats' rounding alone can flip."""
    top2 = yf.topk(2, 1).values
    margin = top2[:, 0] - top2[:, 1]
    bad = yf.argmax(1) != yq.argmax(1)
    top = yf.argmax(1, keepdim=True)
    closing = ((yf.gather(1, top) - yf) - (yn.gather(1, top) - yn)).max(1).values
    tie = float(torch.quantile(closing.double(), 0.99))
    decided = margin > tie
    return {
        "agreement": 1.0 - float(bad.float().mean()),
        "logit_error": float((yf - yq).abs().max(1).values.median()),
        "median_margin": float(margin.median()),
        "disagree_margin": float(margin[bad].max()) if bad.any() else None,
        "noise_agreement": float((yf.argmax(1) == yn.argmax(1)).float().mean()),
        "tie_margin": tie,
        "decided": float(decided.float().mean()),
        "decided_agreement": (1.0 - float(bad[decided].float().mean())) if decided.any() else None,
    }


def run_one(spec: str, size: int, *, fixedpoint: bool, train_steps: int = TRAIN_STEPS,
            progress: bool = False, overflow: str = "saturate", headroom: float | str = 0.5,
            head: str = "random") -> Row:
    """Every column of one model. Image use: training on the whole training split; BatchNorm
    statistics re-estimated on training images [CALIB, CALIB + BN_IMAGES); fixed-point formats
    calibrated on training images [0, CALIB); with ``head="probe"`` the final Linear is then fitted
    on the whole training split (:func:`fit_probe_head`); float accuracy and agreement on the
    validation split."""
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = build(spec).eval()
    xt, yt, xv, yv = shapes_images(size)
    x = xt[:2]
    fit = train_on_shapes(model, xt, yt, steps=train_steps, progress=progress)
    bn = xt[CALIB:CALIB + BN_IMAGES]
    calibrate_batchnorm(model, [bn[i:i + 32] for i in range(0, len(bn), 32)])
    if head not in HEADS:
        raise ValueError(f"zoo: unknown head {head!r}; allowed: {', '.join(HEADS)}")
    alpha = fit_probe_head(model, xt, yt) if head == "probe" else None
    acc, _ = float_top1(model, xv, yv)
    train_s = fit.seconds if fit is not None else 0.0
    wl = profile(model, x, progress=False)
    profile_ok = wl.macs + wl.unmodeled_macs == independent_macs(model, x)
    unscored = score(wl).unscored_share()
    _, sc = check_shrink(model, x)
    tp_n = torch_pruning_groups(copy.deepcopy(model), x)
    conv_ok, err, ag = None, "", None
    if fixedpoint:
        try:
            ag = fixed_point_agreement(model, xt[:CALIB], xv, overflow=overflow, headroom_bits=headroom)
            conv_ok = True
        except Exception as exc:  # noqa: BLE001 -- reported in the table
            conv_ok, err = False, str(exc).splitlines()[0][:160]
    agree = {} if ag is None else {
        "agreement": ag.agreement, "logit_error": ag.logit_error, "disagree_margin": ag.disagree_margin,
        "noise_agreement": ag.noise_agreement, "median_margin": ag.median_margin, "overflows": ag.overflows,
        "tie_margin": ag.tie_margin, "decided": ag.decided, "decided_agreement": ag.decided_agreement}
    return Row(model=spec, profile_ok=profile_ok, unscored_share=unscored, groups=sc.prunable,
               torch_pruning=tp_n, exact=sc.exact, caveat=sc.caveat, shrink_rel_error=sc.max_rel_error,
               shrink_ok=sc.ok, convert_ok=conv_ok, agreement=agree.pop("agreement", None), convert_error=err,
               seconds=time.perf_counter() - t0, train_steps=train_steps, float_top1=acc,
               train_seconds=train_s, head=head, probe_alpha=alpha, **agree)


def _mark(v: bool | None) -> str:
    return "-" if v is None else ("✓" if v else "✗")


def _overflow_cell(ovf: dict[str, int] | None) -> str:
    if ovf is None:
        return "-"
    if not ovf:
        return "0"
    worst = max(ovf, key=ovf.get)
    return f"{sum(ovf.values())} in {len(ovf)} ops (most: {worst} {ovf[worst]})"


def table(rows: list[Row]) -> str:
    head = ("| model | profile | unscored MACs | groups (hwaware / Torch-Pruning) | shrink exact "
            "| fixed point | float top-1 (steps) | median float margin | wide top-1 agreement "
            "| float+noise agreement | agreement on decided images (share; tie margin) "
            "| median logit err | max margin of a disagreement | held-out overflows | s (train s) |")
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        groups = f"{r.groups} / {r.torch_pruning}" + (f" ({r.caveat} LayerNorm caveat)" if r.caveat else "")
        exact = f"{_mark(r.shrink_ok)} ({r.exact} groups, rel. err {r.shrink_rel_error:.1e})"
        fp = _mark(r.convert_ok) + (f" {r.convert_error}" if r.convert_error else "")
        acc = "-" if r.float_top1 is None else f"{100 * r.float_top1:.1f}% ({r.train_steps}" + (
            f"; probe a={r.probe_alpha:g})" if r.head == "probe" else ")")
        mm = "-" if r.median_margin is None else f"{r.median_margin:.3g}"
        agree = "-" if r.agreement is None else f"{100 * r.agreement:.1f}%"
        lerr = "-" if r.logit_error is None else f"{r.logit_error:.3g}"
        dm = "-" if r.disagree_margin is None else f"{r.disagree_margin:.3g}"
        na = "-" if r.noise_agreement is None else f"{100 * r.noise_agreement:.1f}%"
        dec = "-" if r.decided is None else (
            ("-" if r.decided_agreement is None else f"{100 * r.decided_agreement:.1f}%")
            + f" ({100 * r.decided:.0f}%; {r.tie_margin:.2g})")
        lines.append(f"| {r.model} | {_mark(r.profile_ok)} | {100 * r.unscored_share:.1f}% | {groups} "
                     f"| {exact} | {fp} | {acc} | {mm} | {agree} | {na} | {dec} | {lerr} | {dm} "
                     f"| {_overflow_cell(r.overflows)} | {r.seconds:.0f} ({r.train_seconds:.0f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated timm:NAME / tv:NAME (default: the zoo)")
    ap.add_argument("--size", type=int, help="input side for every model (default: per model, 64)")
    ap.add_argument("--skip-fixedpoint", action="store_true")
    ap.add_argument("--train-steps", type=int, default=TRAIN_STEPS,
                    help=f"Adam steps on builtin:shapes before measuring (default {TRAIN_STEPS}; "
                         "0: random weights)")
    ap.add_argument("--overflow", choices=("wrap", "saturate"), default="saturate",
                    help="fixed-point overflow rule (default saturate: a held-out value beyond the "
                         "calibrated range clips instead of wrapping; counted per op in the table)")
    ap.add_argument("--headroom", default="0.5",
                    help="activation headroom in bits over the calibration maxima, or 'auto' (default 0.5)")
    ap.add_argument("--head", choices=HEADS, default="random",
                    help="final Linear: as built (random) or a ridge linear probe fitted on the training "
                         "split after BatchNorm re-estimation (probe)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    specs = args.models.split(",") if args.models else list(ZOO)
    rows, failed = [], {}
    bar = tqdm(specs, desc="zoo", unit="model")
    for spec in bar:
        bar.set_postfix_str(spec)
        size = args.size or ZOO.get(spec, 32)
        try:
            row = run_one(spec, size, fixedpoint=not args.skip_fixedpoint,
                          train_steps=args.train_steps, progress=True, overflow=args.overflow,
                          headroom=args.headroom if args.headroom == "auto" else float(args.headroom),
                          head=args.head)
        except Exception as exc:  # noqa: BLE001 -- one model's failure is a result; the others still run
            failed[spec] = f"{type(exc).__name__} at {size}x{size}: {str(exc).strip().splitlines()[0][:200]}"
            bar.write(f"| {spec} | failed: {failed[spec]} |")
            continue
        rows.append(row)
        bar.write(table([row]).splitlines()[-1])
    print()
    print(table(rows))
    for spec, why in failed.items():  # e.g. a network that cannot run at the input size (try --size)
        print(f"{spec}: failed: {why}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows] + [{"model": m, "failed": w} for m, w in failed.items()], f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
