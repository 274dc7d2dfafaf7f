"""Small pieces of channel surgery: :class:`ChannelGroup` (channels removed together), the
union-find the analysis ties channels with, the shape-recording run, the L2 (or L1) ranking of units."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .._fx import shape_of
from ..errors import HwawareError

__all__ = ["ChannelGroup", "ShapeRecorder", "UnionFind", "as_args", "l2_ranking"]


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels that must be removed together (see the module docstring)."""

    name: str
    size: int
    width: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    channelwise: tuple[str, ...] = ()
    prunable: bool = True
    reason: str = ""
    caveats: tuple[str, ...] = ()
    #: per unit, the (producer module, output channel) pairs it removes
    units: tuple[tuple[tuple[str, int], ...], ...] = field(default=(), repr=False)

    @property
    def channels_per_unit(self) -> int:
        """Channels of the named producer one unit stands for (2 for AlexNet CONV1; >= 1 always)."""
        return max(1, round(self.width / self.size))

    def __post_init__(self) -> None:
        if self.size < 1 or self.width < 1:
            raise ValueError(f"ChannelGroup {self.name!r}: size={self.size}, width={self.width}; "
                             "both must be >= 1")
        if self.units and len(self.units) != self.size:
            raise ValueError(f"ChannelGroup {self.name!r}: {len(self.units)} units for size {self.size}")


@dataclass(frozen=True)
class SizeAttribute:
    """A module attribute that holds channel counts the forward splits or slices by (timm MixedConv2d's
    ``splits``, Res2Net's ``width``, RexNet's ``in_channels``): surgery rewrites it.

    ``parts``: atoms whose kept counts are the attribute's new value (a list attribute: one per entry;
    an int: ``scale`` times the first's; a shape: its entry ``index``, the first's). ``node`` / ``outputs`` / ``cdim``: the split or slice in the traced graph and
    the atoms of each of its outputs, to check the shrunk model's sizes (the forward might hold a
    literal equal to the attribute, not read it)."""

    owner: str
    attr: str
    parts: tuple[np.ndarray, ...]
    node: str
    outputs: tuple[np.ndarray, ...]
    cdim: int = 1
    scale: int = 1  # an int attribute holds ``scale`` x the first part's size (CSPNet: the total of 2 parts)
    index: int | None = None  # a shape attribute: only its entry ``index`` is the first part's size


class ShapeRecorder(fx.Interpreter):
    """Runs the traced graph once and records each node's output shape (None if not a tensor)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.shapes[n] = shape_of(out)
        return out


def as_args(example_input: Any) -> tuple[Any, ...]:
    """The forward's arguments, cut to the first sample (shapes are all the analysis needs)."""
    if isinstance(example_input, torch.Tensor):
        args: tuple[Any, ...] = (example_input,)
    elif isinstance(example_input, (tuple, list)) and example_input:
        args = tuple(example_input)
    else:
        raise HwawareError(
            f"example_input must be a tensor or a tuple of tensors, got {type(example_input).__name__}"
        )
    return tuple(a[:1] if isinstance(a, torch.Tensor) and a.dim() > 1 else a for a in args)


class UnionFind:
    """Disjoint sets of channel atoms (integers), with path compression."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:
            p[a], a = root, p[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            if ra < rb:
                ra, rb = rb, ra
            self.parent[ra] = rb

    def union_arrays(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            self.union(x, y)


def l2_ranking(model: nn.Module, group: ChannelGroup, *, p: int = 2) -> list[int]:
    """Unit indices sorted by summed filter norm over the group's producers, largest first: the L2
    norm (NetAdapt's rule) or, with ``p=1``, the L1 norm (Li et al., ICLR 2017, "Pruning filters for
    efficient ConvNets"). Ties keep the lower index first."""
    if p not in (1, 2):
        raise HwawareError(f"filter ranking norm must be 1 or 2, got {p!r}")
    mods = dict(model.named_modules())
    norms: dict[str, torch.Tensor] = {}
    for name in group.producers:
        if name not in mods:
            raise HwawareError(f"group '{group.name}' names producer '{name}', not in this model")
        w = mods[name].weight.detach()
        norms[name] = w.reshape(w.shape[0], -1).float().norm(p=p, dim=1)
    score = [sum(float(norms[n][c]) for n, c in unit) for unit in group.units]
    return sorted(range(group.size), key=lambda u: (-score[u], u))
