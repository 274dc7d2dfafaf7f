"""The compiled-kernel cache loads a library only after verifying it; anything else is rebuilt.

Each test plants a shared library whose constructor writes a marker file (what a hostile file in
a shared ``HWAWARE_CACHE`` would do on load) and asserts that the marker never appears.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from hwaware.fixedpoint import _kernel_cache, _native, ops
from hwaware.fixedpoint.format import FixedFormat

CC = shutil.which(os.environ.get("CC", "cc"))
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")

SOURCE = "int hw_answer(void) { return 42; }\n"
FLAGS = ["-O1", "-shared", "-fPIC"]


def plant(path, marker, *, manifest_for=None):
    """Compile a library whose constructor writes ``marker`` into ``path``; with ``manifest_for``
    (source, flags), also forge a manifest that records the planted file's true hash."""
    src = marker.parent / "planted.c"
    src.write_text('#include <stdio.h>\n'
                   '__attribute__((constructor)) static void planted(void) {\n'
                   f'  FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("ran", f); fclose(f); }}\n'
                   '}\n'
                   'int hw_answer(void) { return 666; }\n')
    subprocess.run([CC, *FLAGS, str(src), "-o", str(path)], check=True, capture_output=True)
    os.chmod(path, 0o755)
    if manifest_for is not None:
        data = path.read_bytes()
        source, flags = manifest_for
        path.with_suffix(".json").write_text(json.dumps({
            "file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "source_sha256": hashlib.sha256(source.encode()).hexdigest(), "flags": flags}))
        os.chmod(path.with_suffix(".json"), 0o644)


@pytest.fixture
def cache(tmp_path):
    d = tmp_path / "kernels"
    d.mkdir(mode=0o700)
    return d, tmp_path / "marker"


def load_quietly(d):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified cache entry loads without any warning
        return _kernel_cache.load(d, "k", SOURCE, FLAGS, CC)


def test_a_built_kernel_is_recorded_and_reloaded_without_rebuilding(cache, monkeypatch):
    d, _ = cache
    assert _kernel_cache.load(d, "k", SOURCE, FLAGS, CC).hw_answer() == 42
    meta = json.loads((d / "k.json").read_text())
    assert meta["sha256"] == hashlib.sha256((d / "k.so").read_bytes()).hexdigest()
    assert not (d / "k.so").stat().st_mode & 0o022
    monkeypatch.setattr(_kernel_cache, "compile_source", lambda *a: pytest.fail("rebuilt a good kernel"))
    assert load_quietly(d).hw_answer() == 42


def test_a_planted_library_without_a_manifest_is_rebuilt(cache):
    d, marker = cache
    plant(d / "k.so", marker)
    with pytest.warns(RuntimeWarning, match="cached kernel rejected.*k.json: cannot open"):
        assert _kernel_cache.load(d, "k", SOURCE, FLAGS, CC).hw_answer() == 42
    assert load_quietly(d).hw_answer() == 42
    assert not marker.exists()


def test_a_library_swapped_under_a_good_manifest_is_rebuilt(cache):
    d, marker = cache
    _kernel_cache.load(d, "k", SOURCE, FLAGS, CC)
    good_manifest = (d / "k.json").read_text()
    plant(d / "k.so", marker)
    assert (d / "k.json").read_text() == good_manifest
    with pytest.warns(RuntimeWarning, match="content hash .* does not match its manifest"):
        assert _kernel_cache.load(d, "k", SOURCE, FLAGS, CC).hw_answer() == 42
    assert not marker.exists()


@pytest.mark.parametrize("which", ["k.so", "k.json"])
def test_group_or_world_writable_files_are_rejected(cache, which):
    d, marker = cache
    plant(d / "k.so", marker, manifest_for=(SOURCE, FLAGS))  # manifest matches the planted bytes
    os.chmod(d / which, 0o666)
    with pytest.warns(RuntimeWarning, match="writable by group or others"):
        assert _kernel_cache.load(d, "k", SOURCE, FLAGS, CC).hw_answer() == 42
    assert not marker.exists()


def test_a_manifest_for_other_source_or_flags_is_rejected(cache):
    d, marker = cache
    plant(d / "k.so", marker, manifest_for=("int other;", FLAGS))
    with pytest.warns(RuntimeWarning, match="'source_sha256'"):
        assert _kernel_cache.load(d, "k", SOURCE, FLAGS, CC).hw_answer() == 42
    assert not marker.exists()


def test_a_symlink_is_not_followed(cache, tmp_path):
    d, marker = cache
    plant(tmp_path / "elsewhere.so", marker, manifest_for=(SOURCE, FLAGS))
    (d / "k.so").symlink_to(tmp_path / "elsewhere.so")
    shutil.copy(tmp_path / "elsewhere.json", d / "k.json")
    os.chmod(d / "k.json", 0o644)
    data = json.loads((d / "k.json").read_text())
    (d / "k.json").write_text(json.dumps({**data, "file": "k.so"}))
    with pytest.warns(RuntimeWarning, match="k.so: cannot open"):
        assert _kernel_cache.load(d, "k", SOURCE, FLAGS, CC).hw_answer() == 42
    assert not marker.exists()


def test_files_owned_by_another_user_are_rejected(cache, monkeypatch):
    d, marker = cache
    plant(d / "k.so", marker, manifest_for=(SOURCE, FLAGS))
    if os.geteuid() == 0:  # root can make the files really someone else's
        for f in ("k.so", "k.json"):
            os.chown(d / f, 65534, 65534)
        match = "owned by uid 65534"
    else:  # otherwise this user becomes someone else: the directory is then foreign too
        uid = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: uid + 1)
        match = "not using the kernel cache .* owned by uid"
    with pytest.warns(RuntimeWarning, match=match):
        assert _kernel_cache.load(d, "k", SOURCE, FLAGS, CC).hw_answer() == 42
    assert not marker.exists()


def test_a_world_writable_cache_directory_is_not_used(cache):
    d, marker = cache
    plant(d / "k.so", marker, manifest_for=(SOURCE, FLAGS))
    os.chmod(d, 0o777)
    with pytest.warns(RuntimeWarning, match="not using the kernel cache .* writable by group or others"):
        assert _kernel_cache.load(d, "k", SOURCE, FLAGS, CC).hw_answer() == 42
    assert not marker.exists()


def plant_in_a_fresh_cache(tmp_path, monkeypatch):
    """``HWAWARE_CACHE`` set to a new directory holding a planted library at the fixed-point
    kernel's predictable path; returns the marker its constructor would write. Rebuilding copies
    this process's verified build (compiling takes ~10 s)."""
    if _native.library() is not None:
        built_dir, built_stem = _native.cache_entry()
        built = built_dir / f"{built_stem}.so"
        if built.is_file():
            monkeypatch.setattr(_kernel_cache, "compile_source", lambda s, f, out, cc: shutil.copy(built, out))
    monkeypatch.setenv("HWAWARE_CACHE", str(tmp_path / "shared"))
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_tried", False)
    directory, stem = _native.cache_entry()
    directory.mkdir(parents=True, mode=0o700)
    marker = tmp_path / "marker"
    plant(directory / f"{stem}.so", marker)
    return marker


def test_the_fixed_point_kernel_rejects_a_planted_library(tmp_path, monkeypatch):
    # end to end through hwaware's own loader, at the predictable path in HWAWARE_CACHE
    marker = plant_in_a_fresh_cache(tmp_path, monkeypatch)
    with pytest.warns(RuntimeWarning, match="cached kernel rejected"):
        assert _native.library() is not None
    assert not marker.exists()
    x = np.array([[3, -5]], np.int16)
    f = FixedFormat(0)
    assert ops.linear(x, x, fx=f, fw=f, fy=f, mode="eyeriss").y[0, 0] == 34  # the real kernel: 9 + 25
    monkeypatch.setattr(_native, "_tried", False)  # a new process: loads the rebuilt file silently
    monkeypatch.setattr(_native, "_lib", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _native.library() is not None
    assert not marker.exists()
