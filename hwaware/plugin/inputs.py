"""What the monitor profiles: the module behind DDP/DataParallel/``torch.compile`` wrappers, this
process's rank, and the forward arguments of a batch (at most ``samples`` of it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import HwawareError


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module that holds the layers: strips ``DistributedDataParallel``/``DataParallel``
    (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers, in any nesting."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(model, (DataParallel, DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            break
    return model


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def first_n(x: Any, n: int, batch: int | None) -> Any:
    """Keep the first ``n`` samples of every tensor whose first dimension is the batch."""
    if isinstance(x, torch.Tensor):
        return x[:n] if batch is not None and x.dim() > 0 and x.shape[0] == batch else x
    if isinstance(x, tuple):
        return tuple(first_n(v, n, batch) for v in x)
    if isinstance(x, list):
        return [first_n(v, n, batch) for v in x]
    if isinstance(x, dict):
        return {k: first_n(v, n, batch) for k, v in x.items()}
    return x


def batch_of(args: tuple, kwargs: dict) -> int | None:
    for t in (*args, *kwargs.values()):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return None


def as_call(batch: Any) -> tuple[tuple, dict]:
    """An example batch -> forward arguments: a tensor, a tuple of tensors, an ``(inputs,
    targets)`` pair from a loader (the inputs are used), or a dict of keyword arguments."""
    if isinstance(batch, torch.Tensor):
        return (batch,), {}
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, (tuple, list)) and batch:
        if len(batch) == 2 and isinstance(batch[0], torch.Tensor) and isinstance(batch[1], torch.Tensor) \
                and batch[1].dim() <= 1 and not torch.is_floating_point(batch[1]):
            return (batch[0],), {}  # (images, integer labels) from a DataLoader
        return tuple(batch), {}
    raise HwawareError("attach: example_batch must be a tensor, a tuple of forward arguments, an "
                       f"(inputs, labels) pair or a dict of keyword arguments; got {type(batch).__name__}")
