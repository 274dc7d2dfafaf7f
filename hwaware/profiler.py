"""Forward-hook profiler: run a real network on real inputs and record its workload.

    >>> wl = hwaware.profile(model, images)                  # a tensor = one batch
    >>> wl = hwaware.profile(model, loader, batches=8)       # a DataLoader, first 8 batches
    >>> wl.layers[0]                                         # Layer(name='conv1', N=..., ...)

One :class:`~hwaware.workload.Layer` per *call* of an ``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Linear``
(a module called twice gives ``name`` and ``name#1``), in call order, with the fraction of exact
zeros in its input, weight and output averaged over all profiled batches (weighted by element
count). Operations that carry MACs but have no hardware model -- ``nn.Conv3d``, transposed
convolutions, dilated convolutions, ``nn.MultiheadAttention``, recurrent layers (RNN/LSTM/GRU and
their cells), and functional ``F.conv*``,
``F.linear``, ``matmul``/``@``/``mm``/``bmm``/``einsum``/``scaled_dot_product_attention``... called
outside those modules -- are listed in ``Workload.unmodeled`` with their MACs, never dropped.

MACs are per batch: a layer's ``N`` is the batch of the first profiled batch (for ``Linear`` on
``(B, T, C)`` input, ``N = B*T``), and unmodeled MACs are averaged over batches after scaling
each batch to that size, so ``wl.macs`` and ``wl.unmodeled_macs`` describe the same batch.

The model runs in eval mode under ``torch.no_grad()``; every module's ``training`` flag is
restored and every hook removed afterwards, also when the forward pass raises. Parameters and
buffers are never written (eval mode keeps BatchNorm running statistics fixed).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ._checks import check_finite_tensor
from ._fx import is_same_pad_conv
from .errors import HwawareError
from .workload import Layer, UnmodeledOp, Workload

__all__ = ["profile", "profile_call", "Profiler", "fit_error"]

# Modules that become Layer records.
RECORDED = (nn.Conv1d, nn.Conv2d, nn.Linear)
# Modules whose MACs are estimated as a whole (listed as unmodeled); functional ops inside
# them, like those inside RECORDED modules, are not counted a second time.
ESTIMATED = (nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
             nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase)
COUNTED = RECORDED + ESTIMATED

NameFilter = Callable[[str], bool] | str | None
_FIT_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, AssertionError)


# --- MAC formulas shared by module hooks and functional calls ---------------------------------

def _conv_macs(out: torch.Tensor, weight: torch.Tensor) -> int:
    """Every output value of a (grouped) convolution takes C/groups * R * S (* T) MACs."""
    return out.numel() * (weight.numel() // weight.shape[0])


def _conv_transpose_macs(inp: torch.Tensor, weight: torch.Tensor) -> int:
    """Every input value is scattered onto M/groups * R * S (* T) outputs (weight Cin x M/g x k)."""
    return inp.numel() * (weight.numel() // weight.shape[0])


def _attention_macs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, embed_dim: int,
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


def _rnn_macs(module: nn.Module, inp: Any) -> int:
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


def _arg(args: tuple, kwargs: dict, i: int, name: str) -> Any:
    return args[i] if len(args) > i else kwargs.get(name)


def _matmul_like(left_index: int, left_name: str) -> Callable[[tuple, dict, Any], int]:
    """out.numel() * K, with K the last dim of the left operand (also right for 1-D @ 1-D)."""
    def count(args: tuple, kwargs: dict, out: Any) -> int:
        left = _arg(args, kwargs, left_index, left_name)
        return out.numel() * left.shape[-1]
    return count


def _rmatmul(args: tuple, kwargs: dict, out: Any) -> int:
    other = _arg(args, kwargs, 1, "other")  # self.__rmatmul__(other) == other @ self
    return out.numel() * other.shape[-1]


def _addbmm(args: tuple, kwargs: dict, out: Any) -> int:
    b1 = _arg(args, kwargs, 1, "batch1")
    return b1.shape[0] * out.numel() * b1.shape[-1]


def _fconv(args: tuple, kwargs: dict, out: Any) -> int:
    return _conv_macs(out, _arg(args, kwargs, 1, "weight"))


def _fconv_t(args: tuple, kwargs: dict, out: Any) -> int:
    return _conv_transpose_macs(_arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight"))


def _flinear(args: tuple, kwargs: dict, out: Any) -> int:
    return out.numel() * _arg(args, kwargs, 0, "input").shape[-1]


def _fbilinear(args: tuple, kwargs: dict, out: Any) -> int:
    w = _arg(args, kwargs, 2, "weight")
    return out.numel() * w.shape[1] * w.shape[2]


def _sdpa(args: tuple, kwargs: dict, out: Any) -> int:
    q, k, v = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    rows = out.numel() // v.shape[-1]  # batch * heads * L
    return rows * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _fmha(args: tuple, kwargs: dict, out: Any) -> int:
    q, k, v = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    extra = (int(_arg(args, kwargs, 7, "bias_k") is not None)
             + int(bool(_arg(args, kwargs, 9, "add_zero_attn"))))
    return _attention_macs(q, k, v, int(_arg(args, kwargs, 3, "embed_dim_to_check")), 0, extra)


def _tensordot(args: tuple, kwargs: dict, out: Any) -> int:
    a, b = _arg(args, kwargs, 0, "a"), _arg(args, kwargs, 1, "b")
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
    table[F.linear] = ("linear", _flinear)
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


_FUNCTIONAL = _functional_table()
#: Names of the functional ops whose MACs are counted when called outside a counted module.
COUNTED_FUNCTIONS = tuple(sorted({name for name, _ in _FUNCTIONAL.values()}))


# --- the profiler ------------------------------------------------------------------------------

@dataclass
class _Stats:
    """One record's shape (from the first batch) and zero counts summed over batches."""

    layer: Layer
    # ifmap, weight, ofmap zeros; then the RLC-coded 64-bit words of the padded ifmap and its values
    zeros: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def add(self, zeros: tuple[int, ...], counts: tuple[int, ...]) -> None:
        for i in range(4):
            self.zeros[i] += zeros[i]
            self.counts[i] += counts[i]

    def finish(self) -> Layer:
        z = [self.zeros[i] / self.counts[i] if self.counts[i] else 0.0 for i in range(3)]
        # a 64-bit RLC word carries the space of four 16-bit values
        rlc = 4.0 * self.zeros[3] / self.counts[3] if self.counts[3] else 0.0
        return self.layer.replace(ifmap_zeros=z[0], weight_zeros=z[1], ofmap_zeros=z[2], ifmap_rlc=min(rlc, 2.0))


class _CountingMode(TorchFunctionMode):
    """Counts MACs of functional ops called while a profiled forward pass is running."""

    def __init__(self, profiler: Profiler) -> None:
        super().__init__()
        self._prof = profiler

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch API)
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            entry = _FUNCTIONAL.get(func)
        except TypeError:  # an unhashable callable cannot be one of ours
            entry = None
        if entry is not None:
            self._prof._functional(entry, args, kwargs, out)
        return out


class Profiler:
    """Context manager that records every Conv1d/Conv2d/Linear call of ``model``.

        >>> with Profiler(model) as prof:
        ...     model(x1); model(x2)          # each call of the model is one batch
        >>> wl = prof.workload()

    Inside the block the model is in eval mode and gradients are off; on exit (also on an
    exception) all hooks are removed and every module's ``training`` flag is restored.
    ``name_filter`` (a callable on names, or a regular expression searched in them) keeps only
    the matching layer records and unmodeled ops.
    """

    def __init__(self, model: nn.Module, *, name_filter: NameFilter = None,
                 source: str = "") -> None:
        if not isinstance(model, nn.Module):
            raise HwawareError(f"profile: expected a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.source = source or type(model).__name__
        self._keep = _name_filter(name_filter)
        self._exit_stack: contextlib.ExitStack | None = None
        # state of the batch in flight
        self._stack: list[tuple[str, nn.Module, bool]] = []   # (name, module, counted)
        self._counted_depth = 0
        self._calls: Counter[str] = Counter()
        self._events: list[tuple[Layer, tuple[int, int, int], tuple[int, int, int]]] = []
        self._pending: dict[tuple[str, str], int] = defaultdict(int)
        self._batch_size = 1
        # accumulated over batches
        self._records: dict[str, _Stats] = {}
        self._unmodeled: dict[tuple[str, str], float] = defaultdict(float)
        self._ref_batch: int | None = None
        self.batches = 0
        #: (name, class) of the innermost module still open when a forward pass raised
        self.failed_module: tuple[str, str] | None = None

    # --- context ---------------------------------------------------------------------------
    def __enter__(self) -> Profiler:
        if self._exit_stack is not None:
            raise RuntimeError("Profiler is not reentrant")
        with contextlib.ExitStack() as stack:
            flags = [(m, m.training) for m in self.model.modules()]
            stack.callback(_restore_training, flags)
            self.model.eval()
            stack.enter_context(torch.no_grad())
            names = {id(m): (n or type(m).__name__) for n, m in self.model.named_modules()}
            for m in self.model.modules():
                name = names[id(m)]
                pre = m.register_forward_pre_hook(partial(self._enter, name), with_kwargs=True)
                stack.callback(pre.remove)
                post = m.register_forward_hook(partial(self._exit, name), with_kwargs=True)
                stack.callback(post.remove)
            stack.enter_context(_CountingMode(self))
            self._exit_stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            stack.close()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model on one batch; on failure remember the module that raised."""
        self.failed_module = None
        try:
            return self.model(*args, **kwargs)
        except BaseException:
            if self._stack:
                name, module, _ = self._stack[-1]
                self.failed_module = (name, type(module).__name__)
            self._stack.clear()
            self._counted_depth = 0
            raise

    # --- hooks -----------------------------------------------------------------------------
    def _enter(self, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if module is self.model or not self._stack:
            self._begin_batch(args, kwargs)
        counted = isinstance(module, COUNTED)
        self._stack.append((name, module, counted))
        self._counted_depth += counted

    def _exit(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        # Pop down to this module's entry (entries above it belong to calls whose exception
        # the model itself caught).
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][1] is module:
                for _, _, counted in self._stack[i:]:
                    self._counted_depth -= counted
                del self._stack[i:]
                break
        if isinstance(module, COUNTED) and not self._counted_depth:
            self._record(name, module, args, kwargs, output)
        if not self._stack:
            self._end_batch()

    def _functional(self, entry: tuple[str, Callable], args: tuple, kwargs: dict, out: Any) -> None:
        if not self._stack or self._counted_depth:
            return  # outside the model, or inside a module that is counted as a whole
        op, count = entry
        try:
            macs = int(count(args, kwargs, out))
        except Exception:  # odd argument forms: list the op anyway so it is never dropped
            op, macs = f"{op}[MACs unknown]", 0
        self._pending[(op, self._stack[-1][0])] += macs

    # --- records ---------------------------------------------------------------------------
    def _record(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        inp = _arg(args, kwargs, 0, "input")
        if isinstance(module, nn.MultiheadAttention):
            q, k, v = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
            seq_dim = 1 if module.batch_first else 0
            extra = int(module.bias_k is not None) + int(module.add_zero_attn)
            macs = _attention_macs(q, k, v, module.embed_dim, seq_dim, extra)
            self._pending[("MultiheadAttention", name)] += macs
            return
        if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
            self._pending[(type(module).__name__, name)] += _rnn_macs(module, inp)
            return
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(inp, torch.Tensor) or not isinstance(out, torch.Tensor):
            self._pending[(f"{type(module).__name__}[non-tensor input]", name)] += 0
            return
        cls = type(module).__name__
        if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            self._pending[(cls, name)] += _conv_transpose_macs(inp, module.weight)
            return
        if isinstance(module, nn.Conv3d):
            self._pending[(cls, name)] += _conv_macs(out, module.weight)
            return
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and any(d != 1 for d in module.dilation):
            dil = "x".join(str(d) for d in module.dilation)
            self._pending[(f"{cls}[dilation={dil}]", name)] += _conv_macs(out, module.weight)
            return
        layer = _layer_for(module, inp, out)
        if isinstance(layer, str):  # the record would not reproduce the output: list it instead
            linear = isinstance(module, nn.Linear)
            macs = _flinear((inp,), {}, out) if linear else _conv_macs(out, module.weight)
            self._pending[(f"{cls}[{layer}]", name)] += macs
            return
        k = self._calls[name]
        self._calls[name] += 1
        layer = layer.replace(name=name if k == 0 else f"{name}#{k}")
        w = module.weight
        for what, t in (("weight", w), ("input", inp), ("output", out)):
            check_finite_tensor(t, f"layer '{name}': its {what}")
        words, values = _rlc_words(inp, layer)
        zeros = (_zeros(inp), _zeros(w), _zeros(out), words)
        counts = (inp.numel(), w.numel(), out.numel(), values)
        self._events.append((layer, zeros, counts))

    def _begin_batch(self, args: tuple, kwargs: dict) -> None:
        self._stack.clear()
        self._counted_depth = 0
        self._calls.clear()
        self._events = []
        self._pending = defaultdict(int)
        first = next((t for t in itertools.chain(args, kwargs.values())
                      if isinstance(t, torch.Tensor) and t.dim() > 0), None)
        self._batch_size = int(first.shape[0]) if first is not None else 1

    def _end_batch(self) -> None:
        if self._ref_batch is None:
            self._ref_batch = max(self._batch_size, 1)
        for layer, zeros, counts in self._events:
            stats = self._records.get(layer.name)
            if stats is None:
                self._records[layer.name] = stats = _Stats(layer)
            elif layer.replace(N=stats.layer.N).shape_key() != stats.layer.shape_key():
                raise HwawareError(
                    f"profile: layer '{layer.name}' changed shape between batches "
                    f"({_shape_str(stats.layer)} -> {_shape_str(layer)}); "
                    "profile inputs of one size"
                )
            stats.add(zeros, counts)
        scale = self._ref_batch / max(self._batch_size, 1)
        for key, macs in self._pending.items():
            self._unmodeled[key] += macs * scale
        self._events = []
        self._pending = defaultdict(int)
        self.batches += 1

    def workload(self) -> Workload:
        """The records so far: shapes of the first batch, zero fractions over all batches."""
        if not self.batches:
            raise HwawareError("profile: no forward pass completed; the data yielded no batches")
        layers = [s.finish() for s in self._records.values() if self._keep(s.layer.name)]
        # A zero-MAC entry is kept only when it carries a note (e.g. "[MACs unknown]").
        unmodeled = [UnmodeledOp(op, name, round(macs / self.batches))
                     for (op, name), macs in self._unmodeled.items()
                     if self._keep(name) and (macs > 0 or "[" in op)]
        return Workload(tuple(layers), tuple(unmodeled), source=self.source)


def profile(model: nn.Module, data: Any, *, batches: int | None = None,
            progress: bool | None = None, name_filter: NameFilter = None,
            source: str = "") -> Workload:
    """Run ``model`` on ``data`` and return its :class:`~hwaware.workload.Workload`.

    ``data``: a tensor (one batch); a tuple/list of tensors (the positional arguments of
    ``forward``, one batch); a dict (keyword arguments, one batch); or an iterable such as a
    DataLoader yielding tensors, ``(inputs, targets)`` pairs or dicts. ``batches`` caps how
    many batches are used; ``progress`` shows a tqdm bar (default: when more than one batch).
    Inputs are moved to the device of the model's first parameter.
    """
    if batches is not None and (isinstance(batches, bool) or not isinstance(batches, int)
                                or batches < 1):
        raise HwawareError(f"profile: batches must be a positive integer, got {batches!r}")
    calls, total = _calls(data)
    if batches is not None:
        calls = itertools.islice(calls, batches)
        total = batches if total is None else min(total, batches)
    show = (total is None or total > 1) if progress is None else bool(progress)
    device = None
    if isinstance(model, nn.Module):
        device = next((p.device for p in model.parameters()), None)
    from tqdm.auto import tqdm

    with Profiler(model, name_filter=name_filter, source=source) as prof:
        for args, kwargs in tqdm(calls, total=total, desc="profile", unit="batch", disable=not show,
                                 leave=False):
            if device is not None:
                args, kwargs = _to_device(args, device), _to_device(kwargs, device)
            try:
                prof.run(*args, **kwargs)
            except HwawareError:
                raise
            except _FIT_ERRORS as exc:  # what torch raises for inputs of the wrong shape or count
                raise HwawareError(fit_error(args, kwargs, prof.failed_module, exc)) from exc
    if not prof.batches:
        raise HwawareError("profile: the data yielded no batches (empty DataLoader or iterable?)")
    return prof.workload()


def profile_call(model: nn.Module, args: tuple, kwargs: dict | None = None, *, source: str = "") -> Workload:
    """The workload of one forward call ``model(*args, **kwargs)`` (inputs used where they are:
    no device move, no progress bar); inputs that do not fit raise one :class:`HwawareError`."""
    kwargs = kwargs or {}
    with Profiler(model, source=source) as prof:
        try:
            prof.run(*args, **kwargs)
        except HwawareError:
            raise
        except _FIT_ERRORS as exc:
            raise HwawareError(fit_error(args, kwargs, prof.failed_module, exc)) from exc
    return prof.workload()


# --- helpers -----------------------------------------------------------------------------------

def _layer_for(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> Layer | str:
    """The record for one call, or a short reason why the call cannot be recorded."""
    op = type(module).__name__
    if isinstance(module, nn.Linear):
        c = module.in_features
        n = inp.numel() // c if c else 0
        return Layer(name="?", N=n, M=module.out_features, C=c, H=1, W=1, R=1, S=1, op=op)
    if module.padding_mode != "zeros":
        op += f"[padding_mode={module.padding_mode}]"
    spatial = 1 if isinstance(module, nn.Conv1d) else 2
    batched = inp.dim() == spatial + 2
    n = inp.shape[0] if batched else 1
    sizes = list(inp.shape[-spatial:])
    kernel, stride = list(module.kernel_size), list(module.stride)
    same_pad = is_same_pad_conv(module)  # timm Conv2dSame: TF "SAME" padding applied in forward
    if isinstance(module.padding, str) or same_pad:  # odd totals pad one more after
        if same_pad:
            totals = [max((-(-i // s) - 1) * s + (k - 1) * d + 1 - i, 0)
                      for i, k, s, d in zip(sizes, kernel, stride, module.dilation)]
            op += "[same padding in forward]"
        else:  # 'valid', or 'same' (stride 1)
            totals = [0 if module.padding == "valid" else k - 1 for k in kernel]
        pads = [t // 2 for t in totals]
        for i, t in enumerate(totals):
            if t % 2:  # the extra trailing row/column is folded into the input size
                sizes[i] += 1
                op += "[asymmetric same padding]" if "asym" not in op else ""
    else:
        pads = list(module.padding)
    if spatial == 1:  # Conv1d: the length runs along W/S/F
        sizes, kernel, stride, pads = [1] + sizes, [1] + kernel, [1] + stride, [0] + pads
    layer = Layer(name="?", N=n, M=module.out_channels, C=module.in_channels // module.groups,
                  H=sizes[0], W=sizes[1], R=kernel[0], S=kernel[1], U=stride[0], U_h=stride[1],
                  padding=pads[0], padding_w=pads[1], groups=module.groups, op=op)
    got = tuple(out.shape[-spatial:])
    want = (layer.E, layer.F)[-spatial:]
    if got != want:
        return f"output {'x'.join(map(str, got))} != modeled {'x'.join(map(str, want))}"
    return layer


def _zeros(t: torch.Tensor) -> int:
    return int(torch.count_nonzero(t == 0))


def _rlc_words(inp: torch.Tensor, layer: Layer) -> tuple[int, int]:
    """64-bit words of the chip's RLC code (JSSC Fig. 8) of the zero-padded input, and its values.

    The code's size depends only on where the zeros are, so the stream is the input's zero pattern
    in NCHW order with the layer's zero padding, exactly as the accelerator would store the fmap.
    """
    from .workload.rlc import encoded_words

    x = inp.detach()
    if layer.padding or layer.padding_w:
        if x.dim() == 4:
            x = torch.nn.functional.pad(x, (layer.padding_w, layer.padding_w, layer.padding, layer.padding))
        elif x.dim() == 3:
            x = torch.nn.functional.pad(x, (layer.padding_w, layer.padding_w))
    nonzero = (x != 0).reshape(-1).to(torch.int16).cpu().numpy()
    return encoded_words(nonzero), int(nonzero.size)


def _restore_training(flags: list[tuple[nn.Module, bool]]) -> None:
    for m, training in flags:
        m.training = training


def _name_filter(spec: NameFilter) -> Callable[[str], bool]:
    if spec is None:
        return lambda name: True
    if isinstance(spec, str):
        try:
            pattern = re.compile(spec)
        except re.error as exc:
            raise HwawareError(
                f"profile: name_filter {spec!r} is not a valid regular expression: {exc}"
            ) from None
        return lambda name: pattern.search(name) is not None
    if callable(spec):
        return spec
    raise HwawareError(
        f"profile: name_filter must be a callable or a regex string, got {type(spec).__name__}"
    )


def _as_call(item: Any) -> tuple[tuple, dict]:
    """One batch from a DataLoader-like iterable -> (args, kwargs) of forward."""
    if isinstance(item, torch.Tensor):
        return (item,), {}
    if isinstance(item, Mapping):
        return (), dict(item)
    if isinstance(item, (tuple, list)) and item:
        first = item[0]  # (inputs, targets): the inputs are a tensor or a tuple of tensors
        if isinstance(first, torch.Tensor):
            return (first,), {}
        if (isinstance(first, (tuple, list)) and first
                and all(isinstance(t, torch.Tensor) for t in first)):
            return tuple(first), {}
    raise HwawareError(
        f"profile: a batch must be a tensor, an (inputs, targets) pair or a dict of tensors, "
        f"got {type(item).__name__}"
    )


def _calls(data: Any) -> tuple[Iterator[tuple[tuple, dict]], int | None]:
    if isinstance(data, torch.Tensor):
        return iter([((data,), {})]), 1
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        return iter([(tuple(data), {})]), 1
    if isinstance(data, Mapping):
        return iter([((), dict(data))]), 1
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise HwawareError(
            "profile: data must be a tensor, a tuple of tensors (forward's arguments), or an "
            f"iterable of batches such as a DataLoader; got {type(data).__name__}"
        )
    try:
        total: int | None = len(data)  # type: ignore[arg-type]
    except TypeError:
        total = None
    return (_as_call(item) for item in data), total


def _to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, tuple):
        return tuple(_to_device(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    return x


def _shape_str(layer: Layer) -> str:
    return f"N={layer.N} M={layer.M} C={layer.C} H={layer.H} W={layer.W} R={layer.R} S={layer.S}"


def describe_inputs(args: tuple, kwargs: dict) -> str:
    """'1x3x224x224' (or several, comma separated) for error messages."""
    shapes = ["x".join(str(d) for d in t.shape) for t in itertools.chain(args, kwargs.values())
              if isinstance(t, torch.Tensor)]
    return ", ".join(shapes) if shapes else "(no tensors)"


def fit_error(args: tuple, kwargs: dict, failed: tuple[str, str] | None,
              exc: BaseException) -> str:
    """The one-line message for inputs that do not fit the model (names the failed module)."""
    where = f"{failed[1]} '{failed[0]}'" if failed else "the forward pass"
    msg = " ".join(str(exc).split())
    if len(msg) > 300:
        msg = msg[:297] + "..."
    return (f"input of size {describe_inputs(args, kwargs)} does not fit the model: "
            f"{where} failed: {msg}")
