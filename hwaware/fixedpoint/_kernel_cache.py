"""A verified cache of compiled C kernels: built once, checked before every load.

Loading a shared library runs code from it at once (its constructors), so a file found in the
cache is loaded only when all of these hold, else it is rebuilt with a warning:

- the kernels directory, the library and its manifest are owned by this user and writable by
  nobody else (no group/other write bit), and the two files are regular files (not symlinks);
- the library's bytes hash (SHA-256) to the digest its manifest recorded when it was built, and the
  manifest names the same source digest, compiler flags and file.

The checked bytes are what gets loaded (copied into an anonymous memory file on Linux), so the
file cannot be swapped between the check and the load. A build compiles in a private temporary
directory and moves the library, then its manifest, into place with ``os.replace`` (atomic; a
crash in between leaves a library without a matching manifest, which the next load rebuilds).
When the directory itself fails the checks (someone else's, or group/world-writable) the kernel
is built into a private temporary directory for this process and the cache is left alone.

Layout: ``<dir>/<stem>.so`` and ``<dir>/<stem>.json`` with ``{"sha256", "size", "source_sha256",
"flags", "file"}``.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path


class UntrustedKernel(OSError):
    """A cached kernel (or its directory) failed verification; the message says which check."""


def _read_checked(path: Path, what: str) -> bytes:
    """The bytes of ``path`` if it is a regular file owned by us and not group/world-writable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise UntrustedKernel(f"{what} {path}: cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        _check_stat(st, path, what)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedKernel(f"{what} {path} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        os.close(fd)


def _check_stat(st: os.stat_result, path: Path, what: str) -> None:
    if st.st_uid != os.geteuid():
        raise UntrustedKernel(f"{what} {path} is owned by uid {st.st_uid}, not by this user ({os.geteuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedKernel(f"{what} {path} is writable by group or others "
                              f"(mode {stat.S_IMODE(st.st_mode):o})")


def check_directory(directory: Path) -> None:
    """Raise :class:`UntrustedKernel` unless ``directory`` is ours and writable only by us."""
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedKernel(f"kernel cache {directory} is not a directory")
    _check_stat(st, directory, "kernel cache directory")


def verified_bytes(so: Path, manifest: Path, *, source_sha256: str, flags: list[str]) -> bytes:
    """The library's bytes after every check in the module docstring, else :class:`UntrustedKernel`."""
    meta_raw = _read_checked(manifest, "kernel manifest")
    try:
        meta = json.loads(meta_raw)
    except ValueError:
        raise UntrustedKernel(f"kernel manifest {manifest} is not valid JSON") from None
    if not isinstance(meta, dict):
        raise UntrustedKernel(f"kernel manifest {manifest} is not a JSON object")
    expect = {"file": so.name, "source_sha256": source_sha256, "flags": list(flags)}
    for k, v in expect.items():
        if meta.get(k) != v:
            raise UntrustedKernel(f"kernel manifest {manifest}: '{k}' is {meta.get(k)!r}, expected {v!r}")
    data = _read_checked(so, "kernel")
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("sha256") or len(data) != meta.get("size"):
        raise UntrustedKernel(f"kernel {so}: content hash {digest[:16]}… does not match its manifest")
    return data


def compile_source(source: str, flags: list[str], out: Path, cc: str) -> None:
    """Compile ``source`` into the shared library ``out`` (OSError with the compiler's last line)."""
    src = out.with_suffix(".c")
    src.write_text(source)
    res = subprocess.run([cc, *flags, str(src), "-o", str(out)], capture_output=True, text=True,
                         timeout=600, check=False)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise OSError(f"compiling the kernel with {cc} {' '.join(flags)} failed: {last}")


def build(directory: Path, stem: str, source: str, flags: list[str], cc: str, *,
          install: bool) -> bytes:
    """Compile in a private temporary directory; with ``install``, move the library and then its
    manifest into ``directory`` atomically. Returns the library's bytes (the ones to load)."""
    parent = directory if install else None
    with tempfile.TemporaryDirectory(dir=parent, prefix=".build-") as tmp:
        so = Path(tmp) / f"{stem}.so"
        compile_source(source, flags, so, cc)
        data = so.read_bytes()
        if install:
            manifest = Path(tmp) / f"{stem}.json"
            manifest.write_text(json.dumps({
                "file": f"{stem}.so", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "source_sha256": hashlib.sha256(source.encode()).hexdigest(), "flags": list(flags),
                "compiler": cc}, indent=1))
            os.chmod(so, 0o755)  # whatever the umask: a group-writable file would fail our own check
            os.chmod(manifest, 0o644)
            os.replace(so, directory / f"{stem}.so")
            os.replace(manifest, directory / f"{stem}.json")
        return data


def load_bytes(data: bytes, fallback_path: Path | None = None) -> ctypes.CDLL:
    """Load a shared library from verified bytes (an anonymous memory file, so nothing on disk can
    change what is loaded); without ``memfd_create`` (not Linux), load ``fallback_path``."""
    if hasattr(os, "memfd_create"):
        # the descriptor stays open for the life of the process: the dynamic loader knows a library
        # by its path, so a reused /proc/self/fd/N would hand back the earlier library
        fd = os.memfd_create("hwaware-kernel")
        try:
            os.write(fd, data)
            return ctypes.CDLL(f"/proc/self/fd/{fd}")
        except OSError:
            os.close(fd)
            raise
    if fallback_path is None:
        raise OSError("cannot load a kernel from memory on this platform")
    return ctypes.CDLL(str(fallback_path))


def load(directory: Path, stem: str, source: str, flags: list[str], cc: str) -> ctypes.CDLL:
    """The kernel ``<directory>/<stem>.so`` compiled from ``source`` with ``flags``: verified and
    loaded, or (re)built first. Warns (RuntimeWarning) whenever a file found there is not used."""
    source_sha = hashlib.sha256(source.encode()).hexdigest()
    so, manifest = directory / f"{stem}.so", directory / f"{stem}.json"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        check_directory(directory)
    except (UntrustedKernel, OSError) as exc:
        warnings.warn(f"hwaware: not using the kernel cache ({exc}); building a private copy for this "
                      f"process", RuntimeWarning, stacklevel=3)
        return load_bytes(build(directory, stem, source, flags, cc, install=False))
    if so.exists() or so.is_symlink() or manifest.exists() or manifest.is_symlink():
        try:
            return load_bytes(verified_bytes(so, manifest, source_sha256=source_sha, flags=flags), so)
        except UntrustedKernel as exc:
            warnings.warn(f"hwaware: cached kernel rejected ({exc}); rebuilding it", RuntimeWarning,
                          stacklevel=3)
            for p in (so, manifest):  # replaced by the build; a foreign file we may not remove stays
                try:
                    p.unlink()
                except OSError:
                    pass
    try:
        data = build(directory, stem, source, flags, cc, install=True)
    except PermissionError as exc:  # e.g. a foreign file we could not replace
        warnings.warn(f"hwaware: cannot write the kernel cache ({exc}); building a private copy",
                      RuntimeWarning, stacklevel=3)
        data = build(directory, stem, source, flags, cc, install=False)
    return load_bytes(data, so)
