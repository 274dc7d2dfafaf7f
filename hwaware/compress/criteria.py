"""Pruning criteria: how one step of the pruning loop picks its target and removes weights.

A criterion is registered by name and the :class:`~hwaware.compress.prune.Pruner` looks it up
from ``PruneConfig.method``; the loop never branches on the name. A new criterion is one class::

    @register_criterion("random")
    class RandomCriterion(Criterion):
        def candidates(self, pruner): ...       # targets, best first ([] = nothing left)
        def propose(self, pruner, target, fraction): ...   # modify pruner.model; return a note

- ``energy`` (Yang, Chen, Sze, CVPR 2017): the Conv/Linear layer with the largest share of the
  Eyeriss energy loses ``fraction`` of its remaining weights by magnitude, the kept weights are
  refit by least squares, then the layer alone is fine-tuned;
- ``magnitude`` (Han et al. 2015): one global threshold removes ``fraction`` of all remaining
  weights, then the whole network is fine-tuned;
- ``structured``: the channel group whose layers hold the most energy loses ``fraction`` of its
  channels (lowest filter L2 first); the model really shrinks; the layers reading those channels
  are refit by least squares to the unpruned outputs (``restore``), then the network is fine-tuned;
- ``l1-filter`` (Li et al., ICLR 2017, "Pruning filters for efficient ConvNets"): the channel-level
  magnitude baseline: the channel group whose weakest filter has the smallest mean |w| loses
  ``fraction`` of its channels, smallest filter L1 norm first, no restoration, then the whole
  network is fine-tuned; energy is never looked at.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch

from ..errors import HwawareError
from ..measure import module_energy
from .energy_aware import capture_io, energy_order, least_squares_restore, restore_consumers, restore_cost
from .magnitude import Masks, magnitude_masks, prunable_layers

if TYPE_CHECKING:
    from .prune import Pruner

__all__ = ["CRITERIA", "Criterion", "criterion", "register_criterion"]


class Criterion(ABC):
    """One pruning method. ``uses_masks``: the criterion prunes by masks, in place (the model keeps
    its shape; a rollback needs a copy); ``False``: proposals build a new, smaller model (a rollback
    needs no copy). Either way ``pruner.masks`` holds the model's zero weights at zero through every
    fine-tune, so a weight-pruned model keeps its sparsity under channel pruning too."""

    name: ClassVar[str] = ""
    uses_masks: ClassVar[bool] = True

    @abstractmethod
    def candidates(self, pruner: Pruner) -> list[str]:
        """The targets (layers or channel groups) still prunable, best first; [] when none is left."""

    @abstractmethod
    def propose(self, pruner: Pruner, target: str, fraction: float) -> str:
        """Prune ``fraction`` of ``target`` in ``pruner.model``; return a one-line note."""


CRITERIA: dict[str, type[Criterion]] = {}


def register_criterion(name: str) -> Callable[[type[Criterion]], type[Criterion]]:
    def deco(cls: type[Criterion]) -> type[Criterion]:
        if name in CRITERIA:
            warnings.warn(f"pruning criterion '{name}' registered twice; the later definition wins", stacklevel=2)
        cls.name = name
        CRITERIA[name] = cls
        return cls

    return deco


def criterion(name: str) -> Criterion:
    """A fresh instance of the criterion registered as ``name`` (PruneConfig checked the name)."""
    return CRITERIA[name]()


def _and(a: Masks | None, b: Masks) -> Masks:
    if a is None:
        return b
    return Masks({n: (a.masks[n] & m) if n in a.masks else m for n, m in b.masks.items()})


@register_criterion("energy")
class EnergyCriterion(Criterion):
    def candidates(self, pruner: Pruner) -> list[str]:
        layers = prunable_layers(pruner.model)
        return [n for n in energy_order(pruner.current.layer_energy, layers) if n not in pruner.done]

    def propose(self, pruner: Pruner, target: str, fraction: float) -> str:
        cfg = pruner.config
        mod = dict(pruner.model.named_modules())[target]
        old_mask = pruner.masks.masks[target]
        cur = 1.0 - old_mask.float().mean().item()
        new_mask = magnitude_masks(pruner.model, {target: cur + fraction * (1.0 - cur)}).masks[target] & old_mask
        note = f"{target} sparsity {1.0 - new_mask.float().mean().item():.1%}"
        if cfg.restore:
            cost = restore_cost(new_mask, getattr(mod, "groups", 1))
            if cost > cfg.restore_max_flops:
                note += f", restoration skipped ({cost:.1e} flops > restore_max_flops)"
                with torch.no_grad():
                    mod.weight.mul_(new_mask)
            else:
                x, y = capture_io(pruner.model, mod, pruner.calib)
                w = least_squares_restore(mod, x, y, new_mask, ridge=cfg.ridge, seed=cfg.seed)
                with torch.no_grad():
                    mod.weight.copy_(w)
                note += ", restored"
        else:
            with torch.no_grad():
                mod.weight.mul_(new_mask)
        pruner.masks = pruner.masks.with_layer(target, new_mask)
        pruner.finetune(cfg.local_steps, params=list(mod.parameters()))
        return note


@register_criterion("magnitude")
class MagnitudeCriterion(Criterion):
    def candidates(self, pruner: Pruner) -> list[str]:
        return [] if "global" in pruner.done else ["global"]

    def propose(self, pruner: Pruner, target: str, fraction: float) -> str:
        cur = pruner.masks.sparsity() if pruner.masks else 0.0
        new = magnitude_masks(pruner.model, cur + fraction * (1.0 - cur), scope="global")
        pruner.masks = _and(pruner.masks, new)
        pruner.masks.apply(pruner.model)
        pruner.finetune(pruner.config.local_steps)
        return f"global sparsity {pruner.masks.sparsity():.1%}"


def _shrunk(pruner: Pruner, model: torch.nn.Module) -> None:
    """Make the channel-pruned ``model`` current. Surgery slices weights, so the kept filters keep
    their zeros; the masks are re-read from those zeros (as for a saved pruned model), which
    carries the weight sparsity through the removal of channels."""
    pruner.model = model.eval()
    pruner.masks = Masks.from_model(pruner.model)


class _ChannelCriterion(Criterion):
    """Criteria that remove whole channels through the shared surgery (a new, smaller model)."""

    uses_masks = False

    def __init__(self) -> None:
        self._graph = None
        self._graph_model = None

    def _channel_graph(self, pruner: Pruner):  # noqa: ANN202 - ChannelGraph import is lazy
        from .surgery import ChannelGraph

        if self._graph is None or self._graph_model is not pruner.model:
            self._graph = ChannelGraph(pruner.model, pruner.calib[:1])
            self._graph_model = pruner.model
        graph = self._graph
        if not graph.prunable_groups():
            raise HwawareError(graph.why_nothing_prunable(f"{self.name} pruning"))
        return graph


@register_criterion("structured")
class StructuredCriterion(_ChannelCriterion):
    def candidates(self, pruner: Pruner) -> list[str]:
        graph = self._channel_graph(pruner)
        energy = module_energy(pruner.current.layer_energy)
        scored = []
        for g in graph.prunable_groups():
            if g.name in pruner.done or g.size < 2:
                continue
            layers = set(g.producers) | set(g.consumers)
            scored.append((-sum(energy.get(n, 0.0) for n in layers), g.name))
        return [name for _, name in sorted(scored)]

    def propose(self, pruner: Pruner, target: str, fraction: float) -> str:
        cfg = pruner.config
        graph = self._channel_graph(pruner)
        g = graph.group(target)
        n_remove = min(g.size - 1, max(1, round(fraction * g.size)))
        old = pruner.model
        _shrunk(pruner, graph.prune(target, n_remove, round_to=cfg.round_to))
        note = f"{target}: {g.size} -> {g.size - n_remove} channel units"
        if cfg.restore:
            restored = restore_consumers(old, pruner.model, g.consumers, pruner.calib, ridge=cfg.ridge,
                                         seed=cfg.seed, max_flops=cfg.restore_max_flops, masks=pruner.masks)
            note += f", restored {', '.join(restored)}" if restored else ""
        pruner.finetune(cfg.local_steps)
        return note


@register_criterion("l1-filter")
class L1FilterCriterion(_ChannelCriterion):
    """Channel-level magnitude pruning (filter L1 norm, Li et al. 2017) in the same loop: the group
    whose weakest filter has the smallest mean |w| (its L1 norm over its number of weights, so
    filters of different sizes compare) goes first; it loses ``fraction`` of its channels, smallest
    L1 first; no restoration; then the whole network is fine-tuned. Nothing here looks at energy."""

    def candidates(self, pruner: Pruner) -> list[str]:
        graph = self._channel_graph(pruner)
        mods = dict(pruner.model.named_modules())
        scored = []
        for g in graph.prunable_groups():
            if g.name in pruner.done or g.size < 2:
                continue
            l1 = {n: mods[n].weight.detach().reshape(mods[n].weight.shape[0], -1).abs() for n in g.producers}
            per_unit = [sum(float(l1[n][c].sum()) for n, c in unit) / max(1, sum(l1[n].shape[1] for n, _ in unit))
                        for unit in g.units]
            scored.append((min(per_unit), g.name))
        return [name for _, name in sorted(scored)]

    def propose(self, pruner: Pruner, target: str, fraction: float) -> str:
        graph = self._channel_graph(pruner)
        g = graph.group(target)
        n_remove = min(g.size - 1, max(1, round(fraction * g.size)))
        keep = sorted(graph.ranking(g, p=1)[: g.size - n_remove])
        _shrunk(pruner, graph.shrink({g.name: keep}, round_to=pruner.config.round_to))
        pruner.finetune(pruner.config.local_steps)
        return f"{target}: {g.size} -> {len(keep)} channel units (filter L1)"
