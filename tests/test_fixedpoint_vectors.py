"""Exported test vectors match an independent recomputation from the arithmetic contract, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from hwaware.cli import main as cli_main
from hwaware.fixedpoint.convert import convert
from hwaware.fixedpoint.convert import calibrate_batchnorm, top1_agreement
from hwaware.fixedpoint.vectors import export_vectors


def recompute(v) -> np.ndarray:
    """The contract (docs/fixedpoint.md), written again here from scratch in NumPy int64."""
    x, w, b = v["x"].astype(np.int64), v["w"].astype(np.int64), v["b"].astype(np.int64)
    mode, rounding, overflow = str(v["mode"]), str(v["rounding"]), str(v["overflow"])
    # per output channel: f_w, or f_w_channels[m] where the export carries per-channel formats
    f_w = v["f_w_channels"].astype(np.int64) if "f_w_channels" in v else None
    if x.ndim == 2:  # Linear = 1x1 convolution
        x, w = x[:, :, None, None], w[:, :, None, None]
    (U, Uw), (P, Pw), G = v["stride"], v["padding"], int(v["groups"])
    N, _, H, W = x.shape
    M, Cg, R, S = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (P, P), (Pw, Pw)))
    E, F = (H + 2 * P - R) // U + 1, (W + 2 * Pw - S) // Uw + 1
    # columns[n, e, f, c, r, s]
    cols = np.stack([np.stack([xp[:, :, e * U:e * U + R, f * Uw:f * Uw + S] for f in range(F)], 1)
                     for e in range(E)], 1).reshape(N * E * F, G, Cg * R * S)
    wg = w.reshape(G, M // G, Cg * R * S)

    shifts = int(v["f_x"]) + (np.full(M, int(v["f_w"])) if f_w is None else f_w) - int(v["f_y"])

    def rshift(t, s):  # floor: arithmetic right shift; nearest: add half first; s <= 0: exact left shift
        left = t << np.maximum(-s, 0)
        half = np.where(s > 0, 1 << np.maximum(s - 1, 0), 0) if rounding == "nearest" else 0
        return np.where(s <= 0, left, (t + half) >> np.maximum(s, 0))

    def cut16(t):  # two's-complement wrap keeps the low 16 bits; saturate clamps
        return ((t + 32768) & 0xFFFF) - 32768 if overflow == "wrap" else np.clip(t, -32768, 32767)

    out = np.empty((N * E * F, M), dtype=np.int64)
    for g in range(G):
        for p0 in range(0, N * E * F, 64):
            prods = cols[p0:p0 + 64, g, None, :] * wg[g][None]  # exact products
            sg = shifts[g * (M // G):(g + 1) * (M // G)]
            if mode == "eyeriss":
                acc = b[g * (M // G):(g + 1) * (M // G)] + cut16(rshift(prods, sg[:, None])).sum(-1)
                y = ((acc + 32768) & 0xFFFF) - 32768  # the 16-bit adder wraps
            else:
                y = cut16(rshift(prods.sum(-1) + b[g * (M // G):(g + 1) * (M // G)], sg))
            out[p0:p0 + 64, g * (M // G):(g + 1) * (M // G)] = y
    if bool(v["relu"]):
        out = np.maximum(out, 0)
    y = out.reshape(N, E, F, M).transpose(0, 3, 1, 2)
    return y.reshape(v["y"].shape)


def read_hex(path: Path, bits: int) -> np.ndarray:
    """Parse a $readmemh file of fixed-width two's-complement lines (vectorized)."""
    lines = path.read_bytes().split()
    width = bits // 4
    joined = b"".join(lines)
    assert len(joined) == width * len(lines)  # every line has exactly `width` digits
    chars = np.frombuffer(joined, dtype=np.uint8).reshape(-1, width).astype(np.int64)
    digits = np.where(chars >= ord("a"), chars - ord("a") + 10, chars - ord("0"))
    if bits == 64:  # the two's complement of an int64 is its unsigned view
        u = (digits.astype(np.uint64) << (4 * np.arange(width - 1, -1, -1, dtype=np.uint64))).sum(1, dtype=np.uint64)
        return u.view(np.int64)
    u = (digits << (4 * np.arange(width - 1, -1, -1))).sum(1)
    return np.where(u >= 1 << (bits - 1), u - (1 << bits), u)


@pytest.fixture(scope="module")
def resnet18_64():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    calib = torch.randn(16, 3, 64, 64)
    calibrate_batchnorm(model, list(calib.split(8)))
    return model, calib


@pytest.mark.parametrize("mode,rounding,overflow", [("eyeriss", "floor", "wrap"), ("wide", "floor", "wrap")])
def test_resnet18_vectors_match_independent_recomputation(resnet18_64, tmp_path, mode, rounding, overflow):
    model, calib = resnet18_64
    fixed = convert(model, calib, mode=mode, rounding=rounding, overflow=overflow, samples=16)
    if mode == "wide":  # random weights give tiny logit margins; wide mode still agrees
        assert top1_agreement(model, fixed, torch.randn(32, 3, 64, 64)) >= 0.96
    vs = export_vectors(fixed, tmp_path, inputs=torch.randn(1, 3, 64, 64))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    # ResNet-18: 1 + 16 3x3 convs + 3 downsampling 1x1 convs + 1 fc
    assert len(vs.layers) == len(manifest["layers"]) == 21
    assert manifest["mode"] == mode and manifest["layers"][-1]["name"] == "fc"
    b_bits = 16 if mode == "eyeriss" else 32
    for entry in manifest["layers"]:
        v = np.load(tmp_path / entry["file"])
        assert v["x"].dtype == v["w"].dtype == v["y"].dtype == np.int16
        assert v["b"].dtype == (np.int16 if mode == "eyeriss" else np.int32)
        assert np.array_equal(recompute(v), v["y"]), entry["name"]
        for key, bits in (("x", 16), ("w", 16), ("b", b_bits), ("y", 16)):
            assert np.array_equal(read_hex(tmp_path / entry["hex"][key], bits), v[key].reshape(-1))
    # the vectors chain: the first block's conv reads the max-pooled conv1 output
    first = np.load(tmp_path / manifest["layers"][0]["file"])
    nxt = np.load(tmp_path / manifest["layers"][1]["file"])
    pooled = torch.nn.functional.max_pool2d(torch.from_numpy(first["y"]).float(), 3, 2, 1)
    assert int(first["f_y"]) == int(nxt["f_x"])
    assert np.array_equal(pooled.to(torch.int16).numpy(), nxt["x"])


def test_cli_export_vectors(tmp_path, capsys):
    out = tmp_path / "vec"
    rc = cli_main(["export-vectors", "models/small_cnn.py", "--data", "builtin:shapes", "--out", str(out),
                   "--samples", "16", "--batch", "2", "--mode", "eyeriss", "--rounding", "nearest",
                   "--overflow", "saturate"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "wrote 5 layers" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["name"] for e in manifest["layers"]] == ["conv1", "conv2", "conv3", "conv4", "fc"]
    for entry in manifest["layers"]:
        v = np.load(out / entry["file"])
        assert (str(v["mode"]), str(v["rounding"]), str(v["overflow"])) == ("eyeriss", "nearest", "saturate")
        assert np.array_equal(recompute(v), v["y"])
    assert np.load(out / manifest["layers"][0]["file"])["x"].shape == (2, 3, 32, 32)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["export-vectors", "models/nope.py", "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hwaware export-vectors: error:")
    assert cli_main(["export-vectors", "models/small_cnn.py", "--out", str(tmp_path / "v"),
                     "--batch", "0"]) == 2
    assert "--batch must be a positive integer" in capsys.readouterr().err


@pytest.mark.slow
def test_resnet18_agreement_on_shapes_images_at_64():
    from hwaware.data import make_loader

    def images(split, n):
        xs = torch.cat([xb for xb, _ in make_loader("builtin:shapes", split, batch_size=64, limit=n)])
        return torch.nn.functional.interpolate(xs, size=64, mode="bilinear", align_corners=False)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    calibrate_batchnorm(model, list(images("train", 128).split(32)))
    fixed = convert(model, images("train", 64), mode="wide")
    assert top1_agreement(model, fixed, images("val", 256).split(64)) >= 0.99


def test_wide_bias_beyond_int32_is_exported_as_int64(tmp_path):
    """Inputs ~1e-5 (f_x ~ 29) make a Linear's bias of 0.1 a 42-bit code at f_x + f_w: mode wide
    keeps it exact, the vector file holds it as int64 (16 hex digits) and y follows from it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([0.1, -0.25, 0.03, 0.0]))
    x = torch.randn(32, 8) * 1e-5
    fixed = convert(model, x, mode="wide", samples=32)
    export_vectors(fixed, tmp_path, inputs=x[:4])
    entry = json.loads((tmp_path / "manifest.json").read_text())["layers"][0]
    v = np.load(tmp_path / entry["file"])
    assert entry["b_dtype"] == "int64" and v["b"].dtype == np.int64 and np.abs(v["b"]).max() > 2**31
    assert np.array_equal(recompute(v), v["y"])
    assert np.array_equal(read_hex(tmp_path / entry["hex"]["b"], 64), v["b"])
