"""``quantize``: convert the current model to integer arithmetic (:func:`hwaware.fixedpoint.convert`,
formats calibrated on training images; with ``search: true`` at per-layer widths from the energy-aware
search :func:`hwaware.fixedpoint.quantize.quantize`), measure its validation accuracy and top-1 agreement
with the float model, and with ``check: true`` verify the fast integer kernels bit for bit against the
NumPy reference (:mod:`hwaware.fixedpoint.verify`). The float model stays the pipeline's model; with
widths below 16 its workload is scored at those widths from then on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...errors import HwawareError
from ..options import Option
from .base import StageDef, StageResult, register_stage

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import Stage


def _check_widths(value: list[int]) -> str | None:
    if not value or any(not 2 <= w <= 15 for w in value):
        return f"must be a non-empty list of widths within 2..15, got {value!r}"
    return None


def arith_options() -> tuple[Option, ...]:
    from ...fixedpoint.format import DEFAULT_ARITHMETIC as D
    from ...fixedpoint.format import MODES, OVERFLOWS, ROUNDINGS

    return (
        Option("mode", "str", D.mode, "accumulation: eyeriss (16-bit products and adder) or wide", choices=MODES),
        Option("rounding", "str", D.rounding, "rounding of shifted products", choices=ROUNDINGS),
        Option("overflow", "str", D.overflow, "what a value out of range does", choices=OVERFLOWS),
    )

def _spec() -> StageDef:
    return StageDef(
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
            Option("finetune_steps", "int", 8, "search: quantization-aware fine-tuning steps per trial (fake "
                   "quantization matching the integer backend; 0: post-training search)", low=0),
            Option("separate_widths", "bool", False, "search: step each layer's weights and input activations "
                   "apart (convert's act_bits); weights dominate small networks' energy"),
            Option("unsigned_inputs", "bool", True, "search with fine-tuning: ReLU'd inputs take unsigned codes "
                   "0..2**a-1 (false: signed, half the levels)"),
            Option("descent_steps", "int", None, "search: fine-tuning steps of each all-layers trial (default: "
                   "finetune_steps)", nullable=True, low=0),
            Option("descent_to", "int", None, "search: narrowest width of the all-layers descent (default: the "
                   "narrowest of widths)", nullable=True, low=2, high=16),
            Option("final_steps", "int", 0, "search: fine-tuning steps of the chosen widths at the end", low=0),
            Option("finetune_lr", "float", 0.001, "search: SGD learning rate of the fine-tuning (BN is folded: 0.01 wrecks the trained small CNN)", low=0.0),
            *arith_options(),
            Option("samples", "int", 256, "training images that calibrate the formats", low=1),
            Option("bias_correction", "bool", True, "correct the mean rounding error through the bias "
                   "(not after a fine-tuning search: its biases were trained under the chip's rounding)"),
            Option("check", "bool", True, "verify every Conv/Linear output bit for bit against "
                   "hwaware.fixedpoint.golden"),
            Option("check_images", "int", 2, "validation images the bit-exact check runs", low=1),
            Option("max_accuracy_drop", "float", None, "fail the run when the integer model loses more "
                   "validation accuracy (points) than this", nullable=True, low=0.0),
        ),
        needs_data=True, run=run_quantize, describe=describe_quantize,
    )


def run_quantize(ctx: RunContext, stage: Stage) -> StageResult:
    from ...fixedpoint.convert import convert
    from ...fixedpoint.quantize import HEADROOM_BITS
    from ...fixedpoint.verify import accuracy_and_agreement, bit_exact_mismatches

    t0 = time.perf_counter()
    o = stage.options
    calib = ctx.training_images(o["samples"])
    bits: Any = o["bits"]
    search = None
    act_bits: dict[str, int] = {}
    float_acc = ctx.accuracy()  # of the model as it came in (fine-tuning below changes the weights)
    if o["search"]:
        from ...fixedpoint.quantize import quantize

        search = quantize(ctx.model, calibration_data=calib, val_data=ctx.val_loader, max_drop=o["max_drop"],
                          widths=o["widths"], mode=o["mode"], rounding=o["rounding"], overflow=o["overflow"],
                          hardware=ctx.settings["hardware"], samples=o["samples"],
                          train_data=ctx.train_loader if o["finetune_steps"] else None,
                          finetune_steps=o["finetune_steps"], finetune_lr=o["finetune_lr"],
                          separate=o["separate_widths"], descent_steps=o["descent_steps"],
                          final_steps=o["final_steps"], descent_to=o["descent_to"], unsigned_inputs=o["unsigned_inputs"],
                          batch=ctx.settings["batch"], progress=ctx.progress)
        act_bits = dict(search.act_bits)
        bits = {k: v for k, v in search.bits.items() if min(v, act_bits.get(k, v)) < 16}
        if search.model is not None:  # fine-tuned: continue with those weights, in the user's architecture
            from ...fixedpoint.qat import write_back

            ctx.set_model(write_back(ctx.model, search.model))
    # fine-tuned: keep the codes, biases and narrow formats the fine-tuning trained on (no equalization,
    # no bias correction towards the unquantized float model, the search's headroom)
    qat = search is not None and search.model is not None
    extra = {"headroom_bits": HEADROOM_BITS, "narrow_formats": search.narrow_formats or None} if qat else {}
    if search is not None and search.convert_act_bits():
        extra["act_bits"] = search.convert_act_bits()  # input format widths (an unsigned input: one more)
    fixed = convert(ctx.model, calib, bits=bits if bits else 16, mode=o["mode"], rounding=o["rounding"],
                    overflow=o["overflow"], samples=o["samples"], bias_correction=o["bias_correction"] and not qat,
                    equalize=not qat, progress=ctx.progress, **extra)
    fixed_acc, agree = accuracy_and_agreement(ctx.model, fixed, ctx.val_loader)
    details: dict[str, Any] = {"bits": bits, "arith": dict(fixed.arith), "float_accuracy": float_acc,
                               "fixed_accuracy": fixed_acc, "top1_agreement": agree}
    if act_bits:
        details["act_bits"] = act_bits  # inputs narrower than the weights' width in "bits"
    if search is not None:
        details["search"] = search.to_dict()
    check = ""
    if o["check"]:
        images = ctx.calib[: o["check_images"]]
        bad = bit_exact_mismatches(fixed, images)
        n_ops = len(fixed.int_ops) - 1  # every op but the input (verify checks them all)
        details["bit_exact"] = {"ops": n_ops, "images": int(images.shape[0]), "mismatched": bad}
        if bad:
            raise HwawareError(f"quantize: the fast integer backend differs from the NumPy reference in "
                               f"{len(bad)} ops ({', '.join(bad[:5])}); please report this")
        check = f"; bit-exact vs the NumPy reference on {n_ops} ops x {images.shape[0]} images"
    ctx.fixed = fixed
    ctx.extra["arith"] = dict(fixed.arith)
    narrowed = bool(bits) if isinstance(bits, dict) else bits != 16
    if narrowed:
        ctx.bits = bits
        ctx.act_bits = act_bits
        ctx.changed()
    outputs = {}
    d = ctx.stage_dir(stage)
    if d is not None:
        from ..._io import write_json

        report = fixed.report.to_dict() if fixed.report is not None else {}
        write_json(d / "quantize.json", {**details, "conversion": report})
        outputs["report"] = ctx.rel(d / "quantize.json")
        if fixed.report is not None:
            from ..._io import write_text

            write_text(d / "conversion.txt", fixed.report.table() + "\n")
            outputs["table"] = ctx.rel(d / "conversion.txt")
        if search is not None:
            from ..._io import write_text

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


def describe_quantize(ctx: RunContext, stage: Stage) -> str:
    o = stage.options
    width = (f"per-layer bit widths searched (energy-aware, <= {o['max_drop']:g} points lost, widths "
             f"{o['widths']})" if o["search"] else f"{o['bits']}-bit")
    text = (f"convert to {width} fixed point ({o['mode']}, {o['rounding']}, {o['overflow']}) "
            f"calibrated on {o['samples']} training images; measure accuracy and top-1 agreement")
    if o["check"]:
        text += f"; check bit-exact against the NumPy reference on {o['check_images']} images"
    ctx.extra["arith"] = {k: o[k] for k in ("mode", "rounding", "overflow")}
    return text


register_stage(_spec())
