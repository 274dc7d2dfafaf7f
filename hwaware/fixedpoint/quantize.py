"""Energy-aware quantization: per-layer bit widths chosen greedily, largest energy share first.

1. Profile the model (:func:`hwaware.profile`) and score it on the Eyeriss model at 16 bits; order
   the Conv/Linear layers by energy, largest first.
2. In rounds, visit the layers in that order and narrow each by one step of ``widths`` (default
   16 -> 12 -> 10 -> 8 -> 6 -> 4) when the top-1 accuracy on the validation data stays within
   ``max_drop`` percentage points of the float model's; a layer whose next step fails keeps its
   width. Stepping in rounds spreads the accuracy budget: narrowing the largest layer straight to
   its narrowest passing width first spent the whole budget on it and ended above uniform 8 bits
   in energy on the small CNN.
3. A layer's width applies to its weights and its input activations (``weight_bits`` and
   ``act_bits`` of the :class:`~hwaware.workload.Layer`, which scale the energy model's data
   movement and MAC energy); products still accumulate as the fixed-point backend says.

Accuracy is measured with the integer backend (:func:`hwaware.fixedpoint.convert` with
``bits={layer: width}``), by default in the chip's arithmetic (:data:`~hwaware.fixedpoint.format.DEFAULT_ARITHMETIC`,
eyeriss/floor/wrap), the same that conversion, test vectors and recipes use, so the widths found are the
widths the exported vectors run at; pass ``mode="wide", rounding="nearest", overflow="saturate"`` to
study operand widths alone, without the chip's per-product truncation.

    >>> search = BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=1.0)
    >>> for trial in search.steps():      # one Trial per accuracy measurement
    ...     print(trial)
    >>> search.result.table()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import HwawareError
from .convert import _collect_inputs, convert
from .format import DEFAULT_MODE, DEFAULT_OVERFLOW, DEFAULT_ROUNDING, check_arith

WIDTHS = (12, 10, 8, 6, 4)


@dataclass(frozen=True)
class Trial:
    """One accuracy measurement: ``layer`` at ``bits`` with the widths chosen so far."""

    layer: str
    bits: int
    accuracy: float
    drop: float  # percentage points below the float model
    energy: float  # total energy of this assignment (units of one 16-bit MAC)
    accepted: bool


@dataclass(frozen=True)
class QuantizeResult:
    bits: dict[str, int]
    order: tuple[str, ...]
    energy_share: dict[str, float]  # of each layer at 16 bits
    float_accuracy: float
    accuracy_16: float
    accuracy_8: float
    accuracy: float
    energy_16: float
    energy_8: float
    energy: float
    max_drop: float
    mode: str
    rounding: str
    overflow: str
    trials: tuple[Trial, ...] = field(default=())
    batch: int = 1  # images per batch the energies are scored at

    @property
    def saved_vs_16(self) -> float:
        """Fraction of the uniform-16-bit energy saved."""
        return 1.0 - self.energy / self.energy_16

    @property
    def saved_vs_8(self) -> float:
        """Fraction of the uniform-8-bit energy saved (negative: more than uniform 8 bits)."""
        return 1.0 - self.energy / self.energy_8

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trials"] = [asdict(t) for t in self.trials]
        d["saved_vs_16"], d["saved_vs_8"] = self.saved_vs_16, self.saved_vs_8
        return d

    def table(self) -> str:
        lines = [f"{'layer':<24} {'energy share':>12} {'bits':>5}"]
        for name in self.order:
            lines.append(f"{name[:24]:<24} {100 * self.energy_share[name]:>11.1f}% {self.bits[name]:>5}")
        lines += [
            "",
            f"{'':<14} {'top-1':>7} {'energy':>12}   (Eyeriss model, x one 16-bit MAC, per batch of {self.batch})",
            f"{'float':<14} {100 * self.float_accuracy:>6.2f}%",
            f"{'uniform 16':<14} {100 * self.accuracy_16:>6.2f}% {self.energy_16:>12.4g}",
            f"{'uniform 8':<14} {100 * self.accuracy_8:>6.2f}% {self.energy_8:>12.4g}",
            f"{'chosen':<14} {100 * self.accuracy:>6.2f}% {self.energy:>12.4g}",
            (f"energy saved: {100 * self.saved_vs_16:.1f}% vs uniform 16 bits, {100 * self.saved_vs_8:.1f}% "
             f"vs uniform 8 bits (max drop {self.max_drop} points; {len(self.trials)} trials; "
             f"mode={self.mode} rounding={self.rounding} overflow={self.overflow})"),
        ]
        return "\n".join(lines)


class BitWidthSearch:
    """The greedy search as a step API: iterate :meth:`steps`, then read :attr:`result`."""

    def __init__(self, model: torch.nn.Module, *, calibration_data: Any, val_data: Any,
                 max_drop: float = 1.0, widths: Sequence[int] = WIDTHS, mode: str = DEFAULT_MODE,
                 rounding: str = DEFAULT_ROUNDING, overflow: str = DEFAULT_OVERFLOW, hardware: Any = "eyeriss_v1",
                 samples: int | None = 256) -> None:
        from ..eyeriss import Scorer
        from ..profiler import profile

        check_arith(mode, rounding, overflow)
        if not float(max_drop) >= 0.0:
            raise HwawareError(f"quantize: max_drop is in percentage points and must be >= 0, got {max_drop}")
        widths = sorted({int(w) for w in widths if int(w) < 16})
        if not widths or any(not 2 <= w <= 16 for w in widths):
            raise HwawareError(f"quantize: widths must be integers within 2..15 (16 is the start), got {widths}")
        self.model = model.eval()
        self.calib = _collect_inputs(calibration_data, samples)
        self.val = val_data
        self.max_drop = float(max_drop)
        self.widths = widths
        self.arith = {"mode": mode, "rounding": rounding, "overflow": overflow}
        self.samples = samples
        self.scorer = Scorer(hardware)
        with torch.no_grad():
            self.workload = profile(model, self.calib[:max(1, min(len(self.calib), 16))], progress=False)
        if not self.workload.layers:
            raise HwawareError("quantize: the model has no Conv/Linear layer to quantize")
        report = self.scorer.score(self.workload)
        energies = {ls.name: ls.energy_total for ls in report.layers}
        total = sum(energies.values())
        self.energy_share = {k: v / total for k, v in energies.items()}
        self.order = tuple(sorted(energies, key=lambda k: -energies[k]))
        self.result: QuantizeResult | None = None

    def energy(self, bits: dict[str, int]) -> float:
        wl = self.workload
        layers = tuple(lay.replace(weight_bits=bits.get(lay.name, 16), act_bits=bits.get(lay.name, 16))
                       for lay in wl.layers)
        return float(self.scorer.score(type(wl)(layers, wl.unmodeled, wl.source)).total.energy_total)

    def accuracy(self, bits: dict[str, int] | int) -> float:
        from ..train import evaluate

        narrowed = bits if isinstance(bits, int) else {k: v for k, v in bits.items() if v < 16}
        fixed = convert(self.model, self.calib, bits=narrowed, samples=self.samples, **self.arith)
        return evaluate(fixed, self.val)

    def steps(self) -> Iterator[Trial]:
        """Rounds over the layers, largest energy share first; each round tries one step narrower.

        A layer whose next step breaks the accuracy limit keeps its width for good (the others only
        get narrower, so it would not pass later either).
        """
        from ..train import evaluate

        float_acc = evaluate(self.model, self.val)
        acc16 = self.accuracy({})
        trials: list[Trial] = []
        bits = {name: 16 for name in self.order}
        ladder = sorted(self.widths, reverse=True)  # e.g. 12, 10, 8, 6, 4
        active = list(self.order)
        acc = acc16
        while active:
            for name in list(active):
                narrower = [w for w in ladder if w < bits[name]]
                if not narrower:
                    active.remove(name)
                    continue
                cand = {**bits, name: narrower[0]}
                a = self.accuracy(cand)
                drop = 100.0 * (float_acc - a)
                ok = drop <= self.max_drop
                trial = Trial(name, narrower[0], a, drop, self.energy(cand), ok)
                trials.append(trial)
                yield trial
                if ok:
                    bits, acc = cand, a
                else:
                    active.remove(name)
        self.result = QuantizeResult(
            bits=bits, order=self.order, energy_share=self.energy_share, float_accuracy=float_acc,
            accuracy_16=acc16, accuracy_8=self.accuracy(8),
            accuracy=acc,
            energy_16=self.energy({}), energy_8=self.energy({k: 8 for k in self.order}),
            energy=self.energy(bits), max_drop=self.max_drop, trials=tuple(trials),
            batch=self.workload.layers[0].N, **self.arith)


def quantize(model: torch.nn.Module, *, calibration_data: Any, val_data: Any, max_drop: float = 1.0,
             widths: Sequence[int] = WIDTHS, mode: str = DEFAULT_MODE, rounding: str = DEFAULT_ROUNDING,
             overflow: str = DEFAULT_OVERFLOW, hardware: Any = "eyeriss_v1", samples: int | None = 256,
             progress: bool = False) -> QuantizeResult:
    """Run :class:`BitWidthSearch` to the end (a tqdm bar per trial when ``progress``)."""
    from tqdm import tqdm

    search = BitWidthSearch(model, calibration_data=calibration_data, val_data=val_data, max_drop=max_drop,
                            widths=widths, mode=mode, rounding=rounding, overflow=overflow,
                            hardware=hardware, samples=samples)
    bar = tqdm(desc="quantize", unit="trial", disable=not progress, leave=False)
    for t in search.steps():
        bar.set_postfix_str(f"{t.layer} {t.bits}b drop {t.drop:.2f}")
        bar.update(1)
    bar.close()
    assert search.result is not None
    return search.result
