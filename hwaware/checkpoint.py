"""Saved hwaware models: one ``.pt`` file holding the whole module, its state_dict and meta.

File layout (a ``torch.save`` dict, written atomically through :func:`hwaware._io.torch_save`)::

    {"format": "hwaware-model", "format_version": 1,
     "meta": {"input_size": [3, 32, 32], "hwaware_version": "0.1.0", "class": "pkg.Class",
              "sources": {module name: source file}, "created": ISO time, ...user meta},
     "state_dict": {...},        # readable with torch.load(weights_only=True) style tools
     "model": <the pickled nn.Module>}

The pickled module stores references to its classes, not their code. Classes defined in model
files imported by :mod:`hwaware.modelref` live in generated module names; ``meta["sources"]``
maps those names to their files, and :func:`load_model_file` re-imports them in a fresh process
(so the source file must still exist). Loading unpickles arbitrary objects: load only files you
trust, as with any ``torch.load(weights_only=False)``.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import io
import os
import pickle
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import torch_save
from .errors import HwawareError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["save_model", "load_model_file", "read_meta", "FORMAT", "FORMAT_VERSION"]

FORMAT = "hwaware-model"
FORMAT_VERSION = 1
SUFFIXES = (".pt", ".pth")


def save_model(model: nn.Module, path: str | os.PathLike[str], *, meta: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (whole module + state_dict + meta) to ``path`` atomically; return the path.

    ``meta`` is stored as given, after these defaults: ``input_size`` (from the model or its file,
    see :func:`hwaware.modelref.default_input_size`; ``None`` if unknown), ``hwaware_version``,
    ``class``, ``sources`` and ``created``. The path must end in ``.pt``/``.pth`` and may not be
    one of the model's own source files.
    """
    from torch import nn  # noqa: F811 - runtime import

    from . import __version__
    from .modelref import default_input_size

    if not isinstance(model, nn.Module):
        raise HwawareError(f"save_model: expected an nn.Module, got {type(model).__name__}")
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise HwawareError(f"save_model: '{path}' must end in .pt or .pth (it is loaded back by suffix)")
    target = path.resolve()
    for src in _class_files(model):
        if target == src:
            raise HwawareError(f"save_model: refusing to overwrite '{path}', the source file of the model")
    if meta is not None and not isinstance(meta, dict):
        raise HwawareError(f"save_model: meta must be a dict, got {type(meta).__name__}")

    sources = _user_sources(model)
    for src in sources.values():
        if target == Path(src):
            raise HwawareError(f"save_model: refusing to overwrite '{path}', the source file of the model")
    cls = type(model)
    full_meta: dict[str, Any] = {
        "input_size": None,
        "hwaware_version": __version__,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "sources": sources,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    size = default_input_size(model, default=())
    full_meta["input_size"] = list(size) if size else None
    full_meta.update(meta or {})
    if full_meta.get("input_size") is not None:
        full_meta["input_size"] = [int(v) for v in full_meta["input_size"]]

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": full_meta,
        "state_dict": model.state_dict(),
        "model": model,
    }
    try:
        torch_save(payload, path)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise HwawareError(
            f"save_model: the model cannot be pickled ({_one_line(exc)}); remove lambdas, local "
            "classes and hooks holding closures, or save its state_dict instead"
        ) from exc
    return path


def load_model_file(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a file written by :func:`save_model`; return ``(model, meta)``.

    Model files the module was defined in are re-imported first when needed (fresh process).
    Tensors go to ``map_location`` (CPU by default). Any unreadable, corrupt or foreign file is a
    one-line :class:`HwawareError`.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise HwawareError(f"saved model '{path}' not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except ModuleNotFoundError as exc:
        # classes from a model file imported under a generated name: find the file in meta
        meta = read_meta(path)
        _import_sources(path, meta)
        try:
            payload = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as exc2:
            raise HwawareError(f"saved model '{path}' could not be loaded: {_one_line(exc2)}") from exc
    except Exception as exc:
        raise HwawareError(f"'{path}' is not a readable hwaware saved model ({_one_line(exc)})") from exc
    _check_payload(path, payload)
    return payload["model"], dict(payload["meta"])


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The meta dict of a saved model, without importing the model's source files."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise HwawareError(f"saved model '{path}' not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_STUB_PICKLE)
    except Exception as exc:
        raise HwawareError(f"'{path}' is not a readable hwaware saved model ({_one_line(exc)})") from exc
    _check_payload(path, payload)
    return dict(payload["meta"])


# --- helpers ----------------------------------------------------------------------------------

def _check_payload(path: Path, payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and payload and all(isinstance(k, str) for k in payload):
            hint = (" (a plain state_dict? build the model with hwaware.load_model(ref) and call "
                    "load_state_dict)")
        raise HwawareError(f"'{path}' is a PyTorch file but not a hwaware saved model{hint}; "
                           "write one with hwaware.checkpoint.save_model")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise HwawareError(f"saved model '{path}' has format version {version!r}; this hwaware reads "
                           f"up to {FORMAT_VERSION} (upgrade hwaware)")
    if not isinstance(payload.get("meta"), dict) or "model" not in payload:
        raise HwawareError(f"saved model '{path}' is incomplete (missing 'meta' or 'model')")


def _import_sources(path: Path, meta: dict[str, Any]) -> None:
    from .modelref import import_file

    for name, src in (meta.get("sources") or {}).items():
        if name in sys.modules:
            continue
        if not Path(src).is_file():
            raise HwawareError(f"saved model '{path}' needs its source file '{src}' (module {name}), "
                               "which is missing; restore the file at that path")
        # import_file derives the same generated name from the same path; setdefault covers a
        # file that was saved under another name (e.g. by an older hwaware)
        sys.modules.setdefault(name, import_file(src))


def _class_files(model: Any) -> set[Path]:
    files: set[Path] = set()
    for m in model.modules():
        try:
            f = inspect.getsourcefile(type(m))
        except (TypeError, OSError):
            continue
        if f:
            files.add(Path(f).resolve())
    return files


def _user_sources(model: Any) -> dict[str, str]:
    """Generated-name modules (model files) whose classes/functions the pickle will reference."""
    import torch

    from .modelref import USER_MODULE_PREFIX

    found: dict[str, str] = {}

    class _Recorder(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:  # skip tensor data: only globals matter here
            if isinstance(obj, (torch.Tensor, torch.UntypedStorage, torch.TypedStorage)):
                return id(obj)
            return None

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, (type, types.FunctionType)):
                mod = getattr(obj, "__module__", "") or ""
                if mod.startswith(USER_MODULE_PREFIX):
                    file = getattr(sys.modules.get(mod), "__file__", None)
                    if file:
                        found[mod] = str(Path(file).resolve())
            return NotImplemented

    try:
        _Recorder(_NullWriter(), protocol=pickle.HIGHEST_PROTOCOL).dump(model)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise HwawareError(
            f"save_model: the model cannot be pickled ({_one_line(exc)}); remove lambdas, local "
            "classes and hooks holding closures, or save its state_dict instead"
        ) from exc
    return found


class _NullWriter(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return len(b)


class _Stub:
    """Stands in for a class whose module cannot be imported (only while reading meta)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _StubUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Stub,), {"__module__": module})


_STUB_PICKLE = types.SimpleNamespace(Unpickler=_StubUnpickler, load=pickle.load, __name__="pickle")


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
