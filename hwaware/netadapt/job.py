"""A NetAdapt job's working directory: identity, checkpoints, resume.

Layout::

    WORKDIR/job.json            what the job is: model fingerprint, data, budgets, options (+ hash)
    WORKDIR/state.json          completed iterations (records), written after each one
    WORKDIR/models/iter_0000.pt the original network; iter_NNNN.pt after iteration NNNN
    WORKDIR/models/long_term.pt the long-term fine-tuned final network (if asked for)
    WORKDIR/family.json, family.md, pareto.png   the outputs (rewritten as the job goes)
    WORKDIR/tb/                 TensorBoard curves (unless --logdir points elsewhere)

Every file is written atomically (temp file + rename). An iteration counts as completed once
``state.json`` lists it, and it is written only after the iteration's model file, so a job killed
at any instant leaves the last completed iteration intact: ``--resume`` reloads that model and
continues; the iteration that was running is computed again from the same seeds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .._io import STATUS_NAME, JobLock, read_json, write_json
from ..errors import HwawareError

JOB_FILE = "job.json"
STATE_FILE = "state.json"
KIND = "hwaware-netadapt"
STATE_VERSION = 1


def fingerprint(identity: dict[str, Any]) -> str:
    """SHA-256 of the identity's canonical JSON (first 16 hex digits)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_fingerprint(model: Any) -> str:
    """Hash of a model's architecture (``repr``) and every tensor of its state_dict."""
    import torch

    h = hashlib.sha256(repr(model).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return path
    return f"{path} ({_show(a)} there, {_show(b)} here)"


def _show(v: Any) -> str:
    """A value of a job identity as a user would write it (budgets as ``latency=0.5``), never a raw dict."""
    if isinstance(v, dict) and {"resource", "value"} <= set(v):
        return f"{v['resource']}={v['value']}" + ("" if v.get("relative", True) else " (absolute)")
    if isinstance(v, dict):
        return ", ".join(f"{k}={_show(x)}" for k, x in v.items()) or "nothing"
    if isinstance(v, (list, tuple)):
        return " ".join(_show(x) for x in v) or "none"
    return "nothing" if v is None else str(v)


class Workdir:
    """Opens (or creates) a job's working directory and guards it against mix-ups.

    Raises :class:`HwawareError` when the directory holds another job (different model, data,
    budgets or options), holds this job but ``resume`` is False and iterations were completed,
    is a non-empty directory that is not a NetAdapt workdir, holds no job but ``resume`` is True,
    or is in use by another live job (an advisory lock, :class:`hwaware._io.JobLock`, held until
    :meth:`close`; ``status.json`` then says finished/failed/interrupted, or ``killed`` via
    :func:`hwaware._io.job_status` if the process died).
    """

    def __init__(self, path: str | Path, identity: dict[str, Any], *, resume: bool, template: Any = None) -> None:
        self.path = Path(path)
        self.template = template  # the job's input network: saved members are rebuilt from a copy
        self.identity = identity
        self.hash = fingerprint(identity)
        self.records: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.resumed = False
        self._lock = JobLock(self.path, what="netadapt job", status=True)
        self._precheck(resume)
        self._lock.acquire()
        try:
            self._open(resume)
        except BaseException:
            self._lock.release()
            raise
        self._lock.start()

    def close(self, exc: BaseException | None = None) -> None:
        """Record how the job ended (``exc``: the error, if any) and release the workdir lock."""
        self._lock.release_after(exc)

    # --- opening -------------------------------------------------------------------------------
    def _precheck(self, resume: bool) -> None:
        """Refusals that need no lock (and must not leave a lock file in a stranger's directory)."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise HwawareError(f"workdir '{p}' is a file; give a directory")
        if (p / JOB_FILE).is_file():
            return
        if resume:
            raise HwawareError(f"--resume: workdir '{p}' holds no netadapt job to resume; run without "
                               "--resume to start one")
        if p.is_dir() and any(not c.name.startswith(".") and c.name != STATUS_NAME for c in p.iterdir()):
            raise HwawareError(f"workdir '{p}' is not empty and holds no netadapt job ({JOB_FILE} "
                               "missing); use a new or empty directory")

    def _open(self, resume: bool) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise HwawareError(f"workdir '{p}' is a file; give a directory")
        job_file = p / JOB_FILE
        if job_file.is_file():
            try:
                job = read_json(job_file)
            except HwawareError as exc:
                raise HwawareError(f"workdir '{p}': {JOB_FILE} is not a hwaware netadapt job file ({exc}); "
                                   "use another --workdir") from None
            if not (isinstance(job, dict) and job.get("kind") == KIND and "hash" in job):
                raise HwawareError(f"workdir '{p}': {JOB_FILE} is not a hwaware netadapt job file; "
                                   "use another --workdir")
            state = self._read_state()
            done = len(state.get("records", []))
            if job["hash"] != self.hash:
                if not done and not (p / "models").exists():  # a job that failed before any work
                    write_json(job_file, {"kind": KIND, "hash": self.hash, "identity": self.identity})
                    return
                diff = _first_difference(job.get("identity", {}), self.identity)
                raise HwawareError(
                    f"workdir '{p}' holds another netadapt job with {done} completed iteration(s) (job "
                    f"{job['hash']}, this one {self.hash}; they differ in {diff}); use another --workdir"
                )
            if done and not resume:
                raise HwawareError(
                    f"workdir '{p}' already holds this job with {done} completed iteration(s); "
                    "pass --resume to continue it, or use another --workdir"
                )
            if resume:
                self.records = list(state.get("records", []))
                self.extra = dict(state.get("extra", {}))
                self.resumed = bool(self.records)
                for rec in self.records:
                    if not (p / rec["model"]).is_file():
                        raise HwawareError(f"workdir '{p}': checkpoint '{rec['model']}' of iteration "
                                           f"{rec['iteration']} is missing; the workdir was altered")
            return
        if p.is_dir() and any(not c.name.startswith(".") and c.name != STATUS_NAME for c in p.iterdir()):
            raise HwawareError(f"workdir '{p}' is not empty and holds no netadapt job ({JOB_FILE} "
                               "missing); use a new or empty directory")
        write_json(job_file, {"kind": KIND, "hash": self.hash, "identity": self.identity})

    def _read_state(self) -> dict[str, Any]:
        f = self.path / STATE_FILE
        if not f.is_file():
            return {}
        try:
            state = read_json(f)
        except HwawareError as exc:
            raise HwawareError(f"workdir '{self.path}': {STATE_FILE} is unusable: {exc}") from None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise HwawareError(f"workdir '{self.path}': {STATE_FILE} has an unknown format")
        return state

    # --- writing -------------------------------------------------------------------------------
    def model_path(self, name: str) -> Path:
        return self.path / "models" / f"{name}.pt"

    def save_model(self, model: Any, name: str, meta: dict[str, Any]) -> str:
        """Write ``models/NAME.pt`` (atomic); return its path relative to the workdir."""
        from ..checkpoint import save_model

        path = self.model_path(name)
        save_model(model, path, meta={"netadapt": meta})
        return str(path.relative_to(self.path))

    def commit(self, record: dict[str, Any]) -> None:
        """Mark an iteration completed (its model file must already be written)."""
        self.records.append(record)
        self._write_state()

    def set_extra(self, key: str, value: Any) -> None:
        """Store a job-level result (the long-term fine-tuned member) in the state."""
        self.extra[key] = value
        self._write_state()

    def _write_state(self) -> None:
        write_json(self.path / STATE_FILE,
                   {"version": STATE_VERSION, "hash": self.hash, "records": self.records, "extra": self.extra})

    def load_model(self, relpath: str) -> Any:
        from ..modelref import load_model_file

        model, _meta = load_model_file(self.path / relpath, model_ref=self.template)
        return model
