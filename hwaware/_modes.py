"""Running a model for inspection without changing it: eval mode, no grad, every module's own
``training`` flag restored afterwards (a model mixing train and eval submodules stays so)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["inspection_mode"]


@contextlib.contextmanager
def inspection_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with inspection_mode(model): model(x)`` -- eval mode and ``torch.no_grad()`` inside; on exit
    (also on an exception) each module's ``training`` flag is what it was."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield model
    finally:
        for m, t in flags:
            m.training = t
