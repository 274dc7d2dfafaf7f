"""Slicing modules in place for channel surgery: keep given output/input channels of a layer.

Used by :class:`hwaware.compress.channel_graph.ChannelGraph` on a deep copy of the user's model;
the classes stay the same (a Conv2d stays a Conv2d with smaller tensors), so the profiler and the
hardware model see the smaller network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import HwawareError

if TYPE_CHECKING:
    from .channel_group import ChannelGroup

__all__ = ["resize_channelwise", "round_up", "shrink_conv", "slice_module", "validate_keep"]


def validate_keep(g: ChannelGroup, idx: Sequence[int]) -> set[int]:
    try:
        kept = [int(i) for i in idx]
    except (TypeError, ValueError):
        raise HwawareError(f"keep['{g.name}'] must be a sequence of unit indices, got {idx!r}") from None
    bad = [i for i in kept if not 0 <= i < g.size]
    if bad:
        raise HwawareError(f"keep['{g.name}'] has indices {bad[:5]} outside [0, {g.size - 1}]")
    if len(set(kept)) != len(kept):
        raise HwawareError(f"keep['{g.name}'] has repeated indices")
    if not kept:
        raise HwawareError(f"keep['{g.name}'] is empty; a group keeps at least one of its {g.size} units")
    return set(kept)


def round_up(kept: set[int], g: ChannelGroup, ranking: list[int], round_to: int) -> set[int]:
    """Add back the best-ranked removed units until the lead producer's channel count is a
    multiple of ``round_to`` (or nothing is removed)."""
    lead_count = [sum(1 for n, _ in unit if n == g.name) for unit in g.units]
    kept = set(kept)
    extra = iter(u for u in ranking if u not in kept)
    while len(kept) < g.size and sum(lead_count[u] for u in kept) % round_to:
        kept.add(next(extra))
    return kept


def _index(t: torch.Tensor, dim: int, idx: list[int]) -> torch.Tensor:
    if len(idx) == t.shape[dim]:
        return t.detach().clone()
    return t.detach().index_select(dim, torch.as_tensor(idx, dtype=torch.long, device=t.device)).clone()


def slice_module(mod: nn.Module, out_idx: list[int], in_idx: list[int] | None) -> None:
    """Slice every weight-like tensor of ``mod`` (params and buffers, incl. prune's _orig/_mask)."""
    for store in (mod._parameters, mod._buffers):
        for pname, t in list(store.items()):
            if t is None or pname == "num_batches_tracked":
                continue
            base = pname[:-5] if pname.endswith(("_orig", "_mask")) else pname
            new = _index(t, 0, out_idx) if t.dim() >= 1 else t.detach().clone()
            if base == "weight" and in_idx is not None and t.dim() >= 2:
                new = _index(new, 1, in_idx)
            if isinstance(t, nn.Parameter):
                store[pname] = nn.Parameter(new, requires_grad=t.requires_grad)
            else:
                store[pname] = new
    if "weight_orig" in mod._parameters and "weight_mask" in mod._buffers:
        # torch.nn.utils.prune recomputes `weight` before each forward; keep the attribute consistent
        object.__setattr__(mod, "weight", mod._parameters["weight_orig"] * mod._buffers["weight_mask"])


def shrink_conv(name: str, mod: nn.Module, kept_out: list[int], kept_in: list[int]) -> None:
    g = mod.groups
    c_in, m = mod.in_channels, mod.out_channels
    if g == 1:
        slice_module(mod, kept_out, kept_in)
        new_groups = 1
    elif c_in // g == 1:  # depthwise: whole conv groups go
        m_g = m // g
        if len(kept_out) != len(kept_in) * m_g:
            raise AssertionError(f"surgery bug: depthwise '{name}' keeps {len(kept_out)} of {m} filters "
                                 f"for {len(kept_in)} channels")
        slice_module(mod, kept_out, None)
        new_groups = len(kept_in)
    else:
        c_g, m_g = c_in // g, m // g
        local = sorted({i % c_g for i in kept_in})
        if sorted(kept_in) != sorted(i + j * c_g for j in range(g) for i in local) or any(
            sum(1 for o in kept_out if o // m_g == j) != len(kept_out) // g for j in range(g)
        ):
            raise AssertionError(f"surgery bug: grouped conv '{name}' lost its group symmetry")
        slice_module(mod, kept_out, local)
        new_groups = g
    mod.in_channels, mod.out_channels, mod.groups = len(kept_in), len(kept_out), new_groups


def resize_channelwise(mod: nn.Module, kept: list[int]) -> None:
    """Slice a per-channel module (BatchNorm and subclasses, InstanceNorm, LayerNorm over channels,
    GroupNorm, PReLU) to the channels ``kept`` and update its size attributes."""
    slice_module(mod, kept, None)
    n = len(kept)
    if isinstance(mod, nn.PReLU):
        mod.num_parameters = n
    elif isinstance(mod, nn.LayerNorm):
        mod.normalized_shape = (n,)
    elif isinstance(mod, nn.GroupNorm):
        if mod.num_groups == mod.num_channels:
            mod.num_groups = n
        mod.num_channels = n
    else:
        mod.num_features = n


def slice_param(mod: nn.Module, pname: str, kept: list[int]) -> None:
    """Keep entries ``kept`` of the 1-D parameter/buffer ``pname`` of ``mod`` (a layer-scale gamma)."""
    t = getattr(mod, pname)
    new = _index(t, 0, kept)
    if isinstance(t, nn.Parameter):
        setattr(mod, pname, nn.Parameter(new, requires_grad=t.requires_grad))
    else:
        setattr(mod, pname, new)
