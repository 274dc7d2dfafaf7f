"""File output shared by every writer in hwaware (reports, checkpoints, models, vectors).

A file is written to a temporary name in the same directory, flushed and fsync'd, then renamed
over the target, so a reader (or a job killed half-way) never sees a partial file. New files get
the usual permissions (``0o666`` less the umask), as ``open`` would give them.

Every JSON object hwaware writes (:func:`write_json`) carries a ``"checksum"`` key, the SHA-256 of
its canonical content; every JSON file hwaware reads back (NetAdapt ``job.json``/``state.json``,
``status.json``, workload JSON, the latency LUT) goes through :func:`read_json`, which verifies it
(one-line error naming the file). Model files carry their own checksum (:mod:`hwaware.checkpoint`).
Files people edit by hand (recipes, hardware YAML, workload YAML) have none.

:func:`check_output_path` is called by every command before any work: an output that is one of
the command's inputs (same inode, or same resolved path), an unwritable location, or a non-empty
output directory (without ``force``) is a one-line :class:`HwawareError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import HwawareError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on clean exit rename it over ``path``.

    On an exception the temp file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; honour the user's umask
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


CHECKSUM_KEY = "checksum"


def json_checksum(obj: Any) -> str:
    """``"sha256:<hex>"`` of ``obj``'s canonical JSON (keys sorted, no spaces, ASCII), computed on
    the value as it reads back from the file, so writer and reader hash the same text."""
    plain = json.loads(json.dumps(obj, default=json_default))  # tuples -> lists, numpy -> numbers, int keys -> str
    canon = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canon.encode("ascii")).hexdigest()


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON, atomically; a dict gets a ``"checksum"`` key (:func:`json_checksum` of
    the other keys) that :func:`read_json` verifies."""
    if isinstance(obj, dict):
        body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
        obj = {**body, CHECKSUM_KEY: json_checksum(body)}
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=1, default=json_default)
        fh.write("\n")


def read_json(path: str | os.PathLike[str], *, required: bool = True) -> Any:
    """A JSON file hwaware wrote, checksum verified; returns the content without ``"checksum"``.

    Every failure is one :class:`HwawareError` line naming the file: unreadable, not JSON, a
    checksum that does not match (changed or corrupted since it was written) or, when ``required``,
    none at all (a file hwaware did not write). ``required=False`` is for formats people may also
    write by hand (workload JSON): a checksum present is still verified.
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HwawareError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HwawareError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the file is "
                           "truncated or corrupt") from None
    if not isinstance(data, dict) or CHECKSUM_KEY not in data:
        if required:
            raise HwawareError(f"{path}: no '{CHECKSUM_KEY}' key; hwaware writes one into every JSON file "
                               "it reads back, so this file was not written by hwaware (or by a version "
                               "before checksums)")
        return data
    body = {k: v for k, v in data.items() if k != CHECKSUM_KEY}
    if data[CHECKSUM_KEY] != json_checksum(body):
        raise HwawareError(f"{path}: checksum mismatch; the file was changed or corrupted after hwaware "
                           "wrote it (restore it, or start again in a new directory)")
    return body


def torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` with the same atomic rename (checkpoints are never half-written)."""
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def check_output_path(out: str | os.PathLike[str] | None, *, inputs: Any = (), flag: str = "--out",
                      directory: bool = False, force: bool = False) -> Path | None:
    """Refuse, before any work, an output that would destroy an input or cannot be written.

    ``inputs``: paths the command reads (missing ones and ``None`` are ignored). A file output may
    not be an input (same inode or same resolved path) nor an existing directory; a ``directory``
    output may not be an input or hold one, and must be empty unless ``force``. The nearest
    existing parent must be a writable directory. Returns the path (``None`` passes through).
    """
    if out is None:
        return None
    p = Path(out).expanduser()
    target = p.resolve()
    for src in inputs or ():
        if src is None:
            continue
        q = Path(src).expanduser()
        same = q.resolve() == target
        if not same and q.exists() and p.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(q, p)
        inside = directory and q.exists() and q.resolve().is_relative_to(target)
        if same or (inside and force):
            raise HwawareError(f"{flag} '{out}' is an input of this command ('{src}'); inputs are never "
                               "overwritten: choose another path")
    if directory:
        if p.exists() and not p.is_dir():
            raise HwawareError(f"{flag} '{out}' exists and is not a directory")
        if p.is_dir() and any(p.iterdir()) and not force:
            how = "pass --force" if flag.startswith("--") else "pass force=True"  # CLI flag or API argument
            raise HwawareError(f"{flag} '{out}' is a non-empty directory; choose a new one or {how} "
                               "to write into it (files of the same name are replaced)")
    elif p.is_dir():
        raise HwawareError(f"{flag} '{out}' is a directory; give a file path")
    parent = p if directory and p.is_dir() else p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) or (
        p.exists() and not p.is_dir() and not os.access(p, os.W_OK)
    ):
        raise HwawareError(f"{flag} '{out}': cannot write there (permission denied in '{parent}')")
    return p


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and racy across threads)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- job locks and status --------------------------------------------------------------------------

LOCK_NAME = ".hwaware.lock"
STATUS_NAME = "status.json"


class JobLock:
    """An advisory exclusive lock (``fcntl.flock``) held while a job writes into ``target``.

    ``target`` is a job directory (lock file ``DIR/.hwaware.lock``) or an output file (lock file
    ``.NAME.lock`` beside it). A second job on the same target fails at once with a one-line
    :class:`HwawareError` naming the holder. The kernel drops the lock when the holder dies, even
    by SIGKILL, which is what makes :func:`job_status` able to tell a killed job from a live one.

    With ``status=True`` (directories) ``DIR/status.json`` says ``running`` (pid, host, start, command)
    from :meth:`start` (the job checked the directory and begins) and ``finished``/``failed``/
    ``interrupted`` after :meth:`release`. As a context manager: acquire + start ... release.
    """

    def __init__(self, target: str | os.PathLike[str], *, what: str = "job", status: bool = False) -> None:
        self.target = Path(target)
        self.what = what
        self.status = status
        self._fh: IO[Any] | None = None
        self._info: dict[str, Any] = {}
        self._started = False

    @property
    def lock_path(self) -> Path:
        if self.target.is_dir() or self.status:
            return self.target / LOCK_NAME
        return self.target.parent / f".{self.target.name}.lock"

    def acquire(self) -> JobLock:
        import fcntl
        import socket
        import sys
        import time

        if self._fh is not None:
            return self
        lock = self.lock_path
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fh = open(lock, "a+")  # noqa: SIM115 - held open for the job's lifetime
        except OSError as exc:
            raise HwawareError(f"'{self.target}': cannot write there ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = " ".join(fh.read().split()) or "another process"
            fh.close()
            raise HwawareError(f"'{self.target}' is in use by another hwaware {self.what} ({holder}); wait for it "
                               "to finish or use another path") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)[:300]}
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {info['pid']} on {info['host']} since {info['started']}\n")
        fh.flush()
        self._fh = fh
        self._info = info
        return self

    def start(self) -> None:
        """Mark the job ``running`` in ``status.json`` (lock held)."""
        if self.status and self._fh is not None:
            write_json(self.target / STATUS_NAME, {"status": "running", **self._info})
            self._started = True

    def release(self, status: str = "finished", **extra: Any) -> None:
        """Write the final status (directories) and drop the lock."""
        import fcntl

        if self._fh is None:
            return
        try:
            if self._started:
                write_json(self.target / STATUS_NAME, {**self._info, **extra, "status": status})
        finally:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JobLock:
        self.acquire().start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.release_after(exc)

    def release_after(self, exc: BaseException | None) -> None:
        """Release with the status an exception (or ``None``: finished) implies."""
        if exc is None:
            self.release("finished")
        elif isinstance(exc, KeyboardInterrupt):
            self.release("interrupted")
        else:
            self.release("failed", error=" ".join(str(exc).split())[:300] or type(exc).__name__)


def job_status(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``DIR/status.json`` with ``status`` made truthful: ``running`` only while its lock is held;
    a job that died without finishing (killed, power loss) reads ``killed``. ``{}`` if none; a
    damaged file is a :class:`HwawareError` (:func:`read_json`)."""
    import fcntl

    d = Path(directory)
    if not (d / STATUS_NAME).is_file():
        return {}
    status = read_json(d / STATUS_NAME)
    if status.get("status") == "running":
        try:
            with open(d / LOCK_NAME, "a+") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            status["status"] = "killed"
        except OSError:
            pass  # held: the job is alive
    return status
