"""The :class:`Profiler` context manager: forward hooks on every module record each Conv1d/Conv2d/
Linear call (shape and measured statistics, :mod:`.stats`), and a torch function mode counts the
MACs of functional ops called outside counted modules (:mod:`.macs`)."""

from __future__ import annotations

import contextlib
import itertools
import re
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .._checks import non_finite, numpy_view
from ..errors import HwawareError
from ..workload import Layer, UnmodeledOp, Workload
from .macs import (
    COUNTED,
    FUNCTIONAL,
    RECORDED,
    arg,
    attention_macs,
    conv_macs,
    conv_transpose_macs,
    linear_macs,
    rnn_macs,
)
from .records import layer_for, shape_str
from .fused import role
from .stats import Count, LayerStats, input_stats, non_finite_cpu, stream_pads, written_stats, zeros

NameFilter = Callable[[str], bool] | str | None
# The hooks' own tensor calls (shape, device, .numpy(), ...) bypass the counting mode: they are not
# the model's ops, and each one routed through Python's __torch_function__ cost ~2 us (ResNet-50:
# ~3,700 of them per forward pass, 5-10 ms). Modes and subclass handlers both off, as inside the
# mode's own handler.
_NO_MODE = torch._C.DisableTorchFunction


class _CountingMode(TorchFunctionMode):
    """Counts MACs of functional ops called while a profiled forward pass is running."""

    def __init__(self, profiler: Profiler) -> None:
        super().__init__()
        self._prof = profiler

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch API)
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            entry = FUNCTIONAL.get(func)
        except TypeError:  # an unhashable callable cannot be one of ours
            entry = None
        if entry is not None:
            self._prof._functional(entry, args, kwargs, out)
        if self._prof._tail is not None:
            self._prof._follow(func, args, kwargs, out)
        return out


class Profiler:
    """Context manager that records every Conv1d/Conv2d/Linear call of ``model``.

        >>> with Profiler(model) as prof:
        ...     model(x1); model(x2)          # each call of the model is one batch
        >>> wl = prof.workload()

    Inside the block the model is in eval mode and gradients are off; on exit (also on an
    exception) all hooks are removed and every module's ``training`` flag is restored.
    ``name_filter`` (a callable on names, or a regular expression searched in them) keeps only
    the matching layer records and unmodeled ops. ``on_layer`` is called once per kept record, with
    its :class:`Layer` (shape only, statistics not yet measured), as soon as a forward pass reaches
    it: :func:`hwaware.score` starts each shape's mapping search there while the pass goes on.
    """

    def __init__(self, model: nn.Module, *, name_filter: NameFilter = None,
                 source: str = "", on_layer: Callable[[Layer], None] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise HwawareError(f"profile: expected a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.source = source or type(model).__name__
        self._keep = name_filter_fn(name_filter)
        self._on_layer = on_layer
        self._announced: set[str] = set()  # record names already passed to on_layer
        self._exit_stack: contextlib.ExitStack | None = None
        # state of the batch in flight
        self._stack: list[tuple[str, nn.Module, bool]] = []   # (name, module, counted)
        self._counted_depth = 0
        self._calls: Counter[str] = Counter()
        self._events: list[tuple[Layer, tuple[Count, ...], tuple[int, ...]]] = []
        self._checks: list[tuple[str, torch.Tensor, int]] = []  # (what, non-finite count, values) off the CPU
        self._pending: dict[tuple[str, str], int] = defaultdict(int)
        self._batch_size = 1
        # (event index, tensor) of the last recorded layer's output, until a ReLU of it is seen
        self._tail: tuple[int, torch.Tensor] | None = None
        # tensor objects measured in this batch: id -> (weakref, version, {what: result}), so a tensor
        # several layers read (ResNet's block input, Inception's branches) is measured once
        self._seen: dict[int, tuple[weakref.ref, int, dict[Any, Any]]] = {}
        # threads for the statistics of large CPU tensors: torch's intra-op thread count (the
        # forward pass waits for the hooks, so these cores are idle meanwhile)
        self._pool: ThreadPoolExecutor | None = None
        self._workers = 1
        # accumulated over batches
        self._records: dict[str, LayerStats] = {}
        self._weights: dict[tuple[int, int, int], Count] = {}  # (id, version, data_ptr) -> zeros
        self._prefetch: dict[tuple[int, int, int], Future] = {}  # the same, measured on a worker
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
            stack.callback(restore_training, flags)
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
            self._workers = max(1, torch.get_num_threads())
            if self._workers > 1:
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="hwaware-stats")
                stack.callback(self._pool.shutdown, wait=True)
            self._start_weight_stats(stack)
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
        with _NO_MODE():
            self._enter_body(name, module, args, kwargs)

    def _exit(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        with _NO_MODE():
            self._exit_body(name, module, args, kwargs, output)

    def _enter_body(self, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if module is self.model or not self._stack:
            self._begin_batch(args, kwargs)
        counted = isinstance(module, COUNTED)
        self._stack.append((name, module, counted))
        self._counted_depth += counted

    def _exit_body(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
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
        inp = arg(args, kwargs, 0, "input")
        if isinstance(module, nn.MultiheadAttention):
            q, k, v = (arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
            seq_dim = 1 if module.batch_first else 0
            extra = int(module.bias_k is not None) + int(module.add_zero_attn)
            macs = attention_macs(q, k, v, module.embed_dim, seq_dim, extra)
            self._pending[("MultiheadAttention", name)] += macs
            return
        if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
            self._pending[(type(module).__name__, name)] += rnn_macs(module, inp)
            return
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(inp, torch.Tensor) or not isinstance(out, torch.Tensor):
            self._pending[(f"{type(module).__name__}[non-tensor input]", name)] += 0
            return
        cls = type(module).__name__
        if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            self._pending[(cls, name)] += conv_transpose_macs(inp, module.weight)
            return
        if isinstance(module, nn.Conv3d):
            self._pending[(cls, name)] += conv_macs(out, module.weight)
            return
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and any(d != 1 for d in module.dilation):
            dil = "x".join(str(d) for d in module.dilation)
            self._pending[(f"{cls}[dilation={dil}]", name)] += conv_macs(out, module.weight)
            return
        layer = layer_for(module, inp, out)
        if isinstance(layer, str):  # the record would not reproduce the output: list it instead
            linear = isinstance(module, nn.Linear)
            macs = linear_macs((inp,), {}, out) if linear else conv_macs(out, module.weight)
            self._pending[(f"{cls}[{layer}]", name)] += macs
            return
        k = self._calls[name]
        self._calls[name] += 1
        layer = layer.replace(name=name if k == 0 else f"{name}#{k}")
        if self._on_layer is not None and layer.name not in self._announced and self._keep(layer.name):
            self._announced.add(layer.name)
            self._on_layer(layer)
        w = module.weight
        w_zeros = self._weight_zeros(name, w)
        for what, t in (("input", inp), ("output", out)):
            self._check_finite(t, f"layer '{name}': its {what}")
        pool, k = self._pool, self._workers
        in_zeros, words, values = self._once(inp, ("stream", stream_pads(inp.dim(), layer)),
                                             lambda: input_stats(inp, layer, pool, k))
        counts = (inp.numel(), w.numel(), out.numel(), values, 0, 0)
        out_zeros = self._once(out, "zeros", lambda: zeros(out, pool, k))
        self._events.append((layer, (in_zeros, w_zeros, out_zeros, words, 0, 0), counts))
        self._tail = (len(self._events) - 1, out)

    def _follow(self, func: Callable, args: tuple, kwargs: dict, out: Any) -> None:
        """Follow the last recorded layer's output through a BatchNorm to its ReLU and measure what
        the ReLU returns: the ofmap the chip writes (:mod:`.fused`)."""
        i, t = self._tail  # type: ignore[misc]
        if (args[0] if args else kwargs.get("input")) is not t:
            return
        what = role(func, args, kwargs)
        if what == "fold" and isinstance(out, torch.Tensor) and out.shape == t.shape:
            self._tail = (i, out)
        elif what == "relu" and isinstance(out, torch.Tensor) and out.shape == t.shape:
            self._tail = None
            layer, zs, counts = self._events[i]
            # keyed as an unpadded input: the next layer reading it unpadded (a 1x1 conv) reuses it
            z, words, values = self._once(out, ("stream", None),
                                          lambda: written_stats(out, self._pool, self._workers))
            self._events[i] = (layer, (*zs[:4], z, words), (*counts[:4], values, values))
        elif what:
            self._tail = None

    def _once(self, t: torch.Tensor, what: Any, measure: Callable[[], Any]) -> Any:
        """``measure()`` of tensor ``t``, run once per batch for the same tensor object at the same
        version (an in-place write bumps the version and measures again). The entry holds a weak
        reference, so a freed tensor's id reused by a new one is never mistaken for it; inference
        tensors have no version counter and are always measured."""
        try:
            version = t._version
        except RuntimeError:
            return measure()
        entry = self._seen.get(id(t))
        if entry is None or entry[0]() is not t or entry[1] != version:
            entry = (weakref.ref(t), version, {})
            self._seen[id(t)] = entry
        if what not in entry[2]:
            entry[2][what] = measure()
        return entry[2][what]

    def _start_weight_stats(self, stack: contextlib.ExitStack) -> None:
        """Measure the CPU weights of the recorded modules on a worker thread while the forward pass
        runs (they do not depend on it; NumPy releases the GIL on these passes). ResNet-50: 25M
        weight values, a third of the statistics' work, which the layer hooks' single-threaded
        passes would otherwise leave a core idle for."""
        weights = {}
        for m in self.model.modules():
            w = getattr(m, "weight", None)
            if (isinstance(m, RECORDED) and isinstance(w, torch.Tensor) and torch.is_floating_point(w)
                    and numpy_view(w) is not None):
                weights.setdefault(_weight_key(w), w)
        if len(weights) < 2:
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hwaware-profile")
        stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        self._prefetch = {key: pool.submit(_weight_counts, w) for key, w in weights.items()}

    def _weight_zeros(self, name: str, w: torch.Tensor) -> Count:
        """Zeros of a weight, checked finite; measured once per profile unless it was written
        (weights repeat across batches and calls; the tensor's version counter says if it changed).
        Not kept across profiles: writes through ``.data`` (common in pruning code) leave the
        version counter unchanged, so only one profile's forward passes may trust it."""
        key = _weight_key(w)
        hit = self._weights.get(key)
        if hit is None:
            what = f"layer '{name}': its weight"
            fut = self._prefetch.pop(key, None)
            if fut is None:
                self._check_finite(w, what)
                hit = zeros(w, self._pool, self._workers)
            else:
                bad, hit = fut.result()
                if bad:
                    raise HwawareError(f"{what} holds NaN/inf ({bad} of {w.numel()} values)")
            self._weights[key] = hit
        return hit

    def _check_finite(self, t: Any, what: str) -> None:
        """Raise now for a CPU tensor holding NaN/inf; off the CPU, count its non-finite values on
        its device and raise at the end of the forward pass (one synchronization for them all)."""
        if not (isinstance(t, torch.Tensor) and torch.is_floating_point(t)):
            return
        a = numpy_view(t)
        if a is None:
            self._checks.append((what, torch.isfinite(t.detach()).logical_not().sum(), t.numel()))
            return
        bad = self._once(t, "finite", lambda: non_finite_cpu(a, self._pool, self._workers))
        if bad:
            raise HwawareError(f"{what} holds NaN/inf ({bad} of {t.numel()} values)")

    def _begin_batch(self, args: tuple, kwargs: dict) -> None:
        self._stack.clear()
        self._counted_depth = 0
        self._calls.clear()
        self._events = []
        self._checks = []
        self._seen = {}
        self._pending = defaultdict(int)
        self._tail = None
        first = next((t for t in itertools.chain(args, kwargs.values())
                      if isinstance(t, torch.Tensor) and t.dim() > 0), None)
        self._batch_size = int(first.shape[0]) if first is not None else 1

    def _end_batch(self) -> None:
        checks, self._checks = self._checks, []
        values = _read_counts([c for _, c, _ in checks] + [v for _, zs, _ in self._events for v in zs])
        for (what, _, numel), bad in zip(checks, values):
            if bad:
                self._events = []
                raise HwawareError(f"{what} holds NaN/inf ({bad} of {numel} values)")
        zs_all = iter(values[len(checks):])
        self._events = [(layer, tuple(next(zs_all) for _ in zs), counts) for layer, zs, counts in self._events]
        if self._ref_batch is None:
            self._ref_batch = max(self._batch_size, 1)
        for layer, zs, counts in self._events:
            stats = self._records.get(layer.name)
            if stats is None:
                self._records[layer.name] = stats = LayerStats(layer)
            elif layer.replace(N=stats.layer.N).shape_key() != stats.layer.shape_key():
                raise HwawareError(
                    f"profile: layer '{layer.name}' changed shape between batches "
                    f"({shape_str(stats.layer)} -> {shape_str(layer)}); "
                    "profile inputs of one size"
                )
            stats.add(zs, counts)
        scale = self._ref_batch / max(self._batch_size, 1)
        for key, macs in self._pending.items():
            self._unmodeled[key] += macs * scale
        self._events = []
        self._seen = {}
        self._pending = defaultdict(int)
        self._tail = None
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


def _weight_key(w: torch.Tensor) -> tuple[int, int, int]:
    return (id(w), w._version, w.data_ptr())


def _weight_counts(w: torch.Tensor) -> tuple[int, int]:
    """(NaN/inf values, zeros) of a CPU weight."""
    return non_finite(w), int(zeros(w))


def _read_counts(values: list[Count]) -> list[int]:
    """Counts as ints; the 0-d tensors among them are read with one transfer per device."""
    out: list[int] = [v if isinstance(v, int) else 0 for v in values]
    by_device: dict[torch.device, list[int]] = defaultdict(list)
    for i, v in enumerate(values):
        if isinstance(v, torch.Tensor):
            by_device[v.device].append(i)
    for idx in by_device.values():
        for i, v in zip(idx, torch.stack([values[i].to(torch.int64) for i in idx]).tolist()):
            out[i] = int(v)
    return out


def restore_training(flags: list[tuple[nn.Module, bool]]) -> None:
    for m, training in flags:
        m.training = training


def name_filter_fn(spec: NameFilter) -> Callable[[str], bool]:
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
