"""Model references: the strings the CLI and the Python API accept wherever a model is expected.

======================================  =====================================================
``models/alexnet.py:alexnet``           call ``alexnet(**kwargs)`` defined in that file
``models/alexnet.py``                   call the callable named like the file stem, else take
                                        the module-level ``model`` (an ``nn.Module``; copied)
``torchvision:resnet18``                ``torchvision.models.get_model(NAME, weights=None)``;
                                        never downloads anything
``timm:resnet18``                       ``timm.create_model(NAME, pretrained=False)`` (timm is
                                        optional; nothing is downloaded)
``runs/pruned.pt``                      a model saved by :func:`hwaware.save_model`
``mypkg.nets:build``                    ``build(**kwargs)`` from an importable module
======================================  =====================================================

A relative ``.py`` path is looked up in the working directory first, then in the hwaware source
tree, so ``models/alexnet.py`` finds the bundled reference networks from anywhere.

Trust model (loading a saved model never runs code from the file)
-----------------------------------------------------------------
A saved ``.pt`` holds tensors and a JSON header only (:mod:`hwaware.checkpoint`) and is read with
``torch.load(weights_only=True)``. Its architecture is rebuilt by code you already have, chosen so:

1. ``model_ref=`` (CLI ``--model-ref REF``) when given: the reference you name (a string, or an
   ``nn.Module`` to copy). The file's recorded arguments are used when it names the same reference.
2. Otherwise the reference recorded in the file, only when it runs no code from outside torchvision,
   timm and hwaware: ``torchvision:NAME``, ``timm:NAME`` (arguments are plain JSON data; pretrained
   weights and checkpoint paths are refused) or a network bundled with hwaware (``models/*.py``,
   looked up in the hwaware source tree only, never in the working directory).
3. A recorded user file (``/home/me/net.py:build``) or importable module is imported only with
   your consent: ``trust_source=True`` (CLI ``--trust-source``). Without it loading stops with a
   one-line error naming the recorded reference.

Python files are imported with :func:`importlib.util.spec_from_file_location` under a unique
module name derived from the absolute path (``_hwaware_user_<stem>_<hash>``).

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

from . import checkpoint
from ._suggest import did_you_mean
from .errors import HwawareError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ModelRef",
    "parse_ref",
    "load_model",
    "load_model_file",
    "build_model",
    "check_model_args",
    "default_input_size",
    "is_workload_file",
    "import_file",
    "source_root",
]

WORKLOAD_SUFFIXES = (".yaml", ".yml", ".json")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
KINDS = ("file", "torchvision", "timm", "checkpoint", "module")
TORCHVISION_INPUT_SIZE = checkpoint.TORCHVISION_INPUT_SIZE
# timm arguments that would load files or download weights; never taken from anywhere
TIMM_REFUSED = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir")
USER_MODULE_PREFIX = "_hwaware_user_"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference.

    ``kind`` is one of ``file`` (``path`` + optional ``attr``), ``torchvision``/``timm`` (``attr``
    is the model name), ``checkpoint`` (``path``) or ``module`` (``module`` + ``attr``).
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
        raise HwawareError("empty model reference; expected path.py[:callable], torchvision:NAME, timm:NAME, "
                           "a saved model .pt, or package.module:callable")
    if text.startswith("torchvision:"):
        name = text.split(":", 1)[1].strip()
        if not name:
            raise HwawareError(f"model '{text}': missing model name after 'torchvision:' "
                               "(e.g. torchvision:resnet18)")
        return ModelRef("torchvision", text, attr=name)
    if text.startswith("timm:"):
        name = text.split(":", 1)[1].strip()
        if not name:
            raise HwawareError(f"model '{text}': missing model name after 'timm:' (e.g. timm:resnet18)")
        return ModelRef("timm", text, attr=name)
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


def load_model(ref: str | os.PathLike[str], *, model_ref: Any = None, trust_source: bool = False,
               **kwargs: Any) -> nn.Module:
    """Build (or load) the ``nn.Module`` a reference names; ``kwargs`` go to the callable.

    >>> load_model("models/alexnet.py:alexnet", num_classes=10)
    >>> load_model("torchvision:resnet18")          # random weights, nothing downloaded
    >>> load_model("runs/pruned.pt")                 # a model saved by hwaware.save_model

    ``model_ref``/``trust_source`` apply to saved models only (see the trust model above).
    """
    r = parse_ref(ref)
    if r.kind == "checkpoint":
        if kwargs:
            raise HwawareError(f"model '{r.text}': a saved model takes no arguments, got "
                               f"{', '.join(sorted(kwargs))}")
        return load_model_file(r.path, model_ref=model_ref, trust_source=trust_source)[0]  # type: ignore[arg-type]
    if model_ref is not None:
        raise HwawareError(f"model '{r.text}': --model-ref/model_ref applies to a saved .pt model only")
    return build_model(r, **kwargs)


def load_model_file(path: str | os.PathLike[str], *, model_ref: Any = None, trust_source: bool = False,
                    map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a file written by :func:`hwaware.save_model`; return ``(model, meta)``.

    The file is read without running code from it (:func:`hwaware.checkpoint.read_saved`); the
    architecture comes from ``model_ref`` or the recorded reference, as the trust model above says.
    """
    from torch import nn  # noqa: F811

    saved = checkpoint.read_saved(path, map_location=map_location)
    where = f"saved model '{saved.path}'"
    rec = saved.model_ref or {}
    if isinstance(model_ref, nn.Module):
        model = copy.deepcopy(model_ref)
    elif model_ref is not None:
        given = parse_ref(model_ref)
        same = rec and _canonical(given) == rec.get("ref")
        model = build_model(given, **((rec.get("kwargs") or {}) if same else {}))
    else:
        if not rec:
            raise HwawareError(f"{where} records no model reference (the model was not built by "
                               "hwaware.load_model); pass the one that builds it: --model-ref REF / "
                               "model_ref=\"path.py:callable\"")
        text = str(rec.get("ref"))
        r = _recorded_ref(text, where) if not trust_source else _parse_recorded(text, where)
        if r is None:
            raise HwawareError(
                f"{where} was built by '{text}' (recorded in the file); hwaware imports code named by a "
                "file only with your consent: pass --trust-source (trust_source=True) to use it, or "
                "--model-ref REF (model_ref=...) to name the code yourself")
        model = build_model(r, **(rec.get("kwargs") or {}))
    return checkpoint.restore(model, saved), dict(saved.meta)


def build_model(ref: str | os.PathLike[str] | ModelRef, **kwargs: Any) -> nn.Module:
    """Build the ``nn.Module`` a code reference names (not a saved model); ``kwargs`` go to the
    callable. The model carries its reference, so :func:`hwaware.save_model` records it."""
    from torch import nn  # noqa: F811 - runtime import; the module stays torch-free on import

    r = ref if isinstance(ref, ModelRef) else parse_ref(ref)
    if r.kind == "checkpoint":
        raise HwawareError(f"model '{r.text}' is a saved model; load it with hwaware.load_model")
    if r.kind in ("torchvision", "timm"):
        built = _torchvision_model(r, kwargs) if r.kind == "torchvision" else _timm_model(r, kwargs)
        return _tag(built, r, kwargs)

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
        return _tag(copy.deepcopy(obj), r, kwargs)  # callers may modify the copy; the module's stays intact
    if not callable(obj):
        raise HwawareError(f"{where}: '{attr}' is a {type(obj).__name__}, not a callable returning "
                           "an nn.Module")
    _check_signature(obj, kwargs, f"{where}: {attr}")
    try:
        model = obj(**kwargs)
    except Exception as exc:  # the user's constructor failed: one line, not a traceback
        raise HwawareError(f"{where}: calling {attr}({_fmt_kwargs(kwargs)}) failed: {_one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise HwawareError(f"{where}: {attr}() returned {type(model).__name__}, expected an nn.Module")
    return _tag(model, r, kwargs)


def check_model_args(ref: str | os.PathLike[str], kwargs: dict[str, Any]) -> None:
    """Fail fast (before a run directory exists) on arguments the model cannot take.

    Code references are built on PyTorch's ``meta`` device (no memory, no weights), so an unknown
    or misspelled keyword is a one-line :class:`HwawareError` naming it; a saved model takes none.
    """
    import torch

    r = parse_ref(ref)
    if r.kind == "checkpoint":
        if kwargs:
            raise HwawareError(f"model '{r.text}': a saved model takes no arguments, got {', '.join(sorted(kwargs))}")
        return
    with torch.device("meta"):
        build_model(r, **kwargs)


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
        elif r.kind == "timm":
            size = _timm_input_size(r.attr)
        else:
            size = checkpoint.read_meta(r.path).get("input_size")  # type: ignore[arg-type]
    else:
        model = ref_or_model
        where = f"model {type(model).__name__}"
        size = checkpoint.input_size_of(model)
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


def _canonical(r: ModelRef) -> str:
    """The reference text recorded in saved files: bundled files relative to the hwaware tree."""
    if r.kind != "file":
        return r.text
    assert r.path is not None
    try:
        text = r.path.relative_to(source_root()).as_posix()
    except ValueError:
        text = str(r.path)
    return f"{text}:{r.attr}" if r.attr else text


def _tag(model: nn.Module, r: ModelRef, kwargs: dict[str, Any]) -> nn.Module:
    model.__dict__[checkpoint.REF_ATTR] = {"ref": _canonical(r), "kwargs": dict(kwargs)}
    return model


def _recorded_ref(text: str, where: str) -> ModelRef | None:
    """A recorded reference that runs no code outside torchvision, timm and hwaware, else None."""
    if text.startswith(("torchvision:", "timm:")):
        return _parse_recorded(text, where)
    head, sep, tail = text.rpartition(":")
    file = head if sep and head.endswith(".py") else text
    if not file.endswith(".py") or Path(file).is_absolute() or ".." in Path(file).parts:
        return None
    path = (source_root() / file).resolve()
    bundled = (source_root() / "models").resolve()
    if not path.is_relative_to(bundled) or not path.is_file():
        return None
    return ModelRef("file", text, path=path, attr=tail.strip() if sep and head.endswith(".py") else "")


def _parse_recorded(text: str, where: str) -> ModelRef:
    try:
        return parse_ref(text)
    except HwawareError as exc:
        raise HwawareError(f"{where}: its recorded model reference cannot be used ({exc}); pass "
                           "--model-ref REF (model_ref=...)") from None


def _timm_model(r: ModelRef, kwargs: dict[str, Any]) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise HwawareError(f"model '{r.text}' needs timm, which is not installed (pip install timm)") from None
    if not timm.is_model(r.attr):
        raise HwawareError(f"model '{r.text}': timm has no model '{r.attr}'"
                           f"{did_you_mean(r.attr, timm.list_models())}; see timm.list_models()")
    refused = sorted(k for k in kwargs if k in TIMM_REFUSED)
    if refused:
        raise HwawareError(f"model '{r.text}': {', '.join(refused)} not accepted (hwaware downloads and "
                           "loads no weights); load them yourself and save the model with hwaware.save_model")
    try:
        return timm.create_model(r.attr, pretrained=False, **kwargs)
    except (TypeError, ValueError) as exc:
        raise HwawareError(f"model '{r.text}' with ({_fmt_kwargs(kwargs)}): {_one_line(exc)}") from exc


def _timm_input_size(name: str) -> tuple[int, ...]:
    try:
        import timm.models

        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is not None and cfg.input_size:
            return tuple(int(v) for v in cfg.input_size)
    except Exception:  # timm missing or no config registered
        pass
    return TORCHVISION_INPUT_SIZE


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


def _check_signature(fn: Any, kwargs: dict[str, Any], where: str) -> None:
    """An unknown keyword is named with a suggestion before the callable runs."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in names:
            raise HwawareError(f"{where}() has no argument '{key}'{did_you_mean(key, names)}; "
                               f"it takes: {', '.join(names) or 'none'}")


def _fmt_kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
