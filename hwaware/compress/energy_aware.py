"""Pieces of energy-aware pruning (Yang, Chen, Sze, CVPR 2017) that are not the loop itself.

- :func:`energy_order`: layers sorted by their share of the Eyeriss energy (largest first); the
  loop in :mod:`hwaware.compress.prune` re-profiles and rescores after every layer, so the order
  follows the sparsity the pruned model really has.
- :func:`capture_io`: a layer's input and output on sampled images (forward hook, eval mode).
- :func:`least_squares_restore`: after magnitude pruning of one layer, refit the kept weights so
  the layer's *output feature maps* match those before pruning (closed-form ridge least squares
  on sampled input patches), instead of leaving the surviving weights as they were.
- :func:`restore_consumers`: the same fit at channel level: after whole channels are removed, the
  layers that read them (the group's consumers) are refit on their remaining input channels so
  their outputs match the unpruned model's (the reconstruction step of channel pruning, He, Zhang,
  Sun, ICCV 2017, and ThiNet, Luo et al. ICCV 2017). A consumer's zero weights (a weight-pruned
  model) stay zero: only its kept weights are refit, the same masked solve as above.

The least-squares problem for filter ``m`` with kept weight positions ``k``::

    w_k = argmin ||X[:, k] w - (y_m - b_m)||^2 + lam ||w||^2 = (A_kk + lam I)^-1 (X^T (y_m - b_m))_k

with ``X`` the unfolded input patches (rows = output positions of the sampled images, columns =
``C/groups * R * S``), ``A = X^T X`` shared by every filter of a conv group, and
``lam = ridge * trace(A) / D``. Biases stay as they are. When a filter keeps more weights than it
loses, the same minimizer comes from the full inverse ``S = (A + lam I)^-1`` and a system in the
removed positions ``r`` only: ``w = S b - S[:, r] (S[r, r])^-1 (S b)[r]`` (much cheaper early on).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._modes import inspection_mode
from ..errors import HwawareError
from ..measure import module_energy, module_of
from .magnitude import Masks

__all__ = ["capture_io", "energy_order", "least_squares_restore", "module_of", "restore_consumers", "restore_cost"]


def energy_order(layer_energy: Mapping[str, float], candidates: Any = None) -> list[str]:
    """Module names by summed layer energy, largest first (ties: name order); only ``candidates``
    when given."""
    per_module = module_energy(layer_energy)
    names = [n for n in per_module if candidates is None or n in candidates]
    return sorted(names, key=lambda n: (-per_module[n], n))


def capture_io(model: nn.Module, module: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and output of ``module`` (first call) when ``model`` runs ``batch`` (eval, no grad)."""
    got: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        if "x" not in got:
            got["x"], got["y"] = inp[0].detach(), out.detach()

    handle = module.register_forward_hook(hook)
    try:
        with inspection_mode(model):
            model(batch)
    finally:
        handle.remove()
    if "x" not in got:
        raise HwawareError(f"layer {type(module).__name__} was not called by the model's forward")
    return got["x"], got["y"]


def _patches(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(rows, groups*D) input patches, (rows, M) targets minus bias, and the number of groups."""
    if isinstance(module, nn.Linear):
        p = x.reshape(-1, module.in_features)
        t = y.reshape(-1, module.out_features)
        groups = 1
    elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros" or isinstance(module.padding, str) and module.padding != "valid":
            raise HwawareError(f"least-squares restoration supports zero padding with explicit sizes, "
                               f"got padding={module.padding!r}, padding_mode={module.padding_mode!r}")
        pad = (0,) * len(module.kernel_size) if module.padding == "valid" else module.padding
        if isinstance(module, nn.Conv1d):
            x = x.unsqueeze(2)
            y = y.unsqueeze(2)
            kernel, stride = (1, module.kernel_size[0]), (1, module.stride[0])
            dilation, padding = (1, module.dilation[0]), (0, pad[0])
        else:
            kernel, stride, dilation, padding = module.kernel_size, module.stride, module.dilation, pad
        cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # (N, C*R*S, L)
        p = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        t = y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1])
        groups = module.groups
    else:
        raise HwawareError(f"least-squares restoration supports Conv1d/Conv2d/Linear, got {type(module).__name__}")
    if module.bias is not None:
        t = t - module.bias.detach()
    return p, t, groups


def restore_cost(mask: torch.Tensor, groups: int = 1) -> float:
    """Rough float operations of the solves: per conv group one D x D inverse, per filter a system
    of min(kept, removed) unknowns (see :func:`least_squares_restore`)."""
    flat = mask.reshape(mask.shape[0], -1)
    d = flat.shape[1]
    kept = flat.sum(1).double()
    small = torch.minimum(kept, d - kept)
    return float((small ** 3).sum() / 3 + groups * d ** 3)


def least_squares_restore(module: nn.Module, inputs: torch.Tensor, outputs: torch.Tensor,
                          mask: torch.Tensor, *, ridge: float = 1e-3, max_rows: int = 8192,
                          seed: int = 0) -> torch.Tensor:
    """The layer's new ``weight``: zero where ``mask`` is False, the kept entries refit by ridge
    least squares so that ``module(inputs)`` reproduces ``outputs`` (see the module docstring).

    ``outputs`` are the layer's outputs before pruning; at most ``max_rows`` sampled output
    positions (drawn with ``seed``) enter the fit. ``module`` is not modified.
    """
    if not ridge >= 0:
        raise HwawareError(f"ridge must be >= 0, got {ridge!r}")
    w = module.weight.detach()
    if mask.shape != w.shape:
        raise HwawareError(f"mask shape {tuple(mask.shape)} differs from the weight {tuple(w.shape)}")
    p, t, groups = _patches(module, inputs.detach(), outputs.detach())
    if p.shape[0] > max_rows:
        g = torch.Generator().manual_seed(seed)
        rows = torch.randperm(p.shape[0], generator=g)[:max_rows]
        p, t = p[rows], t[rows]
    p, t = p.double(), t.double()
    m_total = w.shape[0]
    m_g = m_total // groups
    d = p.shape[1] // groups
    flat_mask = mask.reshape(m_total, -1)
    new = torch.zeros(m_total, d, dtype=torch.float64)
    for g in range(groups):
        pg = p[:, g * d:(g + 1) * d]
        a = pg.T @ pg
        b = pg.T @ t[:, g * m_g:(g + 1) * m_g]
        lam = ridge * float(torch.trace(a)) / d + 1e-12
        a_reg = a + lam * torch.eye(d, dtype=torch.float64)
        inv = None
        for j in range(m_g):
            m = g * m_g + j
            keep = flat_mask[m].nonzero().squeeze(1)
            drop = (~flat_mask[m]).nonzero().squeeze(1)
            if keep.numel() == 0:
                continue
            if drop.numel() >= keep.numel():  # solve on the kept weights directly
                new[m, keep] = torch.linalg.solve(a_reg[keep][:, keep], b[keep, j])
                continue
            # fewer removed than kept: constrained solution through the full inverse S,
            # w = S b - S[:, r] (S[r, r])^-1 (S b)[r]   (r = removed positions; w[r] = 0)
            if inv is None:
                inv = torch.linalg.inv(a_reg)
            full = inv @ b[:, j]
            if drop.numel():
                mu = torch.linalg.solve(inv[drop][:, drop], full[drop])
                full = full - inv[:, drop] @ mu
            new[m, keep] = full[keep]
    return new.reshape(w.shape).to(w.dtype)


def restore_consumers(old: nn.Module, new: nn.Module, consumers: Any, batch: torch.Tensor, *,
                      ridge: float = 1e-3, seed: int = 0, max_flops: float = 2e10,
                      masks: Masks | None = None) -> list[str]:
    """Refit, in place, every Conv/Linear consumer of ``new`` (``old`` after channel surgery) so its
    output on ``batch`` matches the same layer's output in ``old``. Only the consumer's kept weights
    are free: ``masks[name]`` when given, else its non-zero weights, so a weight-pruned model keeps
    its zeros (per output channel, least squares over that filter's kept weights). Returns the names
    restored; a layer whose solve would cost more than ``max_flops`` (:func:`restore_cost`) is left
    as it is and returned with " (skipped)" appended."""
    done = []
    for name in consumers:
        mod_new, mod_old = new.get_submodule(name), old.get_submodule(name)
        if not isinstance(mod_new, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            continue
        if masks is not None and name in masks.masks:
            mask = masks.masks[name]
        else:
            mask = mod_new.weight.detach() != 0
        if restore_cost(mask, getattr(mod_new, "groups", 1)) > max_flops:
            done.append(f"{name} (skipped)")
            continue
        _, y_old = capture_io(old, mod_old, batch)
        x_new, _ = capture_io(new, mod_new, batch)
        w = least_squares_restore(mod_new, x_new, y_old, mask, ridge=ridge, seed=seed)
        with torch.no_grad():
            mod_new.weight.copy_(w)
        done.append(name)
    return done
