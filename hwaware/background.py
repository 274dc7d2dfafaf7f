"""One worker thread that runs jobs in order, off the caller's thread (the training plugin's scoring,
TensorBoard writes and figures).

    >>> w = Worker("hwaware-monitor", depth=2)
    >>> w.submit(fn, arg)      # returns at once unless ``depth`` jobs are already waiting
    >>> w.join()               # wait for every job; re-raises the first error a job raised
    >>> w.close()

Jobs run one at a time, in submission order. A job's exception is kept and re-raised (as is) by the
next ``submit``/``join`` on the caller's thread, so an error is never lost and never raised on the
worker. ``busy_seconds`` is the time jobs ran (wall), ``busy_cpu_seconds`` the CPU time the worker
thread spent in them (``time.thread_time``: what the jobs took from the cores, whatever the load);
``wait_seconds`` the time ``submit`` blocked because the queue was full (the back-pressure the
caller paid).

``nice`` (Linux only): the worker thread lowers its own scheduling priority by that much
(``setpriority`` on its thread id: on Linux the nice value is per thread), so when the caller's
threads keep every core busy the jobs wait for idle time instead of taking cycles from them.
Threads a job starts inherit it. ``Worker.nice`` is the value set, or ``None`` where the platform
has no per-thread priority or refused it (the jobs then run at the caller's priority; nothing else
changes).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Worker"]

_STOP = object()


class Worker:
    """A daemon thread running submitted callables in order; errors surface on the caller's thread."""

    def __init__(self, name: str, depth: int = 2, *, nice: int | None = None) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if nice is not None and (isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19):
            raise ValueError(f"nice must be an integer from 0 to 19 (or None), got {nice!r}")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.busy_seconds = 0.0
        self.busy_cpu_seconds = 0.0
        self.wait_seconds = 0.0
        self.nice: int | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(nice, started), name=name, daemon=True)
        self._thread.start()
        started.wait()  # `nice` is known once the constructor returns

    def _lower_priority(self, nice: int) -> None:
        # Linux only: elsewhere setpriority(PRIO_PROCESS, id) takes a process id, and a thread id
        # could name another process
        if not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
            return
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
            self.nice = os.getpriority(os.PRIO_PROCESS, tid)
        except OSError:  # a sandbox may refuse it: run at the caller's priority
            self.nice = None

    def _run(self, nice: int | None, started: threading.Event) -> None:
        try:
            if nice:
                self._lower_priority(nice)
        finally:
            started.set()
        while True:
            job = self._queue.get()
            try:
                if job is _STOP:
                    return
                fn, args = job
                if self._error is None:  # after an error the rest is skipped: it would build on it
                    t0, c0 = time.perf_counter(), time.thread_time()
                    try:
                        fn(*args)
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                        with self._lock:
                            self._error = exc
                    self.busy_seconds += time.perf_counter() - t0
                    self.busy_cpu_seconds += time.thread_time() - c0
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        with self._lock:
            exc, self._error = self._error, None
        if exc is not None:
            raise exc

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; blocks only while ``depth`` jobs are already waiting."""
        self._raise()
        if not self._thread.is_alive():
            raise RuntimeError(f"worker {self._thread.name} is closed")
        t0 = time.perf_counter()
        self._queue.put((fn, args))
        self.wait_seconds += time.perf_counter() - t0

    def join(self) -> None:
        """Wait until every submitted job ran; re-raise the first error one raised."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Finish the queued jobs and stop the thread (errors are re-raised, as by :meth:`join`)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise()
