"""The ``hwaware`` command line.

Each verb lives in its own module in this package (``profile.py``, ``score.py``, ...) and defines
``register(subparsers)``, which adds its parser and sets ``func`` to the function that runs it.
Modules are discovered here, so adding a verb never touches this file.

Errors a user can cause (:class:`hwaware.errors.HwawareError`) print one line and exit 2;
Ctrl-C prints one line and exits 130. Set ``HWAWARE_DEBUG=1`` for full tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import HwawareError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    return parser


class _ArgumentParserError(HwawareError):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
