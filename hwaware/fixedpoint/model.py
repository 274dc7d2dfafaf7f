"""A converted model (:class:`FixedPointModel`: integer ops on int16 codes) and its conversion
report (formats, overflow counts, error against float per layer)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import HwawareError
from . import shape_expr
from .format import FixedFormat, check_arith
from .graph_ops import ReshapeOp
from .intop import IntOp

__all__ = ["ConversionReport", "FixedPointModel", "LayerReport", "RunResult"]


@dataclass(frozen=True)
class LayerReport:
    """One converted op: formats, overflow counts and error vs float on the report data."""

    name: str
    op: str
    f_x: tuple[int, ...]
    f_w: int | None
    f_y: int
    relu: bool
    product_overflows: int
    output_overflows: int
    max_abs_error: float
    max_abs_float: float
    bits: int = 16
    #: stated bound of the op's approximation (table activations; 0 where the op is exact)
    approx_error: float = 0.0


@dataclass(frozen=True)
class ConversionReport:
    mode: str
    rounding: str
    overflow: str
    input_frac_bits: int
    samples: int
    layers: tuple[LayerReport, ...]
    #: where the integer arithmetic ran (always "cpu": NumPy kernels) and where the model was given
    device: str = "cpu"
    model_device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(lr) for lr in self.layers]
        return d

    def table(self) -> str:
        head = (f"{'layer':<28} {'op':<10} {'f_x':>8} {'f_w':>4} {'f_y':>4} {'prod.ovf':>9} "
                f"{'out.ovf':>8} {'max|err|':>10} {'max|float|':>10}")
        title = (f"fixed point: mode={self.mode} rounding={self.rounding} overflow={self.overflow}, "
                 f"input f={self.input_frac_bits}, {self.samples} samples, ran on {self.device}"
                 + (f" (model given on {self.model_device})" if self.model_device != self.device else ""))
        lines = [title, head, "-" * len(head)]
        for lr in self.layers:
            fx = ",".join(str(f) for f in lr.f_x)
            fw = "" if lr.f_w is None else str(lr.f_w)
            name = lr.name + (" +relu" if lr.relu else "")
            lines.append(f"{name[:28]:<28} {lr.op[:10]:<10} {fx:>8} {fw:>4} {lr.f_y:>4} "
                         f"{lr.product_overflows:>9} {lr.output_overflows:>8} {lr.max_abs_error:>10.3g} "
                         f"{lr.max_abs_float:>10.3g}"
                         + (f"  table approx. <= {lr.approx_error:.2g}" if lr.approx_error else ""))
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class RunResult:
    """Every value of one integer run (codes, by op index) and the overflow counts per op."""

    values: list[np.ndarray | None]
    product_overflows: list[int]
    output_overflows: list[int]


class FixedPointModel(nn.Module):
    """A converted model: integer ops on int16 codes; ``forward`` takes and returns float tensors.

    ``forward(x)`` quantizes ``x`` to the input format (round to nearest, saturate), runs the ops
    and returns the dequantized output, so it drops in where the float model was (e.g.
    :func:`hwaware.train.evaluate`). ``run(codes)`` exposes every intermediate value.
    """

    def __init__(self, ops_: list[IntOp], output: int, *, mode: str, rounding: str, overflow: str,
                 report: ConversionReport | None = None) -> None:
        super().__init__()
        check_arith(mode, rounding, overflow)
        self.int_ops = ops_
        self.output_index = output
        self.arith = {"mode": mode, "rounding": rounding, "overflow": overflow}
        self.report = report

    @property
    def input_format(self) -> FixedFormat:
        return self.int_ops[0].fy

    @property
    def output_format(self) -> FixedFormat:
        return self.int_ops[self.output_index].fy

    def quantize_input(self, x: torch.Tensor) -> np.ndarray:
        a = x.detach().cpu().double().numpy()
        if a.size and not np.isfinite(a).all():
            raise HwawareError("fixed-point model: the input holds NaN or Inf")
        return self.input_format.quantize(a)

    def run(self, codes: np.ndarray, *, keep: bool = False) -> RunResult:
        """Run the integer graph on input codes; ``keep`` keeps every value (else only the output)."""
        n = len(self.int_ops)
        last_use = last_uses(self.int_ops, self.output_index)
        values: list[np.ndarray | None] = [None] * n
        values[0] = np.asarray(codes, dtype=np.int16)
        povf, oovf = [0] * n, [0] * n
        for i, op in enumerate(self.int_ops[1:], start=1):
            xs = [values[j] for j in op.inputs]
            r = op.run(xs, self.arith, values) if isinstance(op, ReshapeOp) else op.run(xs, self.arith)
            values[i], povf[i], oovf[i] = r.y, r.product_overflows, r.output_overflows
            if not keep:
                for j in {*op.inputs, *size_refs(op)}:
                    if last_use[j] == i and j != self.output_index:
                        values[j] = None
        return RunResult(values, povf, oovf)

    def forward_codes(self, codes: np.ndarray) -> np.ndarray:
        return self.run(codes).values[self.output_index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.forward_codes(self.quantize_input(x))
        return torch.from_numpy(self.output_format.dequantize(y)).float().to(x.device)

    def extra_repr(self) -> str:
        return (f"{len(self.int_ops) - 1} ops, mode={self.arith['mode']}, rounding={self.arith['rounding']}, "
                f"overflow={self.arith['overflow']}, input {self.input_format}")


def size_refs(op: IntOp) -> list[int]:
    """Values whose shape a reshape reads at run time (besides its input)."""
    if isinstance(op, ReshapeOp) and op.shape:
        return [j for v in op.shape for j in shape_expr.refs(v)]
    return []


def last_uses(ops_: list[IntOp], output: int) -> list[int]:
    last = list(range(len(ops_)))
    for i, op in enumerate(ops_):
        for j in (*op.inputs, *size_refs(op)):
            last[j] = max(last[j], i)
    last[output] = len(ops_)
    return last
