"""Energy-aware quantization: per-layer bit widths chosen greedily, largest energy share first.

1. Profile the model (:func:`hwaware.profile`, zero fractions from up to 16 calibration images)
   and score it on the Eyeriss model at 16 bits, per batch of ``batch`` images (default 1, like
   every energy hwaware reports); order the Conv/Linear layers by energy, largest first.
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

Quantization-aware fine-tuning (``finetune_steps > 0`` with ``train_data``): the search runs on a
BN-folded copy of the model (:mod:`hwaware.fixedpoint.qat`). Each trial installs fake
quantization of the candidate widths -- the integer backend's formats, rounding and (mode
``eyeriss``) per-product shift, bit for bit, with straight-through gradients -- fine-tunes a copy
of the weights accepted so far for ``finetune_steps`` SGD steps, re-reads the formats and measures
the fake-quantized accuracy, which is the integer model's accuracy (a test checks the two agree);
an accepted trial keeps its fine-tuned weights. The result's ``accuracy`` is measured on the integer
backend converted from the fine-tuned model (``result.model``; ``bias_correction=False``: the
biases were trained under the chip's rounding), and ``fake_quant_agreement`` says how often the two
agree on top-1.

    >>> search = BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=1.0)
    >>> for trial in search.steps():      # one Trial per accuracy measurement
    ...     print(trial)
    >>> search.result.table()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from ..errors import HwawareError
from .convert import collect_inputs, convert
from .format import DEFAULT_MODE, DEFAULT_OVERFLOW, DEFAULT_ROUNDING, check_arith

WIDTHS = (12, 10, 8, 6, 4)
HEADROOM_BITS = 0.5  # activation formats of the fine-tuned model: the same for fake quant and convert


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
    finetune_steps: int = 0  # per trial; 0: post-training search
    fake_quant_accuracy: float | None = None  # fine-tuned fake-quantized model (finetune_steps > 0)
    fake_quant_agreement: float | None = None  # top-1 agreement of that model with the integer one
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)  # fine-tuned, BN folded

    @property
    def saved_vs_16(self) -> float:
        """Fraction of the uniform-16-bit energy saved."""
        return 1.0 - self.energy / self.energy_16

    @property
    def saved_vs_8(self) -> float:
        """Fraction of the uniform-8-bit energy saved (negative: more than uniform 8 bits)."""
        return 1.0 - self.energy / self.energy_8

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("model", "trials")}
        d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
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
            *([(f"{'fake-quant':<14} {100 * self.fake_quant_accuracy:>6.2f}%   (top-1 agreement with the "
                f"integer model {100 * self.fake_quant_agreement:.2f}%; {self.finetune_steps} fine-tuning "
                f"steps per trial)")] if self.fake_quant_accuracy is not None else []),
            (f"energy saved: {100 * self.saved_vs_16:.1f}% vs uniform 16 bits, {100 * self.saved_vs_8:.1f}% "
             f"vs uniform 8 bits (max drop {self.max_drop} points; {len(self.trials)} trials; "
             f"mode={self.mode} rounding={self.rounding} overflow={self.overflow})"),
        ]
        drop = 100 * (self.float_accuracy - self.accuracy)
        if drop > self.max_drop + 1e-9:
            lines.append(f"WARNING: the chosen widths' integer model is {drop:.2f} points below float, beyond "
                         f"max_drop {self.max_drop}" + (
                             " (the fine-tuned weights pass in fake quantization but not in the integer backend;"
                             " try --finetune-steps 0 or --mode wide)" if self.fake_quant_accuracy is not None else ""))
        return "\n".join(lines)


class BitWidthSearch:
    """The greedy search as a step API: iterate :meth:`steps`, then read :attr:`result`."""

    def __init__(self, model: torch.nn.Module, *, calibration_data: Any, val_data: Any,
                 max_drop: float = 1.0, widths: Sequence[int] = WIDTHS, mode: str = DEFAULT_MODE,
                 rounding: str = DEFAULT_ROUNDING, overflow: str = DEFAULT_OVERFLOW, hardware: Any = "eyeriss_v1",
                 samples: int | None = 256, train_data: Any = None, finetune_steps: int = 0,
                 finetune_lr: float = 0.001, batch: int = 1) -> None:
        from .._checks import check_dim
        from ..eyeriss import Scorer
        from ..profiler import profile

        check_arith(mode, rounding, overflow)
        if not float(max_drop) >= 0.0:
            raise HwawareError(f"quantize: max_drop is in percentage points and must be >= 0, got {max_drop}")
        widths = sorted({int(w) for w in widths if int(w) < 16})
        if not widths or any(not 2 <= w <= 16 for w in widths):
            raise HwawareError(f"quantize: widths must be integers within 2..15 (16 is the start), got {widths}")
        if isinstance(finetune_steps, bool) or not isinstance(finetune_steps, int) or finetune_steps < 0:
            raise HwawareError(f"quantize: finetune_steps must be an integer >= 0, got {finetune_steps!r}")
        if finetune_steps and train_data is None:
            raise HwawareError("quantize: finetune_steps > 0 needs train_data (batches of inputs and labels)")
        if not float(finetune_lr) > 0.0:
            raise HwawareError(f"quantize: finetune_lr must be > 0, got {finetune_lr}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise HwawareError(f"quantize: batch must be a positive integer, got {batch!r}")
        check_dim(batch, "N", "quantize: batch")
        self.finetune_steps, self.finetune_lr, self.train_data = finetune_steps, float(finetune_lr), train_data
        self.model = model.eval()
        self.calib = collect_inputs(calibration_data, samples)
        self.val = val_data
        self.max_drop = float(max_drop)
        self.widths = widths
        self.arith = {"mode": mode, "rounding": rounding, "overflow": overflow}
        self.samples = samples
        self.scorer = Scorer(hardware)
        with torch.no_grad():
            # zero fractions from up to 16 images; energies per batch of ``batch`` (the convention of
            # every energy hwaware reports: recipes, score, summary.md -- default 1 image)
            profiled = profile(model, self.calib[:max(1, min(len(self.calib), 16))], progress=False)
        self.workload = profiled.with_batch(batch)
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

    def accuracy(self, bits: dict[str, int] | int, model: torch.nn.Module | None = None) -> float:
        """Top-1 of the integer backend converted from ``model`` (default: the given model)."""
        from ..train import evaluate

        narrowed = bits if isinstance(bits, int) else {k: v for k, v in bits.items() if v < 16}
        fixed = convert(self.model if model is None else model, self.calib, bits=narrowed, samples=self.samples,
                        **self.arith)
        return evaluate(fixed, self.val)

    def finetuned_accuracy(self, bits: dict[str, int], state: dict[str, torch.Tensor]
                           ) -> tuple[float, dict[str, torch.Tensor]]:
        """Fake-quantized top-1 of ``bits`` after fine-tuning from ``state``; and the new state."""
        from ..train import evaluate
        from .qat import FakeQuant, finetune

        self.folded.load_state_dict(state)
        fq = self.fake_quant(bits)
        try:
            fq.correct_bias(self.reference)  # the mean rounding error, as convert's bias correction removes it
            finetune(self.folded, self.train_data, steps=self.finetune_steps, lr=self.finetune_lr)
            fq.calibrate()  # the formats convert would pick for the fine-tuned weights
            acc = evaluate(self.folded, self.val)
        finally:
            fq.remove()
        return acc, {k: v.detach().clone() for k, v in self.folded.state_dict().items()}

    def start_qat(self) -> dict[str, torch.Tensor]:
        """Fold the BatchNorms into a copy to fine-tune and a reference copy; the starting weights."""
        from .qat import fold_batchnorm

        self.folded = fold_batchnorm(self.model)
        self.reference = fold_batchnorm(self.model)  # the unquantized float model, never trained
        return {k: v.detach().clone() for k, v in self.folded.state_dict().items()}

    def fake_quant(self, bits: dict[str, int]) -> Any:
        """:class:`~hwaware.fixedpoint.qat.FakeQuant` of ``bits`` on the folded model, in the search's arithmetic."""
        from .qat import FakeQuant

        return FakeQuant(self.folded, bits, calibration_data=self.calib, headroom=HEADROOM_BITS,
                         **self.arith)

    def convert_finetuned(self, bits: dict[str, int]) -> Any:
        """The folded, fine-tuned model on the integer backend: the codes and biases it trained on."""
        narrowed = {k: v for k, v in bits.items() if v < 16}
        return convert(self.folded, self.calib, bits=narrowed or 16, samples=self.samples, equalize=False,
                       bias_correction=False, headroom_bits=HEADROOM_BITS, **self.arith)

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
        qat = self.finetune_steps > 0
        if qat:
            state = self.start_qat()
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
                if qat:
                    a, cand_state = self.finetuned_accuracy(cand, state)
                else:
                    a = self.accuracy(cand)
                drop = 100.0 * (float_acc - a)
                ok = drop <= self.max_drop
                trial = Trial(name, narrower[0], a, drop, self.energy(cand), ok)
                trials.append(trial)
                yield trial
                if ok:
                    bits, acc = cand, a
                    if qat:
                        state = cand_state
                else:
                    active.remove(name)
        extra: dict[str, Any] = {}
        if qat:
            from .verify import accuracy_and_agreement

            self.folded.load_state_dict(state)
            fixed = self.convert_finetuned(bits)
            fq = self.fake_quant(bits)
            try:
                fq_acc = evaluate(self.folded, self.val)
                acc, agree = accuracy_and_agreement(self.folded, fixed, self.val)  # one integer pass
            finally:
                fq.remove()
            extra = {"fake_quant_accuracy": fq_acc, "fake_quant_agreement": agree, "model": self.folded}
        self.result = QuantizeResult(
            bits=bits, order=self.order, energy_share=self.energy_share, float_accuracy=float_acc,
            accuracy_16=acc16, accuracy_8=self.accuracy(8),
            accuracy=acc,
            energy_16=self.energy({}), energy_8=self.energy({k: 8 for k in self.order}),
            energy=self.energy(bits), max_drop=self.max_drop, trials=tuple(trials),
            batch=self.workload.layers[0].N, finetune_steps=self.finetune_steps, **extra, **self.arith)


def quantize(model: torch.nn.Module, *, calibration_data: Any, val_data: Any, max_drop: float = 1.0,
             widths: Sequence[int] = WIDTHS, mode: str = DEFAULT_MODE, rounding: str = DEFAULT_ROUNDING,
             overflow: str = DEFAULT_OVERFLOW, hardware: Any = "eyeriss_v1", samples: int | None = 256,
             train_data: Any = None, finetune_steps: int = 0, finetune_lr: float = 0.001,
             batch: int = 1, progress: bool = False) -> QuantizeResult:
    """Run :class:`BitWidthSearch` to the end (a tqdm bar per trial when ``progress``)."""
    from tqdm import tqdm

    search = BitWidthSearch(model, calibration_data=calibration_data, val_data=val_data, max_drop=max_drop,
                            widths=widths, mode=mode, rounding=rounding, overflow=overflow,
                            hardware=hardware, samples=samples, train_data=train_data,
                            finetune_steps=finetune_steps, finetune_lr=finetune_lr, batch=batch)
    bar = tqdm(desc="quantize", unit="trial", disable=not progress, leave=False)
    for t in search.steps():
        bar.set_postfix_str(f"{t.layer} {t.bits}b drop {t.drop:.2f}")
        bar.update(1)
    bar.close()
    assert search.result is not None
    return search.result
