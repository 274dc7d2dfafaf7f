"""Workload records: layer shapes in the paper's letters and measured sparsity; the run-length
codec of stored feature maps and its expected sizes (:mod:`.rlc`)."""

from .layer import Layer
from .workload import UnmodeledOp, Workload, as_workload

__all__ = ["Layer", "UnmodeledOp", "Workload", "as_workload"]
