"""The entry functions: ``profile(model, data)`` over batches of any usual form, ``profile_call`` for
one forward call, and the one-line error for inputs that do not fit the model."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .._checks import check_dim
from ..errors import HwawareError
from ..workload import Layer, Workload
from .hooks import NameFilter, Profiler

_FIT_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, AssertionError)


def profile(model: nn.Module, data: Any, *, batches: int | None = None,
            progress: bool | None = None, name_filter: NameFilter = None,
            source: str = "", on_layer: Callable[[Layer], None] | None = None) -> Workload:
    """Run ``model`` on ``data`` and return its :class:`~hwaware.workload.Workload`.

    ``data``: a tensor (one batch); a tuple/list of tensors (the positional arguments of
    ``forward``, one batch); a dict (keyword arguments, one batch); or an iterable such as a
    DataLoader yielding tensors, ``(inputs, targets)`` pairs or dicts. ``batches`` caps how
    many batches are used; ``progress`` shows a tqdm bar (default: when more than one batch).
    Inputs are moved to the device of the model's first parameter. ``on_layer``: see
    :class:`Profiler` (called with each layer's shape as soon as the first pass reaches it).
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

    with Profiler(model, name_filter=name_filter, source=source, on_layer=on_layer) as prof:
        for args, kwargs in tqdm(calls, total=total, desc="profile", unit="batch", disable=not show,
                                 leave=False):
            first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.dim()), None)
            if first is not None:  # the batch limit before the forward pass, not after it
                check_dim(int(first.shape[0]), "N", "profile: the input batch")
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
