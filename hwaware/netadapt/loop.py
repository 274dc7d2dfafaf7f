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

import copy
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import HwawareError
from ..splits import HeldoutSplit
from .blocks import block_widths, check_reachable, scan_block
from .budget import BudgetSpec, parse_budgets
from .config import NetAdaptConfig
from .determinism import torch_settings
from .distributed import DistContext, setup, teardown
from .family import FamilyMember, NetAdaptResult, Proposal
from .progress import FamilyLog
from .resources import ResourceContext, ResourceMeter
from .rules import (
    budgets_met,
    candidate_units,
    choose_units,
    derive_seed,
    lowers,
    pick_proposal,
    step_targets,
)

__all__ = ["FamilyMember", "NetAdapt", "NetAdaptResult", "Proposal", "candidate_units", "choose_units",
           "derive_seed", "netadapt", "pick_proposal", "step_targets"]


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
        self.log = FamilyLog(self.budgets, progress=progress, logdir=self.logdir)
        self._models: list[Any] = []  # in-memory family when there is no workdir
        self.members: list[FamilyMember] = []
        self._finished: NetAdaptResult | None = None
        try:
            with torch_settings(self.threads, self.device):
                self.data = HeldoutSplit(data, holdout=self.cfg.holdout, seed=derive_seed(self.cfg.seed, "split"),
                                         train_size=self.cfg.train_size, profile_images=self.cfg.profile_images,
                                         batch_size=self.cfg.batch_size)
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
            raise HwawareError(graph.why_nothing_prunable("NetAdapt"))
        # the workdir is rank 0's; the others learn the outcome (or the error) from it
        self.job = None
        error = None
        records: list[dict[str, Any]] = []
        if d.is_main and self.workdir is not None:
            try:
                self.job = Workdir(self.workdir, self.identity, resume=resume, template=model)
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
        self.log.initial = self.initial
        from ..compress.magnitude import Masks

        zeros = Masks.from_model(self.current).sparsity()
        if zeros > 0.01 and d.is_main:  # information, not progress: shown with progress off too
            from tqdm.auto import tqdm

            tqdm.write(f"netadapt: {zeros:.1%} of the Conv/Linear weights are zero (a pruned model); "
                       "every fine-tune keeps them at zero", file=sys.stderr)

    @property
    def limits(self) -> dict[str, float]:
        return {b.resource: b.limit(self.initial[b.resource]) for b in self.budgets}

    # --- measurement ---------------------------------------------------------------------------
    def _measure(self, model: Any) -> dict[str, float]:
        values, _ = self.meter.measure_model(model, self.data.profile_images)
        return values

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
        with torch_settings(self.threads, self.device):
            if not self.members:
                return self._original()
            last = self.members[-1]
            if budgets_met(last.resources, self.limits):
                return None
            if last.iteration >= self.cfg.max_iterations:
                self._error_keep(
                    f"budgets not met after max_iterations={self.cfg.max_iterations} "
                    f"({self.log.budget_status(last.resources)}); raise max_iterations or delta"
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
        check_reachable(graph, self.budgets, self.initial, self._measure, min_channels=self.cfg.min_channels)
        self.log.initial = self.initial
        member = FamilyMember(
            iteration=0, kind="original", block=None, channels=block_widths(graph),
            resources=self.initial, accuracy=self.data.heldout_accuracy(model, self.device),
            seconds=time.perf_counter() - t0,
        )
        return self._commit(member, model)

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
                    scans[k] = scan_block(graph, g, targets, self._measure, channel_step=cfg.channel_step,
                                          min_channels=cfg.min_channels)
        except HwawareError as exc:
            error = str(exc)
        d.agree(error)
        for part in d.gather(scans):
            scans.update(part)
        found = choose_units(scans, current, self.initial, self.limits, step)
        if found is None:
            self._error_keep(
                f"budgets cannot be met from iteration {i - 1}: no block can be shrunk further "
                f"without raising a resource ({self.log.budget_status(current)})"
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
                acc = self.data.heldout_accuracy(prop_model, self.device)
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
            self.log.member(member)
            if self.job is not None:
                from .report import write_family

                write_family(self._result(final=False), self.workdir, plot=False)
        self.members.append(member)
        return member

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
                    bar.set_postfix_str(self.log.budget_status(member.resources))
            with torch_settings(self.threads, self.device):
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
                member = replace(self.members[-1], kind="long_term", accuracy=self.data.heldout_accuracy(model, self.device),
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
            _template=self.job.template if self.job is not None else None,
        )

    def close(self, *, clean: bool = True) -> None:
        """Close the TensorBoard writer and leave a process group this object created
        (``clean=False`` after an error: no final barrier with the other ranks)."""
        if hasattr(self, "log"):
            self.log.close()
        if getattr(self, "job", None) is not None:  # record how the job ended; free the workdir
            self.job.close(None if clean else (sys.exc_info()[1] or RuntimeError("stopped")))
        if self._owns_dist and hasattr(self, "dist"):
            teardown(self.dist, clean=clean)
            self._owns_dist = False  # closing twice must not touch the group again


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

