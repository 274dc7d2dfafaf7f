"""An optional mapping cache on disk, shared by processes and runs: one JSON file per layer shape.

Turn it on with ``HWAWARE_MAPPING_CACHE=DIR`` in the environment or
``hwaware.eyeriss.score.set_mapping_cache_dir(DIR)``; every :class:`~hwaware.eyeriss.Scorer` (so
``hwaware.score``, the plugin, pruning and NetAdapt) then reads a shape's shortlist
(:mod:`.shortlist`) from ``DIR`` before searching, and writes what it searched.

- Keyed by the layer shape, every field of the hardware, and the model version: a digest of the
  source of the modules that decide mappings (mapper, cost, shortlist), so a changed rule never
  reads an old entry.
- Safe to share and to delete: files are written atomically (temp file + rename), two writers of
  one key write the same content, a missing directory or file is a miss, and deleting ``DIR`` at
  any time only costs new searches.
- Never runs code: entries are JSON (never pickle), read with size and content checks -- the key
  stored in the file must equal the one asked for, the lists must be positive integers of equal
  length, and the checksum of ``hwaware._io.write_json`` must match. Anything else is ignored (a miss). The digest
  catches corruption, not forgery: a directory others can write decides your mappings, so share
  it only with whom you share results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .._io import read_json, write_json
from ..errors import HwawareError
from .hardware import Hardware
from .shortlist import FIELDS, Shortlist

MAX_BYTES = 4 << 20  # an entry holds at most a few hundred mappings (~10 kB)


@lru_cache(maxsize=1)
def model_version() -> str:
    """Digest of the mapping rules' source (mapper.py, cost.py, shortlist.py)."""
    from . import cost, mapper, shortlist

    h = hashlib.sha256()
    for mod in (mapper, cost, shortlist):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


def _key(hw: Hardware, shape_key: tuple[int, ...]) -> dict[str, Any]:
    key = {"model": model_version(), "hardware": dataclasses.asdict(hw), "shape": list(shape_key)}
    return json.loads(json.dumps(key))  # as it reads back (tuples become lists)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class DiskCache:
    """Shortlists in ``directory`` (created on the first write)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _path(self, key: dict[str, Any]) -> Path:
        d = _digest(key)
        return self.directory / d[:2] / f"{d}.json"

    def get(self, hw: Hardware, shape_key: tuple[int, ...]) -> Shortlist | None:
        key = _key(hw, shape_key)
        path = self._path(key)
        try:
            if path.stat().st_size > MAX_BYTES:
                return None
            entry = read_json(path)  # checksum verified (hwaware._io)
        except (OSError, HwawareError):
            return None
        return _parse(entry, key)

    def put(self, hw: Hardware, shape_key: tuple[int, ...], value: Shortlist) -> None:
        key = _key(hw, shape_key)
        body = {"key": key, "mappings": {k: [int(v) for v in value.arrays[k]] for k in FIELDS}}
        try:
            write_json(self._path(key), body)  # atomic, with the checksum read_json verifies
        except OSError:
            pass  # a read-only or vanished cache directory only costs searches


def _parse(entry: Any, key: dict[str, Any]) -> Shortlist | None:
    if not isinstance(entry, dict) or set(entry) != {"key", "mappings"} or entry["key"] != key:
        return None
    maps = entry["mappings"]
    if not isinstance(maps, dict) or set(maps) != set(FIELDS):
        return None
    cols = [maps[k] for k in FIELDS]
    n = len(cols[0]) if isinstance(cols[0], list) else -1
    if n < 1 or any(not isinstance(c, list) or len(c) != n for c in cols):
        return None
    if any(type(v) is not int or v < 1 for c in cols for v in c):
        return None
    return Shortlist({k: np.asarray(maps[k], dtype=np.int64) for k in FIELDS})
