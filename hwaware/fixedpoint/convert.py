"""Float model -> integer model: :func:`convert` picks every tensor's format from calibration data.

The model is traced with ``torch.fx``; each supported node becomes an integer op
(:mod:`hwaware.fixedpoint.ops`). BatchNorm right after a Conv/Linear is folded into its weights and
bias, and a ReLU right after a Conv/Linear (or its BN) or an add is fused (``relu`` flag).

Formats (``f`` = fractional bits, one per tensor):

- activations (the input, every op output): the max rule, ``frac_bits_for(max|x| over the
  calibration data, bits, headroom=0.5)``. Max, not a percentile, because the default ``wrap``
  overflow turns an out-of-range value into a wrong-signed one; half a bit of headroom (the range
  covers 1.41x the calibration max) because unseen inputs exceed the calibration max: on the
  trained small CNN, 1000 validation images reached 1.28x the max of 256 calibration images.
  A whole bit halves every layer's precision; on the chip's arithmetic (eyeriss, floor) that took
  top-1 agreement with float from 99.3% to 98.8% (bench/quantize_agreement.py prints the table).
  A fused Conv+ReLU takes the range of the value *before* the ReLU: the 16-bit adder must hold
  the negative sums too, or they wrap into positive garbage.
- weights: the max rule on the folded weights, no headroom (the weights are known exactly).
- bias: mode ``eyeriss`` int16 at ``f_y``; mode ``wide`` int32 at ``f_x + f_w``.
- ReLU, max pooling, flatten/reshape, dropout keep their input's format.

Bias correction (on by default): rounding every product down (``floor``) loses half a code per
non-zero product on average, which adds up to hundreds of codes over a 3x3x256 filter. After the
formats are fixed, each Conv/Linear is run without bias on its integer input from the calibration
data, and each output channel's bias code is set to the rounded mean of (float model's output -
integer output): the channel's mean error, including what earlier layers passed on, becomes zero.
The hardware arithmetic is unchanged; only the bias values differ (and the test vectors carry them).

Range equalization (``equalize=True``, off by default, :mod:`hwaware.fixedpoint.equalize`): before
the formats are chosen, BatchNorm is folded and the channels between consecutive Conv/Linear layers
are rescaled so that each channel spans the tensor's range (the float function is unchanged). It
lifts the trained small CNN's agreement in eyeriss/floor from 99.3% to 99.4-99.5%, but with every
channel at the tensor's max, unseen inputs overflow the half-bit margin more often: a random-weight
ResNet-18 calibrated on 16 noise images fell from 100% to 91% agreement on fresh noise (wide/floor).

Only eval-mode semantics are converted (BatchNorm uses its running statistics).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from .._fx import (
    ADD_FUNCTIONS,
    ADD_METHODS,
    MUL_FUNCTIONS,
    MUL_METHODS,
    is_plain_linear,
    is_same_pad_conv,
    DROPOUT_FUNCTIONS,
    STOCHASTIC_DEPTH_FUNCTIONS,
    is_stochastic_depth,
    module_path,
    target_name,
    trace,
)
from ..errors import HwawareError, UnsupportedLayerError
from . import ops
from .act_ops import ClampOp, HardOp, LeakyReluOp, LutOp, MulOp, WindowPoolOp
from .intop import UNSET_FORMAT, InputOp, IntOp
from .format import (
    DEFAULT_MODE,
    DEFAULT_OVERFLOW,
    DEFAULT_ROUNDING,
    FixedFormat,
    OpResult,
    check_arith,
    frac_bits_for,
    pair,
)

SUPPORTED = ("Conv1d, Conv2d (also timm Conv2dSame), Linear (with a following BatchNorm or timm "
             "BatchNormAct2d folded and ReLU fused), ReLU, ReLU6, Hardtanh, LeakyReLU, Hardswish, "
             "Hardsigmoid, SiLU, GELU, Sigmoid, Tanh, MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, "
             "mean over H and W, Flatten, Dropout, DropPath, Identity, add, multiply, cat, "
             "flatten/view/reshape")

_RELU_FUNCS = (torch.relu, nn.functional.relu, torch.relu_)
_FLATTEN_FUNCS = (torch.flatten,)
_CAT_FUNCS = (torch.cat, torch.concat)
_PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)


# --- integer ops ------------------------------------------------------------------------------

@dataclass(eq=False)
class ConvOp(IntOp):
    """Conv1d / Conv2d / Linear. ``w``, ``b`` are codes; ``fx`` is the input's format.

    ``fxq`` (bits < 16 only): the layer first brings its input to this narrower format.
    """

    fx: FixedFormat = UNSET_FORMAT
    fw: FixedFormat = UNSET_FORMAT
    w: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    b: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    relu: bool = False
    fxq: FixedFormat | None = None
    #: timm Conv2dSame: zero rows/columns (top, bottom, left, right) added before a padding-0 conv
    pad_same: tuple[int, int, int, int] | None = None

    @property
    def f_in(self) -> FixedFormat:
        return self.fxq or self.fx

    def prepare(self, x: np.ndarray, arith: dict[str, str]) -> np.ndarray:
        if self.pad_same is not None:
            t, b, left, r = self.pad_same
            x = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))  # zero padding = code 0
        if self.fxq is None:
            return x
        return ops.requantize(x, fx=self.fx, fy=self.fxq, rounding=arith["rounding"],
                              overflow=arith["overflow"]).y

    def run(self, xs, arith, *, bias: Any = "own", relu: bool | None = None):
        x = self.prepare(xs[0], arith)
        b = self.b if isinstance(bias, str) else bias
        kw = {"fx": self.f_in, "fw": self.fw, "fy": self.fy, "mode": arith["mode"],
              "rounding": arith["rounding"], "overflow": arith["overflow"],
              "relu": self.relu if relu is None else relu}
        if self.op == "Linear":
            return ops.linear(x, self.w, b, **kw)
        if self.op == "Conv1d":
            return ops.conv1d(x, self.w, b, stride=self.stride[1], padding=self.padding[1],
                              groups=self.groups, **kw)
        return ops.conv2d(x, self.w, b, stride=self.stride, padding=self.padding, groups=self.groups, **kw)


@dataclass(eq=False)
class ReluOp(IntOp):
    def run(self, xs, arith):
        return ops.relu(xs[0])


@dataclass(eq=False)
class AddOp(IntOp):
    fa: FixedFormat = UNSET_FORMAT
    fb: FixedFormat = UNSET_FORMAT
    relu: bool = False

    def run(self, xs, arith):
        return ops.add(xs[0], xs[1], fa=self.fa, fb=self.fb, fy=self.fy, rounding=arith["rounding"],
                       overflow=arith["overflow"], relu=self.relu)


@dataclass(eq=False)
class CatOp(IntOp):
    fxs: tuple[FixedFormat, ...] = ()
    dim: int = 1

    def run(self, xs, arith):
        return ops.concat(xs, fxs=self.fxs, fy=self.fy, dim=self.dim, rounding=arith["rounding"],
                          overflow=arith["overflow"])


@dataclass(eq=False)
class ReshapeOp(IntOp):
    """flatten(start, end) when ``shape`` is None, else view/reshape to ``shape``.

    ``shape`` items are ints or ``("size", value_index, dim)`` read from a value at run time.
    """

    start_dim: int = 1
    end_dim: int = -1
    shape: tuple[Any, ...] | None = None

    def run(self, xs, arith, values: list | None = None):
        x = xs[0]
        if self.shape is None:
            return OpResult(torch.from_numpy(x).flatten(self.start_dim, self.end_dim).numpy())
        dims = [v if isinstance(v, int) else values[v[1]].shape[v[2]] for v in self.shape]
        return OpResult(x.reshape(dims))


# --- model and report -------------------------------------------------------------------------

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
        last_use = _last_uses(self.int_ops, self.output_index)
        values: list[np.ndarray | None] = [None] * n
        values[0] = np.asarray(codes, dtype=np.int16)
        povf, oovf = [0] * n, [0] * n
        for i, op in enumerate(self.int_ops[1:], start=1):
            xs = [values[j] for j in op.inputs]
            r = op.run(xs, self.arith, values) if isinstance(op, ReshapeOp) else op.run(xs, self.arith)
            values[i], povf[i], oovf[i] = r.y, r.product_overflows, r.output_overflows
            if not keep:
                for j in {*op.inputs, *_size_refs(op)}:
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


def _size_refs(op: IntOp) -> list[int]:
    if isinstance(op, ReshapeOp) and op.shape:
        return [v[1] for v in op.shape if not isinstance(v, int)]
    return []


def _last_uses(ops_: list[IntOp], output: int) -> list[int]:
    last = list(range(len(ops_)))
    for i, op in enumerate(ops_):
        for j in (*op.inputs, *_size_refs(op)):
            last[j] = max(last[j], i)
    last[output] = len(ops_)
    return last


# --- conversion -------------------------------------------------------------------------------

def convert(model: nn.Module, calibration_data: Any, *, bits: int | Mapping[str, int] = 16,
            mode: str = DEFAULT_MODE, rounding: str = DEFAULT_ROUNDING, overflow: str = DEFAULT_OVERFLOW,
            samples: int | None = 256, headroom_bits: float = 0.5, bias_correction: bool = True,
            equalize: bool = False, progress: bool = False) -> FixedPointModel:
    """Convert ``model`` (eval semantics) to integer arithmetic; the result carries ``.report``.

    ``calibration_data``: a tensor of inputs, or an iterable of tensors or ``(inputs, labels)``
    batches (a DataLoader); at most ``samples`` inputs are used (all if None). They set every
    activation format and the bias correction, and the report's errors are measured on them.
    ``bits``: operand width (16 by default); a mapping ``{layer name: bits}`` narrows the weights
    and input activations of those Conv/Linear layers only (the others stay at 16).
    ``headroom_bits``: activation ranges cover ``2**headroom_bits`` times the calibration max.
    ``equalize``: fold BN and equalize channel ranges first (:mod:`hwaware.fixedpoint.equalize`).
    The user's model is not modified.
    """
    check_arith(mode, rounding, overflow)
    if not isinstance(model, nn.Module):
        raise HwawareError(f"convert: expected a torch nn.Module, got {type(model).__name__}")
    layer_bits = _check_bits(bits)
    x = collect_inputs(calibration_data, samples)
    model_device = str(next((p.device for p in model.parameters()), torch.device("cpu")))
    # the integer kernels are NumPy: a CPU copy of the model is the float reference (the user's
    # model, on whatever device, is never moved or modified)
    model = _cpu_copy(model).eval().float()
    for mod in model.modules():
        if hasattr(mod, "inplace"):
            mod.inplace = False  # calibration reads values a later in-place op would overwrite
    _check_finite_params(model)
    try:
        gm = trace(model, who="convert")
    except HwawareError as exc:
        raise UnsupportedLayerError(f"{exc}; the fixed-point backend supports static graphs of: "
                                    f"{SUPPORTED}") from None
    split_norm_act(gm)
    if equalize:
        from .equalize import fold_and_equalize

        gm = fold_and_equalize(gm, x)
    with torch.no_grad():
        fixed = _Converter(gm, layer_bits, mode=mode, rounding=rounding, overflow=overflow,
                           headroom=headroom_bits, bias_correction=bias_correction,
                           progress=progress).run(x)
    fixed.report = dataclasses.replace(fixed.report, model_device=model_device)
    return fixed


def _cpu_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` on the CPU, made without copying its tensors on their device first."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        if t.device.type != "cpu":
            memo[id(t)] = (nn.Parameter(t.detach().cpu(), requires_grad=t.requires_grad)
                           if isinstance(t, nn.Parameter) else t.detach().cpu())
    return copy.deepcopy(model, memo)


def split_norm_act(gm: torch.fx.GraphModule) -> None:
    """Rewrite each timm ``BatchNormAct2d``-style node (a BatchNorm subclass with ``act``/``drop``
    children) into a plain BatchNorm node and its activation node, so the BatchNorm folds into the
    convolution before it and the activation converts as its own op (both keep module paths:
    ``bn1.bn`` and ``bn1.act``)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if type(mod) in _BN_TYPES or not isinstance(mod, nn.modules.batchnorm._BatchNorm):
            continue
        if not hasattr(mod, "act") or (hasattr(mod, "drop") and not isinstance(mod.drop, _PASS_MODULES)):
            continue  # another BatchNorm subclass: make_op names it as unsupported
        plain = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[2 if isinstance(mod, nn.BatchNorm2d)
                                                                          else 1 if isinstance(mod, nn.BatchNorm1d) else 3]
        bn = plain(mod.num_features, mod.eps, mod.momentum, mod.affine, mod.track_running_stats)
        bn.load_state_dict({k: v for k, v in mod.state_dict().items() if "." not in k})
        bn.eval()
        mod.add_module("bn", bn)
        with gm.graph.inserting_after(node):
            bn_node = gm.graph.call_module(f"{node.target}.bn", node.args, node.kwargs)
        last = bn_node
        if not isinstance(mod.act, nn.Identity):
            with gm.graph.inserting_after(bn_node):
                last = gm.graph.call_module(f"{node.target}.act", (bn_node,))
        node.replace_all_uses_with(last)
        gm.graph.erase_node(node)
    gm.recompile()


def _check_bits(bits: int | Mapping[str, int]) -> dict[str, int] | int:
    def ok(b: Any, where: str) -> int:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 2 <= b <= 16:
            raise HwawareError(f"convert: {where} must be an integer within 2..16, got {b!r}")
        return int(b)

    if isinstance(bits, Mapping):
        return {str(k): ok(v, f"bits['{k}']") for k, v in bits.items()}
    return ok(bits, "bits")


def collect_inputs(data: Any, samples: int | None) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        batches: Iterable[Any] = [data]
    elif isinstance(data, np.ndarray):
        batches = [torch.from_numpy(data)]
    else:
        try:
            batches = iter(data)
        except TypeError:
            raise HwawareError(f"convert: calibration_data must be a tensor or an iterable of batches, "
                               f"got {type(data).__name__}") from None
    got: list[torch.Tensor] = []
    n = 0
    for item in batches:
        if isinstance(item, (tuple, list)):
            item = item[0]
        if not isinstance(item, torch.Tensor):
            raise HwawareError(f"convert: calibration batches must be tensors or (inputs, labels), got "
                               f"{type(item).__name__}")
        got.append(item.detach().cpu().float())
        n += item.shape[0]
        if samples is not None and n >= samples:
            break
    if not got:
        raise HwawareError("convert: the calibration data is empty")
    x = torch.cat(got)[:samples] if samples is not None else torch.cat(got)
    if not torch.isfinite(x).all():
        raise HwawareError("convert: the calibration data holds NaN or Inf")
    return x


def _check_finite_params(model: nn.Module) -> None:
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not torch.isfinite(t).all():
            layer, _, what = name.rpartition(".")
            raise HwawareError(f"convert: layer '{layer or name}' has NaN or Inf in its {what}; "
                               f"fix the model before converting")


def _is_relu(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _only_user(node: torch.fx.Node) -> torch.fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


_BN_FOR = {nn.Conv1d: (nn.BatchNorm1d,), nn.Conv2d: (nn.BatchNorm2d,), nn.Linear: (nn.BatchNorm1d,)}
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _base(mod: nn.Module | None) -> type | None:
    """Conv1d / Conv2d / Linear for those classes and the subclasses with the same arithmetic
    (timm's Conv2dSame pads first; timm's Linear); None for anything else."""
    t = type(mod)
    if t in (nn.Conv1d, nn.Conv2d, nn.Linear):
        return t
    if mod is not None and is_same_pad_conv(mod):
        return nn.Conv2d
    if mod is not None and is_plain_linear(mod):
        return nn.Linear
    return None


class _Converter:
    def __init__(self, gm: torch.fx.GraphModule, layer_bits: dict[str, int] | int, *, mode: str,
                 rounding: str, overflow: str, headroom: int, bias_correction: bool, progress: bool):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.layer_bits = layer_bits
        self.arith = {"mode": mode, "rounding": rounding, "overflow": overflow}
        self.headroom = headroom
        self.bias_correction = bias_correction
        self.progress = progress
        self.calls: dict[str, int] = {}

    # naming as the profiler: module name, "#1" for a second call of the same module
    def layer_name(self, node: torch.fx.Node) -> str:
        base = str(node.target) if node.op == "call_module" else node.name
        k = self.calls.get(base, 0)
        self.calls[base] = k + 1
        return base if k == 0 else f"{base}#{k}"

    def bits_for(self, name: str) -> int:
        if isinstance(self.layer_bits, int):
            return self.layer_bits
        return self.layer_bits.get(name, 16)

    def act_format(self, t: torch.Tensor, bits: int = 16) -> FixedFormat:
        m = float(t.abs().max()) if t.numel() else 0.0
        return FixedFormat(frac_bits_for(m, bits, headroom=self.headroom), bits)

    def run(self, x: torch.Tensor) -> FixedPointModel:
        from tqdm import tqdm

        nodes = list(self.gm.graph.nodes)
        last_use: dict[torch.fx.Node, int] = {}
        for i, n in enumerate(nodes):
            for a in n.all_input_nodes:
                last_use[a] = i
        fenv: dict[torch.fx.Node, Any] = {}  # float values
        ienv: dict[torch.fx.Node, int] = {}  # node -> index of its integer value
        holders: dict[int, list[torch.fx.Node]] = {}  # integer value -> nodes that stand for it
        ivals: list[np.ndarray | None] = []
        shapes: list[tuple[int, ...]] = []
        int_ops: list[IntOp] = []
        reports: list[LayerReport] = []
        absorbed: set[torch.fx.Node] = set()
        self.value_max: dict[int, float] = {}
        output_index = -1
        bar = tqdm(nodes, desc="convert", disable=not self.progress, leave=False)
        for i, node in enumerate(bar):
            if node.op == "output":
                out = node.args[0]
                if not isinstance(out, torch.fx.Node) or out not in ienv:
                    raise UnsupportedLayerError(
                        "convert: the model must return one tensor computed by supported ops "
                        f"({SUPPORTED})")
                output_index = ienv[out]
                break
            if node not in fenv:
                fenv[node] = self.float_value(node, fenv, x)
            if node in absorbed:
                pass
            elif node.op == "placeholder":
                if ienv:
                    raise UnsupportedLayerError("convert: models with more than one input are not supported")
                fmt = self.act_format(fenv[node])
                int_ops.append(InputOp("input", "input", (), fmt))
                ivals.append(fmt.quantize(fenv[node].double().numpy()))
                shapes.append(ivals[0].shape)
                ienv[node], holders[0] = 0, [node]
                self.value_max[0] = _max_abs(fenv[node].numpy())
            elif node.op == "get_attr" or not isinstance(fenv[node], torch.Tensor):
                pass  # shapes, sizes, constants: read at run time where needed
            else:
                group = self.fuse(node)
                for g in group[1:]:
                    absorbed.add(g)
                    fenv[g] = self.float_value(g, fenv, x)
                op, reported = self.make_op(group, fenv, ienv, int_ops)
                xs = [ivals[j] for j in op.inputs]
                r = None
                if isinstance(op, ConvOp) and self.bias_correction:
                    r = self.correct_bias(op, xs[0], fenv[group[-2] if op.relu else group[-1]])
                if r is not None:
                    pass
                elif isinstance(op, ReshapeOp):
                    r = op.run(xs, self.arith, _Shapes(shapes))
                else:
                    r = op.run(xs, self.arith)
                k = len(int_ops)
                int_ops.append(op)
                ivals.append(r.y)
                shapes.append(r.y.shape)
                holders[k] = group
                for g in group:
                    ienv[g] = k
                ref = fenv[group[-1]].double().numpy()
                self.value_max[k] = _max_abs(ref)
                if reported:
                    err = float(np.abs(op.fy.dequantize(r.y) - ref).max()) if ref.size else 0.0
                    reports.append(LayerReport(
                        op.name, op.op, tuple(f.frac_bits for f in _in_formats(op, int_ops)),
                        op.fw.frac_bits if isinstance(op, ConvOp) else None, op.fy.frac_bits,
                        bool(getattr(op, "relu", False)), r.product_overflows, r.output_overflows, err,
                        self.value_max[k], op.fw.bits if isinstance(op, ConvOp) else op.fy.bits,
                        self.approx_error(op)))
            # free the float and integer values nobody reads any more
            for a in node.all_input_nodes:
                if last_use.get(a) == i:
                    fenv.pop(a, None)
                    j = ienv.get(a)
                    if j is not None and all(last_use.get(h, -1) <= i for h in holders[j]):
                        ivals[j] = None
        bar.close()
        if output_index < 0:
            raise UnsupportedLayerError("convert: the traced model has no output")
        if isinstance(self.layer_bits, dict):
            known = sorted(op.name for op in int_ops if isinstance(op, ConvOp))
            for name in self.layer_bits:
                if name not in known:
                    from .._suggest import did_you_mean

                    raise HwawareError(f"convert: bits names layer '{name}', which is not a Conv/Linear "
                                       f"call of the model{did_you_mean(name, known)}")
        report = ConversionReport(self.arith["mode"], self.arith["rounding"], self.arith["overflow"],
                                  int_ops[0].fy.frac_bits, int(x.shape[0]), tuple(reports))
        return FixedPointModel(int_ops, output_index, report=report, **self.arith)

    # -- float side ----------------------------------------------------------------------------
    def float_value(self, node: torch.fx.Node, fenv: dict, x: torch.Tensor) -> Any:
        if node.op == "placeholder":
            return x
        args = torch.fx.node.map_arg(node.args, lambda n: fenv[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: fenv[n])
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "get_attr":
            obj: Any = self.gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            return obj
        raise UnsupportedLayerError(f"convert: graph node '{node.name}' ({node.op}) is not supported")

    # -- pattern matching ----------------------------------------------------------------------
    def fuse(self, node: torch.fx.Node) -> list[torch.fx.Node]:
        group = [node]
        mod = self.modules.get(node.target) if node.op == "call_module" else None
        if _base(mod) in _BN_FOR:
            nxt = _only_user(node)
            if nxt is not None and nxt.op == "call_module" and \
                    type(self.modules[nxt.target]) in _BN_FOR[_base(mod)]:
                group.append(nxt)
        if _base(mod) in _BN_FOR or self.is_add(node):
            nxt = _only_user(group[-1])
            if nxt is not None and _is_relu(nxt, self.modules):
                group.append(nxt)
        return group

    def is_add(self, node: torch.fx.Node) -> bool:
        return (node.op == "call_function" and node.target in ADD_FUNCTIONS) or \
            (node.op == "call_method" and node.target in ADD_METHODS)

    def is_mul(self, node: torch.fx.Node) -> bool:
        return (node.op == "call_function" and node.target in MUL_FUNCTIONS) or \
            (node.op == "call_method" and node.target in MUL_METHODS)

    def make_op(self, group, fenv, ienv, int_ops) -> tuple[IntOp, bool]:
        node = group[0]
        name = self.layer_name(node)
        relu = _is_relu(group[-1], self.modules) and len(group) > 1
        pre = fenv[group[-2] if relu else group[-1]]  # value before a fused ReLU

        def inp(n: Any) -> int:
            if not isinstance(n, torch.fx.Node) or n not in ienv:
                raise UnsupportedLayerError(
                    f"convert: layer '{name}' reads {n!r}, which is not an activation of the model; "
                    f"supported: {SUPPORTED}")
            return ienv[n]

        if node.op == "call_module":
            mod = self.modules[node.target]
            t = type(mod)
            if _base(mod) is not None:
                op = self.conv_op(name, mod, group, inp(node.args[0]), int_ops, pre, relu)
                if is_same_pad_conv(mod):
                    op.pad_same = _same_pads(tuple(fenv[node.args[0]].shape[2:]), mod)
                return op, True
            if t is nn.ReLU:
                j = inp(node.args[0])
                return ReluOp(name, "ReLU", (j,), int_ops[j].fy), True
            if t in (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                     nn.AdaptiveAvgPool2d):
                return self.pool_op(name, mod, inp(node.args[0]), int_ops, fenv[node]), True
            act = self.activation_op(name, t.__name__, mod, (), {}, node, fenv, inp, int_ops)
            if act is not None:
                return act, True
            if is_stochastic_depth(mod):
                j = inp(node.args[0])
                return ReshapeOp(name, t.__name__, (j,), int_ops[j].fy, 0, 0), False
            if t is nn.Flatten:
                j = inp(node.args[0])
                return ReshapeOp(name, "Flatten", (j,), int_ops[j].fy, mod.start_dim, mod.end_dim), False
            if t in _PASS_MODULES:  # identity in eval mode
                j = inp(node.args[0])
                return ReshapeOp(name, t.__name__, (j,), int_ops[j].fy, 0, 0), False
            if t.__name__.startswith("BatchNorm"):
                raise UnsupportedLayerError(
                    f"convert: layer '{name}' ({t.__name__}) does not directly follow a Conv/Linear whose "
                    f"only user it is, so it cannot be folded; supported: {SUPPORTED}")
            raise UnsupportedLayerError(f"convert: layer '{name}' is a {t.__name__}, which the fixed-point "
                                        f"backend does not support; supported: {SUPPORTED}")
        if self.is_add(node):
            args = list(node.args)
            if len(args) != 2 or any(k != "alpha" or v != 1 for k, v in node.kwargs.items()):
                raise UnsupportedLayerError(f"convert: '{name}': only a + b of two activations is supported")
            ja, jb = inp(args[0]), inp(args[1])
            fy = self.act_format(pre)
            return AddOp(name, "add", (ja, jb), fy, int_ops[ja].fy, int_ops[jb].fy, relu), True
        if _is_relu(node, self.modules):
            j = inp(node.args[0])
            return ReluOp(name, "relu", (j,), int_ops[j].fy), True
        if node.op in ("call_function", "call_method"):
            fname = target_name(node)
            act = self.activation_op(name, fname, None, node.args[1:], node.kwargs, node, fenv, inp, int_ops)
            if act is not None:
                return act, True
            if self.is_mul(node):
                args = [a for a in node.args if isinstance(a, torch.fx.Node)]
                if len(args) != 2 or len(node.args) != 2 or node.kwargs:
                    raise UnsupportedLayerError(f"convert: '{name}' in '{module_path(node)}' (mul): only a * b "
                                                f"of two activations is supported")
                ja, jb = inp(args[0]), inp(args[1])
                return MulOp(name, "mul", (ja, jb), self.act_format(fenv[node]), int_ops[ja].fy,
                             int_ops[jb].fy), True
            if fname == "mean" or node.target is torch.mean:
                return self.mean_op(name, node, fenv, inp, int_ops), True
            if node.target is nn.functional.adaptive_avg_pool2d:
                j = inp(node.args[0])
                size = node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]
                return WindowPoolOp(name, "adaptive_avg_pool2d", (j,), self.act_format(fenv[node]), "avg",
                                    int_ops[j].fy, adaptive=pair(size, "output_size")), True
            if node.target in STOCHASTIC_DEPTH_FUNCTIONS or node.target in DROPOUT_FUNCTIONS:
                j = inp(node.args[0])
                return ReshapeOp(name, fname, (j,), int_ops[j].fy, 0, 0), False
        if (node.op == "call_function" and node.target in _CAT_FUNCS):
            tensors = node.args[0]
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            js = tuple(inp(n) for n in tensors)
            fy = self.act_format(fenv[node])
            return CatOp(name, "cat", js, fy, tuple(int_ops[j].fy for j in js), int(dim)), True
        if (node.op == "call_function" and node.target in _FLATTEN_FUNCS) or \
                (node.op == "call_method" and node.target == "flatten"):
            j = inp(node.args[0])
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return ReshapeOp(name, "flatten", (j,), int_ops[j].fy, int(start), int(end)), False
        if node.op == "call_method" and node.target in ("view", "reshape"):
            j = inp(node.args[0])
            dims = node.args[1:]
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = tuple(dims[0])
            return ReshapeOp(name, node.target, (j,), int_ops[j].fy,
                             shape=tuple(self.shape_item(d, ienv, name) for d in dims)), False
        raise UnsupportedLayerError(f"convert: op '{target_name(node)}' in module '{module_path(node)}' "
                                    f"is not supported by the fixed-point backend; supported: {SUPPORTED}")

    def shape_item(self, d: Any, ienv: dict, name: str) -> Any:
        if isinstance(d, int):
            return d
        if isinstance(d, torch.fx.Node):
            if d.op == "call_method" and d.target == "size" and len(d.args) == 2 and d.args[0] in ienv:
                return ("size", ienv[d.args[0]], int(d.args[1]))
            if d.op == "call_function" and d.target is operator.getitem:
                src, k = d.args
                if isinstance(src, torch.fx.Node) and src.op == "call_function" and \
                        src.target is getattr and src.args[1] == "shape" and src.args[0] in ienv:
                    return ("size", ienv[src.args[0]], int(k))
        raise UnsupportedLayerError(f"convert: '{name}': view/reshape sizes must be ints or x.size(i), got {d!r}")

    # -- op builders ---------------------------------------------------------------------------
    def conv_op(self, name, mod, group, j, int_ops, pre, relu) -> ConvOp:
        w = mod.weight.detach().double()
        b = mod.bias.detach().double() if mod.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if len(group) > 1 and type(self.modules.get(group[1].target)) in sum(_BN_FOR.values(), ()):
            bn = self.modules[group[1].target]
            if not bn.track_running_stats or bn.running_mean is None:
                raise UnsupportedLayerError(f"convert: '{group[1].target}' has no running statistics to fold")
            scale = bn.weight.detach().double() if bn.affine else torch.ones_like(bn.running_var.double())
            shift = bn.bias.detach().double() if bn.affine else torch.zeros_like(scale)
            k = scale / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * k.reshape(-1, *([1] * (w.dim() - 1)))
            b = (b - bn.running_mean.double()) * k + shift
        bits = self.bits_for(name)
        fx = int_ops[j].fy
        fxq = None
        fw = FixedFormat(frac_bits_for(float(w.abs().max()), bits), bits)
        fy = self.act_format(pre)
        if bits < 16:
            fxq = self.narrow_input_format(int_ops, j, bits)
        f_in = fxq or fx
        wq = fw.quantize(w.numpy())
        if self.arith["mode"] == "eyeriss":
            bq = FixedFormat(fy.frac_bits).quantize(b.numpy()).astype(np.int64)
        else:
            bq = np.clip(np.floor(np.ldexp(b.numpy(), f_in.frac_bits + fw.frac_bits) + 0.5),
                         -(2**31), 2**31 - 1).astype(np.int64)
        t = _base(mod)
        if t is nn.Linear:
            return ConvOp(name, "Linear", (j,), fy, fx, fw, wq, bq, relu=relu, fxq=fxq)
        if any(p != 1 for p in pair(mod.dilation, "dilation")) or mod.padding_mode != "zeros" or \
                isinstance(mod.padding, str):
            raise UnsupportedLayerError(f"convert: layer '{name}': dilation, string padding and padding "
                                        f"modes other than zeros are not supported")
        if t is nn.Conv1d:
            return ConvOp(name, "Conv1d", (j,), fy, fx, fw, wq, bq, (1, mod.stride[0]), (0, mod.padding[0]),
                          mod.groups, relu, fxq)
        return ConvOp(name, "Conv2d", (j,), fy, fx, fw, wq, bq, pair(mod.stride, "stride"),
                      pair(mod.padding, "padding"), mod.groups, relu, fxq)

    def narrow_input_format(self, int_ops, j, bits) -> FixedFormat:
        """A narrower input format: the range the 16-bit input format was sized for."""
        fx = int_ops[j].fy
        top = self.value_max.get(j) or math.ldexp(fx.qmax, -fx.frac_bits)
        return FixedFormat(frac_bits_for(top, bits, headroom=self.headroom), bits)

    def pool_op(self, name, mod, j, int_ops, out) -> WindowPoolOp:
        t = type(mod)
        fx = int_ops[j].fy
        dims = 1 if t.__name__.endswith("1d") else 2
        kind = "max" if t.__name__.startswith("Max") else "avg"
        if kind == "max" and (any(d != 1 for d in pair(mod.dilation, "dilation")) or mod.return_indices):
            raise UnsupportedLayerError(f"convert: layer '{name}' ({t.__name__}): max pooling with dilation "
                                        f"or return_indices is not supported")
        if getattr(mod, "divisor_override", None):
            raise UnsupportedLayerError(f"convert: layer '{name}' ({t.__name__}): divisor_override is not "
                                        f"supported")
        fy = fx if kind == "max" else self.act_format(out)
        if t.__name__.startswith("Adaptive"):
            size = mod.output_size
            osz = (1, size if isinstance(size, int) else size[0]) if dims == 1 else pair(size, "output_size")
            if None in osz:
                raise UnsupportedLayerError(f"convert: layer '{name}': adaptive output size None is not supported")
            return WindowPoolOp(name, t.__name__, (j,), fy, "avg", fx, adaptive=osz, dims=dims)
        k = mod.kernel_size
        st = mod.stride if mod.stride is not None else k
        pad = mod.padding
        if dims == 1:
            k, st, pad = (1, _first(k)), (1, _first(st)), (0, _first(pad))
        return WindowPoolOp(name, t.__name__, (j,), fy, kind, fx, pair(k, "kernel"), pair(st, "stride"),
                            pair(pad, "padding"), bool(mod.ceil_mode),
                            bool(getattr(mod, "count_include_pad", True)), dims=dims)

    def mean_op(self, name, node, fenv, inp, int_ops) -> WindowPoolOp:
        """``x.mean((2, 3))`` (keepdim or not) on N x C x H x W, ``x.mean(-1)`` on N x C x L."""
        src = node.args[0]
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        keep = bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))
        rank = fenv[src].dim() if isinstance(src, torch.fx.Node) and src in fenv else 0
        dims = sorted(d % rank for d in ([dims] if isinstance(dims, int) else (dims or ()))) if rank else []
        if rank not in (3, 4) or dims != list(range(2, rank)):
            raise UnsupportedLayerError(f"convert: '{name}' in '{module_path(node)}' (mean): only a mean over "
                                        f"the spatial dims of N x C x H x W or N x C x L is supported, got "
                                        f"dims {dims} of a {rank}-D tensor")
        j = inp(src)
        return WindowPoolOp(name, "mean", (j,), self.act_format(fenv[node]), "avg", int_ops[j].fy,
                            adaptive=(1, 1), keepdim=keep, dims=2 if rank == 4 else 1)

    def activation_op(self, name, kind, mod, fargs, fkwargs, node, fenv, inp, int_ops) -> IntOp | None:
        """The integer op of an activation module (``kind`` = class name) or function/method
        (``kind`` = its name, ``fargs``/``fkwargs`` its extra arguments); None if not one."""
        if mod is None and node.op == "call_function" and \
                not str(getattr(node.target, "__module__", "")).startswith("torch"):
            return None
        key = kind.lower().rstrip("_")
        if key not in _ACTIVATIONS:
            return None
        if mod is not None and type(mod) not in _ACTIVATION_TYPES:
            return None  # a user class named like one: its forward may differ
        j = inp(node.args[0])
        fx = int_ops[j].fy

        def arg(i: int, kw: str, attr: str, default: Any) -> Any:
            if mod is not None:
                return getattr(mod, attr, default)
            return fkwargs.get(kw, fargs[i] if len(fargs) > i else default)

        if key in ("relu6", "hardtanh"):
            lo = 0.0 if key == "relu6" else float(arg(0, "min_val", "min_val", -1.0))
            hi = 6.0 if key == "relu6" else float(arg(1, "max_val", "max_val", 1.0))
            return ClampOp(name, kind, (j,), fx, lo, hi)
        if key == "leaky_relu" or key == "leakyrelu":
            slope = float(arg(0, "negative_slope", "negative_slope", 0.01))
            fs = frac_bits_for(abs(slope), 16) if slope else 0
            return LeakyReluOp(name, kind, (j,), fx, fx, int(math.floor(math.ldexp(slope, fs) + 0.5)), fs)
        fy = self.act_format(fenv[node])
        if key in ("hardswish", "hardsigmoid"):
            return HardOp(name, kind, (j,), fy, fx, key)
        return LutOp(name, kind, (j,), fy, fx, _ACTIVATIONS[key])

    def approx_error(self, op: IntOp) -> float:
        """Stated bound of a table activation's error in output units (0 for exact ops)."""
        if not isinstance(op, LutOp):
            return 0.0
        if op.fn in ("silu", "gelu"):
            return op.gate_error * self.value_max.get(op.inputs[0], 0.0)
        return op.gate_error

    # -- bias correction -----------------------------------------------------------------------
    def correct_bias(self, op: ConvOp, x: np.ndarray, target: torch.Tensor) -> OpResult | None:
        """Set each bias code so the channel's mean output on the calibration data is right.

        ``target``: the float model's output of this layer (before a fused ReLU). The integer
        layer runs without bias on its integer input; the bias becomes the rounded mean of
        (target - integer result) per output channel, which also absorbs the mean error the
        input carries from earlier layers. In mode eyeriss the layer's result with the new bias
        follows from that run (the adder is modular) and is returned; otherwise None.
        """
        t = target.double().numpy()
        axes = tuple(i for i in range(t.ndim) if i != 1)
        if self.arith["mode"] == "eyeriss":
            r0 = op.run([x], self.arith, bias=None, relu=False)
            got = r0.y.astype(np.float64)
            delta = (np.ldexp(t, op.fy.frac_bits) - got).mean(axis=axes)  # codes at f_y
            op.b = np.clip(np.floor(delta + 0.5), -32768, 32767).astype(np.int64)
            if r0.output_overflows or op.fy.bits < 16:
                return None
            # no sum wrapped without bias, so got is the exact sum of cut products
            shape = (1, -1) + (1,) * (got.ndim - 2)
            total = r0.y.astype(np.int64) + op.b.reshape(shape)
            y = ((total + 32768) & 0xFFFF) - 32768
            if op.relu:
                y = np.maximum(y, 0)
            return OpResult(y.astype(np.int16), r0.product_overflows,
                            int(((total < -32768) | (total > 32767)).sum()))
        else:
            s = op.f_in.frac_bits + op.fw.frac_bits - op.fy.frac_bits
            got = op.run([x], self.arith, bias=np.zeros_like(op.b), relu=False).y.astype(np.float64)
            delta = np.ldexp(np.ldexp(t, op.fy.frac_bits) - got, s).mean(axis=axes)  # codes at f_x + f_w
            op.b = np.clip(np.floor(delta + 0.5), -(2**31), 2**31 - 1).astype(np.int64)
        return None


class _Shapes:
    """``values[j].shape`` for a ReshapeOp during conversion, where freed values keep their shape."""

    def __init__(self, shapes: list[tuple[int, ...]]) -> None:
        self.shapes = shapes

    def __getitem__(self, j: int) -> Any:
        return SimpleNamespace(shape=self.shapes[j])


def _same_pads(size: tuple[int, ...], mod: nn.Module) -> tuple[int, int, int, int]:
    """TF "SAME" padding of timm's Conv2dSame for an input of ``size`` (H, W): (top, bottom, left, right)."""
    pads = []
    for n, k, s, d in zip(size, mod.kernel_size, mod.stride, mod.dilation):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


#: activation name (class or function, lower case) -> table function for LutOp, or its own kind
_ACTIVATIONS = {"relu6": "", "hardtanh": "", "leaky_relu": "", "leakyrelu": "", "hardswish": "",
                "hardsigmoid": "", "silu": "silu", "gelu": "gelu", "sigmoid": "sigmoid", "tanh": "tanh"}
_ACTIVATION_TYPES = (nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU,
                     nn.Sigmoid, nn.Tanh)


def _first(v: Any) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def _max_abs(a: np.ndarray) -> float:
    return float(np.abs(a).max()) if a.size else 0.0


def _in_formats(op: IntOp, int_ops: list[IntOp]) -> list[FixedFormat]:
    if isinstance(op, ConvOp):
        return [op.f_in]
    return [int_ops[j].fy for j in op.inputs]


# --- helpers for users and tests --------------------------------------------------------------

def top1_agreement(model: nn.Module, fixed: nn.Module, data: Any, *, max_batches: int | None = None) -> float:
    """Fraction of inputs on which ``model`` and ``fixed`` give the same top-1 class."""
    model = model.eval()
    same = seen = 0
    batches = [data] if isinstance(data, torch.Tensor) else data
    with torch.no_grad():
        for i, item in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            xb = item[0] if isinstance(item, (tuple, list)) else item
            same += int((model(xb).argmax(1) == fixed(xb).argmax(1)).sum())
            seen += xb.shape[0]
    if seen == 0:
        raise HwawareError("top1_agreement: the data yields no samples")
    return same / seen


def calibrate_batchnorm(model: nn.Module, data: Any, *, batches: int | None = None) -> nn.Module:
    """Reset and re-estimate every BatchNorm's running statistics (cumulative average) in place.

    For networks with random weights (e.g. torchvision's with ``weights=None``), whose default
    statistics (mean 0, var 1) are meaningless. Returns ``model`` in eval mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    batches_ = [data] if isinstance(data, torch.Tensor) else data
    with torch.no_grad():
        for i, item in enumerate(batches_):
            if batches is not None and i >= batches:
                break
            model(item[0] if isinstance(item, (tuple, list)) else item)
    return model.eval()
