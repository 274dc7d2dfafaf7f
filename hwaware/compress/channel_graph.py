"""The channel dependency graph behind structured surgery (see :mod:`hwaware.compress.surgery`).

:class:`ChannelGraph` traces the model (:mod:`hwaware._fx`), runs it once to learn every value's
shape, and walks the graph: each value's channel dim is a list of *atoms*; ops that tie channels
together (a residual add, a depthwise conv, a squeeze-excitation multiply, a layer-scale
parameter, equal chunks) union their atoms. A group is every producer whose output channels share
atoms; an atom that meets an op surgery cannot follow blocks its group with the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .._fx import run_eval, shape_of, trace
from .._suggest import did_you_mean
from ..errors import HwawareError
from .channel_group import (
    ChannelGroup,
    ShapeRecorder,
    SizeAttribute,
    UnionFind,
    as_args,
    l2_ranking,
)
from .channel_rules import ChannelRules
from .slicing import (
    resize_channelwise,
    round_up,
    shrink_conv,
    slice_module,
    slice_param,
    validate_keep,
)

__all__ = ["ChannelGraph", "ChannelGroup", "as_args", "l2_ranking"]


class ChannelGraph(ChannelRules):
    """Channel dependency analysis of ``model`` on ``example_input`` (model never modified)."""

    def __init__(self, model: nn.Module, example_input: Any) -> None:
        if not isinstance(model, nn.Module):
            raise HwawareError(f"channel surgery needs an nn.Module, got {type(model).__name__}")
        self.model = model
        self.example_input = example_input
        args = as_args(example_input)
        gm = trace(model, who="channel surgery")
        rec = ShapeRecorder(gm)
        try:
            run_eval(model, lambda: rec.run(*args))
        except HwawareError:
            raise
        except Exception as exc:
            shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args]
            raise HwawareError(
                f"the example input {shapes} does not run through {type(model).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            ) from exc
        self._shapes = rec.shapes
        self._modules = dict(model.named_modules())
        self._uf = UnionFind()
        self._atoms: dict[fx.Node, np.ndarray | None] = {}
        self._cdim: dict[fx.Node, int] = {}  # where each value's channel dim is
        self._parts: dict[fx.Node, list[tuple[np.ndarray, int]]] = {}  # split/chunk outputs
        #: splits and slices whose sizes a module attribute holds (surgery rewrites it)
        self._split_attrs: list[SizeAttribute] = []
        self._param_atoms: dict[str, np.ndarray] = {}  # 1-D parameters scaling channels
        self._blocked: dict[int, str] = {}  # atom -> reason
        self._caveat: dict[int, str] = {}
        self._owner: dict[int, tuple[str, int]] = {}  # producer atom -> (module, channel)
        self._producer_atoms: dict[str, np.ndarray] = {}  # module -> out atoms (all calls share)
        self._consumer_atoms: dict[str, np.ndarray] = {}  # module -> in atoms (first call)
        self._channelwise_atoms: dict[str, np.ndarray] = {}
        self._order: dict[str, int] = {}  # module -> first appearance in the graph
        for node in gm.graph.nodes:
            self._visit(node)
        self.output_shape = next(
            (self._shapes.get(n) for n in gm.graph.nodes if n.op == "output"), None
        )
        self._build_groups()

    # -- groups --------------------------------------------------------------------------------

    def _build_groups(self) -> None:
        uf = self._uf
        unit_producers: dict[int, set[str]] = {}
        for name, atoms in self._producer_atoms.items():
            for a in atoms.tolist():
                unit_producers.setdefault(uf.find(a), set()).add(name)
        # producers sharing a unit belong to one group
        pf = {name: name for name in self._producer_atoms}

        def pfind(x: str) -> str:
            while pf[x] != x:
                pf[x] = pf[pf[x]]
                x = pf[x]
            return x

        for names in unit_producers.values():
            first, *rest = sorted(names, key=self._order.__getitem__)
            for other in rest:
                a, b = pfind(first), pfind(other)
                if a != b:
                    if self._order[a] > self._order[b]:
                        a, b = b, a
                    pf[b] = a
        members: dict[str, list[str]] = {}
        for name in sorted(self._producer_atoms, key=self._order.__getitem__):
            members.setdefault(pfind(name), []).append(name)

        root_atoms: dict[int, list[int]] = {}
        for a in range(len(uf.parent)):
            root_atoms.setdefault(uf.find(a), []).append(a)

        self._unit_of: dict[int, tuple[str, int]] = {}  # unit root -> (group, unit index)
        groups: list[ChannelGroup] = []
        for lead, names in members.items():
            roots = {uf.find(a) for n in names for a in self._producer_atoms[n].tolist()}
            lead_ch = {uf.find(a): ch for ch, a in reversed(list(enumerate(self._producer_atoms[lead].tolist())))}

            def key(r: int, names: list[str] = names, lead_ch: dict[int, int] = lead_ch) -> tuple[int, int]:
                if r in lead_ch:
                    return (0, lead_ch[r])
                owned = [self._owner[a] for a in root_atoms[r] if a in self._owner]
                return (1 + min(names.index(n) for n, _ in owned), min(c for _, c in owned))

            ordered = sorted(roots, key=key)
            units = tuple(
                tuple(sorted(self._owner[a] for a in root_atoms[r] if a in self._owner))
                for r in ordered
            )
            reason = next((self._blocked[a] for r in ordered for a in root_atoms[r] if a in self._blocked), "")
            caveats = sorted({self._caveat[a] for r in ordered for a in root_atoms[r] if a in self._caveat})
            rootset = set(ordered)
            consumers = tuple(
                n for n in sorted(self._consumer_atoms, key=self._order.__getitem__)
                if any(uf.find(a) in rootset for a in self._consumer_atoms[n].tolist())
            )
            channelwise = tuple(
                n for n in sorted(self._channelwise_atoms, key=self._order.__getitem__)
                if any(uf.find(a) in rootset for a in self._channelwise_atoms[n].tolist())
            )
            for i, r in enumerate(ordered):
                self._unit_of[r] = (lead, i)
            groups.append(ChannelGroup(
                name=lead, size=len(ordered), width=len(self._producer_atoms[lead]),
                producers=tuple(names), consumers=consumers, channelwise=channelwise,
                prunable=not reason, reason=f"'{lead}' {reason}" if reason else "",
                caveats=tuple(caveats), units=units,
            ))
        self.groups: tuple[ChannelGroup, ...] = tuple(groups)
        self._by_name = {g.name: g for g in groups}

    # -- public --------------------------------------------------------------------------------

    def group(self, name: str) -> ChannelGroup:
        """The group named ``name`` (its first producer); HwawareError naming the choices if unknown."""
        try:
            return self._by_name[name]
        except KeyError:
            raise HwawareError(
                f"no channel group '{name}'{did_you_mean(name, self._by_name)}; groups: "
                f"{', '.join(self._by_name) or '(none)'}"
            ) from None

    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def why_nothing_prunable(self, who: str, *, limit: int = 8) -> str:
        """One line for an error when no group is prunable: why, group by group."""
        if not self.groups:
            return f"{who}: nothing can be pruned: the model has no Conv/Linear layer"
        reasons = [g.reason for g in self.groups if g.reason]
        more = f"; ... and {len(reasons) - limit} more groups" if len(reasons) > limit else ""
        return (f"{who}: nothing can be pruned: none of the {len(self.groups)} channel groups of "
                f"{type(self.model).__name__} is prunable: " + "; ".join(reasons[:limit]) + more)

    def ranking(self, group: ChannelGroup | str, *, p: int = 2) -> list[int]:
        """Unit indices of ``group``, largest summed filter L2 (``p=1``: L1) norm first (see
        :func:`l2_ranking`)."""
        return l2_ranking(self.model, self.group(group) if isinstance(group, str) else group, p=p)

    def kept_units(self, keep: Mapping[str, Sequence[int]], *, round_to: int = 1) -> dict[str, list[int]]:
        """The units :meth:`shrink` keeps of each group named in ``keep``: ``keep`` rounded up to
        ``round_to`` (best-ranked units first) and with every split branch (a MixedConv2d kernel
        size) left at least one channel."""
        if not isinstance(round_to, int) or round_to < 1:
            raise HwawareError(f"round_to must be an integer >= 1, got {round_to!r}")
        removed_units: set[tuple[str, int]] = set()
        for gname, idx in keep.items():
            g = self.group(gname)
            kept = validate_keep(g, idx)
            if len(kept) < g.size and round_to > 1:
                kept = round_up(kept, g, self.ranking(g), round_to)
            if len(kept) < g.size and not g.prunable:
                raise HwawareError(f"channel group {g.reason}; it cannot be pruned")
            removed_units.update((g.name, u) for u in range(g.size) if u not in kept)
        self._keep_split_parts(removed_units)
        return {self.group(gname).name: [u for u in range(self.group(gname).size)
                                         if (self.group(gname).name, u) not in removed_units]
                for gname in keep}

    def shrink(self, keep: Mapping[str, Sequence[int]], *, round_to: int = 1, check: bool = True) -> nn.Module:
        """A new, smaller dense copy of the model keeping ``keep[group]`` units of each named group
        (exactly the units :meth:`kept_units` names)."""
        kept = self.kept_units(keep, round_to=round_to)
        removed_units = {(g, u) for g, units in kept.items()
                         for u in sorted(set(range(self.group(g).size)) - set(units))}
        new = copy.deepcopy(self.model)
        if removed_units:
            self._apply(new, removed_units)
        if check:
            self._check(new, removed_units)
        return new

    def prune(self, group: str, n_remove: int, *, round_to: int = 1) -> nn.Module:
        """Remove the ``n_remove`` lowest-L2 units of ``group`` (see :func:`prune_channels`)."""
        g = self.group(group)
        if not isinstance(n_remove, int) or not 0 <= n_remove < g.size:
            raise HwawareError(
                f"n_remove for group '{g.name}' must be an integer in [0, {g.size - 1}], got {n_remove!r}"
            )
        order = self.ranking(g)
        return self.shrink({g.name: sorted(order[: g.size - n_remove])}, round_to=round_to)

    # -- applying ------------------------------------------------------------------------------

    def _keep_split_parts(self, removed: set[tuple[str, int]]) -> None:
        """Put back the best-ranked unit of any split part (a MixedConv2d kernel branch) that
        ``removed`` would empty: a branch of zero channels is not a convolution."""
        for sa in self._split_attrs:
            for part in sa.parts:
                if part.size and not self._kept(part, removed):
                    units = {self._unit_of[self._uf.find(a)] for a in part.tolist()
                             if self._uf.find(a) in self._unit_of}
                    by_group = {g: self.ranking(g) for g, _ in units}
                    removed.discard(min(units, key=lambda gu: by_group[gu[0]].index(gu[1])))

    def _kept(self, atoms: np.ndarray, removed: set[tuple[str, int]]) -> list[int]:
        find = self._uf.find
        return [i for i, a in enumerate(atoms.tolist()) if self._unit_of.get(find(a)) not in removed]

    def _apply(self, new: nn.Module, removed: set[tuple[str, int]]) -> None:
        for name, out_atoms in self._producer_atoms.items():
            mod = new.get_submodule(name)
            kept_out = self._kept(out_atoms, removed)
            kept_in = self._kept(self._consumer_atoms[name], removed)
            if isinstance(mod, nn.Linear):
                slice_module(mod, kept_out, kept_in)
                mod.in_features, mod.out_features = len(kept_in), len(kept_out)
            else:
                shrink_conv(name, mod, kept_out, kept_in)
        for name, atoms in self._channelwise_atoms.items():
            kept = self._kept(atoms, removed)
            if len(kept) < len(atoms):
                resize_channelwise(new.get_submodule(name), kept)
        for sa in self._split_attrs:
            owner, attr = sa.owner, sa.attr
            mod = new.get_submodule(owner)
            sizes = [len(self._kept(p, removed)) for p in sa.parts]
            if type(getattr(mod, attr)) is int:  # one size for every part (coupled, so all equal)
                setattr(mod, attr, sizes[0] * sa.scale)
                continue
            if sa.index is not None:  # a shape that holds the channel count at one entry
                shape = list(getattr(mod, attr))
                shape[sa.index] = sizes[0]
                setattr(mod, attr, type(getattr(mod, attr))(shape))
                continue
            setattr(mod, attr, type(getattr(mod, attr))(sizes))
            if isinstance(getattr(mod, "in_channels", None), int):
                mod.in_channels = sum(sizes)
            convs = list(mod.children())
            if isinstance(getattr(mod, "out_channels", None), int) and convs and \
                    all(isinstance(c, nn.modules.conv._ConvNd) for c in convs):
                mod.out_channels = sum(c.out_channels for c in convs)
        for target, atoms in self._param_atoms.items():
            kept = self._kept(atoms, removed)
            if len(kept) < len(atoms):
                owner, _, pname = target.rpartition(".")
                mod = new.get_submodule(owner) if owner else new
                slice_param(mod, pname, kept)

    def _check_size_attributes(self, rec: ShapeRecorder, removed: set[tuple[str, int]]) -> None:
        """The shrunk model's splits and slices by a rewritten attribute have the kept sizes (``rec``:
        its recorded run): a forward that holds a literal equal to the attribute (not the attribute)
        would still cut the old sizes."""
        shapes = {n.name: shape for n, shape in rec.shapes.items()}
        for sa in self._split_attrs:
            want = [len(self._kept(p, removed)) for p in sa.outputs]
            got = shapes.get(sa.node)
            got = [s[sa.cdim] if isinstance(s, tuple) and len(s) > sa.cdim else None
                   for s in (got if isinstance(got, list) else [got])]
            if got != want:
                raise HwawareError(
                    f"channel surgery: '{sa.owner or '(top level)'}' cuts its channels at node '{sa.node}' into "
                    f"{got} after surgery, not the kept {want}: its forward does not read the sizes from "
                    f"'{sa.attr}' (a literal equal to it?); leave that group unpruned")

    def _check(self, new: nn.Module, removed: set[tuple[str, int]]) -> None:
        """The shrunk model runs on the example input and gives the original's output shape. Where
        surgery rewrote a size attribute, that one run is traced and records every value's shape,
        for :meth:`_check_size_attributes`."""
        args = as_args(self.example_input)
        rec = ShapeRecorder(trace(new, who="channel surgery")) if removed and self._split_attrs else None
        try:
            out = run_eval(new, lambda: rec.run(*args) if rec is not None else new(*args))
        except Exception as exc:
            raise HwawareError(
                f"the shrunk model does not run on the example input: {str(exc).splitlines()[0]} "
                "(an op surgery does not know hard-codes a channel count)"
            ) from exc
        if shape_of(out) != self.output_shape:
            raise HwawareError(
                f"the shrunk model's output shape {shape_of(out)} differs from the original "
                f"{self.output_shape}"
            )
        if rec is not None:
            self._check_size_attributes(rec, removed)
