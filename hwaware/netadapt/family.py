"""What a NetAdapt job produces: the proposals of one iteration, the family of networks (one
member per iteration, the original first) and the result of a whole job."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HwawareError
from .budget import Budget


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
    _template: Any = field(default=None, repr=False, compare=False)  # input network: members rebuild from it

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

    def model(self, index: int = -1, *, model_ref: Any = None, trust_source: bool = False) -> Any:
        """The network of ``members[index]`` (loaded from the workdir, or kept in memory).

        ``model_ref``/``trust_source``: see :func:`hwaware.modelref.load_model_file`."""
        member = self.members[index]
        if self._models:
            return copy.deepcopy(self._models[index])
        if self.workdir is None or member.model is None:
            raise HwawareError("this result kept no models (no workdir)")
        from ..modelref import load_model_file

        ref = model_ref if model_ref is not None else self._template
        return load_model_file(self.workdir / member.model, model_ref=ref, trust_source=trust_source)[0]

    def table(self) -> str:
        from .report import family_table

        return family_table(self)

    def to_dict(self) -> dict[str, Any]:
        return {"budgets": [b.to_dict() for b in self.budgets], "initial": dict(self.initial),
                "limits": dict(self.limits), "seconds": self.seconds,
                "members": [m.to_dict() for m in self.members], "outputs": dict(self.outputs)}
