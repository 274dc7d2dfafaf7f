"""Quantization-aware fine-tuning with fake quantization that matches the integer backend.

:func:`hwaware.fixedpoint.convert` with ``bits={layer: b}`` stores a narrowed Conv/Linear's
(BN-folded) weights at ``f_w = frac_bits_for(max|w|, b)``, rounded to nearest (half up) and
saturated, and first brings the layer's input to ``f = frac_bits_for(calibration max of the
input, b, headroom)`` with the arithmetic's rounding and saturation. :class:`FakeQuant` does the
same on float tensors in the forward pass and passes gradients straight through (the
straight-through estimator), so fine-tuning learns weights that survive the narrow formats.

Fine-tuning runs on a BN-folded copy (:func:`fold_batchnorm`): the folded weights are what the
backend quantizes, so the fake-quantized model and the converted integer model see the same
codes. The 16-bit outputs and accumulations are left in float (their error is far below one code
of a narrowed operand).

    >>> folded = fold_batchnorm(model)
    >>> fq = FakeQuant(folded, {"conv2": 4}, calibration_data=calib)
    >>> finetune(fq, train_loader, steps=100)
    >>> fixed = convert(fq.model_float(), calib, bits={"conv2": 4}, mode="wide", rounding="nearest",
    ...                 overflow="saturate")     # same codes as fq's forward pass
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import HwawareError
from .format import frac_bits_for

_QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def fake_quantize(x: torch.Tensor, frac_bits: int, bits: int, rounding: str = "nearest") -> torch.Tensor:
    """``x`` rounded to ``bits``-wide codes at ``frac_bits`` (saturating), straight-through gradient.

    ``nearest`` rounds half up as :meth:`FixedFormat.quantize` and the ``nearest`` shift do;
    ``floor`` rounds down as the ``floor`` shift does. Example: 0.3 at 4 bits, f=3 -> 2/8 = 0.25.
    """
    scale = math.ldexp(1.0, frac_bits)
    v = x * scale
    q = torch.floor(v + 0.5) if rounding == "nearest" else torch.floor(v)
    q = q.clamp(-(1 << (bits - 1)), (1 << (bits - 1)) - 1) / scale
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
    """Fake quantization of the layers in ``bits`` (width < 16) of ``model``, installed in place.

    ``model`` should be a BN-folded copy (:func:`fold_batchnorm`). Input formats are fixed from
    the calibration maxima (as :func:`convert` chooses them); weight formats follow the current
    weights at every forward pass (as :func:`convert` chooses them from the final weights).
    :meth:`remove` takes the hooks and parametrizations off again, leaving plain float weights.
    """

    def __init__(self, model: nn.Module, bits: Mapping[str, int], *, calibration_data: torch.Tensor,
                 headroom: int = 1, rounding: str = "nearest") -> None:
        from torch.nn.utils import parametrize

        self.model = model
        self.bits = {k: int(v) for k, v in bits.items() if int(v) < 16}
        self.rounding = rounding
        modules = dict(model.named_modules())
        for name in self.bits:
            if not isinstance(modules.get(name), _QUANTIZABLE):
                raise HwawareError(f"quantization-aware training: '{name}' is not a Conv/Linear module of the "
                                   f"model")
        self.input_max = input_maxima(model, calibration_data, list(self.bits))
        self.input_frac = {k: frac_bits_for(self.input_max[k], b, headroom=headroom) for k, b in self.bits.items()}
        self._handles = []
        self._parametrized = []
        for name, b in self.bits.items():
            mod = modules[name]
            f = self.input_frac[name]
            self._handles.append(mod.register_forward_pre_hook(
                lambda m, args, f=f, b=b: (fake_quantize(args[0], f, b, rounding),) + tuple(args[1:])))
            parametrize.register_parametrization(mod, "weight", _WeightQuant(b))
            self._parametrized.append(mod)

    def remove(self) -> nn.Module:
        """Remove the fake quantization; returns the model with its plain (unquantized) float weights."""
        from torch.nn.utils import parametrize

        for h in self._handles:
            h.remove()
        for mod in self._parametrized:
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
        self._handles, self._parametrized = [], []
        return self.model


class _WeightQuant(nn.Module):
    """Weights at the max-rule format of their current maximum (nearest, saturate), as convert does."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        f = frac_bits_for(float(w.detach().abs().max()), self.bits)
        return fake_quantize(w, f, self.bits, "nearest")


def input_maxima(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, float]:
    """max |input| of the named modules over ``x`` (one forward pass in eval mode, no grad)."""
    seen: dict[str, float] = {}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_pre_hook(
        lambda m, args, n=n: seen.__setitem__(n, max(seen.get(n, 0.0), float(args[0].detach().abs().max()))))
        for n in names]
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return seen


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
