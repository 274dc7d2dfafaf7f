"""NetAdapt (Yang et al., ECCV 2018): adapt a trained network to latency/energy/... budgets.

    >>> from hwaware.netadapt import netadapt
    >>> result = netadapt(model, budgets=["latency=0.5", "energy=0.6"], data="builtin:shapes",
    ...                   workdir="runs/na")
    >>> print(result.table())

- :mod:`.resources` — the resource registry (``latency``, ``energy``, ``macs``, ``weights``,
  ``measured``) and :class:`ResourceMeter`; :mod:`.lut` — measured per-layer latency tables.
- :mod:`.budget` — budgets (``latency=0.5``, ``energy=60%``, ``macs=abs:2e6``).
- :mod:`.loop` — the loop (:class:`NetAdapt` step API, :func:`netadapt` entry function);
  :mod:`.rules` — its step rules as pure functions; :mod:`.blocks` — one block's candidate
  widths; :mod:`.family` — proposals, family members, the result; :mod:`.progress` — log lines and
  TensorBoard; :mod:`.determinism` — torch settings for bit-identical resume. The held-out /
  fine-tune split of the training data is :class:`hwaware.splits.HeldoutSplit`.
- :mod:`.job` — workdir, checkpoints, resume; :mod:`.distributed` — proposals on torchrun ranks.
"""

from .budget import Budget, parse_budgets
from .config import NetAdaptConfig
from .loop import FamilyMember, NetAdapt, NetAdaptResult, Proposal, netadapt
from .resources import ResourceContext, ResourceMeter, register_resource, resource_names

__all__ = [
    "Budget",
    "FamilyMember",
    "NetAdapt",
    "NetAdaptConfig",
    "NetAdaptResult",
    "Proposal",
    "ResourceContext",
    "ResourceMeter",
    "netadapt",
    "parse_budgets",
    "register_resource",
    "resource_names",
]
