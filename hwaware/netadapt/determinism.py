"""Torch settings that make a NetAdapt step reproducible (so a killed job resumes bit-identically)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_settings(threads: int | None, device: str) -> Iterator[None]:
    """Thread count (and, on GPUs, deterministic kernels) for the duration of a step; restored after.

    CPU kernels are deterministic for a fixed thread count. On GPUs deterministic algorithms
    are switched on (warn-only); cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set
    before the process starts for bit-reproducible matrix products.
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    if cuda:
        det = torch.are_deterministic_algorithms_enabled()
        warn = torch.is_deterministic_algorithms_warn_only_enabled()
        cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if cuda:
            torch.use_deterministic_algorithms(det, warn_only=warn)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
