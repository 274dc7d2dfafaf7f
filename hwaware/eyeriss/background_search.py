"""Map layer shapes on a background thread while the profiling forward pass still runs.

The mapping search reads a layer's shape and the hardware only; the data statistics pick the winner
from the shape's shortlist afterwards (:mod:`.shortlist`; tests/test_mapping_cache.py checks that
the shortlist's choice equals an exhaustive search for random statistics). So each shape can be
searched as soon as the profiler's hook has seen it, before its statistics exist.
:func:`hwaware.score` on a model passes :meth:`BackgroundSearch.submit` to the profiler as
``on_layer``: torch's kernels release the GIL, so the search runs on a core the forward pass
leaves free, and profile + cold score approaches the longer of the two instead of their sum.
Results are the same as a search after the profile: the same function fills the same process-wide
cache (tests/test_background_search.py).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..workload import Layer

if TYPE_CHECKING:
    from .score import Scorer


class BackgroundSearch:
    """Context manager: :meth:`submit` queues a layer's shape for the mapping search on one
    background thread (each distinct shape once; shapes already cached are skipped); leaving the
    block waits for every queued search, and re-raises the first unexpected error of one.

        >>> with BackgroundSearch(scorer) as bg:
        ...     wl = profile(model, data, on_layer=bg.submit)
        >>> scorer.score(wl)               # every shape already mapped
    """

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self._seen: set[tuple[Any, ...]] = set()
        self._futures: list[Future] = []
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> BackgroundSearch:
        if self.scorer.hardware.dataflow == "rs":  # other dataflows have no shape search to share
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hwaware-mapping")
        return self

    def submit(self, layer: Layer) -> None:
        """Queue ``layer``'s shape (returns at once)."""
        key = layer.shape_key()
        if self._pool is None or key in self._seen:
            return
        self._seen.add(key)
        self._futures.append(self._pool.submit(self.scorer.prefetch, layer))

    def __exit__(self, *exc: Any) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
        if exc[0] is None:
            for fut in self._futures:
                fut.result()  # an error of the search itself (not "cannot run": prefetch skips that)

    @property
    def submitted(self) -> int:
        """Distinct shapes queued so far."""
        return len(self._seen)
