"""Model references: the strings the CLI and the Python API accept wherever a model is expected.

======================================  =====================================================
``models/alexnet.py:alexnet``           call ``alexnet(**kwargs)`` defined in that file
``models/alexnet.py``                   call the callable named like the file stem, else take
                                        the module-level ``model`` (an ``nn.Module``; copied)
``torchvision:resnet18``                ``torchvision.models.get_model(NAME, weights=None)``;
                                        never downloads anything
``runs/pruned.pt``                      a model saved by :func:`hwaware.checkpoint.save_model`
``mypkg.nets:build``                    ``build(**kwargs)`` from an importable module
======================================  =====================================================

A relative ``.py`` path is looked up in the working directory first, then in the hwaware source
tree, so ``models/alexnet.py`` finds the bundled reference networks from anywhere.

Python files are imported with :func:`importlib.util.spec_from_file_location` under a unique
module name derived from the absolute path (``_hwaware_user_<stem>_<hash>``) and registered in
``sys.modules``, so the classes they define can be pickled; :mod:`hwaware.checkpoint` records
these names and re-imports the files when a saved model is loaded in a fresh process.

Input size: a model file sets ``INPUT_SIZE = (C, H, W)`` at module level; a model object may carry
its own ``INPUT_SIZE`` attribute (e.g. MobileNet built for 128x128), which takes precedence.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._suggest import did_you_mean
from .errors import HwawareError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ModelRef",
    "parse_ref",
    "load_model",
    "default_input_size",
    "is_workload_file",
    "import_file",
    "source_root",
]

WORKLOAD_SUFFIXES = (".yaml", ".yml", ".json")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
KINDS = ("file", "torchvision", "checkpoint", "module")
TORCHVISION_INPUT_SIZE = (3, 224, 224)
USER_MODULE_PREFIX = "_hwaware_user_"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference.

    ``kind`` is one of ``file`` (``path`` + optional ``attr``), ``torchvision`` (``attr`` is the
    model name), ``checkpoint`` (``path``) or ``module`` (``module`` + ``attr``).
    """

    kind: str
    text: str
    path: Path | None = None
    module: str = ""
    attr: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ModelRef.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


def source_root() -> Path:
    """The directory holding the ``hwaware`` package (the repository root in a checkout)."""
    return Path(__file__).resolve().parent.parent


def is_workload_file(ref: str | os.PathLike[str]) -> bool:
    """True when ``ref`` names a workload file (``.yaml``, ``.yml`` or ``.json``), not a model."""
    return Path(str(ref)).suffix.lower() in WORKLOAD_SUFFIXES


def parse_ref(ref: str | os.PathLike[str]) -> ModelRef:
    """Classify a model reference string (no file is imported here; files must exist)."""
    text = str(ref).strip()
    if not text:
        raise HwawareError("empty model reference; expected path.py[:callable], torchvision:NAME, "
                           "a saved model .pt, or package.module:callable")
    if text.startswith("torchvision:"):
        name = text.split(":", 1)[1].strip()
        if not name:
            raise HwawareError(f"model '{text}': missing model name after 'torchvision:' "
                               "(e.g. torchvision:resnet18)")
        return ModelRef("torchvision", text, attr=name)
    if is_workload_file(text):
        raise HwawareError(f"'{text}' is a workload file, not a model; pass it where a workload "
                           "is accepted (e.g. hwaware score)")

    # path.py[:callable] -- split at the last ':' after '.py' so Windows drive letters survive
    head, sep, tail = text.rpartition(":")
    if sep and head.endswith(".py"):
        return ModelRef("file", text, path=_find_file(head, text), attr=tail.strip())
    if text.endswith(".py"):
        return ModelRef("file", text, path=_find_file(text, text))
    if Path(text).suffix.lower() in CHECKPOINT_SUFFIXES:
        return ModelRef("checkpoint", text, path=_find_file(text, text))
    if sep and head and tail and "/" not in head and os.sep not in head:
        return ModelRef("module", text, module=head, attr=tail)
    raise HwawareError(
        f"model '{text}': not a model reference; expected path.py[:callable], torchvision:NAME, "
        "a saved model .pt/.pth, or package.module:callable"
    )


def load_model(ref: str | os.PathLike[str], **kwargs: Any) -> nn.Module:
    """Build (or load) the ``nn.Module`` a reference names; ``kwargs`` go to the callable.

    >>> load_model("models/alexnet.py:alexnet", num_classes=10)
    >>> load_model("torchvision:resnet18")          # random weights, nothing downloaded
    >>> load_model("runs/pruned.pt")                 # a model saved by hwaware.checkpoint
    """
    from torch import nn  # noqa: F811 - runtime import; the module stays torch-free on import

    r = parse_ref(ref)
    if r.kind == "checkpoint":
        if kwargs:
            raise HwawareError(f"model '{r.text}': a saved model takes no arguments, got "
                               f"{', '.join(sorted(kwargs))}")
        from .checkpoint import load_model_file

        model, _meta = load_model_file(r.path)  # type: ignore[arg-type]
        return model
    if r.kind == "torchvision":
        return _torchvision_model(r, kwargs)

    if r.kind == "file":
        module = import_file(r.path)  # type: ignore[arg-type]
        where = f"model file '{r.path}'"
        attr = r.attr or r.path.stem  # type: ignore[union-attr]
        if not r.attr and not callable(getattr(module, attr, None)) and isinstance(
            getattr(module, "model", None), nn.Module
        ):
            attr = "model"
    else:
        module = _import_module(r)
        where = f"module '{r.module}'"
        attr = r.attr

    obj = getattr(module, attr, None)
    if obj is None:
        found = _callables(module)
        listing = ", ".join(found) if found else "none"
        raise HwawareError(
            f"{where}: no callable '{attr}'{did_you_mean(attr, found)}; callables found: {listing}"
            + ("" if r.attr else "; name one as path.py:callable or define a module-level 'model'")
        )
    if isinstance(obj, nn.Module):
        if kwargs:
            raise HwawareError(f"{where}: '{attr}' is a model instance and takes no arguments, got "
                               f"{', '.join(sorted(kwargs))}")
        return copy.deepcopy(obj)  # callers may modify the model; the module's instance stays intact
    if not callable(obj):
        raise HwawareError(f"{where}: '{attr}' is a {type(obj).__name__}, not a callable returning "
                           "an nn.Module")
    try:
        model = obj(**kwargs)
    except Exception as exc:  # the user's constructor failed: one line, not a traceback
        raise HwawareError(f"{where}: calling {attr}({_fmt_kwargs(kwargs)}) failed: {_one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise HwawareError(f"{where}: {attr}() returned {type(model).__name__}, expected an nn.Module")
    return model


def default_input_size(ref_or_model: Any, default: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The ``(C, H, W)`` a model expects, per sample (no batch dimension).

    Looked up, in order: the model's own ``INPUT_SIZE`` attribute; the ``INPUT_SIZE`` of the module
    defining its class (or of the referenced file); 3x224x224 for torchvision models (the weights'
    crop size where torchvision records one, e.g. 299 for inception_v3); a saved model's meta.
    Raises :class:`HwawareError` when none applies, unless ``default`` is given.
    """
    size: Any = None
    where = ""
    if isinstance(ref_or_model, (str, os.PathLike)):
        r = parse_ref(ref_or_model)
        where = f"model '{r.text}'"
        if r.kind == "file":
            size = getattr(import_file(r.path), "INPUT_SIZE", None)  # type: ignore[arg-type]
        elif r.kind == "module":
            size = getattr(_import_module(r), "INPUT_SIZE", None)
        elif r.kind == "torchvision":
            size = _torchvision_input_size(r.attr)
        else:
            from .checkpoint import read_meta

            size = read_meta(r.path).get("input_size")  # type: ignore[arg-type]
    else:
        model = ref_or_model
        where = f"model {type(model).__name__}"
        size = getattr(model, "INPUT_SIZE", None)
        if size is None:
            mod = sys.modules.get(type(model).__module__)
            size = getattr(mod, "INPUT_SIZE", None)
        if size is None and type(model).__module__.startswith("torchvision.models"):
            size = TORCHVISION_INPUT_SIZE
    if size is None:
        if default is not None:
            return tuple(default)
        raise HwawareError(f"{where}: unknown input size; set INPUT_SIZE = (C, H, W) in the model "
                           "file or pass the input size explicitly")
    return _check_size(size, where)


def import_file(path: str | os.PathLike[str]) -> types.ModuleType:
    """Import a Python file under a unique, stable module name (re-imported if it changed).

    The file's directory is on ``sys.path`` while it executes, so it can import its neighbours.
    Failures become a one-line :class:`HwawareError` naming the file and the exception.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise HwawareError(f"model file '{path}' not found")
    name = module_name_for(path)
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__hwaware_stamp__", None) == stamp:
        return cached
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for non-.py files
        raise HwawareError(f"model file '{path}': cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    module.__hwaware_stamp__ = stamp  # type: ignore[attr-defined]
    sys.modules[name] = module
    parent = str(path.parent)
    added = parent not in sys.path
    if added:
        sys.path.insert(0, parent)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a file may call sys.exit(); Ctrl-C still propagates
        sys.modules.pop(name, None)
        raise HwawareError(f"model file '{path}' failed to import: {_one_line(exc)}") from exc
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(parent)
    return module


def module_name_for(path: str | os.PathLike[str]) -> str:
    """The ``sys.modules`` name a model file is imported under (stable for a given path)."""
    path = Path(path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = "".join(ch if ch.isalnum() else "_" for ch in path.stem)
    return f"{USER_MODULE_PREFIX}{stem}_{digest}"


# --- helpers ----------------------------------------------------------------------------------

def _find_file(text: str, ref: str) -> Path:
    p = Path(text).expanduser()
    if p.is_file():
        return p.resolve()
    if not p.is_absolute():
        bundled = source_root() / p
        if bundled.is_file():
            return bundled.resolve()
    kind = "model file" if p.suffix == ".py" else "saved model"
    raise HwawareError(f"{kind} '{text}' not found (model reference '{ref}')")


def _import_module(r: ModelRef) -> types.ModuleType:
    try:
        return importlib.import_module(r.module)
    except Exception as exc:
        raise HwawareError(f"model '{r.text}': module '{r.module}' failed to import: {_one_line(exc)}") from exc


def _callables(module: types.ModuleType) -> list[str]:
    """Public functions/classes defined in ``module`` itself (not imported into it)."""
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not callable(obj):
            continue
        if getattr(obj, "__module__", None) == module.__name__:
            out.append(name)
    return sorted(out)


def _torchvision_model(r: ModelRef, kwargs: dict[str, Any]) -> nn.Module:
    import torchvision

    names = torchvision.models.list_models()
    if r.attr not in names:
        raise HwawareError(f"model '{r.text}': torchvision has no model '{r.attr}'"
                           f"{did_you_mean(r.attr, names)}; see torchvision.models.list_models()")
    if "weights" in kwargs and kwargs["weights"] is not None:
        raise HwawareError(f"model '{r.text}': pretrained weights are not downloaded by hwaware; "
                           "load them yourself and save the model with hwaware.checkpoint.save_model")
    kwargs = {k: v for k, v in kwargs.items() if k != "weights"}
    try:
        return torchvision.models.get_model(r.attr, weights=None, **kwargs)
    except (TypeError, ValueError) as exc:
        raise HwawareError(f"model '{r.text}' with ({_fmt_kwargs(kwargs)}): {_one_line(exc)}") from exc


def _torchvision_input_size(name: str) -> tuple[int, int, int]:
    """3x224x224, or the crop size torchvision records for the model's default weights."""
    try:
        import torchvision

        weights = torchvision.models.get_model_weights(name).DEFAULT
        crop = weights.transforms.keywords.get("crop_size")  # a functools.partial
        if isinstance(crop, int):
            return (3, crop, crop)
    except Exception:  # no weights registered, or a transforms object without crop_size
        pass
    return TORCHVISION_INPUT_SIZE


def _check_size(size: Any, where: str) -> tuple[int, ...]:
    try:
        t = tuple(int(v) for v in size)
    except (TypeError, ValueError):
        raise HwawareError(f"{where}: INPUT_SIZE must be a tuple of positive ints like (3, 224, 224), "
                           f"got {size!r}") from None
    if not t or any(v <= 0 for v in t):
        raise HwawareError(f"{where}: INPUT_SIZE must be a tuple of positive ints like (3, 224, 224), "
                           f"got {size!r}")
    return t


def _fmt_kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
