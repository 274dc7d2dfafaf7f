"""A network's workload: its layer records, the ops it could not model, and totals.

Workload files (YAML or JSON) hold ``layers: [ {name, N, M, C, H, W, R, S, U, groups, padding,
ifmap_zeros, weight_zeros}, ... ]`` (a bare list is accepted too). E/F are derived; unknown keys
are rejected with a suggestion; sizes must be positive.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._io import read_json, write_json, write_text
from ..errors import HwawareError
from .layer import Layer

WORKLOAD_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class UnmodeledOp:
    """An operation that carries MACs but has no hardware model (listed, never dropped)."""

    op: str
    name: str
    macs: int

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "name": self.name, "macs": int(self.macs)}


@dataclass(frozen=True)
class Workload:
    layers: tuple[Layer, ...]
    unmodeled: tuple[UnmodeledOp, ...] = field(default=())
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "unmodeled", tuple(self.unmodeled))

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def weights(self) -> int:
        """Weights of distinct layers (a module called twice counts once)."""
        seen: dict[str, int] = {}
        for layer in self.layers:
            seen.setdefault(layer.name.split("#")[0], layer.weights)
        return sum(seen.values())

    @property
    def nonzero_weights(self) -> float:
        """Non-zero weights of distinct layers (measured ``weight_zeros``; a module called twice counts once)."""
        seen: dict[str, float] = {}
        for layer in self.layers:
            seen.setdefault(layer.name.split("#")[0], layer.weights * (1.0 - layer.weight_zeros))
        return sum(seen.values())

    @property
    def unmodeled_macs(self) -> int:
        return sum(op.macs for op in self.unmodeled)

    def unmodeled_share(self) -> float:
        """Fraction of all MACs that sit in unmodeled ops."""
        total = self.macs + self.unmodeled_macs
        return self.unmodeled_macs / total if total else 0.0

    def with_batch(self, n: int) -> Workload:
        return Workload(tuple(layer.replace(N=n) for layer in self.layers), self.unmodeled, self.source)

    def replace_layer(self, index: int, layer: Layer) -> Workload:
        layers = list(self.layers)
        layers[index] = layer
        return Workload(tuple(layers), self.unmodeled, self.source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "unmodeled": [op.to_dict() for op in self.unmodeled],
            "total": {"macs": self.macs, "weights": self.weights},
        }

    # --- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write as JSON or YAML (by suffix), atomically."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, where: str = "workload") -> Workload:
        if isinstance(data, dict):
            allowed = {"layers", "unmodeled", "total"}
            unknown = sorted(set(data) - allowed)
            if unknown:
                from .._suggest import did_you_mean

                raise HwawareError(
                    f"{where}: unknown top-level key '{unknown[0]}'{did_you_mean(unknown[0], allowed)}; "
                    "allowed: layers, unmodeled, total"
                )
            if "layers" not in data:
                raise HwawareError(f"{where}: missing top-level key 'layers'")
            entries = data["layers"]
            unmodeled_raw = data.get("unmodeled") or []
        elif isinstance(data, list):
            entries, unmodeled_raw = data, []
        else:
            raise HwawareError(f"{where}: expected a mapping with 'layers' or a list of layers")
        if not isinstance(entries, list) or not entries:
            raise HwawareError(f"{where}: 'layers' must be a non-empty list")
        layers = [Layer.from_dict(e, where=f"{where} (layer {i})") for i, e in enumerate(entries)]
        names = [layer.name for layer in layers]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise HwawareError(f"{where}: layer name '{dup}' appears twice; names must be unique")
        unmodeled = []
        for i, u in enumerate(unmodeled_raw):
            try:
                unmodeled.append(UnmodeledOp(str(u["op"]), str(u.get("name", u["op"])), int(u["macs"])))
            except (KeyError, TypeError, ValueError):
                raise HwawareError(f"{where}: unmodeled entry {i} needs 'op' and integer 'macs'") from None
        return cls(tuple(layers), tuple(unmodeled), source=where)

    @classmethod
    def load(cls, path: str | Path) -> Workload:
        path = Path(path)
        if not path.is_file():
            raise HwawareError(f"workload file not found: {path}")
        if path.suffix not in WORKLOAD_SUFFIXES:
            raise HwawareError(f"{path}: workload files must end in .yaml, .yml or .json")
        if path.suffix == ".json":  # hwaware's own (checksum verified) or written by hand (none)
            data = read_json(path, required=False)
            return cls.from_dict(data, where=str(path))
        text = path.read_text()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            msg = str(exc).splitlines()[0]
            raise HwawareError(f"{path}: not valid {path.suffix[1:].upper()}: {msg}") from None
        return cls.from_dict(data, where=str(path))


def as_workload(obj: Workload | Sequence[Layer] | str | Path) -> Workload:
    """Accept a Workload, a list of Layers, or a workload file path."""
    if isinstance(obj, Workload):
        return obj
    if isinstance(obj, (str, Path)):
        return Workload.load(obj)
    layers = tuple(obj)
    if not all(isinstance(x, Layer) for x in layers):
        raise HwawareError("expected a Workload, a list of Layer records, or a workload file path")
    return Workload(layers)
