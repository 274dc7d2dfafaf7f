"""The data of a NetAdapt job: the training split cut into a fixed held-out part that ranks
proposals and the rest that fine-tunes them; the test split is only used at the end."""

from __future__ import annotations

from typing import Any

from ..errors import HwawareError
from .config import NetAdaptConfig
from .rules import derive_seed


class HeldoutSplit:
    """The training split cut into a fixed held-out part (ranking proposals) and the rest
    (fine-tuning). The test split is only used at the very end, for the report."""

    def __init__(self, data: Any, cfg: NetAdaptConfig) -> None:
        import torch

        from ..data import load_dataset

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
        if cfg.holdout >= n:
            raise HwawareError(f"holdout={cfg.holdout} images must be fewer than the {n} training images "
                               f"of {self.describe}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "split")))
        self.heldout_idx = sorted(perm[: cfg.holdout].tolist())
        rest = perm[cfg.holdout:]
        if cfg.train_size is not None:
            rest = rest[: cfg.train_size]
        self.train_idx = sorted(rest.tolist())
        items = [self.train[i] for i in self.heldout_idx]
        self.x = torch.stack([torch.as_tensor(x) for x, _ in items])
        self.y = torch.as_tensor([int(y) for _, y in items])
        self.profile_images = self.x[: cfg.profile_images]
        self.example = self.x[:1]
        self.batch_size = cfg.batch_size

    def heldout_loader(self) -> list[tuple[Any, Any]]:
        return [(self.x[i:i + 256], self.y[i:i + 256]) for i in range(0, len(self.y), 256)]

    def train_loader(self, seed: int) -> Any:
        import torch
        from torch.utils.data import DataLoader, Subset

        bs = min(self.batch_size, len(self.train_idx))
        return DataLoader(Subset(self.train, self.train_idx), batch_size=bs, shuffle=True, num_workers=0,
                          generator=torch.Generator().manual_seed(seed), drop_last=True)

    def test_loader(self) -> Any | None:
        if self.ref is None:
            return None
        from ..data import make_loader

        try:
            return make_loader(self.ref, "test", batch_size=256, shuffle=False)
        except HwawareError:
            return None
