"""Structured channel surgery: remove whole filters/channels and return a smaller *dense* model.

One implementation shared by structured pruning and NetAdapt. The model is traced with
``torch.fx`` and run once on an example input (eval mode, no grad, the model is never modified) to
find which output channels must shrink together (only the first sample of the example input is
run; its shapes are all the analysis needs).

API
---
``channel_groups(model, example_input) -> list[ChannelGroup]``
    Every set of channels that must be removed together. A :class:`ChannelGroup` has

    - ``name``: the first producer (graph order) of the group, e.g. ``"layer1.0.conv1"``;
    - ``size``: number of *units*, the positions you choose from (indices ``0..size-1``);
    - ``width``: output channels of the named producer. Normally ``width == size`` and unit ``u`` is
      channel ``u`` of every producer; when a grouped conv couples channels (see below)
      ``width == k * size`` and unit ``u`` stands for channels ``u, u+size, ...``; ``units[u]``
      lists the exact ``(producer, channel)`` pairs of every unit;
    - ``producers``: Conv/Linear modules whose filters (output channels) are removed — coupled
      producers through residual adds, multiplications and depthwise convs are all listed;
    - ``consumers``: modules whose input channels are removed (next convs, depthwise convs, a Linear
      after ``flatten``, where the ``H*W`` block of columns of each channel goes);
    - ``channelwise``: per-channel modules that are sliced (BatchNorm, PReLU);
    - ``prunable`` / ``reason``: ``False`` with a one-line reason when the group feeds the model
      output, is tied to the model input, or passes through an op surgery cannot follow;
    - ``caveats``: ops that stay valid but whose outputs change (LocalResponseNorm: its window of
      neighbouring channels shifts when channels are removed).

``l2_ranking(model, group) -> list[int]``
    Unit indices, most important first: L2 norm of each filter, summed over coupled producers
    (NetAdapt's rule: keep the largest-L2 filters). Ties keep the lower index first.

``shrink(model, example_input, keep, *, round_to=1, check=True) -> nn.Module``
    A NEW model (deep copy; ``model`` is untouched) in which group ``g`` keeps only the units
    ``keep[g]`` (groups not named keep everything). Conv/Linear/BatchNorm modules are the same
    classes with smaller tensors (also ``weight_orig``/``weight_mask`` left by
    ``torch.nn.utils.prune``), so the profiler, the Eyeriss model and CPU timing all see the
    smaller network. ``check`` runs the example input through the result.

``prune_channels(model, example_input, group_name, n_remove, *, round_to=1) -> nn.Module``
    Remove the ``n_remove`` lowest-L2 units of one group.

``ChannelGraph(model, example_input)``
    The analysis behind all of the above; build it once and call ``.shrink(keep)`` / ``.prune(...)``
    many times in a loop (NetAdapt). It reads the model's *current* weights when shrinking.

Rules
-----
- Followed ops: Conv1d/2d/3d (any ``groups``; timm's same-padding ``Conv2dSame`` too), Linear (2-D
  input, or channels-last after a ``permute``), BatchNorm/InstanceNorm and their subclasses (timm's
  ``BatchNormAct2d`` is one per-channel layer), PReLU, LayerNorm over the channels (channels-last
  ``nn.LayerNorm`` or timm's ``LayerNorm2d``) and GroupNorm with 1 or C groups (both with a caveat:
  the kept channels' statistics change), elementwise activations, dropout, DropPath /
  ``stochastic_depth``, pooling, upsampling, padding, mean/sum over spatial dims,
  ``flatten``/``view``/``reshape``/``(un)squeeze`` (batch dim kept), ``permute`` (batch dim first),
  tensor ``+ - * /`` (residual adds and squeeze-excitation gates couple their operands; a 1-D
  parameter that scales channels, a layer-scale ``gamma``, is sliced with them; viewed to a literal
  shape such as ``(C, 1, 1)``, the module attribute holding that shape is rewritten, as timm
  MetaFormer's ``Scale.shape``, and C blocks if no attribute holds it), ``torch.cat``
  (channel offsets are kept apart; along another dim the operands are coupled), ``chunk`` into equal
  parts (unit i of every part goes together), ``split`` into sizes the module holds in one attribute
  (a list, as timm's MixedConv2d ``splits``; one int, as Res2Net's ``width``; or an int holding
  the equal parts' total, as CSPNet's ``x.split(self.expand_chs // 2, dim=1)``: equal parts then
  shrink unit by unit together) -- surgery rewrites the attribute -- while sizes no attribute holds
  block (they would be wrong after surgery), ``x[:, :n]``
  keeping every channel, ``x[:, 0:v]`` / ``x[:, v:]`` with ``v`` one int attribute of the module
  (RexNet's partial residual ``x[:, 0:self.in_channels] + shortcut``; rewritten like a split
  size). A literal that merely equals such an attribute looks the same in the trace, so ``shrink``
  re-traces the result and raises if a split or slice did not take the kept sizes. Anything else
  blocks the channels through it (listed in ``reason`` with the module path), never silently
  mis-sliced.
- ``view``/``reshape`` with a literal size after the batch dim (``x.view(-1, 9216)``) blocks: the
  literal would be wrong after surgery; write ``torch.flatten(x, 1)`` or ``x.view(x.size(0), -1)``.
- Grouped convs (1 < groups < in_channels, e.g. the paper AlexNet CONV2/4/5, two groups): every
  conv group must keep the same number of channels, so channel ``i`` of each conv group is coupled
  (input channel ``i`` with ``i + C/groups``, output ``j`` with ``j + M/groups``). Pruning CONV1's
  output therefore removes channels in pairs (``width == 2 * size``); ``groups`` stays 2.
- Depthwise convs (``in_channels == groups``): output channels of conv group ``k`` follow input
  channel ``k``; removing a channel removes its depthwise filter and lowers ``groups``.
- ``round_to``: the kept channel count of each named group's producer is rounded UP to a multiple of
  ``round_to`` (the best-ranked removed units come back) and never beyond the original width. Use it
  for counts that tile the PE array (e.g. ``round_to=4`` or ``8`` for a 12x14 Eyeriss array whose
  row-stationary mapping splits filters over PE sets); ``round_to=1`` is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from .channel_graph import ChannelGraph, ChannelGroup, l2_ranking

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "channel_groups",
    "count_params",
    "l2_ranking",
    "prune_channels",
    "shrink",
]


def channel_groups(model: nn.Module, example_input: Any) -> list[ChannelGroup]:
    """Every channel group of ``model`` (prunable or not), in graph order of their first producer."""
    return list(ChannelGraph(model, example_input).groups)


def shrink(model: nn.Module, example_input: Any, keep: Mapping[str, Sequence[int]], *,
           round_to: int = 1, check: bool = True) -> nn.Module:
    """A new smaller dense model keeping ``keep[group_name]`` units; ``model`` is not modified."""
    return ChannelGraph(model, example_input).shrink(keep, round_to=round_to, check=check)


def prune_channels(model: nn.Module, example_input: Any, group_name: str, n_remove: int, *,
                   round_to: int = 1) -> nn.Module:
    """A new model without the ``n_remove`` lowest-L2 units of group ``group_name``."""
    return ChannelGraph(model, example_input).prune(group_name, n_remove, round_to=round_to)


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (handy to check that surgery shrank a model)."""
    return sum(p.numel() for p in model.parameters())

