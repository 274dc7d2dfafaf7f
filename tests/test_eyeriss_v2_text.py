"""Eyeriss v2 against the paper's other ratios (JETCAS 2019 Sec. I-C), which pin down the scaled v1 on
AlexNet and split v2's speed into the dense model and the sparsity gain (bench/eyeriss_v2.py prints
the same comparison; docs/dataflows.md explains it).

- "Eyeriss v2 running sparse MobileNet is 225.1x faster and 42.0x more energy efficient than Eyeriss
  v1 running AlexNet": with 1470.6 inferences/s and 2560.3 inferences/J, the scaled v1 runs dense
  AlexNet at 1470.6 / 225.1 = 6.53 inferences/s and 2560.3 / 42.0 = 61.0 inferences/J.
- "exploiting sparsity results in an additional 1.2x and 1.3x improvement in throughput and energy
  efficiency, respectively, for MobileNet".
"""

from __future__ import annotations

import dataclasses

import pytest

from hwaware.eyeriss import resolve_hardware
from hwaware.eyeriss.dataflows import v2_reference as ref
from hwaware.eyeriss.dataflows.eyeriss_v2 import at_8_bits, scaled_v1
from hwaware.workload import Workload

from _bench import load_bench

PUB_V2_FPS, PUB_V2_INF_J = 1470.6, 2560.3
V1_ALEX_FPS, V1_ALEX_INF_J = PUB_V2_FPS / 225.1, PUB_V2_INF_J / 42.0  # 6.53, 61.0
V1_MB_FPS = PUB_V2_FPS / 12.6  # 116.7
SPARSITY_GAIN, SPARSITY_EFF_GAIN = 1.2, 1.3


@pytest.fixture(scope="module")
def bench():
    return load_bench("eyeriss_v2")


@pytest.fixture(scope="module")
def v1s():
    """The scaled v1 in the two readings of its NoC at 8 bits (Table V is an image): the buses keep
    their bits (twice the 8-bit words per cycle; the project's ``scaled_v1``) or their words (the JSSC
    2017 filter bus is "64 b (4 x 16 b)": four words, now of 8 bits)."""
    v1, v2 = resolve_hardware("eyeriss_v1"), resolve_hardware("eyeriss_v2")
    bits = scaled_v1(v1, v2)
    words = dataclasses.replace(bits, filter_bus_words=v1.filter_bus_words, ifmap_bus_words=v1.ifmap_bus_words)
    return bits, words


@pytest.fixture(scope="module")
def alexnet8(bench):
    """A callable giving dense AlexNet at 8 bits (profiling it takes ~20 s on a loaded 2-core machine: slow tests only)."""
    from functools import cache

    return cache(lambda: at_8_bits(bench.dense(bench.alexnet())))


@pytest.mark.slow
def test_scaled_v1_alexnet_energy(bench, v1s, alexnet8):
    """The scaled v1's energy per AlexNet inference against the 61.0 inferences/J the paper's ratios
    imply, a factor 1.5 (the tolerance of the MobileNet checks). Nothing in the model was fitted on it
    (per-access unit and clock rule from the fabricated chip's AlexNet at 16 bits, JSSC 2017). The model
    gives ~60.6 (0.99x)."""
    _, inf_J = bench.chip_numbers(v1s[0], alexnet8())
    assert V1_ALEX_INF_J / 1.5 <= inf_J <= V1_ALEX_INF_J * 1.5


@pytest.mark.parametrize("net", [pytest.param("alexnet", marks=pytest.mark.slow), "mobilenet"])
def test_scaled_v1_throughput_between_the_bus_readings(bench, v1s, alexnet8, net):
    """The published scaled v1 (AlexNet 6.53, MobileNet 0.5-128 116.7 inferences/s) against the model's
    two readings of its NoC at 8 bits: the bits-kept reading (the project's ``scaled_v1``) is an upper
    bound (never slower than the chip: ~11.5 and ~160, 1.76x and 1.37x), and the words-kept reading is
    within the file's factor 1.5 (~7.8 and ~97.6: 1.20x and 0.84x). So the v1 gap is in the NoC width,
    which the paper's Table V (an image) would fix."""
    wl = alexnet8() if net == "alexnet" else at_8_bits(bench.dense(bench.mobilenet(*ref.MOBILENET)))
    pub = V1_ALEX_FPS if net == "alexnet" else V1_MB_FPS
    fast, _ = bench.chip_numbers(v1s[0], wl)
    slow, _ = bench.chip_numbers(v1s[1], wl)
    assert slow < fast
    assert pub <= fast
    assert pub / 1.5 <= slow <= pub * 1.5


def test_sparsity_gain_on_mobilenet(bench):
    """v2 on the sparse MobileNet 0.5-128 against the same with its weights unpruned (the iact zeros
    kept: ReLU zeros exist in the dense model too): faster and more efficient, within a factor 1.5 of
    the published 1.2x and 1.3x. The model gives ~1.38x and ~1.15x."""
    sparse = ref.sparse_mobilenet(bench.mobilenet(*ref.MOBILENET))
    unpruned = Workload(tuple(L.replace(weight_zeros=0.0) for L in sparse.layers))
    f_s, e_s = bench.chip_numbers("eyeriss_v2", sparse)
    f_u, e_u = bench.chip_numbers("eyeriss_v2", unpruned)
    assert 1.0 < f_s / f_u and SPARSITY_GAIN / 1.5 <= f_s / f_u <= SPARSITY_GAIN * 1.5
    assert 1.0 < e_s / e_u and SPARSITY_EFF_GAIN / 1.5 <= e_s / e_u <= SPARSITY_EFF_GAIN * 1.5
