"""Quantization-aware fine-tuning with fake quantization that computes what the integer backend does.

:func:`hwaware.fixedpoint.convert` with ``bits={layer: b}`` stores a narrowed Conv/Linear's
(BN-folded) weights at ``f_w = frac_bits_for(max|w|, b)``, rounded to nearest (half up) and
saturated, and first brings the layer's input to ``f = frac_bits_for(calibration max of the
input, b, headroom)`` with the arithmetic's rounding. In mode ``eyeriss`` (the chip's) every
product is then shifted to the output format ``f_y`` with that rounding before the 16-bit sum, and
the bias is a 16-bit code at ``f_y``. :class:`FakeQuant` computes the same on float tensors in
the forward pass and passes gradients straight through (the straight-through estimator), so
fine-tuning learns weights for the arithmetic the chip runs.

Fine-tuning runs on a BN-folded copy (:func:`fold_batchnorm`): the folded weights are what the
backend quantizes. The fine-tuned model converts with ``bias_correction=False`` (the biases were
trained under the chip's rounding; correcting them towards the unquantized float model undoes
that) and the same ``headroom_bits``; its integer outputs then match the fake-quantized ones (top-1
agreement 99-100% on the trained small CNN, bench/quantize_qat.py).

    >>> folded = fold_batchnorm(model)
    >>> fq = FakeQuant(folded, {"conv2": 4}, calibration_data=calib)
    >>> finetune(folded, train_loader, steps=100)
    >>> fq.calibrate(); fq_out = folded(x)
    >>> fixed = convert(fq.remove(), calib, bits={"conv2": 4}, bias_correction=False, equalize=False)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .._modes import inspection_mode
from ..errors import HwawareError
from .format import frac_bits_for

_QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
_VALUE_LEVELS = 32  # narrowed inputs of up to 5 bits: the per-product rounding is summed per input code


def fake_quantize(x: torch.Tensor, frac_bits: int, bits: int, rounding: str = "nearest",
                  overflow: str = "saturate") -> torch.Tensor:
    """``x`` rounded to ``bits``-wide codes at ``frac_bits``, straight-through gradient.

    ``nearest`` rounds half up as :meth:`FixedFormat.quantize` and the ``nearest`` shift do;
    ``floor`` rounds down as the ``floor`` shift does. Out of range, ``saturate`` clamps and ``wrap``
    wraps as two's complement (as :func:`~hwaware.fixedpoint.format.cut`). Example: 0.3 at 4 bits,
    f=3 -> 2/8 = 0.25; 1.0 at 4 bits, f=3 -> 7/8 (saturate) or -1 (wrap).
    """
    scale = math.ldexp(1.0, frac_bits)
    v = x * scale
    q = torch.floor(v + 0.5) if rounding == "nearest" else torch.floor(v)
    half = 1 << (bits - 1)
    if overflow == "wrap":
        q = torch.remainder(q + half, 2 * half) - half
    else:
        q = q.clamp(-half, half - 1)
    q = q / scale
    return x + (q - x).detach()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that follows a Conv folded into it.

    The copy is a ``torch.fx`` GraphModule whose Conv/Linear modules keep their names, so bit
    assignments ``{layer: bits}`` of the original apply unchanged. The user's model is untouched.
    """
    from torch.fx.experimental.optimization import fuse

    m = copy.deepcopy(model).eval().float()
    try:
        return fuse(m, inplace=True)
    except Exception as exc:  # noqa: BLE001 -- fx raises many types; report one line
        raise HwawareError(f"quantization-aware training: cannot trace {type(model).__name__} with torch.fx "
                           f"to fold its BatchNorms ({str(exc).strip().splitlines()[0] if str(exc) else exc!r})"
                           ) from None


class FakeQuant:
    """The integer backend's arithmetic on float tensors, installed in place on every Conv/Linear.

    ``model`` should be a BN-folded copy (:func:`fold_batchnorm`); ``bits`` maps layer names to
    widths (the others stay at 16). Per layer, as :func:`hwaware.fixedpoint.convert` with
    ``bias_correction=False`` computes it (``headroom`` = its ``headroom_bits``):

    - a narrowed layer's input goes to its 16-bit format, then to ``f_in = frac_bits_for(calibration
      max, bits, headroom)``, each with the arithmetic's rounding (the backend's requantize) and overflow;
    - weights at the max rule of the current weights (nearest, saturate), any width;
    - ``narrow_formats`` ``{layer: (f_in, f_w)}`` (:func:`~hwaware.fixedpoint.clip_formats.narrow_formats`)
      holds a narrowed layer's two formats fixed instead, its input saturating, as
      ``convert(narrow_formats=...)`` computes it;
    - mode ``eyeriss``: the bias at ``f_y`` (16 bits, nearest), and every product shifted by
      ``s = f_in + f_w - f_y`` with the arithmetic's rounding before the sum. For ``s <= 2`` that
      per-product rounding is reproduced exactly (the sum of ``(x*w) mod 2**s`` over the products is a
      few convolutions of the codes' low-bit indicators); for ``s >= 3`` by its mean over uniform low
      bits, per non-zero product; ``s <= 0`` is exact already;
    - mode ``wide``: the bias at ``f_in + f_w`` (32 bits) and the exact sum rounded to ``f_y`` with
      the arithmetic's rounding.

    The model's input goes to 16-bit codes first (nearest, saturate), as the integer model's input.
    The sum wraps at 16 bits (mode ``eyeriss``: the chip's adder) or is cut per ``overflow`` (mode
    ``wide``). Straight-through gradients everywhere (the rounding corrections carry none). Not
    modelled: a single product beyond 16 bits, and the rounding of ops other than Conv/Linear
    (pooling, adds) where their output is not a narrowed layer's input. The formats come from the float model (fake quantization off)
    on ``calibration_data``, as convert takes them; :meth:`calibrate` re-reads them after the
    weights changed (convert of the fine-tuned weights sees the new maxima).
    :meth:`remove` takes everything off again, leaving plain float weights.
    """

    def __init__(self, model: nn.Module, bits: Mapping[str, int], *, calibration_data: torch.Tensor,
                 headroom: float = 0.5, mode: str = "eyeriss", rounding: str = "floor",
                 overflow: str = "wrap", narrow_formats: Mapping[str, tuple[int, int]] | None = None,
                 act_bits: Mapping[str, int] | None = None) -> None:
        from torch.nn.utils import parametrize

        self.model = model
        self.mode, self.rounding, self.overflow, self.headroom = mode, rounding, overflow, float(headroom)
        self.calibration_data = calibration_data
        modules = dict(model.named_modules())
        for name in [*bits, *(act_bits or {})]:
            if not isinstance(modules.get(name), _QUANTIZABLE):
                raise HwawareError(f"quantization-aware training: '{name}' is not a Conv/Linear module of the "
                                   f"model")
        self.layers = {n: m for n, m in modules.items() if isinstance(m, _QUANTIZABLE)}
        self.bits = {n: int(bits.get(n, 16)) for n in self.layers}  # the weights' widths
        # the inputs' widths: the weights' unless act_bits gives them apart (convert's act_bits)
        self.act = {n: int((act_bits or {}).get(n, self.bits[n])) for n in self.layers}
        # {layer: (f_in, f_w)} held fixed (clipped input, :mod:`.clip_formats`); convert takes the same
        self.narrow_formats = {n: (int(f[0]), int(f[1])) for n, f in (narrow_formats or {}).items()}
        for name in self.narrow_formats:
            if min(self.bits.get(name, 16), self.act.get(name, 16)) >= 16:
                raise HwawareError(f"quantization-aware training: narrow_formats names '{name}', which is not "
                                   f"narrowed below 16 bits")
        self.enabled = False
        self.input_frac: dict[str, int] = {}  # narrowed layers: the format their input is brought to
        self.in_frac16: dict[str, int] = {}  # the input's 16-bit format (sets s of 16-bit layers)
        self.out_frac: dict[str, int] = {}
        self.in_frac_model = 0  # the model input's 16-bit format
        self._handles = [model.register_forward_pre_hook(self._model_input)]
        self._parametrized = []
        for name, mod in self.layers.items():
            self._handles.append(mod.register_forward_pre_hook(lambda m, args, n=name: self._input(n, args)))
            self._handles.append(mod.register_forward_hook(lambda m, args, y, n=name: self._output(n, m, args, y)))
            parametrize.register_parametrization(mod, "weight", _WeightQuant(self, name, self.bits[name]))
            if mod.bias is not None:
                parametrize.register_parametrization(mod, "bias", _BiasQuant(self, name, mod))
            self._parametrized.append(mod)
        self.calibrate()

    def calibrate(self) -> None:
        """Re-read every format from the float model (fake quantization off) on the calibration data."""
        self.enabled = False
        try:
            ins, outs = io_maxima(self.model, self.calibration_data, list(self.layers))
        finally:
            self.enabled = True
        h = self.headroom
        self.in_frac_model = frac_bits_for(float(self.calibration_data.abs().max()), 16, headroom=h)
        self.input_frac = {n: self.narrow_formats[n][0] if n in self.narrow_formats else
                           frac_bits_for(ins[n], b, headroom=h) for n, b in self.act.items() if b < 16}
        self.in_frac16 = {n: frac_bits_for(ins[n], 16, headroom=h) for n in self.layers}
        self.out_frac = {n: frac_bits_for(outs[n], 16, headroom=h) for n in self.layers}

    def correct_bias(self, reference: nn.Module, passes: int = 4) -> None:
        """Shift each layer's bias so its mean output per channel on the calibration data is the
        ``reference`` model's (the unquantized folded model), layer by layer in execution order.

        The counterpart of convert's bias correction, done on the fake-quantized model so the
        converted model keeps it: with ``floor`` rounding every narrowed input and (mode eyeriss)
        every shifted product loses half a code on average, which otherwise fine-tuning must learn.

        One forward pass corrects every layer: as a layer's output goes by, its bias moves by the
        gap between the two means and the output moves with it, so the layers after it see the
        corrected output, as if they were corrected one after another. The formats are then re-read
        (:meth:`calibrate`: the new biases move the maxima convert sees); while a format changed,
        another pass corrects in the new formats (at most ``passes``). What stays is the rounding of
        each bias to its 16-bit code at ``f_y``. The layer-by-layer loop, with a pass and a
        re-calibration per layer, took 58 of a 76-second ResNet-18 trial on builtin:shapes (10
        fine-tuning steps); the passes take a few seconds.
        """
        x = self.calibration_data
        refs = dict(reference.named_modules())
        want: dict[str, torch.Tensor] = {}

        def mean(y: torch.Tensor) -> torch.Tensor:
            return y.detach().transpose(0, 1).reshape(y.shape[1], -1).mean(1)

        def seen(n: str, y: torch.Tensor) -> None:
            want.setdefault(n, mean(y))  # a module called twice: its first call, as below

        hs = [refs[n].register_forward_hook(lambda m, a, y, n=n: seen(n, y)) for n in self.layers if n in refs]
        try:
            with torch.no_grad():
                reference.eval()(x)
        finally:
            for h in hs:
                h.remove()

        def shift(name: str, mod: nn.Module, y: torch.Tensor, done: set[str]) -> torch.Tensor | None:
            if name in done or name not in want:  # a module called twice is corrected at its first call
                return None
            done.add(name)
            delta = want[name] - mean(y)
            mod.parametrizations.bias.original.add_(delta)
            return y + delta.view(1, -1, *[1] * (y.dim() - 2))

        def formats() -> tuple:
            return self.in_frac_model, dict(self.input_frac), dict(self.in_frac16), dict(self.out_frac)

        for _ in range(passes):
            done: set[str] = set()
            hs = [mod.register_forward_hook(lambda m, a, y, n=n: shift(n, m, y, done))
                  for n, mod in self.layers.items() if mod.bias is not None]
            try:
                with torch.no_grad():
                    self.model.eval()(x)
            finally:
                for h in hs:
                    h.remove()
            before = formats()
            self.calibrate()  # the formats convert picks for the new biases
            if formats() == before:  # the pass ran in the formats that hold: done
                break

    def _model_input(self, model: nn.Module, args: tuple) -> tuple | None:
        if not self.enabled:
            return None
        return (fake_quantize(args[0], self.in_frac_model, 16, "nearest"),) + tuple(args[1:])

    def _input(self, name: str, args: tuple) -> tuple | None:
        if not self.enabled or name not in self.input_frac:
            return None
        # first the 16-bit code the producer holds (an average pool rounds its mean there; a convolution's
        # output is on that grid already), then the narrow one: two roundings to nearest are not one
        x = fake_quantize(args[0], self.in_frac16[name], 16, self.rounding, self.overflow)
        clip = "saturate" if name in self.narrow_formats else self.overflow
        return (fake_quantize(x, self.input_frac[name], self.act[name], self.rounding, clip),
                ) + tuple(args[1:])

    def _output(self, name: str, mod: nn.Module, args: tuple, y: torch.Tensor) -> torch.Tensor | None:
        if not self.enabled:
            return None
        fy = self.out_frac[name]
        if self.mode == "wide":
            return fake_quantize(y, fy, 16, self.rounding, self.overflow)
        x = args[0]
        w = mod.weight.detach()
        fx = self.input_frac.get(name, self.in_frac16[name])
        fw = self.weight_frac(name, w)
        s = fx + fw - fy
        if s > 0:
            with torch.no_grad():
                corr = _rounding_sum(mod, x.detach(), w, fx, fw, s, self.rounding,
                                     exact=name in self.input_frac or self.bits[name] < 16,
                                     levels=1 << self.act[name], w_levels=1 << self.bits[name])
            y = y + math.ldexp(1.0, -fy) * corr
        # the 16-bit adder wraps (the sum is on the f_y grid already where s <= 2)
        return fake_quantize(y, fy, 16, "nearest", "wrap")

    def weight_frac(self, name: str, w: torch.Tensor) -> int:
        """The weights' format: the given one, else the max rule of the current weights."""
        if name in self.narrow_formats:
            return self.narrow_formats[name][1]
        return frac_bits_for(float(w.detach().abs().max()), self.bits[name])

    def remove(self) -> nn.Module:
        """Remove the fake quantization; returns the model with its plain (unquantized) float weights."""
        from torch.nn.utils import parametrize

        for h in self._handles:
            h.remove()
        for mod in self._parametrized:
            for pname in ("weight", "bias"):
                if parametrize.is_parametrized(mod, pname):
                    parametrize.remove_parametrizations(mod, pname, leave_parametrized=False)
        self._handles, self._parametrized = [], []
        self.enabled = False
        return self.model


def _products(mod: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The layer's sum of products of ``x`` and ``w`` (no bias)."""
    if isinstance(mod, nn.Linear):
        return nn.functional.linear(x, w)
    return mod._conv_forward(x, w, None)


def _rounding_sum(mod: nn.Module, x: torch.Tensor, w: torch.Tensor, fx: int, fw: int, s: int, rounding: str, *,
                  exact: bool, levels: int = 1 << 16, w_levels: int = 1 << 16) -> torch.Tensor:
    """Sum over the products of (product shifted by ``s`` with ``rounding``) - (exact product), in codes at f_y.

    A product ``p`` of codes rounded by an ``s``-bit shift is ``(p + h - ((p + h) mod 2**s)) / 2**s``
    (``h`` = 0 for floor, ``2**(s-1)`` for nearest); ``(p + h) mod 2**s`` depends only on the codes'
    residues mod ``2**s``, so the sum is one convolution per non-zero input residue, of the weights'
    residues weighted by their rounding error with it (``exact``, ``s <= 2``: at most 3 convolutions).
    For ``s >= 3`` a Linear layer's products are summed one by one (in chunks of rows); a convolution
    with an input of at most ``_VALUE_LEVELS`` codes (``levels``: a narrowed input of
    <= 5 bits) it is exact too: for each input code ``a`` the rounding error of ``a * w`` is a tensor
    of the weights' shape, one convolution per code; with weights of at most ``_VALUE_LEVELS`` codes
    (``w_levels``: narrowed weights of <= 5 bits under a wider input, ``convert(act_bits=...)``) the
    same per weight code. Otherwise the residue of a non-zero product is
    taken as uniform: mean ``(h - (2**s - 1) / 2) / 2**s``.
    """
    m = 1 << s
    h = m >> 1 if rounding == "nearest" else 0
    if exact and s > 2 and isinstance(mod, nn.Linear) and x.dim() == 2:
        xc = torch.round(x * math.ldexp(1.0, fx)).double()
        wc = torch.round(w * math.ldexp(1.0, fw)).double()
        rows = max(1, (1 << 24) // max(1, wc.numel()))  # products per chunk of rows: ~16M
        parts = []
        for xb in xc.split(rows):
            p = xb[:, None, :] * wc[None, :, :]
            parts.append((torch.floor((p + h) / m) - p / m).sum(2))
        return torch.cat(parts).to(x.dtype)
    if exact and s > 2 and levels <= _VALUE_LEVELS:
        xc = torch.round(x * math.ldexp(1.0, fx))
        wc = torch.round(w * math.ldexp(1.0, fw)).double()
        total = torch.zeros((), dtype=x.dtype)
        for a in torch.unique(xc).tolist():
            if a != 0:
                p = a * wc
                err = (torch.floor((p + h) / m) - p / m).to(w.dtype)  # the shifted product minus the exact one
                total = total + _products(mod, (xc == a).to(x.dtype), err)
        return total
    if exact and s > 2 and w_levels <= _VALUE_LEVELS:
        xc = torch.round(x * math.ldexp(1.0, fx)).double()
        wc = torch.round(w * math.ldexp(1.0, fw))
        total = torch.zeros((), dtype=x.dtype)
        for c in torch.unique(wc).tolist():
            if c != 0:
                p = xc * c
                err = (torch.floor((p + h) / m) - p / m).to(x.dtype)  # per input value, for weight code c
                total = total + _products(mod, err, (wc == c).to(w.dtype))
        return total
    if exact and s <= 2:
        xr = torch.remainder(torch.round(x * math.ldexp(1.0, fx)), m)
        wr = torch.remainder(torch.round(w * math.ldexp(1.0, fw)), m)
        total = None
        for a in range(1, m):  # one convolution per input residue: its weights' coefficients summed first
            wa = sum(((h - ((a * b + h) % m)) / m) * (wr == b).to(w.dtype) for b in range(1, m))
            if torch.count_nonzero(wa):
                t = _products(mod, (xr == a).to(x.dtype), wa)
                total = t if total is None else total + t
        if total is not None:
            return total
    return (h - (m - 1) / 2) / m * _products(mod, (x != 0).to(x.dtype), (w != 0).to(w.dtype))


class _WeightQuant(nn.Module):
    """Weights at their format (given, or the max rule of their current maximum; nearest, saturate), as
    convert does."""

    def __init__(self, owner: FakeQuant, name: str, bits: int) -> None:
        super().__init__()
        self.owner = [owner]  # a list: not a submodule
        self.name, self.bits = name, bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.owner[0].enabled:
            return w
        return fake_quantize(w, self.owner[0].weight_frac(self.name, w), self.bits, "nearest")


class _BiasQuant(nn.Module):
    """The bias as the backend stores it (nearest, saturate): mode ``eyeriss`` 16-bit codes at the
    layer's output format, mode ``wide`` 32-bit codes at ``f_in + f_w``."""

    def __init__(self, owner: FakeQuant, name: str, mod: nn.Module) -> None:
        super().__init__()
        self.owner, self.name, self.mod = [owner], name, [mod]  # lists: not submodules

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        fq = self.owner[0]
        if not fq.enabled:
            return b
        if fq.mode == "eyeriss":
            return fake_quantize(b, fq.out_frac[self.name], 16, "nearest")
        fw = fq.weight_frac(self.name, self.mod[0].parametrizations.weight.original)
        return fake_quantize(b, fq.input_frac.get(self.name, fq.in_frac16[self.name]) + fw, 32, "nearest")


def io_maxima(model: nn.Module, x: torch.Tensor, names: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """max |input| and max |output| of the named modules over ``x`` (one eval-mode pass, no grad)."""
    ins: dict[str, float] = {}
    outs: dict[str, float] = {}

    def keep(d: dict[str, float], n: str, t: torch.Tensor) -> None:
        d[n] = max(d.get(n, 0.0), float(t.detach().abs().max()))

    modules = dict(model.named_modules())
    handles = [h for n in names for h in (
        modules[n].register_forward_pre_hook(lambda m, args, n=n: keep(ins, n, args[0])),
        modules[n].register_forward_hook(lambda m, args, y, n=n: keep(outs, n, y)))]
    try:
        with inspection_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return ins, outs


def _batches(data: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        empty = True
        for item in data:
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise HwawareError("quantization-aware training: the training data must yield (inputs, labels)")
            empty = False
            yield item[0], item[1]
        if empty:
            raise HwawareError("quantization-aware training: the training data is empty")


def finetune(model: nn.Module, train_data: Any, *, steps: int, lr: float = 0.01, momentum: float = 0.9,
             weight_decay: float = 0.0) -> float:
    """``steps`` SGD steps (cosine learning rate) of cross-entropy on ``train_data``; mean loss.

    Run with :class:`FakeQuant` installed for quantization-aware training. The model is left in
    eval mode.
    """
    if steps <= 0:
        return float("nan")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    total = 0.0
    it = _batches(train_data)
    for _ in range(steps):
        xb, yb = next(it)
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach())
    model.eval()
    return total / steps


def write_back(model: nn.Module, folded: nn.Module) -> nn.Module:
    """A copy of ``model`` (same architecture) computing what the BN-folded ``folded`` computes.

    Each Conv/Linear takes the folded weights; a BatchNorm that was folded into it becomes the
    identity plus the folded bias (mean 0, variance ``1 - eps``, scale 1), so converting the copy
    folds it back to the same numbers. For recipe stages and checkpoints, which need the user's
    architecture rather than a traced graph.
    """
    out = copy.deepcopy(model).eval()
    gm = torch.fx.symbolic_trace(out)
    mods = dict(out.named_modules())
    got = dict(folded.named_modules())
    bn_of: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(mods.get(node.target), _QUANTIZABLE) and len(node.users) == 1:
            nxt = next(iter(node.users))
            if nxt.op == "call_module" and isinstance(mods.get(nxt.target), nn.modules.batchnorm._BatchNorm):
                bn_of[str(node.target)] = str(nxt.target)
    with torch.no_grad():
        for name, mod in mods.items():
            if not isinstance(mod, _QUANTIZABLE):
                continue
            src = got.get(name)
            if src is None:
                raise HwawareError(f"quantization-aware training: layer '{name}' is missing from the folded model")
            mod.weight.copy_(src.weight)
            bias = src.bias if src.bias is not None else torch.zeros(mod.weight.shape[0])
            bn = mods[bn_of[name]] if name in bn_of else None
            if bn is None:
                if mod.bias is not None:
                    mod.bias.copy_(bias)
                continue
            if not bn.affine:
                raise HwawareError(f"quantization-aware training: cannot write folded weights back through "
                                   f"'{bn_of[name]}' (a BatchNorm without affine parameters)")
            if mod.bias is not None:
                mod.bias.zero_()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(bias)
    return out
