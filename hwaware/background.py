"""One worker thread that runs jobs in order, off the caller's thread (the training plugin's scoring,
TensorBoard writes and figures).

    >>> w = Worker("hwaware-monitor", depth=2)
    >>> w.submit(fn, arg)      # returns at once unless ``depth`` jobs are already waiting
    >>> w.join()               # wait for every job; re-raises the first error a job raised
    >>> w.close()

Jobs run one at a time, in submission order. A job's exception is kept and re-raised (as is) by the
next ``submit``/``join`` on the caller's thread, so an error is never lost and never raised on the
worker. ``busy_seconds`` is the time jobs ran; ``wait_seconds`` the time ``submit`` blocked because
the queue was full (the back-pressure the caller paid).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Worker"]

_STOP = object()


class Worker:
    """A daemon thread running submitted callables in order; errors surface on the caller's thread."""

    def __init__(self, name: str, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.busy_seconds = 0.0
        self.wait_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is _STOP:
                    return
                fn, args = job
                if self._error is None:  # after an error the rest is skipped: it would build on it
                    t0 = time.perf_counter()
                    try:
                        fn(*args)
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                        with self._lock:
                            self._error = exc
                    self.busy_seconds += time.perf_counter() - t0
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
