"""The two data-split policies of the compression loops, in one place.

- :func:`val_split` — **decide on the validation split** (energy-aware pruning, quantization,
  recipes): the training split fine-tunes, the dataset's own ``val`` split decides (accept a step,
  stop), ``test`` is only reported. Used by ``hwaware prune``.
- :class:`HeldoutSplit` — **hold images out of the training split** (NetAdapt, as in Yang et al.,
  ECCV 2018 §4: proposals are ranked on a fixed set of training images the fine-tune never sees,
  so the validation/test images stay untouched by the search). Used by :mod:`hwaware.netadapt`.

They are different on purpose: NetAdapt compares tens of proposals per iteration and would
overfit a validation split it picked from; pruning takes one decision per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import HwawareError

__all__ = ["HeldoutSplit", "ValSplit", "val_split"]


@dataclass(frozen=True)
class ValSplit:
    """Loaders of the decide-on-val policy: ``train`` fine-tunes, ``val`` decides, ``test`` (None
    when the dataset has none) is only reported."""

    train: Any
    val: Any
    test: Any


def val_split(ref: str, *, batch_size: int, seed: int, train_limit: int | None = None,
              val_limit: int | None = None, eval_batch: int = 256) -> ValSplit:
    """The train/val/test loaders of dataset ``ref`` for the decide-on-val policy."""
    from .data import make_loader

    train = make_loader(ref, "train", batch_size=batch_size, seed=seed, limit=train_limit)
    val = make_loader(ref, "val", batch_size=eval_batch, limit=val_limit, seed=seed)
    test = make_loader(ref, "test", batch_size=eval_batch)
    return ValSplit(train, val, test)


class HeldoutSplit:
    """The held-out-from-train policy: the training split cut into a fixed held-out part of
    ``holdout`` images (ranking proposals) and the rest (fine-tuning, at most ``train_size``
    images). The test split is only used at the very end, for the report. ``seed`` fixes the cut."""

    def __init__(self, data: Any, *, holdout: int, seed: int, train_size: int | None = None,
                 profile_images: int = 1, batch_size: int = 32) -> None:
        import torch

        from .data import load_dataset

        if isinstance(data, str):
            self.ref: str | None = data
            self.train = load_dataset(data, "train")
            self.describe = data
        else:
            if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
                raise HwawareError(f"data must be a dataset reference string or a Dataset of (image, label), "
                                   f"got {type(data).__name__}")
            self.ref = None
            self.train = data
            self.describe = f"{type(data).__qualname__}[{len(data)}]"
        n = len(self.train)
        if holdout >= n:
            raise HwawareError(f"holdout={holdout} images must be fewer than the {n} training images "
                               f"of {self.describe}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        self.heldout_idx = sorted(perm[:holdout].tolist())
        rest = perm[holdout:]
        if train_size is not None:
            rest = rest[:train_size]
        self.train_idx = sorted(rest.tolist())
        items = [self.train[i] for i in self.heldout_idx]
        self.x = torch.stack([torch.as_tensor(x) for x, _ in items])
        self.y = torch.as_tensor([int(y) for _, y in items])
        self.profile_images = self.x[:profile_images]
        self.example = self.x[:1]
        self.batch_size = batch_size

    def heldout_loader(self) -> list[tuple[Any, Any]]:
        return [(self.x[i:i + 256], self.y[i:i + 256]) for i in range(0, len(self.y), 256)]

    def heldout_accuracy(self, model: Any, device: str = "cpu") -> float:
        """Top-1 accuracy of ``model`` on the held-out images (moved to ``device`` and back to CPU)."""
        from .train import evaluate

        model.to(device)
        try:
            return float(evaluate(model, self.heldout_loader(), device=device))
        finally:
            model.cpu()

    def train_loader(self, seed: int) -> Any:
        import torch
        from torch.utils.data import DataLoader, Subset

        bs = min(self.batch_size, len(self.train_idx))
        return DataLoader(Subset(self.train, self.train_idx), batch_size=bs, shuffle=True, num_workers=0,
                          generator=torch.Generator().manual_seed(seed), drop_last=True)

    def test_loader(self) -> Any | None:
        if self.ref is None:
            return None
        from .data import make_loader

        try:
            return make_loader(self.ref, "test", batch_size=256, shuffle=False)
        except HwawareError:
            return None
