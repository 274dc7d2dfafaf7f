"""The mapper's (e, r, t) set placements, built in one NumPy pass (``mapper.placements``), equal the
rule written out as loops over e, r and t (JSSC Sec. IV-A: R x e sets, r stacked vertically, r*t
sets in all, t dividing M), in the same order (the order breaks ties between mappings)."""

from __future__ import annotations

import numpy as np
import pytest

from hwaware.eyeriss.hardware import resolve_hardware
from hwaware.eyeriss.mapper import make_problem, max_sets, placements, set_slots
from hwaware.workload import Layer


def _loops(pb, hw):
    out = []
    for e in range(1, min(pb.E, (hw.pe_rows // pb.R) * hw.pe_cols) + 1):
        sets = max_sets(pb.R, e, hw)
        vert, _ = set_slots(pb.R, e, hw)
        for r in range(1, min(vert, sets, pb.C) + 1):
            for t in range(1, sets // r + 1):
                if pb.M % t == 0:
                    out.append((e, r, t))
    return out


@pytest.mark.parametrize("preset", ["eyeriss_v1", "eyeriss_isca256"])
def test_placements_equal_the_rule_as_loops(preset):
    hw = resolve_hardware(preset)
    rng = np.random.default_rng(0)
    layers = [Layer("fc", N=1, M=1000, C=2048, H=1, W=1, R=1, S=1),
              Layer("stem", N=1, M=64, C=3, H=224, W=224, R=7, S=7, U=2, padding=3),
              Layer("one_channel", N=1, M=7, C=1, H=20, W=20, R=3, S=3),
              Layer("tall", N=1, M=12, C=5, H=30, W=30, R=11, S=11)]
    for i in range(30):
        k = int(rng.choice([1, 3, 5]))
        h = int(rng.integers(k, 120))
        layers.append(Layer(f"r{i}", N=1, M=int(rng.integers(1, 600)), C=int(rng.integers(1, 300)), H=h, W=h,
                            R=k, S=k, padding=int(rng.integers(0, 2)) * (k // 2)))
    total = 0
    for layer in layers:
        pb = make_problem(layer, hw, rlc_if=1.0, rlc_of=1.0, rlc_w=1.0)
        got = list(zip(*(a.tolist() for a in placements(pb, hw))))
        assert got == _loops(pb, hw), layer.name
        total += len(got)
    assert total > 1000  # the shapes exercise the rule (not an empty comparison)
