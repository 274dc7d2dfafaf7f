"""Training utilities: a plain supervised loop, top-1 evaluation, and a cached trained small CNN.

:func:`fit` is the loop the compression flows use for fine-tuning (``after_step`` re-applies
pruning masks after every optimizer step); :func:`evaluate` measures top-1 accuracy;
:func:`trained_small_cnn` trains ``models/small_cnn.py`` on ``builtin:shapes`` once and keeps the
weights in ``~/.cache/hwaware`` (``HWAWARE_CACHE`` overrides), keyed by a hash of everything
that determines them.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HwawareError

__all__ = ["FitResult", "fit", "finetune", "evaluate", "trained_small_cnn", "trained_shapes_model", "resolve_cache_dir", "SMALL_CNN_RECIPE"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")

# How trained_small_cnn trains (part of the cache key). Measured with bench/train_small_cnn.py.
SMALL_CNN_RECIPE: dict[str, Any] = {
    "data": "builtin:shapes",
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
}
SMALL_CNN_EPOCHS = 8
# vgg_small (the pruning study's network, models/vgg_small.py): the same recipe, 6 epochs
# (bench/prune_compare.py prints its accuracy)
VGG_SMALL_RECIPE: dict[str, Any] = dict(SMALL_CNN_RECIPE)
VGG_SMALL_EPOCHS = 6
# resnet18 (models/resnet18.py, torchvision's ResNet-18 with a small-image stem): Adam at 2e-3 with a
# cosine schedule learns on builtin:shapes from the first epoch (measured: 70.8% val after 3 epochs),
# where SGD at 0.05 stayed near chance (27% after one epoch) -- 18 layers with BN start slowly at lr 0.1.
# On the default 8000 training images it overfits: 10 epochs (625 steps) reached train loss 0.009 and
# 94.5% val in one environment, 92.9% in another (training depends on the machine), with top-1
# margins thin enough that the chip's floor arithmetic flipped 0.6-1.2% of the validation images
# (searched formats).
# 40000 generated images (the generator makes as many as asked), 4 epochs (1250 steps): train loss
# 0.016, 98.8% val, 99.2% test, median top-2 margin 9.6 (2 epochs: 97.3% val, 7.0), 2463 s on the
# 2 cores of a slow machine (docs/fixedpoint.md, "Agreement with float")
RESNET18_RECIPE: dict[str, Any] = dict(SMALL_CNN_RECIPE, optimizer="adam", lr=0.002,
                                      data="builtin:shapes?n_train=40000")
RESNET18_EPOCHS = 4
# models trained_shapes_model knows: name -> (recipe, default epochs)
SHAPES_MODELS: dict[str, tuple[dict[str, Any], int]] = {
    "small_cnn": (SMALL_CNN_RECIPE, SMALL_CNN_EPOCHS),
    "vgg_small": (VGG_SMALL_RECIPE, VGG_SMALL_EPOCHS),
    "resnet18": (RESNET18_RECIPE, RESNET18_EPOCHS),
}


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` did: optimizer ``steps``, ``epochs`` completed (fractional when
    ``max_steps`` stopped it early), the mean training loss and accuracy of the last epoch,
    the mean loss of every epoch, and the wall time in seconds."""

    steps: int
    epochs: float
    loss: float
    train_accuracy: float
    epoch_losses: tuple[float, ...]
    seconds: float


def fit(
    model: Any,
    loader: Iterable[Any],
    *,
    epochs: float = 1,
    lr: float = 0.01,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    max_steps: int | None = None,
    progress: bool = True,
    after_step: Callable[..., Any] | None = None,
    device: Any = "cpu",
    writer: Any = None,
    tag: str = "train",
) -> FitResult:
    """Train ``model`` in place with cross-entropy on ``(inputs, labels)`` batches.

    ``optimizer``: ``sgd`` (with ``momentum``) or ``adam``; ``schedule``: ``constant`` or
    ``cosine`` (decays ``lr`` to 0 over the run). ``max_steps`` caps the optimizer steps.
    ``after_step`` is called after every optimizer step as ``after_step(model, step)``,
    ``after_step(model)`` or ``after_step()``, whichever its signature takes (e.g. to re-apply
    pruning masks). ``writer``: a TensorBoard ``SummaryWriter`` receiving ``{tag}/loss``,
    ``{tag}/accuracy`` (of the batch) and ``{tag}/lr`` at every step (1, 2, ...: the step axis the
    plugin logs energy and latency on). The model is left in train mode on ``device``. A non-finite loss raises
    :class:`HwawareError` (lower the learning rate).
    """
    import torch
    from torch import nn

    if optimizer not in OPTIMIZERS:
        raise HwawareError(f"fit: unknown optimizer '{optimizer}'; allowed: {', '.join(OPTIMIZERS)}")
    if schedule not in SCHEDULES:
        raise HwawareError(f"fit: unknown schedule '{schedule}'; allowed: {', '.join(SCHEDULES)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise HwawareError(f"fit: lr must be a positive number, got {lr!r}")
    if not epochs > 0:
        raise HwawareError(f"fit: epochs must be positive, got {epochs!r}")
    if max_steps is not None and max_steps <= 0:
        raise HwawareError(f"fit: max_steps must be positive or None, got {max_steps!r}")
    try:
        per_epoch = len(loader)  # type: ignore[arg-type]
    except TypeError:
        raise HwawareError("fit: the loader must have a length (a DataLoader or a list of batches)") from None
    if per_epoch == 0:
        raise HwawareError("fit: the loader yields no batches")

    total = math.ceil(epochs * per_epoch)
    if max_steps is not None:
        total = min(total, max_steps)
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise HwawareError("fit: the model has no trainable parameters")
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum,
                                                     weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total) if schedule == "cosine" else None
    hook = _adapt_hook(after_step)
    loss_fn = nn.CrossEntropyLoss()

    bar = _progress(total, "train", progress)
    start = time.perf_counter()
    step = 0
    epoch_losses: list[float] = []
    loss_sum = correct = seen = 0.0
    try:
        while step < total:
            loss_sum = correct = seen = 0.0
            for inputs, labels in loader:
                inputs, labels = inputs.to(device), labels.to(device)
                out = model(inputs)
                loss = loss_fn(out, labels)
                if not torch.isfinite(loss):
                    raise HwawareError(f"fit: training diverged (loss {loss.item()} at step {step}); "
                                       f"lower the learning rate (lr={lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                lr_now = opt.param_groups[0]["lr"]
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                if hook is not None:
                    hook(model, step)
                n = labels.shape[0]
                hits = (out.argmax(1) == labels).sum().item()
                loss_sum += loss.item() * n
                correct += hits
                seen += n
                if writer is not None:
                    writer.add_scalar(f"{tag}/loss", loss.item(), step)
                    writer.add_scalar(f"{tag}/accuracy", hits / n, step)
                    writer.add_scalar(f"{tag}/lr", lr_now, step)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
                if step >= total:
                    break
            epoch_losses.append(loss_sum / max(seen, 1))
    finally:
        bar.close()
    return FitResult(
        steps=step,
        epochs=step / per_epoch,
        loss=epoch_losses[-1],
        train_accuracy=correct / max(seen, 1),
        epoch_losses=tuple(epoch_losses),
        seconds=time.perf_counter() - start,
    )


def finetune(model: Any, loader: Any, steps: int, *, params: Iterable[Any] | None = None,
             **fit_options: Any) -> FitResult | None:
    """Fine-tune ``model`` in place for exactly ``steps`` optimizer steps (as many passes over
    ``loader`` as that takes), with no progress bar; ``params``: train only these, the others are
    frozen for the call. ``fit_options``: :func:`fit`'s (``lr``, ``momentum``, ``after_step``, ...).
    Shared by the pruning loop and NetAdapt. ``steps <= 0`` does nothing and returns ``None``."""
    if steps <= 0:
        return None
    try:
        per_epoch = max(len(loader), 1)
    except TypeError:
        raise HwawareError("finetune: the loader must have a length (a DataLoader or a list of batches)") from None
    frozen = []
    if params is not None:
        keep = {id(p) for p in params}
        for p in model.parameters():
            if p.requires_grad and id(p) not in keep:
                p.requires_grad_(False)
                frozen.append(p)
    try:
        return fit(model, loader, epochs=math.ceil(steps / per_epoch), max_steps=steps, progress=False,
                   **fit_options)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def evaluate(model: Any, loader: Iterable[Any], *, max_batches: int | None = None,
             device: Any = None, progress: bool = False) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``loader`` (eval mode, no gradients).

    The model's previous train/eval mode is restored. ``device`` defaults to the device of the
    model's first parameter (CPU for a parameterless model).
    """
    import torch

    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else "cpu"
    was_training = model.training
    model.eval()
    correct = seen = 0
    try:
        total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
        if total is not None and max_batches is not None:
            total = min(total, max_batches)
        bar = _progress(total, "eval", progress)
        with torch.no_grad():
            for i, (inputs, labels) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                out = model(inputs.to(device))
                correct += (out.argmax(1) == labels.to(device)).sum().item()
                seen += labels.shape[0]
                bar.update(1)
        bar.close()
    finally:
        model.train(was_training)
    if seen == 0:
        raise HwawareError("evaluate: the loader yields no samples")
    return correct / seen


def resolve_cache_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """Where trained weights are cached: ``cache``, else ``$HWAWARE_CACHE``, else ~/.cache/hwaware."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("HWAWARE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hwaware"


def trained_small_cnn(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    epochs: int = SMALL_CNN_EPOCHS,
    seed: int = 0,
    progress: bool = True,
) -> Any:
    """``models/small_cnn.py:small_cnn`` trained on ``builtin:shapes`` (train split), in eval mode.

    Trained once, then loaded from ``<cache>/small_cnn-shapes-<key>.pt`` (see
    :func:`trained_shapes_model`). The default 8 epochs reach 93.0% test top-1
    in 86 s of CPU time on one thread (bench/train_small_cnn.py; docs/data_and_models.md).
    """
    return trained_shapes_model("small_cnn", cache_dir=cache_dir, epochs=epochs, seed=seed, progress=progress)


def trained_shapes_model(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Any:
    """``models/<name>.py:<name>`` trained on ``builtin:shapes`` (train split), in eval mode.

    ``name`` is one of :data:`SHAPES_MODELS` (``small_cnn``; ``vgg_small``, the pruning study's
    feature-map-bound network; ``resnet18``, the QAT study's deep network); ``epochs`` defaults to the
    model's recipe. Trained once, then loaded
    from ``<cache>/<name>-shapes-<key>.pt``; the key hashes the model file, a fingerprint of the
    generated data, the split sizes and normalization, the recipe, ``epochs`` and ``seed``, so a
    changed ingredient never reuses stale weights. Training is deterministic for a given seed and
    thread count.
    """
    import torch

    from . import data as data_mod
    from ._io import torch_save
    from .modelref import load_model, source_root

    if name not in SHAPES_MODELS:
        raise HwawareError(f"trained_shapes_model: unknown model '{name}'; allowed: {', '.join(SHAPES_MODELS)}")
    base_recipe, default_epochs = SHAPES_MODELS[name]
    epochs = default_epochs if epochs is None else epochs
    model_file = source_root() / "models" / f"{name}.py"
    if not model_file.is_file():
        raise HwawareError(f"trained_shapes_model: '{model_file}' not found; it ships in the hwaware "
                           "source tree (install hwaware from a checkout)")
    if not (isinstance(epochs, int) and epochs > 0):
        raise HwawareError(f"trained_shapes_model: epochs must be a positive integer, got {epochs!r}")
    recipe = dict(base_recipe, epochs=epochs, seed=seed)
    # The data enters the key as a fingerprint of what the generator produces (64 images), not
    # its source text: any change to the generator changes them, and a process whose source file
    # was edited after import still computes the key of the code it actually runs.
    sample, sample_labels = data_mod.generate_shapes(64, seed=seed, stream=0)
    key = _hash_key(
        model_file.read_bytes(),
        sample.tobytes(),
        sample_labels.tobytes(),
        repr(sorted(data_mod.SHAPES_DEFAULTS.items())).encode(),
        repr((data_mod.SHAPES_MEAN, data_mod.SHAPES_STD)).encode(),
        repr(sorted(recipe.items())).encode(),
    )
    path = resolve_cache_dir(cache_dir) / f"{name}-shapes-{key}.pt"

    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = load_model(f"{model_file}:{name}")
        if path.is_file():
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                model.load_state_dict(state["state_dict"])
                return model.eval()
            except Exception:  # a corrupt or foreign cache entry is retrained and replaced
                pass
        loader = data_mod.make_loader(recipe["data"], "train", batch_size=recipe["batch_size"], seed=seed)
        result = fit(model, loader, epochs=epochs, lr=recipe["lr"], optimizer=recipe["optimizer"],
                     momentum=recipe["momentum"], weight_decay=recipe["weight_decay"],
                     schedule=recipe["schedule"], progress=progress)
    model.eval()
    torch_save({"state_dict": model.state_dict(), "recipe": recipe, "key": key,
                "train_loss": result.loss, "train_seconds": result.seconds}, path)
    return model


# --- helpers ----------------------------------------------------------------------------------

def _hash_key(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:16]


def _adapt_hook(hook: Callable[..., Any] | None) -> Callable[[Any, int], Any] | None:
    """Wrap ``hook`` so it can always be called as ``hook(model, step)``."""
    if hook is None:
        return None
    if not callable(hook):
        raise HwawareError(f"fit: after_step must be callable, got {type(hook).__name__}")
    try:
        params = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume (model, step)
        return hook
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params) or len(positional) >= 2:
        return hook
    if len(positional) == 1:
        return lambda model, step: hook(model)
    return lambda model, step: hook()


def _progress(total: int | None, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True)
