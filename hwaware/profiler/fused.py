"""Which torch calls after a layer an accelerator fuses into that layer's output: the ReLU its output
unit applies, and a BatchNorm folded into the layer's weights and bias for inference.

Eyeriss reads each ofmap from its buffer, passes it through its ReLU module and RLC encoder and writes
it to DRAM (JSSC 2017 Sec. IV-B); it has no pooling unit (Sec. III lists the PE array, the buffer, the
RLC codec and the ReLU module), so a pooled network's layer writes the ReLU output *before* pooling.
The profiler measures that tensor (:class:`~hwaware.profiler.hooks.Profiler`): the output of a ReLU
(``relu``, ``relu_``, ``relu6``, ``hardtanh`` with a lower bound of 0) whose input is the layer's
output, or the output of a BatchNorm of it. Anything else in between (an add, a pooling) leaves the
layer without a measured ReLU output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

_RELU = frozenset({torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, torch.Tensor.relu, torch.Tensor.relu_})


def role(func: Any, args: tuple, kwargs: dict) -> str:
    """``"relu"``, ``"fold"`` (BatchNorm), ``"write"`` (an in-place op other than a ReLU: the tensor
    is no longer the layer's output) or ``""`` (anything else, e.g. reading its shape)."""
    try:
        if func in _RELU:
            return "relu"
    except TypeError:  # an unhashable callable
        return ""
    if func is F.batch_norm:
        return "fold"
    if func is F.hardtanh:
        lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        return "relu" if lo == 0 else "write" if _inplace(args, kwargs, 3) else ""
    name = getattr(func, "__name__", "")
    if name.startswith("__i") or (name.endswith("_") and not name.startswith("_")):
        return "write"
    return ""


def _inplace(args: tuple, kwargs: dict, pos: int) -> bool:
    return bool(args[pos] if len(args) > pos else kwargs.get("inplace", False))
