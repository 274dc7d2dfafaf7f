"""Energy-aware quantization: per-layer bit widths stepped down from uniform 8 bits by energy saved
per accuracy lost.

1. Profile the model (:func:`hwaware.profile`, zero fractions from up to 16 calibration images)
   and score it on the Eyeriss model per batch of ``batch`` images (default 1, like every energy
   hwaware reports); :attr:`order` lists the Conv/Linear layers by energy at 16 bits.
2. Start from uniform ``start`` bits (default 8: post-training 8 bits keeps the trained small CNN's
   accuracy, so no layer is left at 16, which costs more than the rest save); the first trial
   (layer ``"*"``) measures it, and the search falls back to 16 bits if it breaks ``max_drop``.
3. In rounds, step each active layer one width down ``widths`` (below the start), visiting the
   layers in order of energy saved per accuracy lost: the step's energy saving (the model, exact)
   over the top-1 points the layer's previous trial cost (unknown at first: energy alone). A step
   whose top-1 stays within ``max_drop`` percentage points of the float model is kept; a layer
   whose step fails keeps its width for good.
4. A layer's width applies to its weights and its input activations (``weight_bits`` and
   ``act_bits`` of the :class:`~hwaware.workload.Layer`, which scale the energy model's data
   movement and MAC energy); products still accumulate as the fixed-point backend says. With
   ``separate=True`` the weights and the input step down apart (``result.act_bits`` holds the inputs'
   widths where they differ). With quantization-aware fine-tuning, an input the integer graph
   keeps non-negative (a ReLU's output) takes unsigned codes ``0 .. 2**a - 1`` (``result.unsigned_inputs``;
   ``unsigned_inputs=False`` keeps them signed; :mod:`.clip_formats`); ``convert(act_bits=result.convert_act_bits())``
   takes the formats that hold them.

Accuracy is measured with the integer backend (:func:`hwaware.fixedpoint.convert` with
``bits={layer: width}``), by default in the chip's arithmetic (:data:`~hwaware.fixedpoint.format.DEFAULT_ARITHMETIC`,
eyeriss/floor/wrap), the same that conversion, test vectors and recipes use, so the widths found are the
widths the exported vectors run at; pass ``mode="wide", rounding="nearest", overflow="saturate"`` to
study operand widths alone, without the chip's per-product truncation.

Quantization-aware fine-tuning (``finetune_steps > 0`` with ``train_data``): the search runs on a
BN-folded copy of the model (:mod:`hwaware.fixedpoint.qat`). Each trial installs fake
quantization of the candidate widths -- the integer backend's formats, rounding and (mode
``eyeriss``) per-product shift, bit for bit, with straight-through gradients -- fine-tunes a copy
of the weights accepted so far for ``finetune_steps`` SGD steps (narrowed layers in clipped formats
chosen for the least error at the trial's start and held fixed, :mod:`.clip_formats`), re-reads the
16-bit formats and measures
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
START = 8  # the search starts from uniform 8 bits (16 if that breaks max_drop)
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
    operand: str = "both"  # what stepped down: "both" (weights and input), "weights" or "inputs" (separate widths)


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
    # narrowed layers' (f_in, f_w) the fine-tuning held fixed (clipped input); convert(narrow_formats=) takes them
    narrow_formats: dict[str, tuple[int, int]] = field(default_factory=dict)
    # each layer's input width where the search gave it apart from its weights' (``bits``); convert(act_bits=)
    act_bits: dict[str, int] = field(default_factory=dict)
    final_steps: int = 0  # fine-tuning steps of the chosen widths after the search
    # layers whose narrowed input is unsigned: codes 0 .. 2**a - 1, held in an (a+1)-bit signed format
    unsigned_inputs: tuple[str, ...] = ()
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)  # fine-tuned, BN folded

    def convert_act_bits(self) -> dict[str, int]:
        """``convert(act_bits=...)`` for these widths: each narrowed layer's input format width where it
        differs from the weights' (an unsigned ``a``-bit input is an ``(a+1)``-bit format, see
        :mod:`.clip_formats`)."""
        from .clip_formats import input_code_bits

        act = {k: self.act_bits.get(k, b) for k, b in self.bits.items() if min(b, self.act_bits.get(k, b)) < 16}
        return {k: c for k, c in input_code_bits(act, set(self.unsigned_inputs)).items() if c != self.bits[k]}

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
        d["narrow_formats"] = {k: list(v) for k, v in self.narrow_formats.items()}
        d["unsigned_inputs"] = list(self.unsigned_inputs)
        d["trials"] = [asdict(t) for t in self.trials]
        d["saved_vs_16"], d["saved_vs_8"] = self.saved_vs_16, self.saved_vs_8
        return d

    def table(self) -> str:
        lines = [f"{'layer':<24} {'energy share':>12} {'bits':>5} {'input bits':>10}"]
        for name in self.order:
            a = f"{self.act_bits.get(name, self.bits[name])}{'u' if name in self.unsigned_inputs else ''}"
            lines.append(f"{name[:24]:<24} {100 * self.energy_share[name]:>11.1f}% {self.bits[name]:>5} {a:>10}")
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
                 finetune_lr: float = 0.001, batch: int = 1, start: int = START, clip: bool = True,
                 separate: bool = False, descent_steps: int | None = None, final_steps: int = 0,
                 descent_to: int | None = None, unsigned_inputs: bool = True) -> None:
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
        for what, n in (("descent_steps", descent_steps), ("final_steps", final_steps)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                raise HwawareError(f"quantize: {what} must be an integer >= 0, got {n!r}")
        if (descent_steps or final_steps) and not finetune_steps:
            raise HwawareError("quantize: descent_steps and final_steps fine-tune; they need finetune_steps > 0")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise HwawareError(f"quantize: batch must be a positive integer, got {batch!r}")
        check_dim(batch, "N", "quantize: batch")
        if isinstance(start, bool) or not isinstance(start, int) or not 2 <= start <= 16:
            raise HwawareError(f"quantize: start must be a width within 2..16, got {start!r}")
        self.start, self.clip, self.separate = start, bool(clip), bool(separate)
        self.descent_steps = finetune_steps if descent_steps is None else descent_steps
        self.final_steps = final_steps
        if descent_to is not None and (isinstance(descent_to, bool) or descent_to not in widths + [start]):
            raise HwawareError(f"quantize: descent_to must be one of the widths {widths} or the start {start}, "
                               f"got {descent_to!r}")
        self.descent_to = min(widths) if descent_to is None else int(descent_to)
        self.kept_bits: dict[str, int] = {}  # the widths the accepted formats belong to
        self.kept_act: dict[str, int] = {}
        self.last_formats: dict[str, tuple[int, int]] = {}
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
        #: layers whose narrowed input takes unsigned codes (fine-tuned search in clipped formats only:
        #: there the narrowed input saturates, so its codes stay within 0 .. 2**a - 1)
        self.unsigned: frozenset[str] = frozenset()
        if unsigned_inputs and finetune_steps and self.clip:
            from .clip_formats import nonnegative_inputs

            self.unsigned = nonnegative_inputs(convert(model, self.calib[:16], bits=16, samples=16, **self.arith))
        report = self.scorer.score(self.workload)
        energies = {ls.name: ls.energy_total for ls in report.layers}
        total = sum(energies.values())
        self.energy_share = {k: v / total for k, v in energies.items()}
        self.order = tuple(sorted(energies, key=lambda k: -energies[k]))
        self.result: QuantizeResult | None = None

    def energy(self, bits: dict[str, int], act_bits: dict[str, int] | None = None) -> float:
        """Total energy with ``bits`` per layer (weights, and inputs unless ``act_bits`` gives them)."""
        wl = self.workload
        act = {**bits, **(act_bits or {})}
        layers = tuple(lay.replace(weight_bits=bits.get(lay.name, 16), act_bits=act.get(lay.name, 16))
                       for lay in wl.layers)
        return float(self.scorer.score(type(wl)(layers, wl.unmodeled, wl.source)).total.energy_total)

    def input_codes(self, bits: dict[str, int], act_bits: dict[str, int] | None = None) -> dict[str, int]:
        """Widths of the signed formats the backends hold each layer's input in: the input's width
        (``act_bits``, else ``bits``), one more for an unsigned input (:attr:`unsigned`)."""
        from .clip_formats import input_code_bits

        return input_code_bits({**bits, **(act_bits or {})}, self.unsigned)

    def convert_widths(self, bits: dict[str, int], act_bits: dict[str, int] | None = None
                       ) -> tuple[dict[str, int], dict[str, int]]:
        """``convert``'s ``bits`` (the layers narrowed below 16 bits in weights or input) and ``act_bits``
        (their input formats' widths where those differ from the weights', :meth:`input_codes`)."""
        act = {**bits, **(act_bits or {})}
        narrowed = {k: v for k, v in bits.items() if min(v, act[k]) < 16}
        codes = self.input_codes(act)
        return narrowed, {k: codes[k] for k in narrowed if codes[k] != bits[k]}

    def accuracy(self, bits: dict[str, int] | int, model: torch.nn.Module | None = None,
                 act_bits: dict[str, int] | None = None) -> float:
        """Top-1 of the integer backend converted from ``model`` (default: the given model)."""
        from ..train import evaluate

        narrowed, apart = (bits, {}) if isinstance(bits, int) else self.convert_widths(bits, act_bits)
        fixed = convert(self.model if model is None else model, self.calib, bits=narrowed, samples=self.samples,
                        act_bits=apart or None, **self.arith)
        return evaluate(fixed, self.val)

    def finetuned_accuracy(self, bits: dict[str, int], state: dict[str, torch.Tensor],
                           formats: dict[str, tuple[int, int]] | None = None,
                           act_bits: dict[str, int] | None = None, steps: int | None = None,
                           ) -> tuple[float, dict[str, torch.Tensor]]:
        """Fake-quantized top-1 of ``bits`` after fine-tuning from ``state``; and the new state.

        ``formats``: narrowed layers' formats to keep (the accepted trial's); the others are chosen by
        :func:`~hwaware.fixedpoint.clip_formats.narrow_formats` on the starting weights and held fixed
        through the fine-tuning (:attr:`last_formats`). ``act_bits``: inputs' widths apart from the
        weights'; ``steps``: fine-tuning steps (default ``finetune_steps``).
        """
        from ..train import evaluate
        from .qat import finetune

        self.folded.load_state_dict(state)
        self.last_formats = self.formats_for(bits, formats or {}, act_bits)
        fq = self.fake_quant(bits, self.last_formats, act_bits)
        try:
            fq.correct_bias(self.reference)  # the mean rounding error, as convert's bias correction removes it
            finetune(self.folded, self.train_data, steps=self.finetune_steps if steps is None else steps,
                     lr=self.finetune_lr)
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

    def formats_for(self, bits: dict[str, int], keep: dict[str, tuple[int, int]],
                    act_bits: dict[str, int] | None = None) -> dict[str, tuple[int, int]]:
        """Narrowed layers' ``(f_in, f_w)``: ``keep``'s where the width is unchanged, the others chosen
        for the least clipping-and-rounding error on the folded model's current weights (``{}`` when
        the search uses the max rule, ``clip=False``)."""
        from .clip_formats import narrow_formats

        if not self.clip:
            return {}
        act = {**bits, **(act_bits or {})}
        keep = {k: v for k, v in keep.items()
                if bits.get(k, 16) == self.kept_bits.get(k) and act.get(k, 16) == self.kept_act.get(k)}
        new = {k: b for k, b in bits.items() if min(b, act[k]) < 16 and k not in keep}
        codes = self.input_codes(act)
        got = narrow_formats(self.folded, new, self.calib, rounding=self.arith["rounding"],
                             headroom=HEADROOM_BITS, act_bits={k: codes[k] for k in new}) if new else {}
        return {**keep, **got}

    def fake_quant(self, bits: dict[str, int], formats: dict[str, tuple[int, int]] | None = None,
                   act_bits: dict[str, int] | None = None) -> Any:
        """:class:`~hwaware.fixedpoint.qat.FakeQuant` of ``bits`` on the folded model, in the search's arithmetic."""
        from .qat import FakeQuant

        return FakeQuant(self.folded, bits, calibration_data=self.calib, headroom=HEADROOM_BITS,
                         narrow_formats=formats, act_bits=self.input_codes(bits, act_bits), **self.arith)

    def convert_finetuned(self, bits: dict[str, int], formats: dict[str, tuple[int, int]] | None = None,
                          act_bits: dict[str, int] | None = None) -> Any:
        """The folded, fine-tuned model on the integer backend: the codes, biases and formats it trained on."""
        narrowed, apart = self.convert_widths(bits, act_bits)
        return convert(self.folded, self.calib, bits=narrowed or 16, samples=self.samples, equalize=False,
                       bias_correction=False, headroom_bits=HEADROOM_BITS, narrow_formats=formats or None,
                       act_bits=apart or None, **self.arith)

    def steps(self) -> Iterator[Trial]:
        """From uniform ``start`` bits (default 8), step layers narrower one width at a time.

        The first trial measures every layer at ``start`` (layer ``"*"``); if that already breaks
        ``max_drop`` the search starts from 16 bits instead. Then all layers step down the ladder
        together (layer ``"*"``, ``descent_steps`` of fine-tuning each) while that holds, down to
        ``descent_to`` (default: the narrowest width); with ``separate``, each width is two trials, all
        weights then all inputs (operands ``"weights"``, ``"inputs"``), and an operand stops at its first
        failed step while the other goes on (measured on the builtin:shapes ResNet-18: weights at 4 bits
        alone are 1.6x less energy than 8 bits, inputs at 4 alone 1.04x, so a joint step that the
        inputs fail would leave the weights at 8). Narrowing one
        layer at a time, each trial spends part of the budget and a noisy rejection freezes a large
        layer early (measured on the small CNN: 1.39x with conv3 left at 6 bits, where uniform 4 bits
        held the accuracy). Then, in rounds, the active moves are visited in order of energy saved
        per accuracy lost: the energy the move saves (the Eyeriss model, exact) over the accuracy its
        last trial cost (unknown at first: the energy alone orders them). A move steps a layer's
        weights and input together, or with ``separate`` its weights or its input alone (operand
        ``"weights"`` / ``"inputs"``: weights dominate the energy of small networks, and a weight
        step costs less accuracy than an input step). A trial within ``max_drop`` is kept; a move
        whose step breaks it is dropped for good (the others only get narrower, so it would not pass
        later either). ``final_steps`` fine-tune the chosen widths once more at the end (kept if the
        validation top-1 does not fall).
        """
        from ..train import evaluate

        float_acc = evaluate(self.model, self.val)
        acc16 = self.accuracy({})
        trials: list[Trial] = []
        qat = self.finetune_steps > 0
        state = self.start_qat() if qat else {}
        formats: dict[str, tuple[int, int]] = {}

        def measure(cand: dict[str, int], act: dict[str, int], steps: int | None = None
                    ) -> tuple[float, Any, dict[str, tuple[int, int]]]:
            if qat:
                a, st = self.finetuned_accuracy(cand, state, formats, act, steps)
                return a, st, self.last_formats
            return self.accuracy(cand, act_bits=act), None, {}

        def keep(cand: dict[str, int], act: dict[str, int], st: Any, fm: dict[str, tuple[int, int]]) -> None:
            nonlocal state, formats
            if qat:
                state, formats, self.kept_bits, self.kept_act = st, fm, dict(cand), dict(act)

        bits = {name: 16 for name in self.order}
        act = dict(bits)  # inputs' widths (== bits unless separate)
        acc = acc16
        ladder = sorted(self.widths, reverse=True)
        operands = ("weights", "inputs") if self.separate else ("both",)
        # uniform descent: all layers one step down together while that holds (each trial fine-tunes
        # from the last accepted one); with separate widths, all weights step, then all inputs, and an
        # operand whose step fails descends no further (the other goes on). Per-layer steps refine
        # from the narrowest uniform widths.
        descent = [(self.start, "both")] if self.start < 16 else []
        descent += [(w, op) for w in ladder if self.descent_to <= w < self.start for op in operands]
        failed: set[str] = set()
        for w, op in descent:
            if op in failed:
                continue
            cand = {name: w for name in self.order} if op != "inputs" else dict(bits)
            cact = {name: w for name in self.order} if op != "weights" else dict(act)
            a, st, fm = measure(cand, cact, self.descent_steps)
            drop = 100.0 * (float_acc - a)
            trial = Trial("*", w, a, drop, self.energy(cand, cact), drop <= self.max_drop, op)
            trials.append(trial)
            yield trial
            if not trial.accepted:
                if op == "both":
                    break
                failed.add(op)
                continue
            bits, act, acc = cand, cact, a
            keep(cand, cact, st, fm)
        active = [(name, op) for name in self.order for op in operands]
        cost: dict[tuple[str, str], float] = {}  # accuracy points the move's last trial lost

        def stepped(name: str, op: str) -> tuple[dict[str, int], dict[str, int]] | None:
            w_to = [w for w in ladder if w < bits[name]] if op != "inputs" else [bits[name]]
            a_to = [w for w in ladder if w < act[name]] if op != "weights" else [act[name]]
            if not w_to or not a_to:
                return None
            return {**bits, name: w_to[0]}, {**act, name: a_to[0]}

        while active:
            e_now = self.energy(bits, act)
            gain = {}
            for move in list(active):
                nxt = stepped(*move)
                if nxt is None:
                    active.remove(move)
                else:
                    gain[move] = e_now - self.energy(*nxt)
            rank = sorted(active, key=lambda m: -gain[m] / max(cost.get(m, 0.0), 0.05))
            for move in rank:
                nxt = stepped(*move) if move in active else None
                if nxt is None:
                    continue
                cand, cact = nxt
                a, st, fm = measure(cand, cact)
                drop = 100.0 * (float_acc - a)
                ok = drop <= self.max_drop
                cost[move] = max(0.0, 100.0 * (acc - a))
                name, op = move
                trial = Trial(name, cact[name] if op == "inputs" else cand[name], a, drop, self.energy(cand, cact),
                              ok, op)
                trials.append(trial)
                yield trial
                if ok:
                    bits, act, acc = cand, cact, a
                    keep(cand, cact, st, fm)
                else:
                    active.remove(move)
        if qat and self.final_steps:
            a, st, fm = measure(bits, act, self.final_steps)
            if a >= acc:  # one decision on the validation data: never worse than the searched point
                keep(bits, act, st, fm)
        extra: dict[str, Any] = {}
        if qat:
            from .verify import accuracy_and_agreement

            self.folded.load_state_dict(state)
            fixed = self.convert_finetuned(bits, formats, act)
            fq = self.fake_quant(bits, formats, act)
            try:
                fq_acc = evaluate(self.folded, self.val)
                acc, agree = accuracy_and_agreement(self.folded, fixed, self.val)  # one integer pass
            finally:
                fq.remove()
            extra = {"fake_quant_accuracy": fq_acc, "fake_quant_agreement": agree, "model": self.folded,
                     "narrow_formats": dict(formats), "final_steps": self.final_steps}
        self.result = QuantizeResult(
            bits=bits, order=self.order, energy_share=self.energy_share, float_accuracy=float_acc,
            accuracy_16=acc16, accuracy_8=self.accuracy(8),
            accuracy=acc,
            energy_16=self.energy({}), energy_8=self.energy({k: 8 for k in self.order}),
            energy=self.energy(bits, act), max_drop=self.max_drop, trials=tuple(trials),
            batch=self.workload.layers[0].N, finetune_steps=self.finetune_steps,
            act_bits={k: v for k, v in act.items() if v != bits[k]},
            unsigned_inputs=tuple(k for k in self.order if k in self.unsigned and act[k] < 16), **extra, **self.arith)


def quantize(model: torch.nn.Module, *, calibration_data: Any, val_data: Any, max_drop: float = 1.0,
             widths: Sequence[int] = WIDTHS, mode: str = DEFAULT_MODE, rounding: str = DEFAULT_ROUNDING,
             overflow: str = DEFAULT_OVERFLOW, hardware: Any = "eyeriss_v1", samples: int | None = 256,
             train_data: Any = None, finetune_steps: int = 0, finetune_lr: float = 0.001,
             batch: int = 1, start: int = START, clip: bool = True, separate: bool = False,
             descent_steps: int | None = None, final_steps: int = 0, descent_to: int | None = None,
             unsigned_inputs: bool = True, progress: bool = False) -> QuantizeResult:
    """Run :class:`BitWidthSearch` to the end (a tqdm bar per trial when ``progress``)."""
    from tqdm import tqdm

    search = BitWidthSearch(model, calibration_data=calibration_data, val_data=val_data, max_drop=max_drop,
                            widths=widths, mode=mode, rounding=rounding, overflow=overflow,
                            hardware=hardware, samples=samples, train_data=train_data,
                            finetune_steps=finetune_steps, finetune_lr=finetune_lr, batch=batch, start=start,
                            clip=clip, separate=separate, descent_steps=descent_steps, final_steps=final_steps,
                            descent_to=descent_to, unsigned_inputs=unsigned_inputs)
    bar = tqdm(desc="quantize", unit="trial", disable=not progress, leave=False)
    for t in search.steps():
        bar.set_postfix_str(f"{t.layer}{'' if t.operand == 'both' else ' ' + t.operand} {t.bits}b drop {t.drop:.2f}")
        bar.update(1)
    bar.close()
    assert search.result is not None
    return search.result
