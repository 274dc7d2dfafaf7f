"""The ``hwaware`` command line.

Each verb lives in its own module in this package (``profile.py``, ``score.py``, ...) and defines
``register(subparsers)``, which adds its parser and sets ``func`` to the function that runs it.
Modules are discovered here, so adding a verb never touches this file.

Flags mean the same in every verb: ``--batch N`` is the number of images per inference the
hardware model scores (or the vectors hold), ``--batch-size B`` a data loader's batch;
``--quiet`` turns progress bars off (``--no-progress`` is the same flag); ``--mode``,
``--rounding``, ``--overflow`` default to the chip's arithmetic (eyeriss/floor/wrap). Flags that set
a config dataclass's field are generated from it (:mod:`._flags`), so defaults and help live there.
A misspelled verb, flag or choice gets the verb's usage and a did-you-mean.

Errors a user can cause (:class:`hwaware.errors.HwawareError`) print one line and exit 2;
Ctrl-C prints one line and exits 130. Set ``HWAWARE_DEBUG=1`` for full tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from .._suggest import did_you_mean
from ..errors import HwawareError


class _Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean on a misspelled verb, flag or choice (usage, one line, exit 2)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        hint = ""
        m = re.search(r"invalid choice: '([^']*)'", message)
        if m:
            choices = re.findall(r"'([^']*)'", message.split("choose from", 1)[-1])
            hint = did_you_mean(m.group(1), choices)
        m = re.match(r"unrecognized arguments: (\S+)", message)
        if m:
            flag = m.group(1).split("=", 1)[0]
            hint = did_you_mean(flag, [s for a in self._actions for s in a.option_strings])
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hwaware",
        description="Hardware-aware model compression: profile, score on Eyeriss, prune, quantize, adapt.",
    )
    parser.add_argument("--version", action="version", version=f"hwaware {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    parser.set_defaults(_verbs=sub.choices)
    return parser


class _ArgumentParserError(HwawareError):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    verbs = vars(args).pop("_verbs")
    if extra:  # reported by the verb's own parser: its usage and a suggestion from its flags
        verbs[args.verb].error(f"unrecognized arguments: {' '.join(extra)}")
    debug = os.environ.get("HWAWARE_DEBUG", "") not in ("", "0")
    try:
        rc = args.func(args)
    except HwawareError as exc:
        if debug:
            raise
        print(f"hwaware {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hwaware {args.verb}: interrupted (completed work and checkpoints are kept)", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
