"""Export a workload to Timeloop's problem format, for cross-checking hwaware against Timeloop.

Each layer becomes ``<dir>/<index>_<name>.yaml`` in the v3 ``problem`` format of the built-in
``CNN-Layer`` shape (dimensions C, M, R, S, N, P, Q; P/Q are the paper's E/F). Timeloop's CNN-Layer
has no groups: a grouped layer is exported per group (M/groups filters, C channels) and the file
says how many times to run it. Padding is folded into the input size, as in the paper's Table III.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .._io import write_text
from ..workload import Layer, Workload, as_workload


def problem(layer: Layer) -> dict[str, Any]:
    """The Timeloop problem of one layer (per group)."""
    return {
        "problem": {
            "shape": {"name": "CNN-Layer"},
            "R": layer.R, "S": layer.S, "P": layer.E, "Q": layer.F,
            "C": layer.C, "M": layer.M // layer.groups, "N": layer.N,
            "Wstride": layer.U_h, "Hstride": layer.U, "Wdilation": 1, "Hdilation": 1,
        }
    }


def export(workload: Workload | str | Path, directory: str | Path) -> list[Path]:
    """Write one problem file per layer; returns the paths."""
    wl = as_workload(workload)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, layer in enumerate(wl.layers):
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in layer.name) or "layer"
        path = out / f"{i:03d}_{safe}.yaml"
        header = (f"# hwaware layer '{layer.name}' ({layer.kind}); padded input {layer.Hp}x{layer.Wp}\n"
                  + (f"# groups: {layer.groups} -- run this per-group problem {layer.groups} times\n"
                     if layer.groups > 1 else ""))
        write_text(path, header + yaml.safe_dump(problem(layer), sort_keys=False))
        paths.append(path)
    return paths
