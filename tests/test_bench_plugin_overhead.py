"""The statistics and the decision rule of bench/plugin_overhead.py, on made-up timings whose
answers are worked out here by hand."""

from __future__ import annotations

import pytest
import torch

from tests._bench import load_bench

bench = load_bench("plugin_overhead")


def copy_with(wall, blocked=None, cpu=None, worker=None):
    c = bench.Copy(model=torch.nn.Linear(1, 1), opt=None)
    c.wall = list(wall)
    c.blocked = list(blocked or [0.0] * len(wall))
    c.cpu = list(cpu or wall)
    c.worker = list(worker or [0.0] * len(wall))
    return c


def test_overhead_parts_add_up_on_a_constant_slowdown():
    # every monitored block: 2% slower training, plus 10 ms in hw.step() per 1 s block, and the
    # worker took 5 ms of CPU per 1 s of baseline CPU -> 2% + 1% + 0.5% = 3.5%
    n = 40
    base = copy_with([1.0] * n)
    arm = copy_with([1.02 + 0.01] * n, blocked=[0.01] * n, worker=[0.005] * n)
    o = bench.overhead(arm, base, cuda=False)
    assert o.steady == pytest.approx((2.0, 2.0, 2.0))
    assert o.blocking == pytest.approx((1.0, 1.0, 1.0))
    assert o.worker_cpu == pytest.approx((0.5, 0.5, 0.5))
    assert o.accounted == pytest.approx((3.5, 3.5, 3.5))
    assert o.wall == pytest.approx((3.0, 3.0, 3.0))  # the wall cannot see the worker's CPU here
    assert bench.verdict(o) == "NOT met"


def test_steady_part_is_a_median_and_ignores_one_slow_block():
    n = 41
    base = copy_with([1.0] * n)
    wall = [1.01] * n
    wall[7] = 3.0  # one block hit by another job's burst
    o = bench.overhead(copy_with(wall), base, cuda=False)
    assert o.steady[0] == pytest.approx(1.0)
    assert o.wall[0] == pytest.approx(100 * (sum(wall) / n - 1))


def test_on_cuda_the_accounted_overhead_is_the_wall():
    n = 30
    base = copy_with([1.0] * n)
    arm = copy_with([1.05] * n, blocked=[0.001] * n)
    o = bench.overhead(arm, base, cuda=True)
    assert o.accounted == pytest.approx(o.wall)
    assert o.accounted[0] == pytest.approx(5.0)


@pytest.mark.parametrize("accounted, wall, expected", [
    ((1.0, 0.5, 2.9), (0.0, -8.0, 9.0), "met"),          # wall wide but not contradicting
    ((1.0, 0.5, 3.1), (0.0, -8.0, 9.0), "inconclusive"),  # accounted bound above the target
    ((4.0, 3.2, 5.0), (0.0, -8.0, 9.0), "NOT met"),       # accounted lower bound above it
    ((1.0, 0.5, 2.0), (6.0, 3.5, 9.0), "NOT met"),        # the wall contradicts the accounting
])
def test_decision_rule(accounted, wall, expected):
    o = bench.Overhead(blocking=(0, 0, 0), worker_cpu=(0, 0, 0), steady=(0, 0, 0), accounted=accounted, wall=wall)
    assert bench.verdict(o).startswith(expected)
