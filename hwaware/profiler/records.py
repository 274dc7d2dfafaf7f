"""One Conv/Linear call -> its :class:`~hwaware.workload.Layer` record (shape in the paper's letters),
or a short reason why the call cannot be recorded (then it is listed as unmodeled)."""

from __future__ import annotations

import torch
from torch import nn

from .._fx import is_same_pad_conv
from ..workload import Layer


def layer_for(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> Layer | str:
    """The record for one call, or a short reason why the call cannot be recorded."""
    op = type(module).__name__
    if isinstance(module, nn.Linear):
        c = module.in_features
        n = inp.numel() // c if c else 0
        return Layer(name="?", N=n, M=module.out_features, C=c, H=1, W=1, R=1, S=1, op=op)
    if module.padding_mode != "zeros":
        op += f"[padding_mode={module.padding_mode}]"
    spatial = 1 if isinstance(module, nn.Conv1d) else 2
    batched = inp.dim() == spatial + 2
    n = inp.shape[0] if batched else 1
    sizes = list(inp.shape[-spatial:])
    kernel, stride = list(module.kernel_size), list(module.stride)
    same_pad = is_same_pad_conv(module)  # timm Conv2dSame: TF "SAME" padding applied in forward
    if isinstance(module.padding, str) or same_pad:  # odd totals pad one more after
        if same_pad:
            totals = [max((-(-i // s) - 1) * s + (k - 1) * d + 1 - i, 0)
                      for i, k, s, d in zip(sizes, kernel, stride, module.dilation)]
            op += "[same padding in forward]"
        else:  # 'valid', or 'same' (stride 1)
            totals = [0 if module.padding == "valid" else k - 1 for k in kernel]
        pads = [t // 2 for t in totals]
        for i, t in enumerate(totals):
            if t % 2:  # the extra trailing row/column is folded into the input size
                sizes[i] += 1
                op += "[asymmetric same padding]" if "asym" not in op else ""
    else:
        pads = list(module.padding)
    if spatial == 1:  # Conv1d: the length runs along W/S/F
        sizes, kernel, stride, pads = [1] + sizes, [1] + kernel, [1] + stride, [0] + pads
    layer = Layer(name="?", N=n, M=module.out_channels, C=module.in_channels // module.groups,
                  H=sizes[0], W=sizes[1], R=kernel[0], S=kernel[1], U=stride[0], U_h=stride[1],
                  padding=pads[0], padding_w=pads[1], groups=module.groups, op=op)
    got = tuple(out.shape[-spatial:])
    want = (layer.E, layer.F)[-spatial:]
    if got != want:
        return f"output {'x'.join(map(str, got))} != modeled {'x'.join(map(str, want))}"
    return layer



def shape_str(layer: Layer) -> str:
    return f"N={layer.N} M={layer.M} C={layer.C} H={layer.H} W={layer.W} R={layer.R} S={layer.S}"
