"""Fixed-point stages (``quantize``, ``export-vectors``) on :mod:`hwaware.fixedpoint`, and the
stage-order rules.

``quantize`` converts the current model to integer arithmetic (:func:`hwaware.fixedpoint.convert`,
formats calibrated on training images; with ``search: true`` at per-layer widths chosen by the
energy-aware search :func:`hwaware.fixedpoint.quantize.quantize`), measures the integer model's validation accuracy and its
top-1 agreement with the float model, and with ``check: true`` verifies the fast integer kernels
bit for bit: every Conv/Linear op of the converted model is recomputed by the plain NumPy
reference (:mod:`hwaware.fixedpoint.golden`) from the very int16 inputs the fast backend saw, and
the outputs must be identical (``np.array_equal``). The float model stays the pipeline's model;
with widths below 16 its workload is scored at those widths from then on.

``export-vectors`` writes bit-exact test vectors (:func:`hwaware.fixedpoint.vectors.export_vectors`)
of the current model, reusing the quantize stage's integer model when the arithmetic matches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .schema import Option, StageSpec

_ARITH = ("mode", "rounding", "overflow")


def _check_widths(value: list[int]) -> str | None:
    if not value or any(not 2 <= w <= 15 for w in value):
        return f"must be a non-empty list of widths within 2..15, got {value!r}"
    return None


def specs() -> list[StageSpec]:
    from ..fixedpoint.format import MODES, OVERFLOWS, ROUNDINGS

    arith = (
        Option("mode", "str", "eyeriss", "accumulation: eyeriss (16-bit products and adder) or wide", choices=MODES),
        Option("rounding", "str", "floor", "rounding of shifted products", choices=ROUNDINGS),
        Option("overflow", "str", "wrap", "what a value out of range does", choices=OVERFLOWS),
    )
    quantize = StageSpec(
        "quantize", "convert to fixed point (hwaware.fixedpoint.convert), measure accuracy and agreement, "
        "check the fast integer kernels bit-exact against the NumPy reference",
        (
            Option("bits", "int", 16, "operand width of weights and activations (16 = Eyeriss)", low=2, high=16),
            Option("search", "bool", False, "energy-aware per-layer bit widths (hwaware.fixedpoint.quantize): "
                   "largest-energy layers narrowed first while accuracy stays within max_drop; bits is ignored"),
            Option("max_drop", "float", 1.0, "search: accuracy points (top-1, %) allowed below the float model",
                   low=0.0),
            Option("widths", "list[int]", [12, 10, 8, 6, 4], "search: the narrower widths tried, in order",
                   check=_check_widths),
            *arith,
            Option("samples", "int", 256, "training images that calibrate the formats", low=1),
            Option("bias_correction", "bool", True, "correct the mean rounding error through the bias"),
            Option("check", "bool", True, "verify every Conv/Linear output bit for bit against "
                   "hwaware.fixedpoint.golden"),
            Option("check_images", "int", 2, "validation images the bit-exact check runs", low=1),
            Option("max_accuracy_drop", "float", None, "fail the run when the integer model loses more "
                   "validation accuracy (points) than this", nullable=True, low=0.0),
        ),
        needs_data=True,
    )
    vectors = StageSpec(
        "export-vectors", "write int16 test vectors of every Conv/Linear layer (npz, $readmemh hex, manifest)",
        (
            Option("images", "int", 1, "test-split images in the vectors", low=1),
            Option("mode", "str", None, "accumulation (null: as the quantize stage, else eyeriss)",
                   nullable=True, choices=MODES),
            Option("rounding", "str", None, "rounding (null: as the quantize stage, else floor)",
                   nullable=True, choices=ROUNDINGS),
            Option("overflow", "str", None, "overflow (null: as the quantize stage, else wrap)",
                   nullable=True, choices=OVERFLOWS),
            Option("samples", "int", 64, "training images that calibrate the formats (when converting anew)",
                   low=1),
            Option("hex", "bool", True, "also write $readmemh .hex files"),
        ),
        needs_data=True,
    )
    return [quantize, vectors]


def order_problem(stage: str, before: Sequence[str]) -> str | None:
    """Why ``stage`` cannot come after the stages named in ``before`` (None when it can)."""
    return None


# --- runners --------------------------------------------------------------------------------------

def _calibration(ctx: Any, n: int) -> Any:
    import torch

    got, seen = [], 0
    for x, _ in ctx.train_loader:
        got.append(x)
        seen += x.shape[0]
        if seen >= n:
            break
    return torch.cat(got)[:n]


def _accuracy_and_agreement(model: Any, fixed: Any, loader: Any) -> tuple[float, float]:
    """Top-1 accuracy of ``fixed`` and the fraction of images where it picks the float model's
    class, in one pass over ``loader`` (the integer model is the slow part)."""
    import torch

    from ..errors import HwawareError

    was = model.training
    model.eval()
    correct = same = seen = 0
    try:
        with torch.no_grad():
            for x, y in loader:
                pf = model(x).argmax(1)
                pq = fixed(x).argmax(1)
                correct += int((pq == y).sum())
                same += int((pq == pf).sum())
                seen += int(y.shape[0])
    finally:
        model.train(was)
    if seen == 0:
        raise HwawareError("quantize: the validation loader yields no images")
    return correct / seen, same / seen


def bit_exact_check(fixed: Any, images: Any) -> list[str]:
    """Recompute every Conv/Linear op of ``fixed`` with the NumPy reference from the int16 inputs the
    fast backend used; return the names of the ops whose outputs differ (empty: bit-exact)."""
    import numpy as np

    from ..fixedpoint import golden
    from ..fixedpoint.convert import ConvOp

    run = fixed.run(fixed.quantize_input(images), keep=True)
    arith = fixed.arith
    bad = []
    for k, op in enumerate(fixed.int_ops):
        if not isinstance(op, ConvOp):
            continue
        x = op.prepare(run.values[op.inputs[0]], arith)
        kw = dict(fx=op.f_in, fw=op.fw, fy=op.fy, mode=arith["mode"], rounding=arith["rounding"],
                  overflow=arith["overflow"], relu=op.relu)
        if op.op == "Linear":
            ref = golden.linear(x, op.w, op.b, **kw)
        elif op.op == "Conv1d":
            ref = golden.conv1d(x, op.w, op.b, stride=op.stride[1], padding=op.padding[1], groups=op.groups, **kw)
        else:
            ref = golden.conv2d(x, op.w, op.b, stride=op.stride, padding=op.padding, groups=op.groups, **kw)
        if not np.array_equal(ref.y, run.values[k]):
            bad.append(op.name)
    return bad


def _quantize(ctx: Any, stage: Any) -> Any:
    from ..errors import HwawareError
    from ..fixedpoint.convert import convert
    from .run import StageResult

    t0 = time.perf_counter()
    o = stage.options
    calib = _calibration(ctx, o["samples"])
    bits: Any = o["bits"]
    search = None
    if o["search"]:
        from ..fixedpoint.quantize import quantize

        search = quantize(ctx.model, calibration_data=calib, val_data=ctx.val_loader, max_drop=o["max_drop"],
                          widths=o["widths"], mode=o["mode"], rounding=o["rounding"], overflow=o["overflow"],
                          hardware=ctx.settings["hardware"], samples=o["samples"], progress=ctx.progress)
        bits = {k: v for k, v in search.bits.items() if v < 16}
    fixed = convert(ctx.model, calib, bits=bits if bits else 16, mode=o["mode"], rounding=o["rounding"],
                    overflow=o["overflow"], samples=o["samples"], bias_correction=o["bias_correction"],
                    progress=ctx.progress)
    float_acc = ctx.accuracy()
    fixed_acc, agree = _accuracy_and_agreement(ctx.model, fixed, ctx.val_loader)
    details: dict[str, Any] = {"bits": bits, "arith": dict(fixed.arith), "float_accuracy": float_acc,
                               "fixed_accuracy": fixed_acc, "top1_agreement": agree}
    if search is not None:
        details["search"] = search.to_dict()
    check = ""
    if o["check"]:
        images = ctx.calib[: o["check_images"]]
        bad = bit_exact_check(fixed, images)
        n_ops = sum(1 for op in fixed.int_ops if type(op).__name__ == "ConvOp")
        details["bit_exact"] = {"ops": n_ops, "images": int(images.shape[0]), "mismatched": bad}
        if bad:
            raise HwawareError(f"quantize: the fast integer backend differs from the NumPy reference in "
                               f"{len(bad)} of {n_ops} layers ({', '.join(bad[:5])}); please report this")
        check = f"; bit-exact vs the NumPy reference on {n_ops} layers x {images.shape[0]} images"
    ctx.fixed = fixed
    ctx.extra["arith"] = dict(fixed.arith)
    narrowed = bool(bits) if isinstance(bits, dict) else bits != 16
    if narrowed:
        ctx.bits = bits
        ctx.changed()
    outputs = {}
    d = ctx.stage_dir(stage)
    if d is not None:
        from .._io import write_json

        report = fixed.report.to_dict() if fixed.report is not None else {}
        write_json(d / "quantize.json", {**details, "conversion": report})
        outputs["report"] = ctx.rel(d / "quantize.json")
        if fixed.report is not None:
            from .._io import write_text

            write_text(d / "conversion.txt", fixed.report.table() + "\n")
            outputs["table"] = ctx.rel(d / "conversion.txt")
        if search is not None:
            from .._io import write_text

            write_text(d / "search.txt", search.table() + "\n")
            outputs["search"] = ctx.rel(d / "search.txt")
    ovf = 0
    if fixed.report is not None:
        ovf = sum(lr.product_overflows + lr.output_overflows for lr in fixed.report.layers)
    drop = 100.0 * ((float_acc or 0.0) - fixed_acc)
    width = (f"per-layer bits {', '.join(f'{k} {v}' for k, v in bits.items())} (others 16)" if isinstance(bits, dict)
             and bits else f"{bits if not isinstance(bits, dict) else 16}-bit")
    if o["max_accuracy_drop"] is not None and float_acc is not None and drop > o["max_accuracy_drop"]:
        raise HwawareError(f"quantize: the {width} model loses {drop:.2f} accuracy points "
                           f"(max_accuracy_drop {o['max_accuracy_drop']:g})")
    if narrowed:
        ctx.snapshot(stage.label)
    saved = (f"; search saved {100 * search.saved_vs_16:.1f}% of the 16-bit energy "
             f"({100 * search.saved_vs_8:.1f}% vs uniform 8 bits)" if search is not None else "")
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"{width} {fixed.arith['mode']}/{fixed.arith['rounding']}/{fixed.arith['overflow']}{saved}: "
                       f"val accuracy {fixed_acc:.4f} (float {float_acc:.4f}), top-1 agreement {agree:.4f}, "
                       f"{ovf} overflows on the calibration data{check}", outputs, details)


def _export_vectors(ctx: Any, stage: Any) -> Any:
    from ..errors import HwawareError
    from ..fixedpoint.vectors import export_vectors
    from .run import StageResult

    t0 = time.perf_counter()
    o = stage.options
    arith = {k: o[k] or ctx.extra.get("arith", {}).get(k) or {"mode": "eyeriss", "rounding": "floor",
                                                                "overflow": "wrap"}[k] for k in _ARITH}
    try:
        images = next(iter(ctx.loader("test")))[0][: o["images"]]
    except HwawareError:  # no test split (an imagefolder without test/): validation images
        images = next(iter(ctx.val_loader))[0][: o["images"]]
    reuse = ctx.fixed is not None and dict(ctx.fixed.arith) == arith
    d = ctx.stage_dir(stage)
    out = (d / "vectors") if d is not None else None
    if out is None:
        return StageResult(stage.label, stage.name, 0.0, "no run directory")
    vs = export_vectors(ctx.fixed if reuse else ctx.model, out, inputs=images,
                        calibration_data=None if reuse else _calibration(ctx, o["samples"]),
                        samples=o["samples"], hex_files=o["hex"], progress=ctx.progress, **arith)
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"{len(vs.layers)} layers x {images.shape[0]} image(s), {arith['mode']}/{arith['rounding']}/"
                       f"{arith['overflow']}" + (" (the quantize stage's integer model)" if reuse else ""),
                       {"manifest": ctx.rel(vs.manifest)}, {"layers": len(vs.layers)})


def runners() -> dict[str, Callable[[Any, Any], Any]]:
    return {"quantize": _quantize, "export-vectors": _export_vectors}


def describe(ctx: Any, stage: Any) -> str:
    o = stage.options
    if stage.name == "quantize":
        width = (f"per-layer bit widths searched (energy-aware, <= {o['max_drop']:g} points lost, widths "
                 f"{o['widths']})" if o["search"] else f"{o['bits']}-bit")
        text = (f"convert to {width} fixed point ({o['mode']}, {o['rounding']}, {o['overflow']}) "
                f"calibrated on {o['samples']} training images; measure accuracy and top-1 agreement")
        if o["check"]:
            text += f"; check bit-exact against the NumPy reference on {o['check_images']} images"
        ctx.extra["arith"] = {k: o[k] for k in _ARITH}
        return text
    if stage.name == "export-vectors":
        arith = {k: o[k] or ctx.extra.get("arith", {}).get(k) or {"mode": "eyeriss", "rounding": "floor",
                                                                    "overflow": "wrap"}[k] for k in _ARITH}
        return (f"write test vectors of every Conv/Linear layer for {o['images']} test image(s) "
                f"({arith['mode']}, {arith['rounding']}, {arith['overflow']})")
    return stage.name
