"""Formats for narrow operands (2-8 bits) chosen for the least output error, clipping allowed.

The max rule (:func:`~hwaware.fixedpoint.format.frac_bits_for`) sizes a format to hold the largest
value seen. At 16 bits that costs nothing; at 4 bits it is ruinous: a ReLU output reaching 9 gets
an LSB of 2 (signed codes 0..7), and ``floor`` rounding then zeroes every value below 2 -- the
trained small CNN falls to 11% top-1 at uniform 4 bits. A narrow tensor is better served by a finer
LSB that saturates the few large values: the classic trade-off of clipping error against rounding
error (Banner et al., "Post-training 4-bit quantization", NeurIPS 2019, choose the clipping value
that minimises the mean-square error; PACT, Choi et al. 2018, and LSQ, Esser et al. ICLR 2020, learn
it). Here the LSB stays a power of two (the fixed-point contract) and is chosen on calibration data:

    f* = argmin_f  mean( (sat(round(x * 2**f)) * 2**-f - x)**2 )

over ``f`` from the max rule's (nothing clips) to ``span`` bits finer, where ``sat`` clamps to the
``bits``-wide code range and ``round`` is the arithmetic's rounding (``floor`` for a requantized
activation in the chip's arithmetic, ``nearest`` for weights, which are quantized offline). The
chosen input format must saturate, not wrap: :func:`~hwaware.fixedpoint.convert` takes the formats
through ``narrow_formats`` and then clips the layer's narrowed input (``ConvOp.clip_input``,
docs/fixedpoint.md). :func:`narrow_formats` picks both formats of every narrowed layer of a model.

Unsigned inputs: a layer whose input never goes below zero (a ReLU's output, a pooling of one) wastes
the sign bit of signed codes -- half the levels of an ``a``-bit input, which at 3 bits is ruinous (the
trained small CNN at 4-bit weights and 3-bit inputs: 11.8 points below float after 100 fine-tuning
steps with signed codes, 1.8 with unsigned ones, 5000 validation images). Such an input takes
unsigned ``a``-bit codes ``0 .. 2**a - 1``; the integer backend holds them in an ``(a+1)``-bit signed
format, which codes every non-negative value identically (:func:`input_code_bits`), while the
energy model moves ``a`` bits. :func:`nonnegative_inputs` finds those layers in the integer graph.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .._modes import inspection_mode
from ..errors import HwawareError
from .format import FRAC_MAX, FRAC_MIN, frac_bits_for

__all__ = ["SPAN", "clip_error", "clip_frac_bits", "input_code_bits", "narrow_formats", "nonnegative_inputs"]

SPAN = 6  # candidate formats: the max rule's and up to this many bits finer
_SAMPLE = 1 << 18  # values per tensor the error is measured on (a fixed random subset beyond that)


def clip_error(x: torch.Tensor, frac_bits: int, bits: int, rounding: str) -> float:
    """Mean square error of ``x`` rounded (``floor``/``nearest``) to ``bits``-wide codes at
    ``frac_bits`` and saturated."""
    scale = math.ldexp(1.0, frac_bits)
    v = x.double() * scale
    q = torch.floor(v + 0.5) if rounding == "nearest" else torch.floor(v)
    half = 1 << (bits - 1)
    q = q.clamp(-half, half - 1) / scale
    return float(((q - x.double()) ** 2).mean())


def clip_frac_bits(x: torch.Tensor, bits: int, *, rounding: str, finest: int | None = None,
                   span: int = SPAN) -> int:
    """The ``f`` of least :func:`clip_error` for the values ``x``, from the max rule's ``f`` (no
    value clips) to ``span`` bits finer and at most ``finest``; ties go to the coarser format.
    Example (4 bits, nearest): 99 values of 1.0 and one of 8.0. The max rule's f = -1 (LSB 2) makes
    every 1.0 a 2: error 0.99; f = 0 (LSB 1) clips 8.0 to 7: error 0.01, the least (f = 1 clips it
    to 3.5: 0.2025)."""
    if rounding not in ("floor", "nearest"):
        raise HwawareError(f"clip_frac_bits: rounding must be floor or nearest, got {rounding!r}")
    if not 2 <= int(bits) <= 16:
        raise HwawareError(f"clip_frac_bits: bits must be within 2..16, got {bits!r}")
    x = x.detach().reshape(-1)
    if x.numel() > _SAMPLE:
        g = torch.Generator().manual_seed(0)
        x = x[torch.randperm(x.numel(), generator=g)[:_SAMPLE]]
    top = float(x.abs().max()) if x.numel() else 0.0
    base = frac_bits_for(top, bits)
    last = min(FRAC_MAX, base + int(span))
    if finest is not None:
        last = max(base, min(last, int(finest)))
    best, best_err = base, math.inf
    for f in range(max(FRAC_MIN, base), last + 1):
        err = clip_error(x, f, bits, rounding)
        if err < best_err:
            best, best_err = f, err
    return best


def narrow_formats(model: nn.Module, bits: Mapping[str, int], calibration_data: torch.Tensor, *,
                   rounding: str, headroom: float = 0.5, act_bits: Mapping[str, int] | None = None
                   ) -> dict[str, tuple[int, int]]:
    """``{layer: (f_in, f_w)}`` for every Conv/Linear of ``model`` narrowed below 16 bits in ``bits``.

    ``f_in``: :func:`clip_frac_bits` of the layer's input over ``calibration_data`` (one eval pass of
    the float model) with the arithmetic's ``rounding``, never finer than the 16-bit format the
    input arrives in (the max rule with ``headroom``); ``f_w``: the same for the weights, rounded to
    nearest. ``act_bits`` (default: ``bits``) sets the input's width where it differs from the
    weights'.
    """
    act_bits = dict(bits) if act_bits is None else dict(act_bits)
    modules = dict(model.named_modules())
    names = [n for n in bits if min(int(bits[n]), int(act_bits.get(n, bits[n]))) < 16]
    for n in names:
        if not isinstance(modules.get(n), (nn.Conv1d, nn.Conv2d, nn.Linear)):
            raise HwawareError(f"narrow_formats: '{n}' is not a Conv/Linear module of the model")
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    g = torch.Generator().manual_seed(0)

    def keep(n: str, t: torch.Tensor) -> None:
        t = t.detach().reshape(-1).float()
        if t.numel() > _SAMPLE:
            t = t[torch.randint(t.numel(), (_SAMPLE,), generator=g)]
        seen[n].append(t)

    handles = [modules[n].register_forward_pre_hook(lambda m, a, n=n: keep(n, a[0])) for n in names]
    try:
        with inspection_mode(model):
            model(calibration_data)
    finally:
        for h in handles:
            h.remove()
    out: dict[str, tuple[int, int]] = {}
    for n in names:
        x = torch.cat(seen[n])
        a = int(act_bits.get(n, bits[n]))
        f16 = frac_bits_for(float(x.abs().max()) if x.numel() else 0.0, 16, headroom=headroom)
        f_in = clip_frac_bits(x, a, rounding=rounding, finest=f16)
        f_w = clip_frac_bits(modules[n].weight.detach(), int(bits[n]), rounding="nearest")
        out[n] = (f_in, f_w)
    return out


def nonnegative_inputs(fixed: Any) -> frozenset[str]:
    """The Conv/Linear layers of the integer model ``fixed`` (a
    :class:`~hwaware.fixedpoint.model.FixedPointModel`) whose input codes are never negative, by the
    graph's structure, whatever the data: the input is a layer's or a residual add's fused ReLU
    (applied to the output codes), a ReLU, a clamp at a bound >= 0, a max pooling of such a value, an
    average pooling of one that shifts no code left (the average of codes never exceeds the largest,
    so it cannot overflow) or saturates, or a reshape, permute, slice or expand of one. Anything else (the
    model's input, a residual sum without a fused ReLU, a concatenation that requantizes) counts as
    signed."""
    from .act_ops import ClampOp, WindowPoolOp
    from .graph_ops import AddOp, ConvOp, ExpandOp, PermuteOp, ReluOp, ReshapeOp, SliceOp

    ops = fixed.int_ops
    nonneg = [False] * len(ops)
    for i, op in enumerate(ops):
        if isinstance(op, (ReluOp, ConvOp, AddOp)):
            nonneg[i] = isinstance(op, ReluOp) or op.relu
        elif isinstance(op, ClampOp):
            nonneg[i] = op.lo >= 0
        elif isinstance(op, WindowPoolOp):
            keeps = op.kind == "max" or op.fy.frac_bits <= op.fx.frac_bits or fixed.arith["overflow"] == "saturate"
            nonneg[i] = keeps and nonneg[op.inputs[0]]
        elif isinstance(op, (ReshapeOp, PermuteOp, SliceOp, ExpandOp)):
            nonneg[i] = nonneg[op.inputs[0]]
    return frozenset(op.name for op in ops if isinstance(op, ConvOp) and nonneg[op.inputs[0]])


def input_code_bits(act_bits: Mapping[str, int], unsigned: frozenset[str] | set[str]) -> dict[str, int]:
    """The widths of the signed formats that hold the inputs' codes: ``a + 1`` for an unsigned ``a``-bit
    input below 16 bits (its codes ``0 .. 2**a - 1``), ``a`` otherwise. Example: ``{"conv2": 3}`` with
    conv2 unsigned -> ``{"conv2": 4}`` (codes 0..7 in a 4-bit signed format)."""
    return {k: int(a) + 1 if k in unsigned and int(a) < 16 else int(a) for k, a in act_bits.items()}


def check_narrow_formats(formats: Any, where: str) -> dict[str, tuple[int, int]]:
    """Validate ``{layer: (f_in, f_w)}`` (integers within the contract's range); one-line errors."""
    if not isinstance(formats, Mapping):
        raise HwawareError(f"{where}: narrow_formats must map layer names to (f_in, f_w), got "
                           f"{type(formats).__name__}")
    out = {}
    for k, v in formats.items():
        if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(
                isinstance(f, int) and not isinstance(f, bool) and FRAC_MIN <= f <= FRAC_MAX for f in v)):
            raise HwawareError(f"{where}: narrow_formats['{k}'] must be (f_in, f_w), two integers within "
                               f"{FRAC_MIN}..{FRAC_MAX}, got {v!r}")
        out[str(k)] = (int(v[0]), int(v[1]))
    return out
