"""Score one workload under every dataflow at equal area: the survey's Fig. 33/34 comparison.

>>> reps = compare(alexnet_isca("conv"))          # {dataflow: ScoreReport} on eyeriss_isca256
>>> ratios(reps)["nlr"]                           # NLR energy / RS energy

The ISCA 2016 setup (survey Sec. V-B.5): 256 PEs, the same storage area, AlexNet at batch 16, the
energy of every level of the hierarchy. The analysis has no data compression and no sparsity, so
:func:`isca_hardware` turns RLC and zero gating off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ...workload import Layer, Workload
from ..hardware import Hardware, resolve_hardware
from ..score import Scorer, ScoreReport
from . import TAXONOMY, with_dataflow

# AlexNet (Krizhevsky 2012) as in JSSC Table III / survey Table II; H is the padded input size.
_CONV = (("CONV1", 96, 3, 227, 11, 4, 1), ("CONV2", 256, 48, 31, 5, 1, 2), ("CONV3", 384, 256, 15, 3, 1, 1),
         ("CONV4", 384, 192, 15, 3, 1, 2), ("CONV5", 256, 192, 15, 3, 1, 2))
_FC = (("FC6", 4096, 256, 6), ("FC7", 4096, 4096, 1), ("FC8", 1000, 4096, 1))


def alexnet_isca(part: str = "conv", batch: int = 16) -> Workload:
    """AlexNet's CONV or FC layers (dense) at ``batch``; FC6 is a 6x6 convolution over 256 channels."""
    if part == "conv":
        layers = [Layer(n, N=batch, M=m, C=c, H=h, W=h, R=r, S=r, U=u, groups=g) for n, m, c, h, r, u, g in _CONV]
    elif part == "fc":
        layers = [Layer(n, N=batch, M=m, C=c, H=k, W=k, R=k, S=k) for n, m, c, k in _FC]
    else:
        raise ValueError(f"part must be 'conv' or 'fc', got {part!r}")
    return Workload(tuple(layers), source=f"AlexNet {part.upper()} layers, batch {batch}")


def isca_hardware(base: Hardware | str = "eyeriss_isca256") -> Hardware:
    """The comparison hardware: no RLC, no zero gating or weight compression (the ISCA analysis)."""
    return dataclasses.replace(resolve_hardware(base), rlc_fmaps=False, compress_weights=False,
                               gate_zero_ifmap=False, gate_zero_weights=False)


def compare(workload: Workload, *, hardware: Hardware | str | None = None,
            dataflows: Sequence[str] = TAXONOMY, objective: str = "energy") -> dict[str, ScoreReport]:
    """``{dataflow: report}`` for ``workload`` on ``hardware`` (default :func:`isca_hardware`)."""
    hw = isca_hardware() if hardware is None else resolve_hardware(hardware)
    return {df: Scorer(with_dataflow(hw, df), objective).score(workload, on_unsupported="raise")
            for df in dataflows}


def ratios(reports: dict[str, ScoreReport], baseline: str = "rs") -> dict[str, float]:
    """Total energy of each dataflow / the baseline's."""
    ref = reports[baseline].total.energy_total
    return {df: rep.total.energy_total / ref for df, rep in reports.items()}
