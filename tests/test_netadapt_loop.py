"""The NetAdapt loop: targets, proposals, picking, the family, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hwaware.errors import HwawareError
from hwaware.netadapt import NetAdapt, NetAdaptConfig, Proposal, netadapt
from hwaware.netadapt.loop import candidate_units, choose_units, derive_seed, pick_proposal, step_targets
from hwaware.netadapt.report import pareto_front

DATA = "builtin:shapes?n_train=400&n_val=20&n_test=100"
FAST = dict(holdout=64, train_size=192, short_term_steps=2, batch_size=32, profile_images=2,
            report=("macs", "weights"))


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def hand_macs(ch: dict[str, int]) -> int:
    """MACs per image of tiny() with the given channels (counted by hand, not by the profiler)."""
    c1, c2, c3 = ch["0"], ch["4"], ch["8"]
    return 9 * 32 * 32 * 3 * c1 + 9 * 16 * 16 * c1 * c2 + 9 * 8 * 8 * c2 * c3 + c3 * 10


# --- pure pieces ---------------------------------------------------------------------------------

def test_step_targets() -> None:
    initial = {"latency": 10.0, "energy": 100.0}
    limits = {"latency": 5.0, "energy": 60.0}
    # latency: 8 - 0.5*10 = 3 is below its budget 5 -> 5; energy already within budget -> stay <= 55
    got = step_targets({"latency": 8.0, "energy": 55.0}, initial, limits, 0.5)
    assert got == {"latency": 5.0, "energy": 55.0}
    got = step_targets({"latency": 9.0, "energy": 90.0}, initial, limits, 0.025)
    assert got == pytest.approx({"latency": 9.0 - 0.25, "energy": 90.0 - 2.5}, rel=1e-15)


def test_candidate_units() -> None:
    assert candidate_units(32, 8, 1) == [24, 16, 8, 1]
    assert candidate_units(20, 8, 1) == [12, 4, 1]
    assert candidate_units(20, 8, 8) == [12, 8]
    assert candidate_units(8, 8, 8) == []
    assert candidate_units(3, 1, 1) == [2, 1]


def test_choose_units_takes_the_fewest_removals_and_halves_the_step() -> None:
    initial, limits = {"macs": 100.0}, {"macs": 50.0}
    current = {"macs": 80.0}
    scans = {0: [(24, {"macs": 79.0}), (16, {"macs": 77.5}), (8, {"macs": 60.0})],
             1: [(12, {"macs": 78.9}), (4, {"macs": 78.5})]}
    # step 0.025: target 77.5 -> block 0 keeps 16 units; block 1 cannot reach it
    assert choose_units(scans, current, initial, limits, 0.025) == (0.025, {"macs": 77.5}, {0: 16})
    # step 0.1: target 70 -> only block 0 at 8 units
    assert choose_units(scans, current, initial, limits, 0.1)[2] == {0: 8}
    # targets 77.5 and 78.75 are out of reach for this block; the step halves twice to 79.375,
    # which its first candidate (12 units, 79.2) meets
    slow = {1: [(12, {"macs": 79.2}), (4, {"macs": 79.0})]}
    assert choose_units(slow, current, initial, limits, 0.025) == (0.00625, {"macs": 79.375}, {1: 12})
    # nothing lowers the resource: the budget cannot be met from here
    assert choose_units({1: [(4, {"macs": 80.0})]}, current, initial, limits, 0.025) is None
    # a resource within its budget may not rise while another falls
    two = {0: [(8, {"macs": 70.0, "energy": 41.0})], 1: [(8, {"macs": 75.0, "energy": 39.0})]}
    got = choose_units(two, {"macs": 80.0, "energy": 40.0}, {"macs": 100.0, "energy": 100.0},
                       {"macs": 50.0, "energy": 60.0}, 0.025)
    assert got[2] == {1: 8}


def _p(index: int, acc: float, macs: float, eligible: bool = True) -> Proposal:
    return Proposal(index=index, block=f"b{index}", channels=8, removed=8, before={"macs": macs},
                    resources={"macs": macs}, accuracy=acc, eligible=eligible)


def test_pick_rules() -> None:
    current, initial = {"macs": 80.0}, {"macs": 100.0}
    props = [_p(0, 0.70, 70.0), _p(1, 0.74, 78.0), _p(2, 0.90, 10.0, eligible=False), _p(3, 0.74, 60.0)]
    kw = dict(current_accuracy=0.75, current=current, initial=initial, budgeted=["macs"])
    # highest accuracy among eligible, ties to the lower index
    assert pick_proposal(props, rule="accuracy", **kw).index == 1
    # loss per saving: p0 0.05/0.10 = 0.5, p1 0.01/0.02 = 0.5, p3 0.01/0.20 = 0.05
    assert pick_proposal(props, rule="efficiency", **kw).index == 3
    assert pick_proposal([_p(0, 0.7, 70.0, eligible=False)], rule="accuracy", **kw) is None
    with pytest.raises(HwawareError, match="unknown pick rule"):
        pick_proposal(props, rule="fastest", **kw)


def test_seeds_differ_per_iteration_and_block() -> None:
    seeds = {derive_seed(0, i, k) for i in range(1, 20) for k in range(10)}
    assert len(seeds) == 190 and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(0, 3, 1) == derive_seed(0, 3, 1) != derive_seed(1, 3, 1)


def test_pareto_front() -> None:
    pts = [(100, 0.90), (80, 0.91), (60, 0.85), (70, 0.80), (50, 0.85)]
    assert pareto_front(pts) == [4, 1]  # (60, .85) is beaten by (50, .85); (100, .9) by (80, .91)


# --- whole runs ----------------------------------------------------------------------------------

def test_family_properties_and_step_api() -> None:
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = NetAdaptConfig(**FAST, long_term_steps=2)
    na = NetAdapt(model, budgets=["macs=0.5"], data=DATA, config=cfg, progress=False, threads=1)
    yielded = list(na.iterations())
    result = na.finish()
    assert [m.iteration for m in yielded] == list(range(len(yielded)))
    assert yielded[0].kind == "original" and yielded[0].channels == {"0": 16, "4": 32, "8": 32}
    family = [m for m in result.members if m.kind != "long_term"]
    assert [(m.iteration, m.channels, m.accuracy) for m in family] == [
        (m.iteration, m.channels, m.accuracy) for m in yielded]
    init, limit = hand_macs(family[0].channels), 0.5 * hand_macs(family[0].channels)
    assert result.limits["macs"] == limit
    for prev, m in zip(family, family[1:]):
        assert m.resources["macs"] == hand_macs(m.channels)  # surgery + profiler agree with hand count
        assert m.resources["macs"] < prev.resources["macs"]  # falls monotonically
        halvings = math.log2(cfg.step(m.iteration) / m.step)
        assert halvings == round(halvings) >= 0
        target = max(prev.resources["macs"] - m.step * init, limit)
        assert m.targets["macs"] == pytest.approx(target, rel=1e-12)
        assert m.resources["macs"] <= target
        chosen = next(p for p in m.proposals if p.block == m.block)
        assert chosen.accuracy == max(p.accuracy for p in m.proposals if p.eligible)
        assert chosen.index == min(p.index for p in m.proposals if p.accuracy == chosen.accuracy)
        for p in m.proposals:  # each proposal removes the fewest channels that reach the target
            assert hand_macs({**prev.channels, p.block: p.channels}) == p.before["macs"] <= target
            fewer = p.channels + cfg.channel_step
            if fewer < prev.channels[p.block]:
                assert hand_macs({**prev.channels, p.block: fewer}) > target
    assert family[-1].resources["macs"] <= limit < family[-2].resources["macs"]  # stops once met
    lt = result.members[-1]
    assert lt.kind == "long_term" and lt.channels == family[-1].channels
    final = result.model(-1)
    assert [m.out_channels for m in final if isinstance(m, nn.Conv2d)] == [lt.channels[k] for k in ("0", "4", "8")]
    assert all(m.test_accuracy is not None and 0 <= m.test_accuracy <= 1 for m in result.members)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched


def test_held_out_images_come_from_train_only(monkeypatch) -> None:
    import hwaware.data as data_mod

    seen = []
    real = data_mod.load_dataset

    def spy(ref, split="train", **kw):  # noqa: ANN001, ANN003, ANN202
        seen.append(split)
        return real(ref, split, **kw)

    monkeypatch.setattr(data_mod, "load_dataset", spy)
    cfg = NetAdaptConfig(**{**FAST, "test_eval": False})
    na = NetAdapt(tiny(), budgets=["macs=0.9"], data=DATA, config=cfg, progress=False, threads=1)
    assert not set(na.data.heldout_idx) & set(na.data.train_idx)
    assert len(na.data.heldout_idx) == 64 and len(na.data.train_idx) == 192
    assert max(na.data.heldout_idx + na.data.train_idx) < 400
    na.finish()
    assert set(seen) == {"train"}


def test_no_prunable_block() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))  # its only filters are the outputs
    with pytest.raises(HwawareError, match=r"NetAdapt: nothing can be pruned: none of the 1 channel groups of Sequential is prunable: .1. feeds the model output") as exc:
        NetAdapt(model, budgets=["macs=0.5"], data=DATA, config=NetAdaptConfig(**FAST), progress=False)
    assert "\n" not in str(exc.value)


def test_unreachable_budget_fails_before_any_iteration() -> None:
    smallest = 9 * (3 + 1 + 1) + 10  # every block at one channel: weights counted by hand
    with pytest.raises(HwawareError, match="budget weights<=0.1% cannot be met") as exc:
        netadapt(tiny(), budgets=["weights=0.001"], data=DATA, config=NetAdaptConfig(**FAST), progress=False)
    assert f"({smallest / 14576:.1%} of the original" in str(exc.value)


def test_max_iterations_keeps_the_completed_ones() -> None:
    cfg = NetAdaptConfig(**{**FAST, "max_iterations": 1, "test_eval": False})
    na = NetAdapt(tiny(), budgets={"macs": 0.2}, data=DATA, config=cfg, progress=False, threads=1)
    with pytest.raises(HwawareError, match="not met after max_iterations=1"):
        na.finish()
    assert [m.iteration for m in na.members] == [0, 1]


def test_proposals_are_dealt_round_robin_to_ranks() -> None:
    from hwaware.netadapt.distributed import DistContext

    ranks = [DistContext(r, 3) for r in range(3)]
    for k in range(10):
        owners = [c.rank for c in ranks if c.mine(k)]
        assert owners == [k % 3] == [ranks[0].owner(k)]
    single = DistContext()
    assert single.is_main and single.gather(5) == [5] and single.broadcast(7, src=0) == 7
    single.agree(None)
    with pytest.raises(HwawareError, match="boom"):
        single.agree("boom")


def test_a_pruned_model_keeps_its_zero_weights_through_the_fine_tunes(capsys) -> None:
    """NetAdapt on a magnitude-pruned model (the quickstart's output): the short- and long-term
    fine-tunes must not revive the pruned weights, else energy rises and no proposal is eligible.
    The notice saying so is information, not progress: it shows with progress off too."""
    model = tiny()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):  # zero the smaller half of every layer
                w = m.weight
                w.mul_(w.abs() > w.abs().flatten().median())
    zero_before = sum(int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    cfg = NetAdaptConfig(**FAST, long_term_steps=2)
    result = netadapt(model, budgets=["macs=0.8"], data=DATA, config=cfg, progress=False, threads=1)
    assert "of the Conv/Linear weights are zero (a pruned model)" in capsys.readouterr().err
    assert result.iterations >= 1
    final = result.model(-1)
    layers = [m for m in final.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    zeros = sum(int((m.weight == 0).sum()) for m in layers) / sum(m.weight.numel() for m in layers)
    # channel surgery removes whole filters, so the fraction of zeros is about as before (~0.5);
    # a revived model would have (almost) none
    assert zero_before > 0 and zeros > 0.4
