"""What the verbs that load a model share at run time: loading ``TARGET`` (honouring
``--model-ref``/``--trust-source``) and the input paths an output must not overwrite. The flags
themselves are defined in :mod:`._flags`."""

from __future__ import annotations

import argparse
from typing import Any


def model_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--model-arg KEY=VALUE`` flags as keyword arguments (VALUE read as a YAML scalar)."""
    import yaml

    from ..errors import HwawareError

    kwargs: dict[str, Any] = {}
    for text in getattr(args, "model_arg", None) or ():
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise HwawareError(f"--model-arg '{text}': expected KEY=VALUE with KEY a Python identifier "
                               "(e.g. --model-arg num_classes=10)")
        if key in kwargs:
            raise HwawareError(f"--model-arg: '{key}' given twice")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        if isinstance(parsed, (dict, list)):
            raise HwawareError(f"--model-arg '{text}': VALUE must be a number, true/false, null or a string")
        kwargs[key] = parsed
    return kwargs


def load_target(args: argparse.Namespace, *, labelled_data: str | None = None) -> Any:
    """The model ``args.target`` names, built with ``--model-arg`` and honouring
    ``--model-ref``/``--trust-source``. With ``labelled_data`` (a dataset reference the verb measures
    accuracy on) its classifier must have one output per class of that data
    (:func:`hwaware.data.check_classifier_width`)."""
    from .._checks import check_finite_model
    from ..modelref import load_model

    model = load_model(args.target, model_ref=getattr(args, "model_ref", None),
                       trust_source=bool(getattr(args, "trust_source", False)), **model_args(args))
    check_finite_model(model, f"model '{args.target}'")
    if labelled_data is not None:
        from ..data import check_classifier_width

        check_classifier_width(model, labelled_data, f"model '{args.target}'")
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
