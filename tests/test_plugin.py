"""The training-script plugin: it must not disturb training, must log what the Eyeriss model says
about the live batch, and must prune on schedule with masks that hold."""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import hwaware
from hwaware.errors import HwawareError
from hwaware.plugin import PruneSchedule, energy_allocation, unwrap_model

ROOT = Path(__file__).resolve().parent.parent


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return hwaware.load_model("models/small_cnn.py", width=0.25)  # 8-16-32-32 channels


def batches(n: int, seed: int = 0, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def train(model: torch.nn.Module, data, hw=None, lr: float = 0.05) -> torch.optim.Optimizer:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for x, y in data:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if hw is not None:
            hw.step()
    return opt


def test_monitor_leaves_training_bit_identical():
    torch.set_num_threads(1)
    data = batches(7)
    a, b = tiny_model(), tiny_model()
    opt_a = train(a, data)
    hw = hwaware.attach(b, data[0][0], every=2, figures=False)
    opt_b = train(b, data, hw)
    assert len(hw.history) == 1 + 3  # step 0 (attach) and steps 2, 4, 6
    assert b.training and all(m.training for m in b.modules())
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:  # weights and BatchNorm running statistics
        assert torch.equal(sa[k], sb[k]), k
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(opt_a.state[pa]["momentum_buffer"], opt_b.state[pb]["momentum_buffer"])
    hw.close()
    assert not b._forward_pre_hooks  # the capture hook is removed


def test_record_profiles_the_live_batch():
    model = tiny_model()
    example = torch.randn(8, 3, 32, 32)
    hw = hwaware.attach(model, example, every=1, samples=6, figures=False, background=False)
    live = torch.randn(10, 3, 32, 32)
    live[:, :, :16] = 0.0  # the top half of every image is zero: conv1 sees exactly half zeros
    model.train()
    F.cross_entropy(model(live), torch.zeros(10, dtype=torch.long)).backward()
    rec = hw.step()
    assert rec is not None and rec.step == 1
    assert rec.ifmap_sparsity["conv1"] == pytest.approx((live[:6] == 0).float().mean().item(), abs=1e-12)
    assert hw.history[0].ifmap_sparsity["conv1"] == pytest.approx((example[:6] == 0).float().mean().item())
    # the same numbers as profiling and scoring by hand, at one image per inference
    ref = hwaware.score(hwaware.profile(model, live[:6], progress=False), batch=1)
    assert rec.energy == pytest.approx(ref.total.energy_total, rel=1e-12)
    assert rec.processing_latency_ms == pytest.approx(ref.total.processing_latency_ms, rel=1e-12)
    assert rec.energy == pytest.approx(sum(rec.energy_by_level.values()), rel=1e-9)
    assert rec.energy == pytest.approx(sum(rec.energy_by_type.values()), rel=1e-9)
    hw.close()


def test_tensorboard_scalars_and_figure(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = tiny_model()
    data = batches(4)
    hw = hwaware.attach(model, data[0][0], logdir=str(tmp_path), every=2,
                        schedule={"method": "magnitude", "start": 1, "end": 3, "target": 0.5, "every": 1})
    train(model, data, hw)
    hw.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    expected = {f"energy/{k}" for k in ("DRAM", "GLB", "array", "RF", "MAC", "total")}
    expected |= {f"energy_by_type/{k}" for k in ("ifmap", "filter", "psum", "MAC")}
    expected |= {"latency/processing_ms", "latency/total_ms", "prune/target", "prune/weight_sparsity"}
    expected |= {f"sparsity/{n}/{k}" for n in ("conv1", "conv2", "conv3", "conv4", "fc") for k in ("ifmap", "weight")}
    assert expected <= tags
    steps = [e.step for e in acc.Scalars("energy/total")]
    assert steps == [0, 2, 4]
    for rec in hw.history:
        got = {e.step: e.value for e in acc.Scalars("energy/DRAM")}[rec.step]
        assert got == pytest.approx(rec.energy_by_level["DRAM"], rel=1e-6)
    last = {e.step: e.value for e in acc.Scalars("sparsity/conv2/weight")}[4]
    assert last == pytest.approx(float((model.conv2.weight == 0).float().mean()), abs=1e-6)
    assert "energy/breakdown" in acc.Tags()["images"]


def test_cubic_schedule():
    s = PruneSchedule(start=10, end=50, target=0.8, every=10)
    for t in (0, 9):
        assert s.sparsity_at(t) == 0.0
    for t in (10, 20, 30, 40, 50, 70):
        p = min(1.0, (t - 10) / 40)
        assert s.sparsity_at(t) == pytest.approx(0.8 * (1 - (1 - p) ** 3))
    assert s.sparsity_at(30) == pytest.approx(0.7)  # half way: 0.8 * (1 - 1/8)
    assert [t for t in range(80) if s.is_event(t)] == [10, 20, 30, 40, 50]
    assert [t for t in range(20) if PruneSchedule(start=2, end=9, every=3).is_event(t)] == [2, 5, 8, 9]


def test_energy_allocation_by_hand():
    sizes = {"a": 1000, "b": 1000, "c": 500}
    none = {"a": 0, "b": 0, "c": 0}
    # 40% of 2500 = 1000 weights, shared 3:1:0 -> 750, 250, 0 (c has no energy)
    f = energy_allocation(sizes, none, {"a": 3.0, "b": 1.0, "c": 0.0}, 0.4, 0.95)
    assert f == {"a": 0.75, "b": 0.25, "c": 0.0}
    # a capped at 50%: 500 go to a, the remaining 500 to b
    f = energy_allocation(sizes, none, {"a": 3.0, "b": 1.0, "c": 0.0}, 0.4, 0.5)
    assert f == {"a": 0.5, "b": 0.5, "c": 0.0}
    # with pruned weights already: want 0.6 * 2500 = 1500, have 600; 900 more shared 1:1 between a and b
    f = energy_allocation(sizes, {"a": 400, "b": 200, "c": 0}, {"a": 1.0, "b": 1.0, "c": 1.0}, 0.6, 0.9)
    # shares of 900 by energy 1:1:1 = 300 each -> a 700, b 500, c 300
    assert f == {"a": 0.7, "b": 0.5, "c": 0.6}
    # nothing more to prune: fractions stay
    f = energy_allocation(sizes, {"a": 400, "b": 200, "c": 0}, {"a": 1.0, "b": 1.0, "c": 1.0}, 0.1, 0.9)
    assert f == {"a": 0.4, "b": 0.2, "c": 0.0}


@pytest.mark.parametrize("method", ["magnitude", "energy"])
def test_schedule_reaches_target_and_masks_hold(method):
    model = tiny_model()
    data = batches(10)
    hw = hwaware.attach(model, data[0][0], every=100, figures=False,
                        schedule={"method": method, "start": 2, "end": 6, "target": 0.6, "every": 2})
    prunable = [model.conv1, model.conv2, model.conv3, model.conv4, model.fc]
    total = sum(m.weight.numel() for m in prunable)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    zero_sets = []
    for t, (x, y) in enumerate(data, start=1):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hw.step()
        zeros = torch.cat([(m.weight == 0).reshape(-1) for m in prunable])
        if zero_sets:  # masks only grow, and pruned weights stay zero after later optimizer steps
            assert bool((zero_sets[-1] & ~zeros).sum() == 0)
        zero_sets.append(zeros)
        last_event = max(e for e in range(t + 1) if hw.schedule.is_event(e) or e == 0)
        expect = hw.schedule.sparsity_at(last_event)
        if t >= 2:
            assert int(zeros.sum()) == pytest.approx(expect * total, abs=len(prunable))
    assert hw.pruned_fraction() == pytest.approx(0.6, abs=len(prunable) / total)
    hw.close()


def test_energy_schedule_saves_more_energy_than_magnitude():
    """Same weight sparsity; the energy-aware schedule spends it on the energy-hungry layers."""
    base = tiny_model()
    data = batches(8, size=32)
    energy = {}
    for method in ("magnitude", "energy"):
        model = copy.deepcopy(base)
        hw = hwaware.attach(model, data[0][0], every=100, figures=False,
                            schedule={"method": method, "start": 2, "end": 6, "target": 0.6, "every": 2})
        train(model, data, hw)
        assert hw.pruned_fraction() == pytest.approx(0.6, abs=1e-3)
        energy[method] = hw.log(data[0][0]).energy / hw.history[0].energy
        hw.close()
    assert energy["energy"] < energy["magnitude"] < 1.0


def test_unwrap_ddp_and_compile():
    import torch.distributed as dist

    model = tiny_model()
    compiled = torch.compile(model, backend="eager")
    assert unwrap_model(compiled) is model
    x = torch.randn(4, 3, 32, 32)
    hw = hwaware.attach(compiled, x, every=1, figures=False,
                        schedule={"method": "magnitude", "start": 1, "end": 2, "target": 0.5, "every": 1})
    train(compiled, batches(2, size=4), hw)
    names = list(hw.history[0].layer_energy)
    assert names == ["conv1", "conv2", "conv3", "conv4", "fc"]  # not _orig_mod.conv1
    assert hw.pruned_fraction() == pytest.approx(0.5, abs=1e-3)
    hw.close()

    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        model = tiny_model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        assert unwrap_model(ddp) is model
        hw = hwaware.attach(ddp, x, every=1, figures=False,
                            schedule={"method": "energy", "start": 1, "end": 2, "target": 0.5, "every": 1})
        train(ddp, batches(2, size=4), hw)
        assert list(hw.history[-1].layer_energy) == names
        assert hw.pruned_fraction() == pytest.approx(0.5, abs=1e-3)
        hw.close()
    finally:
        dist.destroy_process_group()


def test_summary_and_errors(capsys):
    model = tiny_model()
    x = torch.randn(4, 3, 32, 32)
    with pytest.raises(HwawareError, match=r"unknown key 'targt' \(did you mean 'target'\?\)"):
        hwaware.attach(model, x, schedule={"method": "energy", "targt": 0.5})
    with pytest.raises(HwawareError, match="target must be in"):
        hwaware.attach(model, x, schedule={"target": 0.99, "max_layer_sparsity": 0.9})
    with pytest.raises(HwawareError, match="start < end"):
        PruneSchedule(start=5, end=5)
    with pytest.raises(HwawareError, match="every must be a positive integer"):
        hwaware.attach(model, x, every=0)
    with pytest.raises(HwawareError, match="unknown method 'energy_aware'"):
        PruneSchedule(method="energy_aware")
    with pytest.raises(HwawareError, match="does not fit the model"):
        hwaware.attach(model, torch.randn(2, 5, 32, 32))
    hw = hwaware.attach(model, None, figures=False)
    with pytest.raises(HwawareError, match="nothing to profile yet"):
        hw.log()
    model(x)  # a forward pass gives the monitor a live batch
    hw.log()
    text = hw.summary()
    out = capsys.readouterr().out
    assert text in out and "history (1 log steps" in text
    assert re.search(r"^conv1 ", text, re.MULTILINE) and re.search(r"^total ", text, re.MULTILINE)
    hw.close()
    with pytest.raises(HwawareError, match="after close"):
        hw.step()


def test_example_script_in_docs_runs(tmp_path):
    script = (ROOT / "examples" / "train_with_plugin.py").read_text()
    doc = (ROOT / "docs" / "plugin.md").read_text()
    assert script.strip() in doc, "docs/plugin.md must show examples/train_with_plugin.py verbatim"
    assert script.strip() in (ROOT / "README.md").read_text(), "README.md must show the plugin script verbatim"
    assert len(script.strip().splitlines()) <= 25
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "train_with_plugin.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "history (5 log steps" in out.stdout
    assert list((tmp_path / "runs" / "plugin-example").glob("events.out.tfevents.*"))
    # the schedule pruned 60% of the weights by step 15; the energy fell
    last = out.stdout.strip().splitlines()[-2].split()
    assert last[0] == "20" and last[-1] == "60.0%"
    ratio = float(re.search(r"energy ([0-9.]+)x of step 0", out.stdout).group(1))
    assert ratio < 1.0 and math.isfinite(ratio)


@pytest.mark.slow
def test_ddp_two_ranks_apply_identical_masks(tmp_path):
    code = r'''
import os, sys, torch, torch.nn.functional as F, torch.distributed as dist, torch.multiprocessing as mp
def run(rank, world, logdir, port):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    import hwaware
    torch.manual_seed(0)
    model = hwaware.load_model("models/small_cnn.py", width=0.25)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(rank)   # each rank sees different images
    x = torch.randn(16, 3, 32, 32, generator=g); y = torch.randint(0, 10, (16,), generator=g)
    hw = hwaware.attach(ddp, x, every=3, logdir=logdir, figures=False,
                        schedule={"method": "energy", "start": 1, "end": 5, "target": 0.5, "every": 2})
    for i in range(6):
        loss = F.cross_entropy(ddp(x), y); opt.zero_grad(); loss.backward(); opt.step(); hw.step()
    masks = torch.cat([m.reshape(-1) for m in hw.masks.masks.values()]).float()
    out = [torch.zeros_like(masks) for _ in range(world)]
    dist.all_gather(out, masks)
    # one file per rank: two processes printing to one pipe can interleave their lines
    with open(os.path.join(logdir, f"rank{rank}.txt"), "w") as fh:
        if rank == 0:
            fh.write(f"EQUAL {all(torch.equal(out[0], o) for o in out)} LOGS {len(hw.history)}")
        else:
            fh.write(f"RANK1 {len(hw.history)} {hw.writer is None}")
    hw.close(); dist.destroy_process_group()
if __name__ == "__main__":
    mp.spawn(run, args=(2, sys.argv[1], int(sys.argv[2])), nprocs=2)
'''
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "ddp.py"
    path.write_text(code)
    (tmp_path / "tb").mkdir()  # rank 1 has no writer: the folder must exist before it writes
    out = subprocess.run([sys.executable, str(path), str(tmp_path / "tb"), str(port)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "tb" / "rank0.txt").read_text() == "EQUAL True LOGS 3"  # steps 0, 3, 6 on rank 0 only
    assert (tmp_path / "tb" / "rank1.txt").read_text() == "RANK1 0 True"
