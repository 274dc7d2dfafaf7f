"""Float model -> integer model: :func:`convert` picks every tensor's format from calibration data.

The model is traced with ``torch.fx``; each supported node becomes an integer op
(:mod:`hwaware.fixedpoint.ops`). BatchNorm right after a Conv/Linear is folded into its weights and
bias, and a ReLU right after a Conv/Linear (or its BN) or an add is fused (``relu`` flag).

Formats (``f`` = fractional bits, one per tensor):

- activations (the input, every op output): the max rule, ``frac_bits_for(max|x| over the
  calibration data, bits, headroom=0.5)``. Max, not a percentile, because the default ``wrap``
  overflow turns an out-of-range value into a wrong-signed one; half a bit of headroom (the range
  covers 1.41x the calibration max) because unseen inputs exceed the calibration max: on the
  trained small CNN, 1000 validation images reached 1.28x the max of 256 calibration images.
  A whole bit halves every layer's precision; on the chip's arithmetic (eyeriss, floor) that took
  top-1 agreement with float from 99.3% to 98.8% (bench/quantize_agreement.py prints the table).
  A fused Conv+ReLU takes the range of the value *before* the ReLU: the 16-bit adder must hold
  the negative sums too, or they wrap into positive garbage.
- weights: the max rule on the folded weights, no headroom (the weights are known exactly).
- bias: mode ``eyeriss`` int16 at ``f_y``; mode ``wide`` exact at ``f_x + f_w`` (int32, or int64
  when it does not fit; never clipped).
- ReLU, max pooling, flatten/reshape, dropout keep their input's format.
- ``search_formats=True`` (opt-in): each Conv/Linear's ``f_y`` is instead the one of the max rule's
  and one bit either side whose network output is closest to float on the calibration data
  (:mod:`hwaware.fixedpoint.format_search`).

Bias correction (on by default): rounding every product down (``floor``) loses half a code per
non-zero product on average, which adds up to hundreds of codes over a 3x3x256 filter. After the
formats are fixed, each Conv/Linear is run without bias on its integer input from the calibration
data, and each output channel's bias code is set to the rounded mean of (float model's output -
integer output): the channel's mean error, including what earlier layers passed on, becomes zero.
The hardware arithmetic is unchanged; only the bias values differ (and the test vectors carry them).

Range equalization (``equalize=True``, off by default, :mod:`hwaware.fixedpoint.equalize`): before
the formats are chosen, BatchNorm is folded and the channels between consecutive Conv/Linear layers
are rescaled so that each channel spans the tensor's range (the float function is unchanged). It
lifts the trained small CNN's agreement in eyeriss/floor from 99.3% to 99.4-99.5%, but with every
channel at the tensor's max, unseen inputs overflow the half-bit margin more often: a random-weight
ResNet-18 calibrated on 16 noise images fell from 100% to 91% agreement on fresh noise (wide/floor).

Only eval-mode semantics are converted (BatchNorm uses its running statistics).
"""


from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .._fx import trace
from ..errors import HwawareError, UnsupportedLayerError
from .converter import SUPPORTED, Converter, split_norm_act
from .format import DEFAULT_MODE, DEFAULT_OVERFLOW, DEFAULT_ROUNDING, check_arith

# the integer graph's types, re-exported: ``from hwaware.fixedpoint.convert import ConvOp`` keeps working
from .graph_ops import AddOp, CatOp, ConvOp, ReluOp, ReshapeOp
from .model import ConversionReport, FixedPointModel, LayerReport, RunResult

__all__ = [
    "SUPPORTED",
    "AddOp",
    "CatOp",
    "ConvOp",
    "ConversionReport",
    "FixedPointModel",
    "LayerReport",
    "ReluOp",
    "ReshapeOp",
    "RunResult",
    "calibrate_batchnorm",
    "collect_inputs",
    "convert",
    "top1_agreement",
]


def convert(model: nn.Module, calibration_data: Any, *, bits: int | Mapping[str, int] = 16,
            mode: str = DEFAULT_MODE, rounding: str = DEFAULT_ROUNDING, overflow: str = DEFAULT_OVERFLOW,
            samples: int | None = 256, headroom_bits: float | str = 0.5, bias_correction: bool = True,
            equalize: bool = False, per_channel_weights: bool = False,
            narrow_formats: Mapping[str, tuple[int, int]] | None = None,
            act_bits: Mapping[str, int] | None = None,
            search_formats: bool = False, progress: bool = False) -> FixedPointModel:
    """Convert ``model`` (eval semantics) to integer arithmetic; the result carries ``.report``.

    ``calibration_data``: a tensor of inputs, or an iterable of tensors or ``(inputs, labels)``
    batches (a DataLoader); at most ``samples`` inputs are used (all if None). They set every
    activation format and the bias correction, and the report's errors are measured on them.
    ``bits``: operand width (16 by default); a mapping ``{layer name: bits}`` narrows the weights
    and input activations of those Conv/Linear layers only (the others stay at 16).
    ``act_bits``: ``{layer name: bits}``, the width of a Conv/Linear layer's input activations where
    it differs from its weights' (``bits``); e.g. ``bits={"conv2": 3}, act_bits={"conv2": 4}`` stores
    conv2's weights as 3-bit codes and brings its input to 4-bit codes (an opt-in extension of the
    contract: the ops already carry the two formats separately, docs/fixedpoint.md).
    ``headroom_bits``: activation ranges cover ``2**headroom_bits`` times the calibration max;
    ``"auto"`` sizes each tensor's margin from its own calibration images (:mod:`.ranges`).
    ``equalize``: fold BN and equalize channel ranges first (:mod:`hwaware.fixedpoint.equalize`).
    ``per_channel_weights``: one weight format per output channel of every Conv/Linear (an opt-in
    extension of the contract, docs/fixedpoint.md; the test vectors then carry ``f_w_channels``).
    ``narrow_formats``: ``{layer: (f_in, f_w)}`` for layers narrowed by ``bits`` or ``act_bits`` -- the formats of
    their narrowed input and weights, given instead of chosen by the max rule (e.g. the formats a
    quantization-aware fine-tuning trained with, :mod:`.clip_formats`); such an input saturates when
    narrowed (an opt-in extension of the contract, docs/fixedpoint.md).
    ``search_formats``: each Conv/Linear's output format ``f_y`` chosen among the max rule's and one
    bit either side by the least error of the network's output on the calibration data, greedily in
    execution order, bias correction applied to each candidate (:mod:`.format_search`).
    The user's model is not modified.
    """
    check_arith(mode, rounding, overflow)
    given = {}
    if narrow_formats is not None:
        from .clip_formats import check_narrow_formats

        given = check_narrow_formats(narrow_formats, "convert")
    if headroom_bits != "auto" and (isinstance(headroom_bits, (bool, str)) or
                                    not isinstance(headroom_bits, (int, float)) or not headroom_bits >= 0):
        raise HwawareError(f"convert: headroom_bits must be a number >= 0 or 'auto', got {headroom_bits!r}")
    if not isinstance(model, nn.Module):
        raise HwawareError(f"convert: expected a torch nn.Module, got {type(model).__name__}")
    layer_bits = _check_bits(bits)
    input_bits = {} if act_bits is None else _check_bits(dict(act_bits), "act_bits")
    if not isinstance(input_bits, dict):
        raise HwawareError(f"convert: act_bits must be a mapping {{layer: bits}}, got {act_bits!r}")

    def narrowest(name: str) -> int:
        w = layer_bits if isinstance(layer_bits, int) else layer_bits.get(name, 16)
        return min(w, input_bits.get(name, w))

    for name in given:
        if narrowest(name) >= 16:
            raise HwawareError(f"convert: narrow_formats names layer '{name}', which bits does not narrow "
                               f"below 16 (nor act_bits)")
    x = collect_inputs(calibration_data, samples)
    model_device = str(next((p.device for p in model.parameters()), torch.device("cpu")))
    # the integer kernels are NumPy: a CPU copy of the model is the float reference (the user's
    # model, on whatever device, is never moved or modified)
    model = _cpu_copy(model).eval().float()
    for mod in model.modules():
        if hasattr(mod, "inplace"):
            mod.inplace = False  # calibration reads values a later in-place op would overwrite
    _check_finite_params(model)
    try:
        gm = trace(model, who="convert")
    except HwawareError as exc:
        raise UnsupportedLayerError(f"{exc}; the fixed-point backend supports static graphs of: "
                                    f"{SUPPORTED}") from None
    split_norm_act(gm)
    if equalize:
        from .equalize import fold_and_equalize

        gm = fold_and_equalize(gm, x)
    with torch.no_grad():
        fixed = Converter(gm, layer_bits, mode=mode, rounding=rounding, overflow=overflow,
                           headroom=headroom_bits, bias_correction=bias_correction,
                           progress=progress, per_channel_weights=bool(per_channel_weights),
                           narrow_formats=given, act_bits=input_bits,
                           search_formats=bool(search_formats)).run(x)
    fixed.report = dataclasses.replace(fixed.report, model_device=model_device)
    return fixed


def _cpu_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` on the CPU, made without copying its tensors on their device first."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        if t.device.type != "cpu":
            memo[id(t)] = (nn.Parameter(t.detach().cpu(), requires_grad=t.requires_grad)
                           if isinstance(t, nn.Parameter) else t.detach().cpu())
    return copy.deepcopy(model, memo)



def _check_bits(bits: int | Mapping[str, int], what: str = "bits") -> dict[str, int] | int:
    def ok(b: Any, where: str) -> int:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 2 <= b <= 16:
            raise HwawareError(f"convert: {where} must be an integer within 2..16, got {b!r}")
        return int(b)

    if isinstance(bits, Mapping):
        return {str(k): ok(v, f"{what}['{k}']") for k, v in bits.items()}
    return ok(bits, what)


def collect_inputs(data: Any, samples: int | None) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        batches: Iterable[Any] = [data]
    elif isinstance(data, np.ndarray):
        batches = [torch.from_numpy(data)]
    else:
        try:
            batches = iter(data)
        except TypeError:
            raise HwawareError(f"convert: calibration_data must be a tensor or an iterable of batches, "
                               f"got {type(data).__name__}") from None
    got: list[torch.Tensor] = []
    n = 0
    for item in batches:
        if isinstance(item, (tuple, list)):
            item = item[0]
        if not isinstance(item, torch.Tensor):
            raise HwawareError(f"convert: calibration batches must be tensors or (inputs, labels), got "
                               f"{type(item).__name__}")
        got.append(item.detach().cpu().float())
        n += item.shape[0]
        if samples is not None and n >= samples:
            break
    if not got:
        raise HwawareError("convert: the calibration data is empty")
    x = torch.cat(got)[:samples] if samples is not None else torch.cat(got)
    if not torch.isfinite(x).all():
        raise HwawareError("convert: the calibration data holds NaN or Inf")
    return x


def _check_finite_params(model: nn.Module) -> None:
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not torch.isfinite(t).all():
            layer, _, what = name.rpartition(".")
            raise HwawareError(f"convert: layer '{layer or name}' has NaN or Inf in its {what}; "
                               f"fix the model before converting")



def top1_agreement(model: nn.Module, fixed: nn.Module, data: Any, *, max_batches: int | None = None) -> float:
    """Fraction of inputs on which ``model`` and ``fixed`` give the same top-1 class."""
    model = model.eval()
    same = seen = 0
    batches = [data] if isinstance(data, torch.Tensor) else data
    with torch.no_grad():
        for i, item in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            xb = item[0] if isinstance(item, (tuple, list)) else item
            same += int((model(xb).argmax(1) == fixed(xb).argmax(1)).sum())
            seen += xb.shape[0]
    if seen == 0:
        raise HwawareError("top1_agreement: the data yields no samples")
    return same / seen


def calibrate_batchnorm(model: nn.Module, data: Any, *, batches: int | None = None) -> nn.Module:
    """Reset and re-estimate every BatchNorm's running statistics (cumulative average) in place.

    For networks with random weights (e.g. torchvision's with ``weights=None``), whose default
    statistics (mean 0, var 1) are meaningless. Returns ``model`` in eval mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    batches_ = [data] if isinstance(data, torch.Tensor) else data
    with torch.no_grad():
        for i, item in enumerate(batches_):
            if batches is not None and i >= batches:
                break
            model(item[0] if isinstance(item, (tuple, list)) else item)
    return model.eval()
