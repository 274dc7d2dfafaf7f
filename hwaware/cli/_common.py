"""What the verbs that load a model share at run time: loading ``TARGET`` (honouring
``--model-ref``/``--trust-source``) and the input paths an output must not overwrite. The flags
themselves are defined in :mod:`._flags`."""

from __future__ import annotations

import argparse
from typing import Any


def load_target(args: argparse.Namespace) -> Any:
    """The model ``args.target`` names, honouring ``--model-ref``/``--trust-source``."""
    from .._checks import check_finite_model
    from ..modelref import load_model

    model = load_model(args.target, model_ref=getattr(args, "model_ref", None),
                       trust_source=bool(getattr(args, "trust_source", False)))
    check_finite_model(model, f"model '{args.target}'")
    return model


def input_paths(args: argparse.Namespace) -> list[str]:
    """Files and folders a verb reads (model/workload file, --model-ref file, hardware YAML, data
    folder): outputs are checked against them with :func:`hwaware._io.check_output_path`."""
    from ..errors import HwawareError
    from ..modelref import parse_ref

    paths: list[str] = []
    for text in (getattr(args, "target", None), getattr(args, "model_ref", None)):
        if not text:
            continue
        try:
            r = parse_ref(text)
            paths.append(str(r.path) if r.path is not None else text)
        except HwawareError:
            paths.append(text)  # a workload file, or a reference that fails later with its own error
    hw = getattr(args, "hardware", None)
    if isinstance(hw, str) and hw.lower().endswith((".yaml", ".yml", ".json")):
        paths.append(hw)
    data = getattr(args, "data", None)
    if isinstance(data, str) and ":" in data and not data.startswith("builtin:"):
        paths.append(data.split(":", 1)[1].split("?", 1)[0])
    return paths
