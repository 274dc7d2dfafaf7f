"""Magnitude pruning (Han et al., NIPS 2015): zero the smallest-|w| weights, keep them zero.

Masks live *outside* the model: a pruned weight is an exact zero in the ordinary ``weight``
tensor, so a pruned model's ``state_dict`` is a plain one that loads into a fresh instance of the
same class, and :meth:`Masks.from_model` recovers the masks from the zeros. During fine-tuning
the masks are re-applied after every optimizer step (``hwaware.train.fit(...,
after_step=masks.apply)``), so pruned weights stay pruned.

    >>> masks = magnitude_masks(model, 0.8, scope="global")   # 80% of all Conv/Linear weights
    >>> masks.apply(model)                                      # zero them in place
    >>> fit(model, loader, after_step=masks.apply)              # fine-tune, masks kept
    >>> load_pruned_state_dict(fresh_model, torch.load(path))   # 'module.' prefixes, prune's
    ...                                                         # weight_orig/weight_mask handled

Only ``weight`` tensors of ``nn.Conv1d``/``nn.Conv2d``/``nn.Linear`` are pruned (biases and
BatchNorm are not: they are few and every output uses them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._suggest import did_you_mean
from ..errors import HwawareError

__all__ = [
    "PRUNABLE",
    "Masks",
    "load_pruned_state_dict",
    "magnitude_masks",
    "prunable_layers",
]

PRUNABLE: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
SCOPES = ("layer", "global")


def prunable_layers(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, nn.Module]:
    """Conv1d/Conv2d/Linear modules by name (all, or those named in ``layers``)."""
    found = {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}
    if layers is None:
        return found
    out = {}
    for name in layers:
        if name not in found:
            raise HwawareError(f"layer '{name}' is not a Conv1d/Conv2d/Linear of the model"
                               f"{did_you_mean(name, found)}; prunable layers: {', '.join(found)}")
        out[name] = found[name]
    return out


@dataclass(frozen=True)
class Masks:
    """Per-layer boolean masks shaped like each layer's ``weight`` (True = kept)."""

    masks: Mapping[str, torch.Tensor]

    def __post_init__(self) -> None:
        for name, m in self.masks.items():
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
                raise ValueError(f"mask of '{name}' must be a bool tensor, got {getattr(m, 'dtype', type(m))}")

    @classmethod
    def from_model(cls, model: nn.Module, layers: Iterable[str] | None = None) -> Masks:
        """Masks of the weights that are non-zero now (how a saved pruned model is re-masked)."""
        return cls({n: m.weight.detach() != 0 for n, m in prunable_layers(model, layers).items()})

    def apply(self, model: nn.Module) -> None:
        """Zero the masked weights of ``model`` in place (use as ``fit(after_step=masks.apply)``)."""
        mods = dict(model.named_modules())
        with torch.no_grad():
            for name, mask in self.masks.items():
                mod = mods.get(name)
                if mod is None or mod.weight.shape != mask.shape:
                    raise HwawareError(
                        f"mask '{name}' {tuple(mask.shape)} does not fit the model "
                        f"({'no such layer' if mod is None else tuple(mod.weight.shape)})")
                mod.weight.mul_(mask.to(mod.weight.device))

    def with_layer(self, name: str, mask: torch.Tensor) -> Masks:
        return Masks({**self.masks, name: mask})

    def layer_sparsity(self) -> dict[str, float]:
        """Fraction of pruned weights per layer."""
        return {n: 1.0 - m.float().mean().item() for n, m in self.masks.items()}

    def sparsity(self) -> float:
        """Fraction of pruned weights over all masked layers."""
        total = sum(m.numel() for m in self.masks.values())
        kept = sum(int(m.sum()) for m in self.masks.values())
        return 1.0 - kept / total if total else 0.0


def _check_fraction(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HwawareError(f"{what} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= v < 1.0:
        raise HwawareError(f"{what} must be in [0, 1), got {value!r}")
    return v


def _smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask, True except at the ``k`` smallest entries (exactly k; ties broken by position)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if k > 0:
        idx = torch.argsort(scores.reshape(-1), stable=True)[:k]
        keep[idx] = False
    return keep.reshape(scores.shape)


def magnitude_masks(model: nn.Module, sparsity: float | Mapping[str, float], *, scope: str = "layer",
                    layers: Iterable[str] | None = None) -> Masks:
    """Masks that prune the smallest-|w| weights.

    ``sparsity``: the fraction of weights pruned (already-zero weights count, being smallest).
    ``scope="layer"``: each layer reaches ``sparsity`` (a float, or ``{layer: fraction}``, layers
    not named keep their current zeros); ``scope="global"``: one threshold over all ``layers``
    (default: every Conv/Linear), so layers with many small weights lose more.
    """
    if scope not in SCOPES:
        raise HwawareError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}{did_you_mean(scope, SCOPES)}")
    mods = prunable_layers(model, layers)
    if not mods:
        raise HwawareError(f"{type(model).__name__} has no Conv1d/Conv2d/Linear layer to prune")
    weights = {n: m.weight.detach().abs().cpu() for n, m in mods.items()}
    if isinstance(sparsity, Mapping):
        if scope == "global":
            raise HwawareError("a per-layer sparsity mapping needs scope='layer'")
        for name in sparsity:
            if name not in mods:
                raise HwawareError(f"sparsity names layer '{name}', not a prunable layer"
                                   f"{did_you_mean(name, mods)}")
        fractions = {n: _check_fraction(sparsity[n], f"sparsity of '{n}'") if n in sparsity else None
                     for n in mods}
        return Masks({n: (w != 0) if fractions[n] is None else _smallest(w, round(fractions[n] * w.numel()))
                      for n, w in weights.items()})
    s = _check_fraction(sparsity, "sparsity")
    if scope == "layer":
        return Masks({n: _smallest(w, round(s * w.numel())) for n, w in weights.items()})
    flat = torch.cat([w.reshape(-1) for w in weights.values()])
    keep = _smallest(flat, round(s * flat.numel()))
    out, start = {}, 0
    for n, w in weights.items():
        out[n] = keep[start:start + w.numel()].reshape(w.shape)
        start += w.numel()
    return Masks(out)


def load_pruned_state_dict(model: nn.Module, state_dict: Mapping[str, Any]) -> Masks:
    """Load a (pruned) state_dict into ``model`` strictly and return the masks it implies.

    Accepts a ``module.`` prefix (DataParallel/DDP) and ``torch.nn.utils.prune`` pairs
    (``weight_orig`` * ``weight_mask`` -> ``weight``); any key left missing or unexpected raises
    :class:`HwawareError` naming it, so no mask is ever skipped silently.
    """
    sd = dict(state_dict)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    for key in [k for k in sd if k.endswith("_orig")]:
        base = key[: -len("_orig")]
        mask_key = base + "_mask"
        if mask_key not in sd:
            raise HwawareError(f"state_dict has '{key}' without '{mask_key}' (torch.nn.utils.prune format)")
        sd[base] = sd.pop(key) * sd.pop(mask_key)
    stray = [k for k in sd if k.endswith("_mask")]
    if stray:
        raise HwawareError(f"state_dict has mask '{stray[0]}' without its '_orig' tensor")
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise HwawareError(f"state_dict does not match {type(model).__name__}: {'; '.join(parts)}")
    bad = [k for k, v in sd.items() if hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise HwawareError(f"state_dict '{k}' has shape {tuple(sd[k].shape)}, the model has "
                           f"{tuple(own[k].shape)} (a structurally pruned model: load the saved model "
                           "file instead of a state_dict)")
    model.load_state_dict(sd, strict=True)
    return Masks.from_model(model)
