"""The NetAdapt loop (Yang et al., ECCV 2018), with a step API and one entry function.

Per iteration ``i`` (the original network is iteration 0):

1. For every budgeted resource ``j`` not yet within budget: target ``T_j = max(R_j − ΔR_i,j, B_j)``
   with ``ΔR_i,j = delta · decay^(i−1) · R_j(original)``; a resource already within budget must
   not rise (``T_j = R_j``).
2. One proposal per prunable block (channel group of :mod:`hwaware.compress.surgery`): remove the
   smallest number of its lowest-L2 filters, in steps of ``channel_step``, that brings every
   resource to its target. Surgery propagates the removal through BN, depthwise, residual and
   concat partners. If no block can reach the targets, ΔR is halved until one can.
3. Short-term fine-tune every proposal (seeded from (seed, i, block index)), then measure its
   top-1 accuracy on images held out from the *training* split and its resources again.
4. Pick one: ``pick='accuracy'`` the most accurate (the paper), ``'efficiency'`` the one losing
   the least accuracy per unit of resource saved. Its resources never exceed the previous
   network's. Stop when every budget is met; optionally long-term fine-tune the last network.

Every iteration's network is kept: the family. ``NetAdapt(...).iterations()`` yields the members
as they are made (for notebooks); :func:`netadapt` runs a whole job; the CLI wraps the latter.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import HwawareError
from .budget import Budget, BudgetSpec, parse_budgets
from .config import NetAdaptConfig
from .distributed import DistContext, setup, teardown
from .resources import ResourceContext, ResourceMeter, resource_info

# relative slack when comparing resources (float noise of summed per-layer values)
_EPS = 1e-9


# ----------------------------------------------------------------------------------------------
# value types


@dataclass(frozen=True)
class Proposal:
    """One block's proposal in one iteration (after its short-term fine-tune)."""

    index: int  # position among the prunable blocks (fixes its seed and its rank)
    block: str
    channels: int  # output channels of the block's first producer after the removal
    removed: int  # channels removed
    before: dict[str, float]  # resources right after surgery
    resources: dict[str, float]  # resources after the fine-tune (sparsity may move)
    accuracy: float  # held-out top-1 after the fine-tune
    eligible: bool = True
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "block": self.block, "channels": self.channels,
                "removed": self.removed, "before": dict(self.before), "resources": dict(self.resources),
                "accuracy": self.accuracy, "eligible": self.eligible, "note": self.note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Proposal:
        return cls(**{k: d[k] for k in ("index", "block", "channels", "removed", "before", "resources",
                                       "accuracy", "eligible", "note")})


@dataclass(frozen=True)
class FamilyMember:
    """One network of the family: what it is, its resources and accuracy.

    ``kind``: ``original`` (iteration 0), ``iteration`` or ``long_term`` (the final network after
    the long-term fine-tune). ``accuracy`` is held-out (from the training split);
    ``test_accuracy`` is filled in at the end of the job when the data has a test split.
    """

    iteration: int
    kind: str
    block: str | None
    channels: dict[str, int]
    resources: dict[str, float]
    accuracy: float
    step: float = 0.0  # ΔR_i as a fraction of the original value (after any halving)
    targets: dict[str, float] = field(default_factory=dict)
    proposals: tuple[Proposal, ...] = ()
    model: str | None = None  # checkpoint path relative to the workdir
    seconds: float = 0.0
    test_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "kind": self.kind, "block": self.block,
                "channels": dict(self.channels), "resources": dict(self.resources),
                "accuracy": self.accuracy, "test_accuracy": self.test_accuracy, "step": self.step,
                "targets": dict(self.targets), "proposals": [p.to_dict() for p in self.proposals],
                "model": self.model, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FamilyMember:
        return cls(
            iteration=int(d["iteration"]), kind=str(d["kind"]), block=d.get("block"),
            channels={k: int(v) for k, v in d["channels"].items()},
            resources={k: float(v) for k, v in d["resources"].items()}, accuracy=float(d["accuracy"]),
            step=float(d.get("step", 0.0)), targets={k: float(v) for k, v in d.get("targets", {}).items()},
            proposals=tuple(Proposal.from_dict(p) for p in d.get("proposals", [])),
            model=d.get("model"), seconds=float(d.get("seconds", 0.0)), test_accuracy=d.get("test_accuracy"),
        )


@dataclass(frozen=True)
class NetAdaptResult:
    """A finished job: the family (original first), the budgets and where things were written."""

    members: tuple[FamilyMember, ...]
    budgets: tuple[Budget, ...]
    initial: dict[str, float]
    limits: dict[str, float]
    workdir: Path | None
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)  # name -> file written
    _models: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @property
    def original(self) -> FamilyMember:
        return self.members[0]

    @property
    def final(self) -> FamilyMember:
        """The last network (the long-term fine-tuned one when there is one)."""
        return self.members[-1]

    @property
    def iterations(self) -> int:
        return sum(1 for m in self.members if m.kind == "iteration")

    def relative(self, member: FamilyMember, resource: str) -> float:
        return member.resources[resource] / self.initial[resource]

    def model(self, index: int = -1) -> Any:
        """The network of ``members[index]`` (loaded from the workdir, or kept in memory)."""
        member = self.members[index]
        if self._models:
            return copy.deepcopy(self._models[index])
        if self.workdir is None or member.model is None:
            raise HwawareError("this result kept no models (no workdir)")
        from ..checkpoint import load_model_file

        return load_model_file(self.workdir / member.model)[0]

    def table(self) -> str:
        from .report import family_table

        return family_table(self)

    def to_dict(self) -> dict[str, Any]:
        return {"budgets": [b.to_dict() for b in self.budgets], "initial": dict(self.initial),
                "limits": dict(self.limits), "seconds": self.seconds,
                "members": [m.to_dict() for m in self.members], "outputs": dict(self.outputs)}


# ----------------------------------------------------------------------------------------------
# pure helpers (tested directly)


def step_targets(current: Mapping[str, float], initial: Mapping[str, float], limits: Mapping[str, float],
                 step: float) -> dict[str, float]:
    """Per-resource targets of one iteration (``step`` = ΔR_i as a fraction of the initial value)."""
    out = {}
    for r, lim in limits.items():
        cur = current[r]
        out[r] = cur if cur <= lim * (1 + _EPS) else max(cur - step * initial[r], lim)
    return out


def meets(values: Mapping[str, float], targets: Mapping[str, float]) -> bool:
    return all(values[r] <= t * (1 + _EPS) for r, t in targets.items())


def budgets_met(values: Mapping[str, float], limits: Mapping[str, float]) -> bool:
    return meets(values, limits)


def candidate_units(size: int, unit_step: int, min_units: int) -> list[int]:
    """Unit counts to try for a block of ``size`` units, largest first: size−step, size−2·step, ...,
    then ``min_units`` (never below it)."""
    out = []
    k = size - unit_step
    while k > min_units:
        out.append(k)
        k -= unit_step
    if size > min_units:
        out.append(min_units)
    return out


Scan = Sequence[tuple[int, Mapping[str, float]]]  # (units kept, resources), largest first


def lowers(values: Mapping[str, float], current: Mapping[str, float], limits: Mapping[str, float]) -> bool:
    """Whether ``values`` lowers every resource still above its budget and raises none within it
    (then some small enough ΔR accepts it)."""
    for r, lim in limits.items():
        if current[r] <= lim * (1 + _EPS):
            if values[r] > current[r] * (1 + _EPS):
                return False
        elif values[r] >= current[r]:
            return False
    return True


def choose_units(scans: Mapping[int, Scan], current: Mapping[str, float], initial: Mapping[str, float],
                 limits: Mapping[str, float], step: float
                 ) -> tuple[float, dict[str, float], dict[int, int]] | None:
    """Per block, the first (largest) unit count whose resources meet the step's targets.

    When no block meets them, ΔR is halved until one does (the scans are complete in that case);
    returns ``(step, targets, {block index: units})``, or None when no candidate lowers the
    resources at all (the budgets cannot be reached from here).
    """
    if not any(lowers(v, current, limits) for scan in scans.values() for _, v in scan):
        return None
    while step > 1e-12:
        targets = step_targets(current, initial, limits, step)
        chosen = {}
        for k, scan in scans.items():
            for units, values in scan:
                if meets(values, targets):
                    chosen[k] = units
                    break
        if chosen:
            return step, targets, chosen
        step /= 2
    return None


def pick_proposal(proposals: Sequence[Proposal], *, rule: str, current_accuracy: float,
                  current: Mapping[str, float], initial: Mapping[str, float],
                  budgeted: Sequence[str]) -> Proposal | None:
    """The chosen proposal among the eligible ones (None if none is eligible).

    ``accuracy``: highest accuracy. ``efficiency``: smallest (accuracy lost) / (resource saved),
    resource saved = mean over the budgeted resources of (current − new) / original. Ties go to
    the lower block index.
    """
    ok = [p for p in proposals if p.eligible]
    if not ok:
        return None
    if rule == "accuracy":
        return min(ok, key=lambda p: (-p.accuracy, p.index))
    if rule == "efficiency":
        def cost(p: Proposal) -> float:
            saved = sum((current[r] - p.resources[r]) / initial[r] for r in budgeted) / len(budgeted)
            return (current_accuracy - p.accuracy) / saved if saved > 0 else math.inf
        return min(ok, key=lambda p: (cost(p), p.index))
    raise HwawareError(f"unknown pick rule '{rule}'; allowed: accuracy, efficiency")


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from ``seed`` and the parts (iteration, block index, ...)."""
    digest = hashlib.sha256(repr((int(seed),) + parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# ----------------------------------------------------------------------------------------------
# data


class _Data:
    """The training split cut into a fixed held-out part (ranking proposals) and the rest
    (fine-tuning). The test split is only used at the very end, for the report."""

    def __init__(self, data: Any, cfg: NetAdaptConfig) -> None:
        import torch

        from ..data import load_dataset

        if isinstance(data, str):
            self.ref: str | None = data
            self.train = load_dataset(data, "train")
            self.describe = data
        else:
            if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
                raise HwawareError(f"data must be a dataset reference string or a Dataset of (image, label), "
                                   f"got {type(data).__name__}")
            self.ref = None
            self.train = data
            self.describe = f"{type(data).__qualname__}[{len(data)}]"
        n = len(self.train)
        if cfg.holdout >= n:
            raise HwawareError(f"holdout={cfg.holdout} images must be fewer than the {n} training images "
                               f"of {self.describe}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "split")))
        self.heldout_idx = sorted(perm[: cfg.holdout].tolist())
        rest = perm[cfg.holdout:]
        if cfg.train_size is not None:
            rest = rest[: cfg.train_size]
        self.train_idx = sorted(rest.tolist())
        items = [self.train[i] for i in self.heldout_idx]
        self.x = torch.stack([torch.as_tensor(x) for x, _ in items])
        self.y = torch.as_tensor([int(y) for _, y in items])
        self.profile_images = self.x[: cfg.profile_images]
        self.example = self.x[:1]
        self.batch_size = cfg.batch_size

    def heldout_loader(self) -> list[tuple[Any, Any]]:
        return [(self.x[i:i + 256], self.y[i:i + 256]) for i in range(0, len(self.y), 256)]

    def train_loader(self, seed: int) -> Any:
        import torch
        from torch.utils.data import DataLoader, Subset

        bs = min(self.batch_size, len(self.train_idx))
        return DataLoader(Subset(self.train, self.train_idx), batch_size=bs, shuffle=True, num_workers=0,
                          generator=torch.Generator().manual_seed(seed), drop_last=True)

    def test_loader(self) -> Any | None:
        if self.ref is None:
            return None
        from ..data import make_loader

        try:
            return make_loader(self.ref, "test", batch_size=256, shuffle=False)
        except HwawareError:
            return None


# ----------------------------------------------------------------------------------------------
# the loop


class NetAdapt:
    """NetAdapt as a step API.

    >>> na = NetAdapt(model, budgets=["latency=0.5"], data="builtin:shapes", workdir="runs/na")
    >>> for member in na.iterations():          # iteration 0 (the original), 1, 2, ...
    ...     print(member.iteration, member.block, member.resources["latency"], member.accuracy)
    >>> result = na.finish()                     # long-term fine-tune, test accuracy, outputs

    ``model`` is never modified. With a ``workdir`` every iteration is checkpointed there and
    ``resume=True`` continues a killed job; without one the family is kept in memory.
    ``device``, ``threads``, ``progress`` and ``logdir`` affect how, not what, is computed.
    """

    def __init__(
        self,
        model: Any,
        *,
        budgets: Sequence[BudgetSpec] | Mapping[str, Any] | str,
        data: Any,
        config: NetAdaptConfig | Mapping[str, Any] | None = None,
        workdir: str | Path | None = None,
        resume: bool = False,
        logdir: str | Path | None = None,
        progress: bool = True,
        device: str | None = None,
        threads: int | None = None,
        dist: DistContext | None = None,
    ) -> None:
        from torch import nn

        if not isinstance(model, nn.Module):
            raise HwawareError(f"netadapt needs an nn.Module, got {type(model).__name__}")
        self.cfg = config if isinstance(config, NetAdaptConfig) else NetAdaptConfig.from_dict(config or {})
        self.budgets = parse_budgets(budgets)
        self.budgeted = [b.resource for b in self.budgets]
        self.names = list(dict.fromkeys(self.budgeted + list(self.cfg.report)))
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise HwawareError(f"threads must be a positive integer, got {threads!r}")
        self.threads = threads
        self.progress = progress
        self._start = time.perf_counter()
        self._owns_dist = dist is None
        self.dist = dist if dist is not None else setup(device)
        self.device = self.dist.device
        self.workdir = Path(workdir) if workdir is not None else None
        self.logdir = Path(logdir) if logdir is not None else (self.workdir / "tb" if self.workdir else None)
        self._writer: Any = None
        self._models: list[Any] = []  # in-memory family when there is no workdir
        self.members: list[FamilyMember] = []
        self._finished: NetAdaptResult | None = None
        try:
            with self._torch_settings():
                self.data = _Data(data, self.cfg)
                self._init(model, resume)
        except BaseException:
            self.close(clean=False)
            raise

    # --- setup ---------------------------------------------------------------------------------
    def _init(self, model: Any, resume: bool) -> None:
        from ..compress.surgery import ChannelGraph
        from .job import Workdir, model_fingerprint

        cfg, d = self.cfg, self.dist
        model = copy.deepcopy(model).cpu()
        self.identity = {
            "model": model_fingerprint(model),
            "data": self.data.describe,
            "budgets": [b.to_dict() for b in self.budgets],
            "config": cfg.to_dict(),
        }
        lut_dir = (self.workdir / "lut") if self.workdir is not None else None
        self.meter = ResourceMeter(
            self.names, batch=cfg.batch,
            context=ResourceContext(
                hardware=cfg.hardware, objective=cfg.objective, lut_dir=lut_dir,
                lut_device=self.device, lut_dtype=cfg.lut_dtype, lut_step=cfg.lut_step,
                lut_warmup=cfg.lut_warmup, lut_repeats=cfg.lut_repeats,
            ),
        )
        graph = ChannelGraph(model, self.data.example)
        if not graph.prunable_groups():
            reasons = "; ".join(g.reason for g in graph.groups if g.reason)[:300]
            raise HwawareError(
                f"{type(model).__name__} has no prunable block: NetAdapt needs a conv/linear layer "
                f"whose filters can be removed ({reasons or 'no Conv/Linear layers found'})"
            )
        # the workdir is rank 0's; the others learn the outcome (or the error) from it
        self.job = None
        error = None
        records: list[dict[str, Any]] = []
        if d.is_main and self.workdir is not None:
            try:
                self.job = Workdir(self.workdir, self.identity, resume=resume)
                records = self.job.records
            except HwawareError as exc:
                error = str(exc)
        d.agree(error)
        records = d.broadcast(records, src=0)
        if records:
            current = self.job.load_model(records[-1]["model"]) if self.job is not None else None
            self.current = d.broadcast(current, src=0)
            self.members = [FamilyMember.from_dict(r) for r in records]
            self.initial = dict(self.members[0].resources)
        else:
            self.current = model
            self.initial = {}
        self.resumed = bool(records)
        from ..compress.magnitude import Masks

        zeros = Masks.from_model(self.current).sparsity()
        if zeros > 0.01 and self.progress and d.is_main:
            from tqdm.auto import tqdm

            tqdm.write(f"netadapt: {zeros:.1%} of the Conv/Linear weights are zero (a pruned model); "
                       "every fine-tune keeps them at zero")

    @property
    def limits(self) -> dict[str, float]:
        return {b.resource: b.limit(self.initial[b.resource]) for b in self.budgets}

    @contextlib.contextmanager
    def _torch_settings(self) -> Iterator[None]:
        """Thread count (and, on GPUs, deterministic kernels) for the duration of a step.

        CPU kernels are deterministic for a fixed thread count. On GPUs deterministic algorithms
        are switched on (warn-only); cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set
        before the process starts for bit-reproducible matrix products.
        """
        import torch

        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        cuda = self.device.startswith("cuda")
        if cuda:
            det = torch.are_deterministic_algorithms_enabled()
            warn = torch.is_deterministic_algorithms_warn_only_enabled()
            cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            if cuda:
                torch.use_deterministic_algorithms(det, warn_only=warn)
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn

    # --- measurement ---------------------------------------------------------------------------
    def _measure(self, model: Any) -> dict[str, float]:
        values, _ = self.meter.measure_model(model, self.data.profile_images)
        return values

    def _accuracy(self, model: Any) -> float:
        from ..train import evaluate

        model.to(self.device)
        try:
            return float(evaluate(model, self.data.heldout_loader(), device=self.device))
        finally:
            model.cpu()

    def _finetune(self, model: Any, steps: int, seed: int) -> None:
        """Fine-tune ``model`` in place for ``steps`` SGD steps. Weights that are exactly zero when
        it starts stay zero (re-masked after every step): a pruned model keeps its sparsity, hence
        its Eyeriss energy, instead of reviving its pruned weights (``hwaware prune`` -> NetAdapt)."""
        import torch

        from ..compress.magnitude import Masks
        from ..train import finetune

        if steps <= 0:
            return
        masks = Masks.from_model(model)
        loader = self.data.train_loader(seed)
        if len(loader) == 0:
            raise HwawareError(f"the fine-tune set has fewer images ({len(self.data.train_idx)}) than "
                               f"one batch; lower batch_size or holdout")
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            finetune(model, loader, steps, lr=self.cfg.lr, momentum=self.cfg.momentum,
                     weight_decay=self.cfg.weight_decay, device=self.device,
                     after_step=masks.apply if masks.sparsity() > 0 else None)
        model.cpu()

    # --- the steps -----------------------------------------------------------------------------
    def iterations(self) -> Iterator[FamilyMember]:
        """Yield each new family member (the original first, unless resumed) until budgets are met."""
        while True:
            member = self.step()
            if member is None:
                return
            yield member

    def step(self) -> FamilyMember | None:
        """Run one iteration (the first call measures the original); None once budgets are met."""
        if self._finished is not None:
            return None
        with self._torch_settings():
            if not self.members:
                return self._original()
            last = self.members[-1]
            if budgets_met(last.resources, self.limits):
                return None
            if last.iteration >= self.cfg.max_iterations:
                self._error_keep(
                    f"budgets not met after max_iterations={self.cfg.max_iterations} "
                    f"({self._budget_status(last.resources)}); raise max_iterations or delta"
                )
            return self._iterate(last.iteration + 1)

    def _original(self) -> FamilyMember:
        from ..compress.surgery import ChannelGraph

        t0 = time.perf_counter()
        model = self.current
        self.initial = self._measure(model)
        for b in self.budgets:
            if self.initial[b.resource] <= 0:
                raise HwawareError(f"the original network's {b.resource} is {self.initial[b.resource]}; "
                                   "a budget needs a positive value to shrink")
        graph = ChannelGraph(model, self.data.example)
        self._check_reachable(graph)
        member = FamilyMember(
            iteration=0, kind="original", block=None, channels=_channels(graph),
            resources=self.initial, accuracy=self._accuracy(model),
            seconds=time.perf_counter() - t0,
        )
        return self._commit(member, model)

    def _check_reachable(self, graph: Any) -> None:
        """Fail before any work when even the smallest network misses a budget."""
        keep = {}
        for g in graph.prunable_groups():
            units = self._min_units(g)
            keep[g.name] = sorted(graph.ranking(g)[:units])
        smallest = self._measure(graph.shrink(keep))
        for b in self.budgets:
            r = b.resource
            lim = b.limit(self.initial[r])
            if smallest[r] > lim * (1 + _EPS):
                unit = f" {resource_info(r).unit}" if resource_info(r).unit else ""
                raise HwawareError(
                    f"budget {b} cannot be met: with every prunable block cut to "
                    f"min_channels={self.cfg.min_channels} the network's {r} is {smallest[r]:.4g}{unit} "
                    f"({smallest[r] / self.initial[r]:.1%} of the original {self.initial[r]:.4g}{unit}); "
                    f"ask for at least {math.ceil(1000 * smallest[r] / self.initial[r]) / 1000:g}"
                )

    def _min_units(self, g: Any) -> int:
        per_unit = g.channels_per_unit
        return max(1, min(g.size, math.ceil(self.cfg.min_channels / per_unit)))

    def _unit_step(self, g: Any) -> int:
        return max(1, round(self.cfg.channel_step / (g.channels_per_unit)))

    def _iterate(self, i: int) -> FamilyMember:
        from tqdm.auto import tqdm

        from ..compress.surgery import ChannelGraph

        t0 = time.perf_counter()
        d, cfg = self.dist, self.cfg
        last = self.members[-1]
        current = last.resources
        graph = ChannelGraph(self.current, self.data.example)
        groups = graph.prunable_groups()
        step = cfg.step(i)
        targets = step_targets(current, self.initial, self.limits, step)

        # phase A: every rank scans its blocks' channel counts against the targets
        scans: dict[int, list[tuple[int, dict[str, float]]]] = {}
        error = None
        try:
            for k, g in enumerate(groups):
                if d.mine(k):
                    scans[k] = self._scan(graph, g, targets)
        except HwawareError as exc:
            error = str(exc)
        d.agree(error)
        for part in d.gather(scans):
            scans.update(part)
        found = choose_units(scans, current, self.initial, self.limits, step)
        if found is None:
            self._error_keep(
                f"budgets cannot be met from iteration {i - 1}: no block can be shrunk further "
                f"without raising a resource ({self._budget_status(current)})"
            )
        step, targets, chosen = found

        # phase B: fine-tune and evaluate this rank's proposals
        mine = [k for k in sorted(chosen) if d.mine(k)]
        bar = tqdm(total=len(mine), desc=f"iteration {i}", unit="proposal", leave=False,
                   disable=not (self.progress and d.is_main), dynamic_ncols=True)
        results: dict[int, Proposal] = {}
        models: dict[int, Any] = {}
        try:
            for k in mine:
                g, units = groups[k], chosen[k]
                bar.set_postfix_str(g.name)
                prop_model = graph.prune(g.name, g.size - units)
                before = scans[k][[u for u, _ in scans[k]].index(units)][1]
                self._finetune(prop_model, cfg.short_term_steps, derive_seed(cfg.seed, i, k))
                acc = self._accuracy(prop_model)
                after = self._measure(prop_model)
                per_unit = g.channels_per_unit
                results[k] = self._judge(Proposal(
                    index=k, block=g.name, channels=units * per_unit, removed=g.width - units * per_unit,
                    before=before, resources=after, accuracy=acc,
                ), current)
                models[k] = prop_model
                bar.update(1)
        except HwawareError as exc:
            error = str(exc)
        finally:
            bar.close()
        d.agree(error)
        for part in d.gather(results):
            results.update(part)
        proposals = tuple(results[k] for k in sorted(results))

        # phase C: rank 0 picks; the rank that made the winner sends it to everyone
        pick = None
        if d.is_main:
            best = pick_proposal(proposals, rule=cfg.pick, current_accuracy=last.accuracy, current=current,
                                 initial=self.initial, budgeted=self.budgeted)
            pick = None if best is None else best.index
        pick = d.broadcast(pick, src=0)
        if pick is None:
            notes = "; ".join(f"{p.block}: {p.note}" for p in proposals if p.note)[:300]
            self._error_keep(f"iteration {i}: no proposal lowered the budgeted resources after fine-tuning ({notes})")
        winner_model = d.broadcast(models.get(pick), src=d.owner(pick))
        winner = results[pick]
        channels = dict(last.channels)
        channels[winner.block] = winner.channels
        member = FamilyMember(
            iteration=i, kind="iteration", block=winner.block, channels=channels,
            resources=dict(winner.resources), accuracy=winner.accuracy, step=step, targets=targets,
            proposals=proposals, seconds=time.perf_counter() - t0,
        )
        self.current = winner_model
        return self._commit(member, winner_model)

    def _scan(self, graph: Any, g: Any, targets: Mapping[str, float]) -> list[tuple[int, dict[str, float]]]:
        """(units kept, resources) for this block's candidates, largest first, up to the first that
        meets ``targets`` (all of them when none does)."""
        out = []
        for units in candidate_units(g.size, self._unit_step(g), self._min_units(g)):
            values = self._measure(graph.prune(g.name, g.size - units))
            out.append((units, values))
            if meets(values, targets):
                break
        return out

    def _judge(self, p: Proposal, current: Mapping[str, float]) -> Proposal:
        """Eligible when, after the fine-tune, the proposal still :func:`lowers` the resources
        (measured sparsity, hence Eyeriss energy, can move a little during the fine-tune)."""
        if lowers(p.resources, current, self.limits):
            return p
        off = [r for r in self.budgeted if not lowers({r: p.resources[r]}, {r: current[r]}, {r: self.limits[r]})]
        return replace(p, eligible=False, note=f"after the fine-tune {', '.join(off)} did not fall")

    # --- bookkeeping ---------------------------------------------------------------------------
    def _commit(self, member: FamilyMember, model: Any) -> FamilyMember:
        """Checkpoint the member (rank 0), log it, and append it to the family."""
        if self.job is not None:
            name = f"iter_{member.iteration:04d}" if member.kind != "long_term" else "long_term"
            path = self.job.save_model(model, name, member.to_dict())
            member = replace(member, model=path)
            if member.kind == "long_term":
                self.job.set_extra("long_term", member.to_dict())
            else:
                self.job.commit(member.to_dict())
        elif self.workdir is None:
            self._models.append(copy.deepcopy(model))
        if self.dist.is_main:
            self._log(member)
            if self.job is not None:
                from .report import write_family

                write_family(self._result(final=False), self.workdir, plot=False)
        self.members.append(member)
        return member

    def _log(self, member: FamilyMember) -> None:
        if self.progress:
            from tqdm.auto import tqdm

            tqdm.write(f"netadapt iteration {member.iteration}: {member.block or member.kind} | "
                       f"{self._budget_status(member.resources)} | held-out accuracy {member.accuracy:.4f}")
        if self.logdir is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.logdir), purge_step=member.iteration)
        w, step = self._writer, member.iteration + (1 if member.kind == "long_term" else 0)
        for r, v in member.resources.items():
            w.add_scalar(f"resource/{r}", v, step)
            w.add_scalar(f"relative/{r}", v / self.initial[r], step)
        w.add_scalar("accuracy/heldout", member.accuracy, step)
        w.add_scalar("netadapt/step", member.step, step)
        w.flush()

    def _budget_status(self, values: Mapping[str, float]) -> str:
        return ", ".join(f"{b.resource} {values[b.resource] / self.initial[b.resource]:.1%} "
                         f"(budget {b.limit(self.initial[b.resource]) / self.initial[b.resource]:.1%})"
                         for b in self.budgets)

    def _error_keep(self, message: str) -> None:
        where = f"; the {len(self.members)} completed iteration(s) are kept in '{self.workdir}'" \
            if self.workdir is not None else ""
        if self.dist.is_main and self.job is not None and self.members:
            from .report import write_family

            write_family(self._result(final=False), self.workdir, plot=True)
        raise HwawareError(message + where)

    # --- the end -------------------------------------------------------------------------------
    def finish(self) -> NetAdaptResult:
        """Run any remaining iterations, the long-term fine-tune and the test evaluation; write the
        outputs (rank 0) and return the result. Safe to call twice."""
        if self._finished is not None:
            return self._finished
        try:
            from tqdm.auto import tqdm

            with tqdm(desc="netadapt", unit="iteration", initial=max(0, len(self.members) - 1),
                      disable=not (self.progress and self.dist.is_main), dynamic_ncols=True) as bar:
                for member in self.iterations():
                    bar.update(1 if member.kind == "iteration" else 0)
                    bar.set_postfix_str(self._budget_status(member.resources))
            with self._torch_settings():
                self._long_term()
                self._test_accuracy()
            result = self._result(final=True)
            if self.dist.is_main and self.workdir is not None:
                from .report import write_family

                outputs = write_family(result, self.workdir, plot=True)
                result = replace(result, outputs=outputs)
            self._finished = result
        except BaseException:
            self.close(clean=False)
            raise
        self.close()
        return result

    def _long_term(self) -> None:
        cfg = self.cfg
        if cfg.long_term_steps <= 0 or any(m.kind == "long_term" for m in self.members):
            return
        member = None
        if self.dist.is_main:
            if self.job is not None and "long_term" in self.job.extra:  # done before a kill
                member = FamilyMember.from_dict(self.job.extra["long_term"])
                self.members.append(member)
            else:
                t0 = time.perf_counter()
                model = copy.deepcopy(self.current)
                self._finetune(model, cfg.long_term_steps, derive_seed(cfg.seed, "long_term"))
                member = replace(self.members[-1], kind="long_term", accuracy=self._accuracy(model),
                                 resources=self._measure(model), proposals=(), step=0.0, targets={},
                                 model=None, seconds=time.perf_counter() - t0)
                member = self._commit(member, model)
        member = self.dist.broadcast(member, src=0)
        if not self.dist.is_main:
            self.members.append(member)

    def _test_accuracy(self) -> None:
        if not self.cfg.test_eval or all(m.test_accuracy is not None for m in self.members):
            return
        accs = None
        if self.dist.is_main:
            loader = self.data.test_loader()
            if loader is not None:
                from ..train import evaluate

                accs = []
                for idx, m in enumerate(self.members):
                    if m.test_accuracy is not None:
                        accs.append(m.test_accuracy)
                        continue
                    model = self._member_model(idx)
                    model.to(self.device)
                    accs.append(float(evaluate(model, loader, device=self.device)))
        accs = self.dist.broadcast(accs, src=0)
        if accs is not None:
            self.members = [replace(m, test_accuracy=a) for m, a in zip(self.members, accs)]

    def _member_model(self, idx: int) -> Any:
        if self._models:
            return copy.deepcopy(self._models[idx])
        if self.job is None or self.members[idx].model is None:
            raise HwawareError("this job kept no models")
        return self.job.load_model(self.members[idx].model)

    def _result(self, *, final: bool) -> NetAdaptResult:
        return NetAdaptResult(
            members=tuple(self.members), budgets=self.budgets, initial=dict(self.initial),
            limits=self.limits if self.initial else {}, workdir=self.workdir,
            seconds=time.perf_counter() - self._start, _models=tuple(self._models) if final else (),
        )

    def close(self, *, clean: bool = True) -> None:
        """Close the TensorBoard writer and leave a process group this object created
        (``clean=False`` after an error: no final barrier with the other ranks)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._owns_dist and hasattr(self, "dist"):
            teardown(self.dist, clean=clean)
            self._owns_dist = False  # closing twice must not touch the group again


def _channels(graph: Any) -> dict[str, int]:
    return {g.name: g.width for g in graph.prunable_groups()}


def netadapt(
    model: Any,
    *,
    budgets: Sequence[BudgetSpec] | Mapping[str, Any] | str,
    data: Any,
    workdir: str | Path | None = None,
    resume: bool = False,
    logdir: str | Path | None = None,
    config: NetAdaptConfig | Mapping[str, Any] | None = None,
    progress: bool = True,
    device: str | None = None,
    threads: int | None = None,
) -> NetAdaptResult:
    """Adapt ``model`` to ``budgets`` (e.g. ``["latency=0.5", "energy=0.6"]``) with NetAdapt.

    ``data``: a dataset reference (``"builtin:shapes"``) or a Dataset of (image, label); the
    held-out images that rank proposals come from its training split. ``workdir``: checkpoints
    and outputs (family.json, family.md, pareto.png, tb/); ``resume=True`` continues a killed
    job there. Under ``torchrun`` the proposals of each iteration are spread over the ranks.
    """
    na = NetAdapt(model, budgets=budgets, data=data, config=config, workdir=workdir, resume=resume,
                  logdir=logdir, progress=progress, device=device, threads=threads)
    return na.finish()
