"""MACs of the operations the profiler counts: module formulas and the functional-op table.

Shared by the module hooks (:mod:`.hooks`) and the functional-call counter; each formula says what it
counts. ``FUNCTIONAL`` maps a torch function to (reported name, MAC counter of ``(args, kwargs,
output)``); ``COUNTED_FUNCTIONS`` lists the names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Modules that become Layer records.
RECORDED = (nn.Conv1d, nn.Conv2d, nn.Linear)
# Modules whose MACs are estimated as a whole (listed as unmodeled); functional ops inside
# them, like those inside RECORDED modules, are not counted a second time.
ESTIMATED = (nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
             nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase)
COUNTED = RECORDED + ESTIMATED


def conv_macs(out: torch.Tensor, weight: torch.Tensor) -> int:
    """Every output value of a (grouped) convolution takes C/groups * R * S (* T) MACs."""
    return out.numel() * (weight.numel() // weight.shape[0])


def conv_transpose_macs(inp: torch.Tensor, weight: torch.Tensor) -> int:
    """Every input value is scattered onto M/groups * R * S (* T) outputs (weight Cin x M/g x k)."""
    return inp.numel() * (weight.numel() // weight.shape[0])


def attention_macs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, embed_dim: int,
                    seq_dim: int, extra_keys: int) -> int:
    """Multi-head attention: Q/K/V projections, QK^T, attention x V, output projection.

    Lq query tokens, Sk key tokens, S keys per query (plus ``extra_keys`` from bias_k /
    add_zero_attn), E = embed_dim: Lq*E*E + Sk*kdim*E + Sv*vdim*E + 2*Lq*S*E + Lq*E*E.
    """
    E = embed_dim
    kdim, vdim = key.shape[-1], value.shape[-1]
    lq = query.numel() // query.shape[-1]
    sk, sv = key.numel() // kdim, value.numel() // vdim
    s = (key.shape[seq_dim] if key.dim() == 3 else key.shape[0]) + extra_keys
    return lq * E * E + sk * kdim * E + sv * vdim * E + 2 * lq * s * E + lq * E * E


def rnn_macs(module: nn.Module, inp: Any) -> int:
    """Recurrent layers: gates x (input x hidden + hidden_out x hidden) per token, layer, direction.

    gates = 4 (LSTM), 3 (GRU), 1 (RNN); an LSTM with ``proj_size`` adds hidden x proj_size and
    feeds proj_size values back. ``inp`` is the input tensor or a PackedSequence.
    """
    data = getattr(inp, "data", inp)  # PackedSequence.data is (tokens, features)
    tokens = data.numel() // data.shape[-1]
    gates = {"LSTM": 4, "GRU": 3}.get(getattr(module, "mode", ""), 0)
    if isinstance(module, nn.RNNCellBase):
        gates = 4 if isinstance(module, nn.LSTMCell) else 3 if isinstance(module, nn.GRUCell) else 1
        return tokens * gates * module.hidden_size * (module.input_size + module.hidden_size)
    gates = gates or 1
    hidden, proj = module.hidden_size, getattr(module, "proj_size", 0)
    out = proj or hidden
    dirs = 2 if module.bidirectional else 1
    per_token, width = 0, module.input_size
    for _ in range(module.num_layers):
        per_token += dirs * (gates * hidden * (width + out) + (hidden * proj if proj else 0))
        width = out * dirs
    return tokens * per_token


def arg(args: tuple, kwargs: dict, i: int, name: str) -> Any:
    return args[i] if len(args) > i else kwargs.get(name)


def _matmul_like(left_index: int, left_name: str) -> Callable[[tuple, dict, Any], int]:
    """out.numel() * K, with K the last dim of the left operand (also right for 1-D @ 1-D)."""
    def count(args: tuple, kwargs: dict, out: Any) -> int:
        left = arg(args, kwargs, left_index, left_name)
        return out.numel() * left.shape[-1]
    return count


def _rmatmul(args: tuple, kwargs: dict, out: Any) -> int:
    other = arg(args, kwargs, 1, "other")  # self.__rmatmul__(other) == other @ self
    return out.numel() * other.shape[-1]


def _addbmm(args: tuple, kwargs: dict, out: Any) -> int:
    b1 = arg(args, kwargs, 1, "batch1")
    return b1.shape[0] * out.numel() * b1.shape[-1]


def _fconv(args: tuple, kwargs: dict, out: Any) -> int:
    return conv_macs(out, arg(args, kwargs, 1, "weight"))


def _fconv_t(args: tuple, kwargs: dict, out: Any) -> int:
    return conv_transpose_macs(arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight"))


def linear_macs(args: tuple, kwargs: dict, out: Any) -> int:
    return out.numel() * arg(args, kwargs, 0, "input").shape[-1]


def _fbilinear(args: tuple, kwargs: dict, out: Any) -> int:
    w = arg(args, kwargs, 2, "weight")
    return out.numel() * w.shape[1] * w.shape[2]


def _sdpa(args: tuple, kwargs: dict, out: Any) -> int:
    q, k, v = (arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    rows = out.numel() // v.shape[-1]  # batch * heads * L
    return rows * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _fmha(args: tuple, kwargs: dict, out: Any) -> int:
    q, k, v = (arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    extra = (int(arg(args, kwargs, 7, "bias_k") is not None)
             + int(bool(arg(args, kwargs, 9, "add_zero_attn"))))
    return attention_macs(q, k, v, int(arg(args, kwargs, 3, "embed_dim_to_check")), 0, extra)


def _tensordot(args: tuple, kwargs: dict, out: Any) -> int:
    a, b = arg(args, kwargs, 0, "a"), arg(args, kwargs, 1, "b")
    if out.numel() == 0:
        return 0
    # out = free_a * free_b, a = free_a * K, b = free_b * K  ->  K^2 = a*b/out
    return out.numel() * math.isqrt(a.numel() * b.numel() // out.numel())


def _einsum(args: tuple, kwargs: dict, out: Any) -> int:
    """(operands - 1) x the product of every index size: exact for two operands, naive beyond."""
    eq = args[0]
    ops = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    if not isinstance(eq, str):
        raise TypeError("sublist einsum form")
    terms = eq.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    ellipses = []
    for term, op in zip(terms, ops):
        if "..." in term:
            pre, post = term.split("...")
            n_ell = op.dim() - len(pre) - len(post)
            ellipses.append(tuple(op.shape[len(pre):len(pre) + n_ell]))
            dims = (list(zip(pre, op.shape[:len(pre)]))
                    + list(zip(post, op.shape[op.dim() - len(post):])))
        else:
            dims = list(zip(term, op.shape))
        for letter, n in dims:
            sizes[letter] = max(sizes.get(letter, 1), int(n))
    ell = math.prod(torch.broadcast_shapes(*ellipses)) if ellipses else 1
    return (len(ops) - 1) * math.prod(sizes.values()) * ell


def _functional_table() -> dict[Any, tuple[str, Callable[[tuple, dict, Any], int]]]:
    T = torch.Tensor
    table: dict[Any, tuple[str, Callable[[tuple, dict, Any], int]]] = {}
    for fn in (F.conv1d, F.conv2d, F.conv3d):
        table[fn] = (fn.__name__, _fconv)
    for fn in (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d):
        table[fn] = (fn.__name__, _fconv_t)
    table[F.linear] = ("linear", linear_macs)
    table[F.bilinear] = ("bilinear", _fbilinear)
    for fn in (torch.matmul, T.matmul, T.__matmul__, torch.mm, T.mm, torch.bmm, T.bmm,
               torch.mv, T.mv, torch.dot, T.dot, torch.vdot, T.vdot, torch.inner, T.inner):
        table[fn] = (fn.__name__.strip("_"), _matmul_like(0, "input"))  # __matmul__ -> matmul
    table[T.__rmatmul__] = ("matmul", _rmatmul)
    for fn in (torch.addmm, T.addmm, T.addmm_, torch.addmv, T.addmv, torch.baddbmm, T.baddbmm,
               T.baddbmm_):
        table[fn] = (fn.__name__.strip("_"), _matmul_like(1, "mat1"))
    for fn in (torch.addbmm, T.addbmm):
        table[fn] = ("addbmm", _addbmm)
    table[torch.einsum] = ("einsum", _einsum)
    table[torch.tensordot] = ("tensordot", _tensordot)
    table[F.scaled_dot_product_attention] = ("scaled_dot_product_attention", _sdpa)
    table[F.multi_head_attention_forward] = ("multi_head_attention_forward", _fmha)
    return table


FUNCTIONAL = _functional_table()
#: Names of the functional ops whose MACs are counted when called outside a counted module.
COUNTED_FUNCTIONS = tuple(sorted({name for name, _ in FUNCTIONAL.values()}))
