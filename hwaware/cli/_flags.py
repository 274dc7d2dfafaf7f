"""Every flag two or more verbs share, defined once so the same thing has the same name, metavar
and help in every verb: a config dataclass's options (name, type, default and help from the class
itself), the fixed-point arithmetic, ``--dataflow``, ``--quiet`` (alias ``--no-progress``),
``--force``, ``--model-ref``/``--trust-source``, ``--threads``. Conventions: ``--out`` is a verb's
main output (a file or a directory), ``--json PATH`` an extra JSON report next to what is printed,
``--batch N`` images per inference on the hardware model, ``--batch-size B`` a data loader's batch,
``--hardware NAME|FILE`` a preset or a hardware file."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from .._config import config_defaults, config_docs

__all__ = [
    "HARDWARE_METAVAR",
    "MODEL_ARG_HELP",
    "MODEL_REF_HELP",
    "TRUST_HELP",
    "add_arithmetic_flags",
    "add_config_flags",
    "add_dataflow_flag",
    "add_force_flag",
    "add_model_flags",
    "add_quiet_flag",
    "add_threads_flag",
    "add_verb",
    "config_options",
    "examples",
    "fold_dataflow",
]

_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "float | None": float, "str | None": str}
_METAVARS = {int: "N", float: "X", str: "NAME"}
HARDWARE_METAVAR = "NAME|FILE"
_FIELD_METAVARS = {"hardware": HARDWARE_METAVAR, "max_drop": "POINTS"}  # the same in every verb


def add_verb(subparsers: Any, name: str, help: str, *, details: str = "", epilog: str | None = None) -> Any:
    """A verb's parser: ``help`` is its line in ``hwaware --help``; its own ``--help`` shows
    ``help`` + ``details`` and then ``epilog`` as written (the examples of the verb's module)."""
    return subparsers.add_parser(name, help=help, description=help + "." + (" " + details if details else ""),
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)


def examples(doc: str | None) -> str:
    """``examples:`` and a verb module's docstring after its first two lines."""
    return "examples:\n" + (doc or "").split("\n", 2)[2].rstrip()


def add_config_flags(group: Any, cls: type, names: Iterable[str], *, choices: Mapping[str, Iterable[str]] | None = None,
                     metavars: Mapping[str, str] | None = None) -> None:
    """One ``--field-name`` flag per field of config dataclass ``cls`` in ``names``: type, help and
    the shown default come from ``cls`` (its docstring table and field defaults). A flag not given
    leaves the field at the class's default (the parsed value is ``None``); a ``bool`` field that
    defaults to true becomes ``--no-field-name``."""
    docs, defaults = config_docs(cls), config_defaults(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        f = fields[name]
        flag = "--" + name.replace("_", "-")
        doc = docs.get(name, "").replace("%", "%%")  # argparse formats help with %
        default = defaults.get(name)
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if ann == "bool":
            if default:
                group.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_false", default=None,
                                   help=f"do not: {doc}" if doc else None)
            else:
                group.add_argument(flag, dest=name, action="store_true", default=None, help=doc or None)
            continue
        typ = _TYPES.get(ann, str)
        shown = "none" if default is None else f"{default:g}" if isinstance(default, float) else str(default)
        kw: dict[str, Any] = {"type": typ, "default": None, "help": f"{doc} (default {shown})".lstrip()}
        if choices and name in choices:
            kw["choices"] = tuple(choices[name])
        else:
            kw["metavar"] = (metavars or {}).get(name, _FIELD_METAVARS.get(name, _METAVARS.get(typ, "VALUE")))
        group.add_argument(flag, dest=name, **kw)


def config_options(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The config fields the user gave (flags left out are absent, so the class default applies)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def add_arithmetic_flags(parser: Any) -> None:
    """``--mode``, ``--rounding``, ``--overflow``, defaulting to the chip's arithmetic
    (:data:`hwaware.fixedpoint.format.DEFAULT_ARITHMETIC`, eyeriss/floor/wrap) in every verb."""
    from ..fixedpoint.format import DEFAULT_ARITHMETIC as D
    from ..fixedpoint.format import MODES, OVERFLOWS, ROUNDINGS

    parser.add_argument("--mode", choices=MODES, default=D.mode,
                        help=f"accumulation: eyeriss (16-bit products and adder, as the chip) or wide (default {D.mode})")
    parser.add_argument("--rounding", choices=ROUNDINGS, default=D.rounding,
                        help=f"rounding of shifted products (default {D.rounding})")
    parser.add_argument("--overflow", choices=OVERFLOWS, default=D.overflow,
                        help=f"what a value out of range does (default {D.overflow})")


def add_quiet_flag(parser: Any) -> None:
    """``--quiet`` (no progress bars); ``--no-progress`` is the same flag under its older name."""
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bars")


def add_dataflow_flag(parser: Any) -> None:
    """``--dataflow NAME``: the dataflow on the ``--hardware`` array (see :func:`fold_dataflow`)."""
    from ..eyeriss.dataflows import DATAFLOW_HELP

    parser.add_argument("--dataflow", metavar="NAME", help=DATAFLOW_HELP)


def fold_dataflow(options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``options`` with ``hardware`` = ``HARDWARE:DATAFLOW`` when ``--dataflow`` was given (the
    dataflow is checked now: an unknown one is an error naming the allowed ones)."""
    if getattr(args, "dataflow", None):
        from ..eyeriss.dataflows import hardware_spec

        options["hardware"] = hardware_spec(options.get("hardware"), args.dataflow)
    return options


MODEL_REF_HELP = ("for a saved .pt: the model reference that builds its architecture "
                  "(path.py:callable, torchvision:NAME, timm:NAME); the file's code is never run")
MODEL_ARG_HELP = ("KEY=VALUE: a keyword argument of the model callable (repeatable; VALUE is read as a YAML "
                  "scalar), e.g. timm:resnet18 --model-arg num_classes=10; not for a saved .pt")
TRUST_HELP = ("for a saved .pt: import the model file or module recorded in it (needed only when it is "
              "not torchvision, timm or a network bundled with hwaware); use only for files you trust")


def add_model_flags(p: Any) -> None:
    """``--model-arg`` (how a model reference is built), ``--model-ref`` and ``--trust-source`` (how a
    saved model's architecture is rebuilt)."""
    p.add_argument("--model-arg", dest="model_arg", action="append", default=None, metavar="KEY=VALUE",
                   help=MODEL_ARG_HELP)
    p.add_argument("--model-ref", metavar="REF", help=MODEL_REF_HELP)
    p.add_argument("--trust-source", action="store_true", help=TRUST_HELP)


def add_force_flag(p: Any) -> None:
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty output directory (files of the same name are replaced)")


def add_threads_flag(parser: Any) -> None:
    """``--threads N``: torch threads of this process."""
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's own choice)")
