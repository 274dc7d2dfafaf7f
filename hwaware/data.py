"""Datasets by reference string, with no downloads ever.

=========================  ===================================================================
``builtin:shapes``         procedural 10-class 3x32x32 images, generated in memory (deterministic)
``cifar10:PATH``           CIFAR-10 from disk (``PATH/cifar-10-batches-py`` or that folder itself)
``imagefolder:PATH``       ``torchvision.datasets.ImageFolder``; ``PATH/train``, ``PATH/val``,
                           ``PATH/test`` where present, else ``PATH`` itself serves every split
=========================  ===================================================================

Options go after ``?`` (``builtin:shapes?n_train=2000&seed=1``, ``imagefolder:/data/x?size=227``)
or as keyword arguments of :func:`load_dataset`; unknown options are errors.

``builtin:shapes`` classes: circle, square, triangle, cross, ring (filled shapes of random size,
rotation and position) and horizontal stripes, vertical stripes, checkerboard, diagonal lines,
dots (textures of random period and phase in a random patch), in a random colour on a random
colour-gradient background with pixel noise and 1-4 clutter rectangles. Labels are exactly
balanced. Each split has its own seed stream, so train/val/test never share an image.
Default sizes: train 8000, val 1000, test 1000 (about 2 s to generate all three).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from torch.utils.data import Dataset

from ._suggest import did_you_mean
from .errors import HwawareError

__all__ = [
    "DatasetRef",
    "parse_data_ref",
    "load_dataset",
    "make_loader",
    "num_classes",
    "check_classifier_width",
    "input_shape",
    "describe",
    "SHAPES_CLASSES",
    "SPLITS",
]

SPLITS = ("train", "val", "test")
SCHEMES = ("builtin:shapes", "cifar10:PATH", "imagefolder:PATH")

SHAPES_CLASSES = (
    "circle", "square", "triangle", "cross", "ring",
    "hstripes", "vstripes", "checkerboard", "diagonal", "dots",
)
SHAPES_SIZE = 32
SHAPES_DEFAULTS = {"n_train": 8000, "n_val": 1000, "n_test": 1000, "seed": 0}
# per-channel mean/std of the generated images (measured over the default train split), so
# that inputs are roughly zero-mean, unit-variance
SHAPES_MEAN = (0.497, 0.505, 0.503)
SHAPES_STD = (0.297, 0.298, 0.297)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_VAL = 5000  # the last 5000 training images form the 'val' split
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_OPTIONS = {
    "builtin:shapes": {"n_train": int, "n_val": int, "n_test": int, "seed": int},
    "cifar10": {"augment": bool},
    "imagefolder": {"size": int, "augment": bool},
}


@dataclass(frozen=True)
class DatasetRef:
    """A parsed dataset reference: ``scheme`` (``builtin:shapes``, ``cifar10``, ``imagefolder``),
    the ``path`` for on-disk data, and the validated ``options``."""

    scheme: str
    text: str
    path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def option(self, key: str) -> Any:
        if key in self.options:
            return self.options[key]
        if self.scheme == "builtin:shapes":
            return SHAPES_DEFAULTS[key]
        return {"size": 224, "augment": False}[key]


def parse_data_ref(ref: str | DatasetRef, **opts: Any) -> DatasetRef:
    """Parse ``scheme[:PATH][?key=value&...]``; keyword ``opts`` override the query options."""
    given: dict[str, Any] = {}
    if isinstance(ref, DatasetRef):
        if not opts:
            return ref
        given, ref = dict(ref.options), ref.text
    text = str(ref).strip()
    body, _, query = text.partition("?")
    options: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    options.update(given)
    options.update(opts)
    if body == "builtin:shapes":
        scheme, path = "builtin:shapes", None
    elif body.startswith(("cifar10:", "imagefolder:")):
        scheme, _, p = body.partition(":")
        if not p:
            raise HwawareError(f"dataset '{text}': missing PATH after '{scheme}:'")
        path = Path(p).expanduser()
    else:
        word = body.split(":", 1)[0] if ":" in body else body
        hint = did_you_mean(body, ["builtin:shapes"]) or did_you_mean(word, ["cifar10", "imagefolder", "builtin"])
        raise HwawareError(f"unknown dataset '{text}'{hint}; expected one of {', '.join(SCHEMES)}")
    allowed = _OPTIONS[scheme]
    clean: dict[str, Any] = {}
    for key, value in options.items():
        if key not in allowed:
            listing = ", ".join(allowed)
            raise HwawareError(f"dataset '{text}': unknown option '{key}'{did_you_mean(key, allowed)}; "
                               f"allowed: {listing}")
        clean[key] = _convert(value, allowed[key], key, text)
    for key in ("n_train", "n_val", "n_test", "size"):
        if key in clean and clean[key] <= 0:
            raise HwawareError(f"dataset '{text}': option '{key}' must be positive, got {clean[key]}")
    return DatasetRef(scheme, text, path, clean)


def load_dataset(ref: str | DatasetRef, split: str = "train", **opts: Any) -> Any:
    """The ``torch.utils.data.Dataset`` of one split; items are ``(float image CxHxW, int label)``.

    Images are normalized per channel (shapes: its own statistics; CIFAR-10: the usual CIFAR
    statistics; imagefolder: ImageNet statistics). ``augment=True`` (cifar10/imagefolder train
    split only) adds random crops and flips; it is off by default so loaders stay deterministic.
    """
    r = parse_data_ref(ref, **opts)
    _check_split(split, r)
    if r.scheme == "builtin:shapes":
        return _shapes_dataset(r, split)
    if r.scheme == "cifar10":
        return _cifar10_dataset(r, split)
    return _imagefolder_dataset(r, split)


def make_loader(
    ref: str | DatasetRef,
    split: str = "train",
    batch_size: int = 64,
    shuffle: bool | None = None,
    seed: int = 0,
    limit: int | None = None,
    drop_last: bool = False,
    **opts: Any,
) -> Any:
    """A deterministic single-process ``DataLoader`` over one split.

    ``shuffle`` defaults to True for ``train`` only; the order depends only on ``seed``.
    ``limit`` keeps at most that many samples: a fixed random subset (drawn with ``seed``,
    kept in dataset order), so a limited imagefolder loader still sees every class.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise HwawareError(f"make_loader: batch_size must be a positive integer, got {batch_size!r}")
    ds = load_dataset(ref, split, **opts)
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise HwawareError(f"make_loader: limit must be a positive integer or None, got {limit!r}")
        if limit < len(ds):
            g = torch.Generator().manual_seed(seed)
            keep = torch.randperm(len(ds), generator=g)[:limit].sort().values.tolist()
            ds = Subset(ds, keep)
    if shuffle is None:
        shuffle = split == "train"
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=0,
                      generator=generator, drop_last=drop_last)


def first_images(batches: Any, n: int) -> Any:
    """The first ``n`` images of an iterable of ``(images, labels)`` batches, as one tensor.

    Takes batches in order and stops as soon as ``n`` images are in hand (a loader over a
    large split is not read to the end). Fewer than ``n`` come back when the batches run out.
    """
    import torch

    got, seen = [], 0
    for x, _ in batches:
        got.append(x)
        seen += int(x.shape[0])
        if seen >= n:
            break
    if not got:
        raise HwawareError("first_images: the loader yielded no batches")
    return torch.cat(got)[:n]


def num_classes(ref: str | DatasetRef, **opts: Any) -> int:
    """Number of classes (imagefolder: the class folders of its train split, or of PATH)."""
    r = parse_data_ref(ref, **opts)
    if r.scheme == "builtin:shapes":
        return len(SHAPES_CLASSES)
    if r.scheme == "cifar10":
        return 10
    return len(_imagefolder_classes(r))


def check_classifier_width(model: Any, ref: str | DatasetRef, where: str) -> None:
    """Raise :class:`HwawareError` unless ``model`` gives one output per class of dataset ``ref``.

    A model built for another label set (``timm:resnet18`` has 1000 outputs; builtin:shapes has 10
    classes) trains and evaluates without an error but its accuracy means nothing, so loops that
    measure accuracy check this first. One zero image of the dataset's input shape goes through
    the model in eval mode without gradients; its mode is restored and nothing else changes. A
    model that cannot run that image, or whose output is not ``(1, K)``, is left to fail (or not)
    where the loop runs it.
    """
    import torch

    try:
        import torch.nn as nn

        if not isinstance(model, nn.Module):
            return
        r = parse_data_ref(ref)
        k = num_classes(r)
        p = next(iter(model.parameters()), None)
        x = torch.zeros(1, *input_shape(r), device=p.device if p is not None else "cpu",
                        dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32)
    except HwawareError:
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception:  # noqa: BLE001 -- the loop reports its own error where it runs the model
        return
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        return
    width = int(out.shape[1])
    if width != k:
        raise HwawareError(
            f"{where} has {width} outputs but data '{r.text}' has {k} classes: build the model for {k} "
            f"classes (CLI: --model-arg num_classes={k}; recipe: model_args: {{num_classes: {k}}}; or "
            "replace its classifier and save it with hwaware.save_model)")


def input_shape(ref: str | DatasetRef, **opts: Any) -> tuple[int, int, int]:
    """``(C, H, W)`` of one input image after the default transforms."""
    r = parse_data_ref(ref, **opts)
    if r.scheme in ("builtin:shapes", "cifar10"):
        return (3, 32, 32)
    s = int(r.option("size"))
    return (3, s, s)


def describe(ref: str | DatasetRef, **opts: Any) -> str:
    """One line: what the reference is, its classes, input shape and split sizes."""
    r = parse_data_ref(ref, **opts)
    c, h, w = input_shape(r)
    if r.scheme == "builtin:shapes":
        sizes = ", ".join(f"{s} {r.option('n_' + s)}" for s in SPLITS)
        return (f"builtin:shapes: procedural {len(SHAPES_CLASSES)}-class {c}x{h}x{w} images "
                f"(seed {r.option('seed')}; {sizes}): {', '.join(SHAPES_CLASSES)}")
    if r.scheme == "cifar10":
        return (f"cifar10 from '{r.path}': 10 classes, {c}x{h}x{w}; train 45000, val {CIFAR10_VAL} "
                "(last training images), test 10000")
    classes = _imagefolder_classes(r)
    found = [s for s in SPLITS if (r.path / s).is_dir()] or ["(flat folder: every split)"]  # type: ignore[operator]
    return (f"imagefolder '{r.path}': {len(classes)} classes, resized/cropped to {c}x{h}x{w}; "
            f"splits: {', '.join(found)}")


# --- builtin:shapes ---------------------------------------------------------------------------

class TensorImageDataset(Dataset):
    """Images and labels held as tensors (``.images`` NCHW float, ``.labels`` int64);
    ``ds[i] -> (image, label)``."""

    def __init__(self, images: Any, labels: Any, classes: tuple[str, ...]) -> None:
        self.images = images
        self.labels = labels
        self.classes = classes

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.images[i], int(self.labels[i])


def _shapes_dataset(r: DatasetRef, split: str) -> TensorImageDataset:
    import torch

    n = int(r.option(f"n_{split}"))
    images, labels = _shapes_arrays(n, int(r.option("seed")), split)
    mean = np.asarray(SHAPES_MEAN, np.float32)[:, None, None]
    std = np.asarray(SHAPES_STD, np.float32)[:, None, None]
    x = torch.from_numpy((images - mean) / std)
    y = torch.from_numpy(labels.astype(np.int64))
    return TensorImageDataset(x, y, SHAPES_CLASSES)


@functools.lru_cache(maxsize=16)
def _shapes_arrays(n: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Generate (cached per process) ``n`` images in [0, 1], float32 ``(n, 3, 32, 32)``, + labels."""
    images, labels = generate_shapes(n, seed=seed, stream=SPLITS.index(split))
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def generate_shapes(n: int, *, seed: int = 0, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``builtin:shapes`` generator: ``n`` images (float32 in [0, 1], NCHW) and int labels.

    ``(seed, stream)`` seed a numpy ``SeedSequence``; every split uses its own stream. Labels are
    ``arange(n) % 10`` shuffled, so the classes are balanced to within one image.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))
    size = SHAPES_SIZE
    k = len(SHAPES_CLASSES)
    labels = rng.permutation(np.arange(n) % k)

    coords = np.arange(size, dtype=np.float32) + 0.5
    yy = coords[None, :, None]  # (1, H, 1)
    xx = coords[None, None, :]  # (1, 1, W)

    def uniform(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, size=n).astype(np.float32)[:, None, None]

    # background: a linear colour gradient between two random colours, plus pixel noise
    c0 = rng.uniform(0.0, 1.0, size=(n, 3)).astype(np.float32)
    c1 = np.clip(c0 + rng.uniform(-0.3, 0.3, size=(n, 3)), 0, 1).astype(np.float32)
    phi = uniform(0, 2 * math.pi)
    ramp = ((xx - size / 2) * np.cos(phi) + (yy - size / 2) * np.sin(phi)) / size + 0.5  # (n,H,W)
    ramp = np.clip(ramp, 0, 1)
    img = c0[:, :, None, None] + (c1 - c0)[:, :, None, None] * ramp[:, None]  # float32, (n,3,H,W)

    # clutter: 1-4 small rectangles in random colours, behind the object
    n_clutter = rng.integers(1, 5, size=n)
    for j in range(4):
        cx, cy = uniform(0, size), uniform(0, size)
        hw, hh = uniform(0.5, 2.5), uniform(0.5, 2.5)
        on = (np.abs(xx - cx) <= hw) & (np.abs(yy - cy) <= hh) & (j < n_clutter)[:, None, None]
        colour = rng.uniform(0, 1, size=(n, 3)).astype(np.float32)[:, :, None, None]
        np.copyto(img, colour, where=on[:, None])

    # object: centre, size, rotation and a colour well away from the background colour
    cx, cy = uniform(10, 22), uniform(10, 22)
    s = uniform(4.0, 9.0)
    theta = uniform(0, 2 * math.pi)
    is_texture = labels >= 5
    # textures keep their orientation class: rotate by at most +-15 degrees
    jitter = uniform(-math.pi / 12, math.pi / 12)
    theta = np.where(is_texture[:, None, None], jitter, theta)
    dx, dy = xx - cx, yy - cy
    cos, sin = np.cos(theta), np.sin(theta)
    u = dx * cos + dy * sin  # (n, H, W): coordinates in the object's frame
    v = -dx * sin + dy * cos
    period = uniform(3.5, 6.5)
    phase = uniform(0, 1)

    mask = np.zeros((n, size, size), dtype=bool)
    for label, name in enumerate(SHAPES_CLASSES):
        idx = np.nonzero(labels == label)[0]
        if idx.size:
            mask[idx] = _shape_mask(name, u[idx], v[idx], s[idx], period[idx], phase[idx], rng)

    shift = rng.uniform(0.2, 0.6, size=(n, 3)).astype(np.float32)
    fg = np.mod(c0 + np.where(rng.random((n, 3)) < 0.5, shift, -shift), 1.0)
    np.copyto(img, fg[:, :, None, None], where=mask[:, None])

    img += rng.normal(0.0, 0.1, size=img.shape).astype(np.float32)
    np.clip(img, 0.0, 1.0, out=img)
    return img, labels.astype(np.int64)


def _shape_mask(name: str, u: np.ndarray, v: np.ndarray, s: np.ndarray, period: np.ndarray,
                phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean masks (m, H, W) of one class in object coordinates ``u, v`` (pixels)."""
    r2 = u * u + v * v
    if name == "circle":
        return r2 <= s * s
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * s
    if name == "triangle":  # apex at v = -s, base at v = 0.7 s, base half-width s
        return (v <= 0.7 * s) & (1.7 * np.abs(u) <= v + s)
    if name == "cross":
        t = 0.3 * s
        return ((np.abs(u) <= t) & (np.abs(v) <= s)) | ((np.abs(v) <= t) & (np.abs(u) <= s))
    if name == "ring":
        return (r2 <= s * s) & (r2 >= (0.55 * s) ** 2)
    # textures fill a square patch of half-side 1.1-1.6 s
    half = s * rng.uniform(1.1, 1.6, size=s.shape).astype(np.float32)
    patch = (np.abs(u) <= half) & (np.abs(v) <= half)
    f = 1.0 / period
    if name == "hstripes":
        on = np.mod(v * f + phase, 1.0) < 0.5
    elif name == "vstripes":
        on = np.mod(u * f + phase, 1.0) < 0.5
    elif name == "checkerboard":
        on = (np.mod(u * f + phase, 1.0) < 0.5) ^ (np.mod(v * f + phase, 1.0) < 0.5)
    elif name == "diagonal":  # either diagonal direction
        sign = np.where(rng.random(s.shape) < 0.5, 1.0, -1.0).astype(np.float32)
        on = np.mod((u + sign * v) * f / math.sqrt(2) + phase, 1.0) < 0.5
    elif name == "dots":
        du = np.mod(u * f + phase, 1.0) - 0.5
        dv = np.mod(v * f + phase, 1.0) - 0.5
        on = du * du + dv * dv <= 0.3 ** 2
    else:  # pragma: no cover - SHAPES_CLASSES is fixed
        raise ValueError(name)
    return patch & on


# --- cifar10 / imagefolder ----------------------------------------------------------------------

def _cifar10_dataset(r: DatasetRef, split: str) -> Any:
    path = r.path
    assert path is not None
    root = path.parent if path.name == "cifar-10-batches-py" else path
    if not (root / "cifar-10-batches-py").is_dir():
        raise HwawareError(f"cifar10: '{path}' has no 'cifar-10-batches-py' folder; expected the "
                           "extracted python version of CIFAR-10 (data_batch_1..5, test_batch); "
                           "hwaware never downloads")
    from torch.utils.data import Subset
    from torchvision import datasets, transforms

    steps: list[Any] = []
    if split == "train" and r.option("augment"):
        steps += [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    try:
        ds = datasets.CIFAR10(str(root), train=split != "test", download=False,
                              transform=transforms.Compose(steps))
    except (RuntimeError, OSError, ValueError) as exc:
        raise HwawareError(f"cifar10: cannot read '{root / 'cifar-10-batches-py'}' "
                           f"({' '.join(str(exc).split())}); expected the extracted python version "
                           "of CIFAR-10") from exc
    if split == "test":
        return ds
    n = len(ds)
    cut = max(0, n - CIFAR10_VAL)
    idx = range(cut) if split == "train" else range(cut, n)
    return Subset(ds, list(idx)) if len(idx) != n else ds


def _imagefolder_root(r: DatasetRef, split: str) -> Path:
    path = r.path
    assert path is not None
    if not path.is_dir():
        raise HwawareError(f"imagefolder: '{path}' is not a directory; expected PATH/<class>/<image> "
                           "or PATH/{train,val,test}/<class>/<image>")
    present = [s for s in SPLITS if (path / s).is_dir()]
    if not present:
        return path  # a flat folder of class folders serves every split
    if split not in present:
        raise HwawareError(f"imagefolder: '{path}' has no '{split}' split folder (found: "
                           f"{', '.join(present)})")
    return path / split


def _imagefolder_classes(r: DatasetRef) -> list[str]:
    path = r.path
    assert path is not None
    present = [s for s in SPLITS if path.is_dir() and (path / s).is_dir()]
    root = _imagefolder_root(r, present[0]) if present else _imagefolder_root(r, "train")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise HwawareError(f"imagefolder: '{root}' has no class folders; expected "
                           f"{root}/<class>/<image>")
    return classes


def _imagefolder_dataset(r: DatasetRef, split: str) -> Any:
    from torchvision import transforms

    root = _imagefolder_root(r, split)
    classes = _imagefolder_classes(r)  # one class list for all splits, from the first split
    size = int(r.option("size"))
    if split == "train" and r.option("augment"):
        steps = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(int(round(size * 256 / 224))), transforms.CenterCrop(size)]
    steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]

    try:
        ds = _fixed_class_folder()(str(root), classes, transform=transforms.Compose(steps))
    except (FileNotFoundError, RuntimeError) as exc:
        raise HwawareError(f"imagefolder: '{root}': {' '.join(str(exc).split())}") from exc
    if len(ds) == 0:
        raise HwawareError(f"imagefolder: '{root}' holds no images in its class folders "
                           f"({', '.join(classes)})")
    return ds


@functools.lru_cache(maxsize=1)
def _fixed_class_folder() -> type:
    """``ImageFolder`` with a given class list, so every split maps class names to the same ids
    (a split missing a class folder keeps the others' labels); imported lazily (torchvision)."""
    from torchvision import datasets

    class FixedClassImageFolder(datasets.ImageFolder):
        def __init__(self, root: str, classes: list[str], **kwargs: Any) -> None:
            self._fixed_classes = list(classes)
            super().__init__(root, allow_empty=True, **kwargs)

        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            return self._fixed_classes, {c: i for i, c in enumerate(self._fixed_classes)}

    return FixedClassImageFolder


# --- helpers ----------------------------------------------------------------------------------

def _check_split(split: str, r: DatasetRef) -> None:
    if split not in SPLITS:
        raise HwawareError(f"dataset '{r.text}': unknown split '{split}'{did_you_mean(split, SPLITS)}; "
                           f"allowed: {', '.join(SPLITS)}")


def _convert(value: Any, kind: type, key: str, text: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on", ""):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise HwawareError(f"dataset '{text}': option '{key}' must be true/false, got {value!r}")
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise HwawareError(f"dataset '{text}': option '{key}' must be an integer, got {value!r}") from None
