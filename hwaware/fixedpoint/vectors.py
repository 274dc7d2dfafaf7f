"""Test vectors for hardware verification: every Conv/Linear layer's int16 operands and results.

For each Conv1d/Conv2d/Linear call of the converted model, ``NNN_<layer>.npz`` holds

=========  ==================================================================================
x          int16, the layer's unpadded input: N x C x H x W (Conv1d: N x C x 1 x W) or N x C
w          int16, M x C/groups x R x S (Conv1d: M x C/groups x 1 x S) or M x C
b          mode eyeriss: int16 at f_y; mode wide: at f_x + f_w, int32, or int64 when a code does
           not fit int32 (the manifest's ``b_dtype`` says which; always present, M values)
y          int16, the expected output (after the fused ReLU when ``relu``), N x M x E x F or N x M
stride     [vertical, horizontal];  padding  [vertical, horizontal] (zero padding, code 0)
groups, f_x, f_w, f_y, relu; mode, rounding, overflow (strings); op, name (strings)
f_w_chan…  ``f_w_channels``, only for a model converted with ``per_channel_weights=True`` (the
           opt-in extension): M ints, channel m's weights at ``f_w_channels[m]`` fractional bits,
           its shift ``f_x + f_w_channels[m] - f_y`` and (wide) its bias at ``f_x + f_w_channels[m]``;
           ``f_w`` is then the coarsest of them (the manifest adds ``f_w_channels`` and ``shifts``)
=========  ==================================================================================

plus ``NNN_<layer>.{x,w,b,y}.hex`` for ``$readmemh``: one value per line, row-major (C order)
in the shapes above, two's complement, 4 hex digits per int16, 8 per int32, 16 per int64. ``manifest.json``
lists the layers in execution order with file names, shapes and attributes. The arithmetic that
turns x, w, b into y is the contract in docs/fixedpoint.md.

Every other op with arithmetic (activations, the squeeze-excitation multiply, add, pooling) is
written as ``opKKK_<name>.npz`` (``KKK``: the op's index in the integer graph, so files sort in
execution order) with ``x`` (and ``x2`` for add/multiply), ``y``, ``f_x`` (``f_x2``), ``f_y``,
``op``, ``kind`` and the op's parameters (:data:`OP_PARAMS`); table activations also carry the
gate ``table`` (513 entries at 15 fractional bits). The per-channel affine (an unfoldable
BatchNorm, a layer-scale multiply) carries ``a`` (int16 at ``f_a``) and ``b`` (int64 at
``f_x + f_a``), LayerNorm ``g`` (int16 at ``f_g``), ``beta`` (int64 at ``f_z + f_g``) and ``e``; both
name their channel axis ``dim`` (1, or -1 for channels last). ``manifest.json`` lists them under
``ops``. A Linear applied to channels-last input (N x ... x C) is written with its rows flattened:
``x`` (N*...) x C, ``y`` (N*...) x M.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import atomic_open, check_output_path, write_json, write_text
from .act_ops import ClampOp, HardOp, LeakyReluOp, LutOp, MulOp, WindowPoolOp
from .activations import LUT_FUNCTIONS, gate_table
from .convert import AddOp, ConvOp, FixedPointModel, convert
from .format import DEFAULT_MODE, DEFAULT_OVERFLOW, DEFAULT_ROUNDING
from .norm_ops import AffineOp, LayerNormOp

FORMAT = "hwaware-vectors/1"


@dataclass(frozen=True)
class VectorLayer:
    index: int
    name: str
    op: str
    file: str
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    f_x: int
    f_w: int
    f_y: int
    relu: bool
    product_overflows: int
    output_overflows: int


@dataclass(frozen=True)
class VectorOp:
    """One exported non-Conv/Linear op (activation, multiply, add, pooling)."""

    index: int
    name: str
    op: str
    kind: str
    file: str
    y_shape: tuple[int, ...]
    output_overflows: int


@dataclass(frozen=True)
class VectorSet:
    """What :func:`export_vectors` wrote."""

    out_dir: Path
    manifest: Path
    mode: str
    rounding: str
    overflow: str
    layers: tuple[VectorLayer, ...]
    ops: tuple[VectorOp, ...] = ()


#: op kind -> its parameters in the .npz and the manifest (besides x, x2, y, f_x, f_x2, f_y)
OP_PARAMS = {
    "clamp": ("lo", "hi"),                          # ReLU6 / Hardtanh: codes clamped to lo..hi at f_x
    "leaky_relu": ("slope_code", "f_slope"),        # negative side: x * slope_code >> (f_x + f_slope - f_y)
    "hardswish": (), "hardsigmoid": (),             # the exact rational, rounded once
    "lut": ("fn", "gate", "times_x"),              # + table: gate codes at 15 fractional bits
    "mul": (), "add": ("relu",),
    "pool": ("pool", "kernel", "stride", "padding", "ceil_mode", "count_include_pad", "adaptive",
             "keepdim", "dims"),
    "affine": ("dim", "f_a"),                       # + a (int16 at f_a), b (int64 at f_x + f_a)
    "layer_norm": ("dim", "e", "f_z", "f_g"),       # + g (int16 at f_g), beta (int64 at f_z + f_g)
}
#: op kind -> (parameter array, hex digits) written besides x, x2, y
OP_ARRAYS = {"affine": (("a", 4), ("b", 16)), "layer_norm": (("g", 4), ("beta", 16))}


def _op_params(op: Any) -> tuple[str, dict[str, Any]] | None:
    """(kind, parameters) of an exported non-Conv op; None for ops without arithmetic."""
    if isinstance(op, ClampOp):
        return "clamp", {"lo": op.lo, "hi": op.hi}
    if isinstance(op, LeakyReluOp):
        return "leaky_relu", {"slope_code": int(op.slope_code), "f_slope": int(op.fs)}
    if isinstance(op, HardOp):
        return op.fn, {}
    if isinstance(op, LutOp):
        gate, times_x = LUT_FUNCTIONS[op.fn]
        return "lut", {"fn": op.fn, "gate": gate, "times_x": times_x}
    if isinstance(op, MulOp):
        return "mul", {}
    if isinstance(op, AddOp):
        return "add", {"relu": bool(op.relu)}
    if isinstance(op, AffineOp):
        return "affine", {"dim": int(op.dim), "f_a": int(op.fa.frac_bits)}
    if isinstance(op, LayerNormOp):
        return "layer_norm", {"dim": int(op.dim), "e": int(op.e), "f_z": int(op.fz), "f_g": int(op.fg.frac_bits)}
    if isinstance(op, WindowPoolOp):
        return "pool", {"pool": op.kind, "kernel": list(op.kernel), "stride": list(op.stride),
                        "padding": list(op.padding), "ceil_mode": bool(op.ceil_mode),
                        "count_include_pad": bool(op.count_include_pad),
                        "adaptive": list(op.adaptive) if op.adaptive is not None else None,
                        "keepdim": bool(op.keepdim), "dims": int(op.dims)}
    return None


def _input_formats(op: Any, fixed: FixedPointModel) -> list[int]:
    fmts = [getattr(op, "fa", None), getattr(op, "fb", None)] if isinstance(op, (MulOp, AddOp)) else \
        [getattr(op, "fx", None)]
    return [(f if f is not None else fixed.int_ops[j].fy).frac_bits for f, j in zip(fmts, op.inputs)]


def _export_ops(fixed: FixedPointModel, run: Any, out: Path, hex_files: bool) -> tuple[list[VectorOp], list[dict]]:
    """Write every non-Conv/Linear op with arithmetic (see the module docstring)."""
    arith = fixed.arith
    found: list[VectorOp] = []
    entries: list[dict[str, Any]] = []
    for k, op in enumerate(fixed.int_ops):
        kp = _op_params(op)
        if kp is None:
            continue
        kind, params = kp
        stem = f"op{k:03d}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", op.name)
        fxs = _input_formats(op, fixed)
        arrays: dict[str, Any] = {"y": run.values[k].astype(np.int16), "f_y": np.int64(op.fy.frac_bits)}
        for i, (j, f) in enumerate(zip(op.inputs, fxs)):
            key = "x" if i == 0 else f"x{i + 1}"
            arrays[key] = run.values[j].astype(np.int16)
            arrays["f_" + key] = np.int64(f)
        if kind == "lut":
            arrays["table"] = gate_table(params["gate"])
        for key, _ in OP_ARRAYS.get(kind, ()):
            arrays[key] = np.asarray(getattr(op, key), dtype=np.int16 if key in ("a", "g") else np.int64)
        for key, v in params.items():
            arrays[key] = np.str_(v) if isinstance(v, str) else np.asarray(v if v is not None else [])
        arrays.update({"mode": np.str_(arith["mode"]), "rounding": np.str_(arith["rounding"]),
                       "overflow": np.str_(arith["overflow"]), "op": np.str_(op.op),
                       "kind": np.str_(kind), "name": np.str_(op.name)})
        with atomic_open(out / f"{stem}.npz", "wb") as fh:
            np.savez(fh, **arrays)
        hexes = {}
        if hex_files:
            for key, digits in [(a, 4) for a in ("x", "x2", "y") if a in arrays] + list(OP_ARRAYS.get(kind, ())):
                hexes[key] = f"{stem}.{key}.hex"
                write_text(out / hexes[key], _hex_lines(arrays[key], digits))
        rec = VectorOp(k, op.name, op.op, kind, f"{stem}.npz", tuple(arrays["y"].shape), run.output_overflows[k])
        found.append(rec)
        entries.append({
            "index": k, "name": op.name, "op": op.op, "kind": kind, "file": rec.file, "hex": hexes,
            "x_shapes": [list(run.values[j].shape) for j in op.inputs], "y_shape": list(rec.y_shape),
            **{f"f_{'x' if i == 0 else f'x{i + 1}'}": f for i, f in enumerate(fxs)},
            "f_y": op.fy.frac_bits, **params, "output_overflows": rec.output_overflows,
        })
    return found, entries


def _stem(index: int, name: str) -> str:
    return f"{index:03d}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _wide_bias_dtype(b: np.ndarray) -> type:
    """int32 when every wide bias code fits it (the usual case), else int64 (kept exact)."""
    fits = b.size == 0 or (int(b.min()) >= -(2**31) and int(b.max()) < 2**31)
    return np.int32 if fits else np.int64


def _hex_lines(a: np.ndarray, digits: int) -> str:
    """One two's-complement value per line, ``digits`` lower-case hex digits (vectorized)."""
    if digits == 16:  # int64: the two's complement is the unsigned view
        u = a.reshape(-1).astype(np.int64).view(np.uint64)
        shifts = np.arange(4 * (digits - 1), -1, -4, dtype=np.uint64)
    else:
        u = a.reshape(-1).astype(np.int64) & ((1 << (4 * digits)) - 1)
        shifts = np.arange(4 * (digits - 1), -1, -4, dtype=np.int64)
    chars = np.empty((u.size, digits + 1), dtype=np.uint8)
    chars[:, :digits] = _HEX[((u[:, None] >> shifts[None, :]) & u.dtype.type(15)).astype(np.int64)]
    chars[:, digits] = ord("\n")
    return chars.tobytes().decode("ascii")


def export_vectors(model: nn.Module, out_dir: str | Path, *, inputs: torch.Tensor,
                   calibration_data: Any = None, mode: str = DEFAULT_MODE,
                   rounding: str = DEFAULT_ROUNDING, overflow: str = DEFAULT_OVERFLOW, samples: int | None = 256, hex_files: bool = True,
                   meta: dict[str, Any] | None = None, progress: bool = False, force: bool = False) -> VectorSet:
    """Convert ``model`` (unless it is a :class:`FixedPointModel`), run ``inputs``, write vectors.

    ``calibration_data`` sets the formats (default: ``inputs``). ``out_dir`` must be new or empty
    (files of another export would mix with these) unless ``force``. Returns what was written.
    """
    check_output_path(out_dir, flag="export_vectors: out_dir", directory=True, force=force)
    if isinstance(model, FixedPointModel):
        fixed = model
    else:
        calib = inputs if calibration_data is None else calibration_data
        fixed = convert(model, calib, mode=mode, rounding=rounding, overflow=overflow, samples=samples,
                        progress=progress)
    arith = fixed.arith
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = fixed.run(fixed.quantize_input(inputs), keep=True)
    layers: list[VectorLayer] = []
    entries: list[dict[str, Any]] = []
    convs = [(k, op) for k, op in enumerate(fixed.int_ops) if isinstance(op, ConvOp)]
    from tqdm import tqdm

    for index, (k, op) in enumerate(tqdm(convs, desc="vectors", disable=not progress, leave=False)):
        x = op.prepare(run.values[op.inputs[0]], arith)
        w, y = op.w, run.values[k]
        b = op.b.astype(np.int16 if arith["mode"] == "eyeriss" else _wide_bias_dtype(op.b))
        if op.op == "Conv1d":  # stored as 4-D with H = R = 1
            x, w, y = x[:, :, None, :], w[:, :, None, :], y[:, :, None, :]
        if op.op == "Linear" and x.ndim > 2:  # channels last: one row per position
            x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        stem = _stem(index, op.name)
        arrays = {
            "x": x.astype(np.int16), "w": w.astype(np.int16), "b": b, "y": y.astype(np.int16),
            "stride": np.array(op.stride, dtype=np.int64), "padding": np.array(op.padding, dtype=np.int64),
            "groups": np.int64(op.groups), "f_x": np.int64(op.f_in.frac_bits),
            "f_w": np.int64(op.fw.frac_bits), "f_y": np.int64(op.fy.frac_bits), "relu": np.bool_(op.relu),
            "mode": np.str_(arith["mode"]), "rounding": np.str_(arith["rounding"]),
            "overflow": np.str_(arith["overflow"]), "op": np.str_(op.op), "name": np.str_(op.name),
        }
        channel_formats = {}
        if op.fw_channels is not None:  # the opt-in extension: overrides f_w channel by channel
            arrays["f_w_channels"] = np.asarray(op.fw_channels, dtype=np.int64)
            channel_formats = {"f_w_channels": list(op.fw_channels),
                               "shifts": [op.f_in.frac_bits + f - op.fy.frac_bits for f in op.fw_channels]}
        with atomic_open(out / f"{stem}.npz", "wb") as fh:
            np.savez(fh, **arrays)
        hexes = {}
        if hex_files:
            for key, digits in (("x", 4), ("w", 4), ("b", 2 * b.dtype.itemsize), ("y", 4)):
                hexes[key] = f"{stem}.{key}.hex"
                write_text(out / hexes[key], _hex_lines(arrays[key], digits))
        layer = VectorLayer(index, op.name, op.op, f"{stem}.npz", tuple(x.shape), tuple(w.shape),
                            tuple(y.shape), op.f_in.frac_bits, op.fw.frac_bits, op.fy.frac_bits, op.relu,
                            run.product_overflows[k], run.output_overflows[k])
        layers.append(layer)
        entries.append({
            "index": index, "name": op.name, "op": op.op, "file": layer.file, "hex": hexes,
            "x_shape": list(layer.x_shape), "w_shape": list(layer.w_shape), "y_shape": list(layer.y_shape),
            "b_dtype": str(b.dtype), "stride": list(op.stride), "padding": list(op.padding),
            "groups": op.groups, "f_x": layer.f_x, "f_w": layer.f_w, "f_y": layer.f_y,
            "shift": layer.f_x + layer.f_w - layer.f_y, **channel_formats, "relu": op.relu,
            "product_overflows": layer.product_overflows, "output_overflows": layer.output_overflows,
        })
    ops, op_entries = _export_ops(fixed, run, out, hex_files)
    manifest = out / "manifest.json"
    write_json(manifest, {
        "format": FORMAT,
        "contract": "docs/fixedpoint.md (hwaware): value = code * 2**-f; s = f_x + f_w - f_y",
        **arith,
        "layout": "row-major (C order); hex: one two's-complement value per line, 4 digits (int16), "
                  "8 (int32 bias in mode wide) or 16 (int64: a wide bias beyond int32, see b_dtype)",
        "input_shape": list(inputs.shape),
        "input_frac_bits": fixed.input_format.frac_bits,
        **(meta or {}),
        "layers": entries,
        "ops": op_entries,
    })
    return VectorSet(out, manifest, arith["mode"], arith["rounding"], arith["overflow"], tuple(layers),
                     tuple(ops))
