"""Cross-layer range equalization: every channel of a tensor uses the whole range of its format.

One format per tensor means a channel whose values span a tenth of the tensor's range keeps a
tenth of the precision: on the chip every product is cut to ``f_y`` (mode ``eyeriss``), so its
truncation error is the same number of codes for every channel, and a narrow channel's values are
that much less precise. For ``A -> relu/pool -> B`` (channel-wise, positively homogeneous steps
between two Conv/Linear layers) scaling A's output channel ``i`` (weights and bias) by
``s_i > 0`` and B's input channel ``i`` by ``1/s_i`` leaves the float model's output unchanged
(Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction", ICCV
2019). We pick ``s_i = min(cap, R / r_i)``: ``r_i`` is channel i's calibration max of
``|A's output|`` (before the ReLU: the 16-bit adder must hold it), ``R`` the largest ``r_i``; the
cap bounds how much precision B's scaled-down weights lose.

Applied by :func:`hwaware.fixedpoint.convert` (``equalize=True``) to its own BN-folded copy.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_PASS_MODULES = (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                 nn.AdaptiveAvgPool2d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_PASS_FUNCS = (torch.relu, nn.functional.relu)
_CONVS = (nn.Conv1d, nn.Conv2d)
DEFAULT_CAP = 8.0


def _users(node: torch.fx.Node) -> list[torch.fx.Node]:
    return list(node.users)


def _module(gm: torch.fx.GraphModule, node: torch.fx.Node) -> nn.Module | None:
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def pairs(gm: torch.fx.GraphModule) -> list[tuple[str, str, bool]]:
    """``(A, B, via_flatten)`` for every Conv ``A`` whose output reaches only Conv/Linear ``B``.

    Between them only single-user channel-wise steps (ReLU, pooling, dropout, identity) and, for a
    Linear ``B``, one flatten of a 1x1 (or length-1) map.
    """
    found = []
    for node in gm.graph.nodes:
        a = _module(gm, node)
        if not isinstance(a, _CONVS) or a.groups != 1:
            continue
        cur, flat = node, False
        while True:
            users = _users(cur)
            if len(users) != 1:
                break
            nxt = users[0]
            m = _module(gm, nxt)
            if isinstance(m, _CONVS) and m.groups == 1 and not flat and m.in_channels == a.out_channels:
                found.append((str(node.target), str(nxt.target), False))
                break
            if isinstance(m, nn.Linear) and flat and m.in_features == a.out_channels:
                found.append((str(node.target), str(nxt.target), True))
                break
            if isinstance(m, _PASS_MODULES) or (nxt.op == "call_function" and nxt.target in _PASS_FUNCS) or \
                    (nxt.op == "call_method" and nxt.target == "relu"):
                cur = nxt
                continue
            if not flat and (isinstance(m, nn.Flatten) or (nxt.op == "call_function" and nxt.target is torch.flatten)
                             or (nxt.op == "call_method" and nxt.target == "flatten")):
                flat, cur = True, nxt
                continue
            break
    return found


def equalize(gm: torch.fx.GraphModule, x: torch.Tensor, *, cap: float = DEFAULT_CAP) -> list[str]:
    """Scale the channels of every pair from :func:`pairs` in place (BN already folded); the names of
    the scaled layers. The float function is unchanged up to float rounding."""
    done = []
    for a_name, b_name, _ in pairs(gm):
        a, b = gm.get_submodule(a_name), gm.get_submodule(b_name)
        seen: dict[str, torch.Tensor] = {}

        def hook(m: nn.Module, i: Any, o: torch.Tensor, seen: dict = seen) -> None:
            seen["r"] = o.detach().abs().transpose(0, 1).reshape(o.shape[1], -1).amax(1)

        h = a.register_forward_hook(hook)
        try:
            with torch.no_grad():
                gm(x)
        finally:
            h.remove()
        r = seen["r"].double()
        if not (r > 0).any():
            continue
        s = (r.max() / r.clamp_min(r.max() / cap)).clamp(1.0, cap)
        with torch.no_grad():
            shape_a = (-1,) + (1,) * (a.weight.dim() - 1)
            a.weight.mul_(s.reshape(shape_a).to(a.weight.dtype))
            if a.bias is not None:
                a.bias.mul_(s.to(a.bias.dtype))
            shape_b = (1, -1) + (1,) * (b.weight.dim() - 2)
            b.weight.div_(s.reshape(shape_b).to(b.weight.dtype))
        done.append(a_name)
    return done


def fold_and_equalize(gm: torch.fx.GraphModule, x: torch.Tensor, *, cap: float = DEFAULT_CAP) -> Any:
    """BN folded into the Conv before it (``torch.fx`` fuse), then :func:`equalize`; a new GraphModule."""
    from torch.fx.experimental.optimization import fuse

    bns = [m for m in gm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if any(not m.track_running_stats or m.running_mean is None for m in bns):
        return gm  # nothing to fold with; the converter names the layer
    out = fuse(gm, inplace=False, no_trace=True)  # gm is already traced (with hwaware._fx leaves)
    equalize(out, x, cap=cap)
    return out


__all__ = ["DEFAULT_CAP", "equalize", "fold_and_equalize", "pairs"]
