"""The plugin's worker thread: logging off the training thread changes no number, keeps order,
surfaces errors on the training thread, and draws figures on their own cadence."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time

import pytest
import torch

import hwaware
from hwaware.background import Worker
from hwaware.errors import HwawareError

from test_plugin import batches, tiny_model, train


def _numbers(rec):
    d = dataclasses.asdict(rec)
    d.pop("seconds")
    return d


def _scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    images = [e.step for e in acc.Images("energy/breakdown")] if "energy/breakdown" in acc.Tags()["images"] else []
    return scalars, images


def test_background_logs_equal_foreground_logs(tmp_path):
    data = batches(6)
    schedule = {"method": "magnitude", "start": 1, "end": 5, "target": 0.5, "every": 2}
    runs = {}
    for background in (False, True):
        model = tiny_model()
        hw = hwaware.attach(model, data[0][0], logdir=str(tmp_path / str(background)), every=2,
                            schedule=schedule, background=background, figure_every=2)
        returned = []
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for x, y in data:
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            returned.append(hw.step())
        hist = [_numbers(r) for r in hw.history]
        hw.close()
        runs[background] = (hist, _scalars(tmp_path / str(background)), returned, model.state_dict())
    fg, bg = runs[False], runs[True]
    assert [r["step"] for r in bg[0]] == [0, 2, 4, 6]
    assert bg[0] == fg[0]  # every number of every record, in order
    assert bg[1] == fg[1]  # every TensorBoard scalar and figure step
    assert bg[1][1] == [0, 4, 6]  # figures: logs 0 and 2 of 4 (figure_every=2), plus the final state
    assert [r is None for r in bg[2]] == [True] * 6  # background: step() never returns the record
    assert [r is not None for r in fg[2]] == [False, True, False, True, False, True]
    for k in fg[3]:
        assert torch.equal(fg[3][k], bg[3][k]), k


def test_worker_error_reaches_the_training_thread():
    model = tiny_model()
    data = batches(3)
    hw = hwaware.attach(model, data[0][0], every=1, figures=False)

    def broken(*_a, **_k):
        raise HwawareError("scoring failed on purpose")

    hw.scorer.score = broken
    with pytest.raises(HwawareError, match="on purpose"):
        train(model, data, hw)
        hw.flush()
    hw.close()


def test_step_does_not_wait_for_scoring():
    model = tiny_model()
    data = batches(4)
    hw = hwaware.attach(model, data[0][0], every=1, figures=False)
    gate = threading.Event()
    seen = []
    real = hw.scorer.score

    def gated(*a, **k):  # scoring cannot finish before step() has returned and opened the gate
        seen.append(gate.wait(120))
        return real(*a, **k)

    hw.scorer.score = gated
    model(data[0][0])
    hw.step()
    gate.set()
    assert len(hw.history) == 2  # reading the history waits for the queued log
    assert seen == [True]  # a synchronous step() would have timed out on the closed gate
    hw.close()


def test_worker_runs_in_order_and_bounds_its_queue():
    w = Worker("t", depth=1)
    out = []
    gate = threading.Event()
    w.submit(lambda: (gate.wait(5), out.append(1)))
    w.submit(out.append, 2)  # fills the queue of depth 1
    t = threading.Thread(target=w.submit, args=(out.append, 3))
    t.start()
    time.sleep(0.1)
    assert t.is_alive()  # the third submit waits for room
    gate.set()
    t.join(5)
    w.join()
    assert out == [1, 2, 3]
    w.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        w.join()
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.submit(out.append, 4)


def test_figure_every_is_validated():
    with pytest.raises(HwawareError, match="figure_every"):
        hwaware.attach(tiny_model(), torch.randn(2, 3, 32, 32), figure_every=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is a Linux feature")
def test_worker_runs_at_low_priority_and_its_threads_inherit_it():
    me = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, me)
    seen = []

    def job():
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        t = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        t.start()
        t.join()

    w = Worker("t", nice=19)
    w.submit(job)
    w.join()
    w.close()
    assert w.nice == 19 and seen == [19, 19]  # the worker and a thread it started (torch's pool, a scorer's)
    assert os.getpriority(os.PRIO_PROCESS, me) == before  # the caller's thread keeps its priority
    plain = Worker("t")
    plain.submit(job)
    plain.close()
    assert plain.nice is None and seen[2:] == [before, before]
    with pytest.raises(ValueError, match="nice"):
        Worker("t", nice=20)


def test_monitor_counts_its_cpu_time():
    model, data = tiny_model(), batches(4)
    hw = hwaware.attach(model, data[0][0], every=2)
    train(model, data, hw)
    hw.close()
    assert len(hw.history) == 3
    assert hw.overhead_cpu_seconds > 0  # the step-0 log and two profiles on the training thread
    # one thread's CPU time cannot exceed its wall time (a process-wide clock could)
    assert 0 < hw.background_cpu_seconds <= hw.background_seconds + 1e-3


def test_training_thread_never_synchronizes_cuda(monkeypatch):
    # A GPU loop must not be serialized by an explicit synchronize on the training thread: with CUDA
    # faked available, every CUDA synchronize entry point records the thread that called it. (A
    # review note: the profiler still reads its device-side counts once at the end of the sample
    # forward, a device-to-host copy that waits for the stream; see docs/plugin.md. No fake can see
    # that implicit wait, so this test covers the explicit calls only.)
    calls = []

    def record(*a, **k):
        calls.append(threading.current_thread().name)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", record)
    monkeypatch.setattr(torch.cuda.Event, "synchronize", record)
    monkeypatch.setattr(torch.cuda.Stream, "synchronize", record)
    model, data = tiny_model(), batches(6)
    hw = hwaware.attach(model, data[0][0], every=2, figure_every=1)
    train(model, data, hw)
    hw.close()
    assert len(hw.history) == 4  # the step-0 log and steps 2, 4, 6 all ran
    assert calls == []
