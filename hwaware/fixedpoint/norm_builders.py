"""How norm layers that cannot be folded into a convolution, and multiplies/adds by a constant,
become integer ops: a BatchNorm after a concat (DenseNet, MixNet) and timm's layer-scale
``x.mul(gamma.reshape(1, -1, 1, 1))`` become :class:`AffineOp`; ``nn.LayerNorm`` over channels
(channels last, or channels first as timm's ``LayerNorm2d``) becomes :class:`LayerNormOp`.
Mixed into the converter with :class:`.builders.OpBuilders` (needs ``act_format``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .._fx import module_path, target_name
from ..errors import UnsupportedLayerError
from .format import FixedFormat, frac_bits_for
from .intop import IntOp
from .norm_ops import AffineOp, LayerNormOp
from .normalize import RSQRT_MAX_REL, norm_frac_bits

__all__ = ["NormBuilders", "bn_scale_shift"]

_CODE_LIMIT = 2**62  # int64 codes of b / beta / e must leave room for the exact sums


def bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as ``x * scale + shift`` per channel (float64)."""
    var = bn.running_var.detach().double()
    scale = bn.weight.detach().double() if bn.affine else torch.ones_like(var)
    shift = bn.bias.detach().double() if bn.affine else torch.zeros_like(var)
    k = scale / torch.sqrt(var + bn.eps)
    return k, shift - bn.running_mean.detach().double() * k


def _codes_at(v: torch.Tensor, frac_bits: int, what: str) -> np.ndarray:
    q = np.floor(np.ldexp(v.double().numpy(), frac_bits) + 0.5)
    if q.size and np.abs(q).max() >= _CODE_LIMIT:
        raise UnsupportedLayerError(f"convert: {what}: a shift of {float(v.abs().max()):.3g} at {frac_bits} "
                                    f"fractional bits does not fit int64 codes")
    return q.astype(np.int64)


class NormBuilders:
    """Builders of :class:`AffineOp` and :class:`LayerNormOp`."""

    def affine_op(self, name: str, op: str, j: int, int_ops: list[IntOp], scale: torch.Tensor,
                  shift: torch.Tensor, dim: int, out: torch.Tensor) -> AffineOp:
        """``x * scale[c] + shift[c]`` along ``dim``: scale at its own format, shift at f_x + f_a."""
        fx = int_ops[j].fy
        fa = FixedFormat(frac_bits_for(float(scale.abs().max()) if scale.numel() else 0.0, 16))
        a = fa.quantize(scale.double().numpy()).astype(np.int16)
        b = _codes_at(shift, fx.frac_bits + fa.frac_bits, f"layer '{name}' ({op})")
        return AffineOp(name, op, (j,), self.act_format(out), fx, fa, a, b, dim)

    def batchnorm_affine(self, name: str, mod: nn.Module, j: int, int_ops, fenv_in: torch.Tensor,
                         out: torch.Tensor) -> AffineOp:
        """A BatchNorm that no convolution absorbs (it reads a concat, or its conv has other users)."""
        if not mod.track_running_stats or mod.running_mean is None:
            raise UnsupportedLayerError(f"convert: layer '{name}' ({type(mod).__name__}) has no running "
                                        f"statistics to turn into a per-channel affine")
        if fenv_in.dim() < 2:
            raise UnsupportedLayerError(f"convert: layer '{name}' ({type(mod).__name__}) needs N x C x ... input")
        scale, shift = bn_scale_shift(mod)
        return self.affine_op(name, type(mod).__name__, j, int_ops, scale, shift, 1, out)

    def constant_affine(self, name: str, node: torch.fx.Node, kind: str, j: int, int_ops, x: torch.Tensor,
                        const: Any, out: torch.Tensor) -> AffineOp:
        """``x * c`` (``kind`` mul) or ``x + c`` (add) with ``c`` a constant (a parameter, a number)
        that is one value per channel along dim 1 or the last dim, or one value for all."""
        c = torch.as_tensor(const, dtype=torch.float64)
        n = x.dim()
        where = f"op '{target_name(node)}' in module '{module_path(node)}'"
        if c.dim() > n or n < 2:
            raise UnsupportedLayerError(f"convert: {where}: a constant of shape {tuple(c.shape)} against an "
                                        f"activation of shape {tuple(x.shape)} is not supported")
        cb = c.reshape((1,) * (n - c.dim()) + tuple(c.shape))
        varying = [k for k in range(n) if cb.shape[k] != 1]
        if any(cb.shape[k] != x.shape[k] for k in varying):
            raise UnsupportedLayerError(f"convert: {where}: the constant of shape {tuple(c.shape)} would "
                                        f"broadcast the activation {tuple(x.shape)} to a larger shape")
        if varying in ([], [1]):
            dim = 1
        elif varying == [n - 1]:
            dim = -1
        else:
            raise UnsupportedLayerError(f"convert: {where}: only a constant per channel (dim 1 or the last dim) "
                                        f"or a single number is supported, got shape {tuple(c.shape)}")
        vec = cb.reshape(-1).expand(int(x.shape[dim])).clone()
        if kind == "mul":
            return self.affine_op(name, kind, j, int_ops, vec, torch.zeros_like(vec), dim, out)
        return self.affine_op(name, kind, j, int_ops, torch.ones_like(vec), vec, dim, out)

    def layer_norm_op(self, name: str, mod: nn.LayerNorm, j: int, int_ops, x: torch.Tensor,
                      out: torch.Tensor) -> LayerNormOp:
        """``nn.LayerNorm((C,))`` on channels last, or a subclass normalizing dim 1 (timm
        ``LayerNorm2d``): the axis is the one whose float LayerNorm reproduces the module's output."""
        t = type(mod).__name__
        shape = tuple(mod.normalized_shape)
        if len(shape) != 1:
            raise UnsupportedLayerError(f"convert: layer '{name}' ({t}): only a LayerNorm over one dim "
                                        f"(the channels) is supported, normalized_shape is {shape}")
        C = shape[0]
        w = mod.weight.detach().double() if mod.weight is not None else torch.ones(C, dtype=torch.float64)
        bias = getattr(mod, "bias", None)
        b = bias.detach().double() if bias is not None else torch.zeros(C, dtype=torch.float64)
        dim = self._norm_axis(name, t, x, out, C, w, b, mod.eps, plain=type(mod) is nn.LayerNorm)
        fx = int_ops[j].fy
        fg = FixedFormat(frac_bits_for(float(w.abs().max()), 16))
        fz = norm_frac_bits(C)
        e = math.floor(C * C * mod.eps * 2.0 ** (2 * fx.frac_bits) + 0.5)
        if e >= 2**61:
            raise UnsupportedLayerError(f"convert: layer '{name}' ({t}): eps {mod.eps} at the input's "
                                        f"{fx.frac_bits} fractional bits does not fit the integer variance")
        return LayerNormOp(name, t, (j,), self.act_format(out), fx, fg, fg.quantize(w.numpy()).astype(np.int16),
                           _codes_at(b, fz + fg.frac_bits, f"layer '{name}' ({t})"), dim, int(e))

    @staticmethod
    def _norm_axis(name, t, x, out, C, w, b, eps, *, plain: bool) -> int:
        if plain:
            return -1
        ref_last = torch.nn.functional.layer_norm(x.double(), (C,), w, b, eps) if x.shape[-1] == C else None
        xm = x.double().movedim(1, -1) if x.dim() >= 2 and x.shape[1] == C else None
        ref_first = (torch.nn.functional.layer_norm(xm, (C,), w, b, eps).movedim(-1, 1)
                     if xm is not None else None)
        tol = 1e-4 * (float(out.abs().max()) + 1e-12)
        for dim, ref in ((1, ref_first), (-1, ref_last)):
            if ref is not None and ref.shape == out.shape and float((ref - out.double()).abs().max()) <= tol:
                return dim
        raise UnsupportedLayerError(f"convert: layer '{name}' ({t}): its output is not a LayerNorm over dim 1 "
                                    f"or the last dim of its input {tuple(x.shape)}, so it cannot be converted")

    @staticmethod
    def norm_error(op: IntOp) -> float:
        """Stated bound of a LayerNorm's 1/sqrt in output units: max |g| * sqrt(C - 1) * RSQRT_MAX_REL."""
        if not isinstance(op, LayerNormOp):
            return 0.0
        gmax = float(np.abs(op.g.astype(np.float64)).max()) * op.fg.lsb if op.g.size else 0.0
        return gmax * math.sqrt(max(len(op.g) - 1, 0)) * RSQRT_MAX_REL
