"""``export-vectors``: bit-exact test vectors (:func:`hwaware.fixedpoint.vectors.export_vectors`) of the
current model, reusing the quantize stage's integer model when the arithmetic matches."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ...errors import HwawareError
from ..options import Option
from .base import StageDef, StageResult, register_stage

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import Stage


def _spec() -> StageDef:
    from ...fixedpoint.format import MODES, OVERFLOWS, ROUNDINGS

    return StageDef(
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
        needs_data=True, run=run_export_vectors, describe=describe_export_vectors,
    )


def _arith(ctx: RunContext, stage: Stage) -> dict[str, str]:
    """The stage's arithmetic: its own options, else the quantize stage's, else the default."""
    from ...fixedpoint.format import DEFAULT_ARITHMETIC

    default = DEFAULT_ARITHMETIC.as_dict()
    return {k: stage.options[k] or ctx.extra.get("arith", {}).get(k) or default[k] for k in default}


def run_export_vectors(ctx: RunContext, stage: Stage) -> StageResult:
    from ...fixedpoint.vectors import export_vectors

    t0 = time.perf_counter()
    o = stage.options
    arith = _arith(ctx, stage)
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
                        calibration_data=None if reuse else ctx.training_images(o["samples"]),
                        samples=o["samples"], hex_files=o["hex"], progress=ctx.progress,
                        force=True, **arith)  # the run's own directory: a resumed stage rewrites it
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"{len(vs.layers)} layers x {images.shape[0]} image(s), {arith['mode']}/{arith['rounding']}/"
                       f"{arith['overflow']}" + (" (the quantize stage's integer model)" if reuse else ""),
                       {"manifest": ctx.rel(vs.manifest)}, {"layers": len(vs.layers)})


def describe_export_vectors(ctx: RunContext, stage: Stage) -> str:
    o = stage.options
    arith = _arith(ctx, stage)
    return (f"write test vectors of every Conv/Linear layer for {o['images']} test image(s) "
            f"({arith['mode']}, {arith['rounding']}, {arith['overflow']})")


register_stage(_spec())
