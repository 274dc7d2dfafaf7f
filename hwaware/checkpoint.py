"""Saved hwaware models: tensors plus a JSON header, read without running any code from the file.

File layout (a ``torch.save`` dict of strings and tensors only, written atomically through
:func:`hwaware._io.torch_save` and read with ``torch.load(weights_only=True)``)::

    {"format": "hwaware-model", "format_version": 2,
     "header": '{"meta": {...}, "model_ref": {...} | null, "modules": {...}, "training": false}',
     "state_dict": {name: tensor},
     "checksum": "<sha256 of the header text and every tensor's name, dtype, shape and bytes>"}

- ``meta``: ``input_size``, ``hwaware_version``, ``class``, ``created`` and the caller's keys (JSON).
- ``model_ref``: how to build the architecture again, as a model reference and its keyword
  arguments (``{"ref": "torchvision:resnet18", "kwargs": {...}}``); recorded when the model came
  from :func:`hwaware.load_model`. A file never holds code or a pickled class.
- ``modules``: every submodule's class and the structural attributes pruning changes
  (``out_channels``, ``in_features``, ``groups``, ``num_features`` ...), so a pruned model is rebuilt
  from its reference and then resized to the saved tensors by :func:`restore`.

Which code builds the model is decided by :mod:`hwaware.modelref` (the trust model lives there);
this module only reads and writes bytes and never imports a model file. Format 1 files (a pickled
``nn.Module``) are refused with a message explaining how to convert one
(``python -m hwaware.checkpoint upgrade OLD.pt NEW.pt --model-ref REF``: only its tensors are read).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import json_default, torch_save
from .errors import HwawareError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["save_model", "read_saved", "read_meta", "restore", "input_size_of", "SavedModel",
           "FORMAT", "FORMAT_VERSION", "REF_ATTR"]

FORMAT = "hwaware-model"
FORMAT_VERSION = 2
SUFFIXES = (".pt", ".pth")
# attribute hwaware.load_model sets on the models it builds: {"ref": text, "kwargs": {...}}
REF_ATTR = "_hwaware_model_ref"
# attributes that structured pruning changes; recorded per module and set back on load
STRUCT_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
                "num_parameters", "normalized_shape", "num_groups", "num_channels", "num_embeddings",
                "embedding_dim")
TORCHVISION_INPUT_SIZE = (3, 224, 224)


@dataclass(frozen=True)
class SavedModel:
    """What a saved model file holds, read safely (no code runs)."""

    path: Path
    meta: dict[str, Any]
    model_ref: dict[str, Any] | None
    modules: dict[str, dict[str, Any]]
    training: bool
    state_dict: dict[str, torch.Tensor]


def save_model(model: nn.Module, path: str | os.PathLike[str], *, meta: dict[str, Any] | None = None,
               model_ref: str | None = None, model_args: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (tensors + JSON header) to ``path`` atomically; return the path.

    ``meta`` (JSON values) is stored after these defaults: ``input_size`` (the model's
    ``INPUT_SIZE``; ``None`` if unknown), ``hwaware_version``, ``class`` and ``created``.
    ``model_ref``/``model_args`` record how to rebuild the architecture; by default the reference
    a model built by :func:`hwaware.load_model` carries. Without one, loading needs the reference
    from the user. The path must end in ``.pt``/``.pth`` and may not be a model source file.
    """
    from torch import nn  # noqa: F811 - runtime import

    from . import __version__

    if not isinstance(model, nn.Module):
        raise HwawareError(f"save_model: expected an nn.Module, got {type(model).__name__}")
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise HwawareError(f"save_model: '{path}' must end in .pt or .pth (it is loaded back by suffix)")
    if meta is not None and not isinstance(meta, dict):
        raise HwawareError(f"save_model: meta must be a dict, got {type(meta).__name__}")

    ref = _ref_record(model, model_ref, model_args)
    cls = type(model)
    full_meta: dict[str, Any] = {
        "input_size": None,
        "hwaware_version": __version__,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    size = input_size_of(model)
    full_meta["input_size"] = list(size) if size else None
    full_meta.update(meta or {})
    if full_meta.get("input_size") is not None:
        full_meta["input_size"] = [int(v) for v in full_meta["input_size"]]

    header = {"meta": full_meta, "model_ref": ref, "modules": _module_records(model),
              "training": bool(model.training)}
    try:
        header_text = json.dumps(header, sort_keys=True, default=json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise HwawareError(f"save_model: meta must hold JSON values (numbers, strings, lists, dicts; "
                           f"finite floats): {exc}") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "header": header_text,
               "state_dict": state, "checksum": _checksum(header_text, state)}
    torch_save(payload, path)
    return path


def read_saved(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> SavedModel:
    """Read and verify a saved model file with ``torch.load(weights_only=True)``; no code runs.

    Any unreadable, corrupt (checksum mismatch), foreign or old-format file is a one-line
    :class:`HwawareError` naming the file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise HwawareError(f"saved model '{path}' not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        legacy = _legacy_format(path)
        if legacy:
            raise HwawareError(
                f"'{path}' is an old hwaware saved model (format {legacy}, a pickled module); loading "
                "it would unpickle code, which hwaware never does. Convert it once (only its tensors "
                f"are read): python -m hwaware.checkpoint upgrade {path} NEW.pt --model-ref REF") from None
        if legacy == 0:
            raise HwawareError(f"'{path}' holds objects other than tensors and plain data; hwaware refuses "
                               "to unpickle them (that could run code from the file)") from None
        raise HwawareError(f"'{path}' is not a readable hwaware saved model ({_one_line(exc)})") from None
    _check_payload(path, payload)
    state = payload["state_dict"]
    if _checksum(payload["header"], state) != payload["checksum"]:
        raise HwawareError(f"saved model '{path}' is corrupt: its checksum does not match its contents "
                           "(flipped or truncated bytes); restore it from a copy")
    try:
        header = json.loads(payload["header"])
    except json.JSONDecodeError as exc:
        raise HwawareError(f"saved model '{path}': unreadable header ({exc})") from None
    return SavedModel(path, dict(header.get("meta") or {}), header.get("model_ref"),
                      dict(header.get("modules") or {}), bool(header.get("training")), state)


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The meta dict of a saved model (read safely; nothing is imported)."""
    return read_saved(path).meta


def restore(model: nn.Module, saved: SavedModel) -> nn.Module:
    """Give ``model`` (freshly built from the saved reference) the saved structure and tensors.

    Every submodule must exist with the recorded class; tensors whose shape differs (a pruned
    layer) replace the built ones and the recorded structural attributes are set, so the result
    is the saved network. Returns ``model`` (modified in place).
    """
    from torch import nn  # noqa: F811
    from torch.nn.utils import prune as tprune

    where = f"saved model '{saved.path}'"
    built = dict(model.named_modules())
    for name, rec in saved.modules.items():
        mod = built.get(name)
        label = name or "(the model)"
        if mod is None:
            raise HwawareError(f"{where}: module '{label}' ({rec.get('type')}) is not in the model the "
                               "reference builds; pass the reference the file was saved from")
        got = f"{type(mod).__module__}.{type(mod).__qualname__}"
        # class names compared without the module: a model file's module name depends on its path
        if type(mod).__qualname__ != str(rec.get("type", "")).rpartition(".")[2] and got != rec.get("type"):
            raise HwawareError(f"{where}: module '{label}' is {rec.get('type')} in the file but {got} in "
                               "the model the reference builds; pass the reference the file was saved from")
    extra = sorted(set(built) - set(saved.modules))
    if extra:
        raise HwawareError(f"{where}: the model the reference builds has module(s) not in the file: "
                           f"{', '.join(extra[:5])}; pass the reference the file was saved from")

    # torch.nn.utils.prune re-parametrisation (weight_orig/weight_mask) as saved
    for key in saved.state_dict:
        if key.endswith("_orig"):
            modname, _, pname = key[: -len("_orig")].rpartition(".")
            mod = built.get(modname)
            if mod is not None and f"{key[:-5]}_mask" in saved.state_dict and pname not in {
                n[:-5] for n in mod._parameters if n.endswith("_orig")
            }:
                tprune.identity(mod, pname)

    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(saved.state_dict)), sorted(set(saved.state_dict) - expected)
    if missing or unexpected:
        raise HwawareError(f"{where}: tensors do not match the model the reference builds (missing "
                           f"{', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'})")
    for key, tensor in saved.state_dict.items():
        modname, _, pname = key.rpartition(".")
        mod = built[modname]
        if pname in mod._parameters:
            old = mod._parameters[pname]
            mod._parameters[pname] = nn.Parameter(tensor, requires_grad=old.requires_grad if old is not None else True)
        else:
            mod._buffers[pname] = tensor
    for name, rec in saved.modules.items():
        mod = built[name]
        for attr, value in (rec.get("attrs") or {}).items():
            setattr(mod, attr, tuple(value) if isinstance(value, list) else value)
        for pname in [n[:-5] for n in mod._parameters if n.endswith("_orig")]:
            if f"{pname}_mask" in mod._buffers:  # prune's hook recomputes it before each forward
                object.__setattr__(mod, pname, mod._parameters[f"{pname}_orig"] * mod._buffers[f"{pname}_mask"])
    if saved.meta.get("input_size"):
        model.INPUT_SIZE = tuple(int(v) for v in saved.meta["input_size"])  # type: ignore[assignment]
    model.train(saved.training)
    return model


def input_size_of(model: Any) -> tuple[int, ...] | None:
    """The ``(C, H, W)`` a model object declares: its ``INPUT_SIZE``, its module's, or torchvision's."""
    size = getattr(model, "INPUT_SIZE", None)
    if size is None:
        size = getattr(sys.modules.get(type(model).__module__), "INPUT_SIZE", None)
    if size is None and type(model).__module__.startswith("torchvision.models"):
        size = TORCHVISION_INPUT_SIZE
    if size is None:
        return None
    try:
        return tuple(int(v) for v in size)
    except (TypeError, ValueError):
        return None


# --- helpers ----------------------------------------------------------------------------------

def _ref_record(model: Any, model_ref: str | None, model_args: dict[str, Any] | None) -> dict[str, Any] | None:
    rec = {"ref": str(model_ref), "kwargs": dict(model_args or {})} if model_ref else getattr(model, REF_ATTR, None)
    if rec is None:
        return None
    try:
        json.dumps(rec, allow_nan=False)
    except (TypeError, ValueError):
        return None  # arguments that are not plain data: loading then needs the reference from the user
    return {"ref": str(rec["ref"]), "kwargs": dict(rec.get("kwargs") or {})}


def _module_records(model: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for name, mod in model.named_modules():
        attrs = {}
        for a in STRUCT_ATTRS:
            v = mod.__dict__.get(a)
            if isinstance(v, bool):
                continue
            if isinstance(v, int) or (isinstance(v, tuple) and all(isinstance(i, int) for i in v)):
                attrs[a] = list(v) if isinstance(v, tuple) else v
        out[name] = {"type": f"{type(mod).__module__}.{type(mod).__qualname__}", "attrs": attrs}
    return out


def _checksum(header_text: str, state: dict[str, Any]) -> str:
    import torch

    h = hashlib.sha256(header_text.encode())
    for key in sorted(state):
        t = state[key]
        if not isinstance(t, torch.Tensor):
            h.update(f"{key}={t!r}".encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_payload(path: Path, payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and payload and all(isinstance(k, str) for k in payload):
            hint = (" (a plain state_dict? build the model with hwaware.load_model(ref) and call "
                    "load_state_dict)")
        raise HwawareError(f"'{path}' is a PyTorch file but not a hwaware saved model{hint}; "
                           "write one with hwaware.save_model")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise HwawareError(f"saved model '{path}' has format version {version!r}; this hwaware reads "
                           f"up to {FORMAT_VERSION} (upgrade hwaware)")
    if not isinstance(payload.get("header"), str) or not isinstance(payload.get("state_dict"), dict) \
            or not isinstance(payload.get("checksum"), str):
        raise HwawareError(f"saved model '{path}' is incomplete (missing 'header', 'state_dict' or 'checksum')")


def _legacy_format(path: Path) -> int | None:
    """The ``format_version`` of a hwaware file that ``weights_only`` refused (1: a pickled module),
    read by disassembling the pickle (:mod:`pickletools` never executes it); None if not ours."""
    import pickletools

    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            data = zf.read(names[0]) if names else b""
        ops = [arg for op, arg, _pos in pickletools.genops(data) if "PUT" not in op.name and "GET" not in op.name]
    except Exception:  # not a zip, or a pickle pickletools cannot walk
        return None
    if FORMAT not in ops:
        return None
    for i, arg in enumerate(ops[:-1]):
        if arg == "format_version":
            nxt = next((a for a in ops[i + 1:] if a is not None), None)
            return nxt if isinstance(nxt, int) and nxt < FORMAT_VERSION else 0
    return 0


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    if len(msg) > 300:
        msg = msg[:300] + " ..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class _Inert:
    """What every class or function named in a legacy pickle becomes: nothing is imported or called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


# tensors, their storages and the state_dict container: the only globals a legacy file may resolve
_TENSOR_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                   ("torch._utils", "_rebuild_parameter"), ("torch", "Size")}


class _TensorsOnly:
    """A ``pickle_module`` for :func:`torch.load` whose unpickler resolves tensor globals only."""

    import pickle as _pickle

    class Unpickler(_pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _TENSOR_GLOBALS or (module == "torch" and name.endswith("Storage")):
                return super().find_class(module, name)
            return _Inert

    @classmethod
    def load(cls, f: Any, **kwargs: Any) -> Any:
        """torch's legacy (non-zip) reader unpickles its header (magic number, protocol, system
        info) with ``pickle_module.load``: restricted like everything else."""
        return cls.Unpickler(f, **kwargs).load()


def read_legacy_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors of a format-1 file (its ``state_dict``), read without importing or calling
    anything the file names: the pickled module and any other object become inert placeholders."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TensorsOnly)
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HwawareError(f"'{path}' holds no state_dict of tensors: not a format-1 hwaware model file")
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    return {"state_dict": dict(state), "meta": {k: v for k, v in meta.items() if k not in ("sources", "class")
                                                 and isinstance(v, (str, int, float, bool, type(None)))}}


def _upgrade(argv: list[str] | None = None) -> int:
    """``python -m hwaware.checkpoint upgrade OLD.pt NEW.pt --model-ref REF``: convert a format-1
    file to the safe format. Only its tensors are read (nothing in it is imported or run); the
    architecture is built from ``--model-ref`` and must take the file's state_dict exactly."""
    import argparse
    import importlib

    p = argparse.ArgumentParser(prog="python -m hwaware.checkpoint", description=_upgrade.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("upgrade", help="convert a format-1 file (its tensors only) to the safe format")
    u.add_argument("old")
    u.add_argument("new")
    u.add_argument("--model-ref", required=True, help="the reference that builds the architecture")
    args = p.parse_args(argv)
    if Path(args.old).resolve() == Path(args.new).resolve():
        print("error: NEW must differ from OLD (the old file is kept)", file=sys.stderr)
        return 2
    try:
        legacy = read_legacy_state_dict(args.old)
        # this command is an entry point, above the model references (which import this module)
        model = importlib.import_module("hwaware.modelref").load_model(args.model_ref)
        try:
            missing, unexpected = model.load_state_dict(legacy["state_dict"], strict=False)
        except RuntimeError as exc:  # a tensor of another shape (e.g. a channel-pruned model)
            raise HwawareError(f"'{args.old}' does not fit {args.model_ref}: {str(exc).splitlines()[-1].strip()}") from None
        if missing or unexpected:
            raise HwawareError(f"'{args.old}' does not fit {args.model_ref}: missing {sorted(missing)[:5]}, "
                               f"unexpected {sorted(unexpected)[:5]}")
        save_model(model, args.new, meta=legacy["meta"], model_ref=args.model_ref)
    except HwawareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.new}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_upgrade())
