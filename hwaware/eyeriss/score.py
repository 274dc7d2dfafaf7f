"""Score a workload on the Eyeriss model: ``hwaware.score(workload_or_model, hardware=...)``.

Units: energy is normalized to one 16-bit MAC (DRAM access = 200); ``energy_J`` multiplies by the
hardware's ``unit_pJ`` and adds ``clock_J``, the time-proportional energy (``clock_pJ`` per PE per
cycle, :mod:`hwaware.eyeriss.clock`). Access counts are 16-bit words; ``dram_MB``/``glb_MB`` are MB (1e6 bytes) of
16-bit words moved, as in JSSC Table V. Latencies are per batch of N frames.

Rules for data statistics (documented in docs/eyeriss_model.md):
- ifmaps in DRAM are run-length coded (JSSC Fig. 8) except the network's first input; the coded size
  is exact when the profiler measured it on real activations (``Layer.ifmap_rlc``), else the exact
  expectation for independent zeros at the layer's ``ifmap_zeros``;
- the ofmap a layer writes (and so the final psum write-back to DRAM) is coded as the chip writes it:
  after its ReLU module, before any pooling (the chip has none). Exact when the profiler measured that
  tensor (``Layer.ofmap_rlc``), else the expectation at ``Layer.ofmap_relu_zeros``; when neither is
  known (no ReLU followed the layer, older workload files) at the sparsity the next layer reads (its
  ``ifmap_zeros``), the last layer at its own ``ofmap_zeros``, or when that is zero its ``ifmap_zeros``;
- sparse weights are coded the same way when ``compress_weights`` (never larger than raw).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import HwawareError, UnsupportedLayerError
from ..workload import Layer, Workload, as_workload
from ..workload.rlc import rlc_ratio
from .background_search import BackgroundSearch
from .clock import chip_power_mW, clock_J
from .cost import LEVELS, TYPES, Problem, evaluate, shaped
from .disk_cache import DiskCache
from .eyexam import EyexamStep, bounds, limiting_resource
from .hardware import Hardware, resolve_hardware
from .mapper import DEFAULT_TOLERANCE, OBJECTIVES, Mapping, check_native, choose, make_problem
from .shortlist import Shortlist, shortlist

# MB of 16-bit words: accesses x 2 bytes / 1e6 (JSSC Table V)
_MB = 2.0 / 1e6


@dataclass(frozen=True)
class LayerScore:
    """The score of one layer (or, for ``ScoreReport.total``, the sums over layers)."""

    name: str
    layer: Layer | None
    mapping: Mapping | None
    active_pes: int
    macs: int
    nonzero_macs: float
    accesses: dict[str, dict[str, float]]
    energy: dict[str, float]
    energy_by_type: dict[str, float]
    energy_total: float
    dram_MB: float
    glb_MB: float
    processing_latency_ms: float
    total_latency_ms: float
    power_mW: float
    energy_J: float  # access energy x unit_pJ plus clock_J
    clock_J: float = 0.0  # time-proportional (clock network, leakage) part of energy_J (hwaware.eyeriss.clock)
    passes: int = 0
    note: str = ""
    eyexam: tuple[EyexamStep, ...] = ()  # Eyexam's seven MAC/cycle bounds (eyexam.py)
    bound: str = ""  # what limits the processing latency: compute, ifmap NoC, psum NoC, DRAM link, ramp-up

    @property
    def energy_onchip(self) -> float:
        return self.energy_total - self.energy["DRAM"]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        if self.layer is not None:
            lay = self.layer
            d["shape"] = {"N": lay.N, "M": lay.M, "C": lay.C, "H": lay.H, "W": lay.W, "R": lay.R, "S": lay.S,
                          "E": lay.E, "F": lay.F, "U": lay.U if lay.U == lay.U_h else [lay.U, lay.U_h],
                          "groups": lay.groups, "padding": lay.padding}
            d["kind"] = lay.kind
            d["ifmap_zeros"] = lay.ifmap_zeros
            d["weight_zeros"] = lay.weight_zeros
            d["ofmap_zeros"] = lay.ofmap_zeros
            # the ofmap as written (after the fused ReLU, before pooling): null where not measured
            d["ofmap_relu_zeros"] = lay.ofmap_relu_zeros
            d["ofmap_rlc"] = lay.ofmap_rlc if lay.ofmap_rlc > 0 else None
        d["macs"] = self.macs
        d["nonzero_macs"] = self.nonzero_macs
        if self.mapping is not None:
            d["mapping"] = self.mapping.as_dict()
        d["active_pes"] = self.active_pes
        d["passes"] = self.passes
        d["accesses"] = {lv: dict(self.accesses[lv]) for lv in LEVELS}
        d["energy"] = dict(self.energy)
        d["energy_by_type"] = dict(self.energy_by_type)
        d["energy_total"] = self.energy_total
        d["energy_J"] = self.energy_J
        d["clock_J"] = self.clock_J
        d["dram_MB"] = self.dram_MB
        d["glb_MB"] = self.glb_MB
        d["processing_latency_ms"] = self.processing_latency_ms
        d["total_latency_ms"] = self.total_latency_ms
        d["power_mW"] = self.power_mW
        if self.eyexam:
            d["eyexam"] = [st.to_dict() for st in self.eyexam]
            d["bound"] = self.bound
        if self.note:
            d["note"] = self.note
        return d


@dataclass(frozen=True)
class Unscored:
    """A layer the model cannot run (reported with its share of MACs, never dropped)."""

    name: str
    macs: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "macs": self.macs, "reason": self.reason}


@dataclass(frozen=True)
class ScoreReport:
    hardware: Hardware
    objective: str
    layers: tuple[LayerScore, ...]
    total: LayerScore
    unscored: tuple[Unscored, ...] = ()
    unmodeled: tuple[Any, ...] = ()  # UnmodeledOp from the profiler
    batch: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: int | str) -> LayerScore:
        if isinstance(key, str):
            for ls in self.layers:
                if ls.name == key:
                    return ls
            raise KeyError(key)
        return self.layers[key]

    @property
    def frames_per_s(self) -> float:
        return self.batch / (self.total.total_latency_ms / 1e3) if self.total.total_latency_ms else float("inf")

    @property
    def gmacs(self) -> float:
        """Throughput in GMAC/s over the processing latency."""
        t = self.total.processing_latency_ms / 1e3
        return self.total.macs / t / 1e9 if t else float("inf")

    @property
    def pe_utilization(self) -> float:
        """MACs / (PEs x processing cycles): Eyexam's overall PE utilization."""
        cycles = self.total.processing_latency_ms / 1e3 * self.hardware.core_MHz * 1e6
        return self.total.macs / (self.hardware.num_pes * cycles) if cycles else 0.0

    def unscored_share(self) -> float:
        extra = sum(u.macs for u in self.unscored) + sum(getattr(u, "macs", 0) for u in self.unmodeled)
        total = self.total.macs + extra
        return extra / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        tot = self.total.to_dict()
        tot.pop("name", None)
        tot.update({
            "frames_per_s": self.frames_per_s,
            "GMACS": self.gmacs,
            "pe_utilization": self.pe_utilization,
        })
        return {
            "hardware": self.hardware.name,
            "dataflow": self.hardware.dataflow,
            "objective": self.objective,
            "batch": self.batch,
            "units": {
                "energy": "normalized to one 16-bit MAC (DRAM access = 200)",
                "energy_J": f"joules at {self.hardware.unit_pJ:g} pJ per normalized unit, plus clock_J",
                "clock_J": f"joules at {self.hardware.clock_pJ:g} pJ per PE per cycle (clock network, leakage)",
                "accesses": "16-bit words",
                "dram_MB": "MB (1e6 bytes) of 16-bit words moved, fmaps RLC-compressed",
                "latency": "ms per batch",
                "power_mW": "chip power, DRAM excluded",
            },
            "layers": [ls.to_dict() for ls in self.layers],
            "total": tot,
            "unscored": [u.to_dict() for u in self.unscored],
            "unmodeled": [u.to_dict() for u in self.unmodeled],
            **({"meta": self.meta} if self.meta else {}),
        }

    def table(self) -> str:
        from .table import format_report

        return format_report(self)

    def eyexam_table(self) -> str:
        """Eyexam's seven MAC/cycle bounds per layer, the binding step and the limiting resource."""
        from .table import format_eyexam

        return format_eyexam(self)

    def eyexam_figure(self, *, title: str = "") -> Any:
        """Roofline-style figure of the seven bounds per layer (a matplotlib Figure; save with
        :func:`hwaware.plots.save_png`)."""
        from .eyexam_figure import eyexam_figure

        return eyexam_figure(self, title=title)


class _MappingCache:
    """The mapping shortlists searched in this process, shared by every :class:`Scorer` (so by
    :func:`score`, the plugin and every loop), keyed on the hardware and the layer shape only:
    statistics, bit widths, objective and tolerance pick the winner from the shortlist afterwards
    (see :mod:`.shortlist`), so a network re-profiled during training is never re-mapped.
    Bounded (least recently added entries go first); thread-safe."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._data: dict[tuple[Any, ...], Shortlist] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, key: tuple[Any, ...]) -> Shortlist | None:
        return self._data.get(key)

    def put(self, key: tuple[Any, ...], value: Shortlist) -> None:
        with self._lock:
            while len(self._data) >= self.max_entries:
                self._data.pop(next(iter(self._data)))
            self._data[key] = value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


_MAPPINGS = _MappingCache()


def clear_mapping_cache() -> None:
    """Forget every mapping searched in this process (the next score searches again, or reads the
    disk cache when one is set)."""
    _MAPPINGS.clear()


_DISK: list[DiskCache | None] = [None]  # set by set_mapping_cache_dir, or HWAWARE_MAPPING_CACHE
if os.environ.get("HWAWARE_MAPPING_CACHE"):
    _DISK[0] = DiskCache(os.environ["HWAWARE_MAPPING_CACHE"])


def set_mapping_cache_dir(directory: str | os.PathLike[str] | None) -> None:
    """Keep searched mappings in ``directory`` as well, for other processes and later runs
    (:mod:`.disk_cache`); ``None`` turns the disk cache off. Default: ``$HWAWARE_MAPPING_CACHE``."""
    _DISK[0] = DiskCache(directory) if directory is not None else None


def default_workers() -> int:
    """The cores this process may use (its CPU affinity), for the cold mapping search."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Scorer:
    """Scores workloads on one hardware/objective; caches results by layer, mappings process-wide.

    >>> sc = Scorer("eyeriss_v1")
    >>> rep = sc.score(workload)          # cold: maps every distinct shape not mapped in this process
    >>> rep = sc.score(workload2)         # warm: only changed layers are remapped

    Mappings live in one process-wide cache (see :func:`clear_mapping_cache`), so a second
    ``Scorer`` or ``hwaware.score`` call on the same hardware reuses every mapping already searched.
    """

    def __init__(self, hardware: Hardware | str | None = "eyeriss_v1", objective: str = "energy",
                 tolerance: float = DEFAULT_TOLERANCE, workers: int | None = None) -> None:
        if objective not in OBJECTIVES:
            raise HwawareError(f"unknown objective '{objective}'; allowed: {', '.join(OBJECTIVES)}")
        if not 0.0 <= float(tolerance) < 1.0:
            raise HwawareError(f"tolerance is a relative slack in [0, 1), got {tolerance}")
        self.tolerance = float(tolerance)
        self.hardware = resolve_hardware(hardware)
        self.objective = objective
        if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
            raise HwawareError(f"workers must be a positive integer, got {workers!r}")
        #: threads for the cold mapping search (default 1: each shape's search is ~1 ms of small
        #: NumPy calls holding the GIL, and on 2 idle cores a pool of 2 made ResNet-50's cold score
        #: slower, 1.40x vs 0.81x a forward pass, bench/score_speed.py; more threads only on request)
        self.workers = int(workers) if workers is not None else 1
        self._mapping_keys: set[tuple[Any, ...]] = set()  # the mappings this scorer used
        self._searches = 0  # mapper searches this scorer ran (misses of the process-wide cache)
        self._lock = threading.Lock()
        self._score_cache: dict[tuple[Any, ...], LayerScore] = {}

    # -- per layer ----------------------------------------------------------------------------
    def _ratios(self, layer: Layer, first: bool, next_zeros: float | None) -> tuple[float, float, float]:
        hw = self.hardware
        if not hw.rlc_fmaps or (first and not hw.rlc_first_input):
            rlc_if = 1.0
        elif layer.ifmap_rlc > 0:
            rlc_if = layer.ifmap_rlc
        else:
            rlc_if = rlc_ratio(layer.Hp * layer.Wp, layer.ifmap_zeros)
        if hw.rlc_fmaps:
            rlc_of = written_ratio(layer, next_zeros)
        else:
            rlc_of = 1.0
        rlc_w = min(1.0, rlc_ratio(layer.C * layer.R * layer.S, layer.weight_zeros)) if hw.compress_weights else 1.0
        return rlc_if, rlc_of, rlc_w

    def score_layer(self, layer: Layer, *, first: bool = False, next_zeros: float | None = None) -> LayerScore:
        rlc_if, rlc_of, rlc_w = self._ratios(layer, first, next_zeros)
        key = (layer, round(rlc_if, 9), round(rlc_of, 9), round(rlc_w, 9))
        hit = self._score_cache.get(key)
        if hit is not None:
            return hit
        hw = self.hardware
        if hw.dataflow != "rs":  # WS / OS / NLR: their own models (hwaware.eyeriss.dataflows)
            from .dataflows import evaluate_layer

            mapping_df, res_df = evaluate_layer(layer, hw, self.objective, self.tolerance,
                                                rlc_if=rlc_if, rlc_of=rlc_of, rlc_w=rlc_w)
            ls = _layer_score(layer, mapping_df, res_df, hw, note="")  # type: ignore[arg-type]
            self._score_cache[key] = ls
            return ls
        pb = make_problem(layer, hw, rlc_if=rlc_if, rlc_of=rlc_of, rlc_w=rlc_w)
        # the statistics pick the winner from the shape's shortlist: exactly search()'s choice
        sl = self._shortlist(layer)
        n = len(sl)
        res = evaluate(pb, hw, *sl.columns())
        # only the keys choose() reads are broadcast (a broadcast per key per layer cost more than
        # the evaluation); the winner's values are then read from each key's array or scalar
        b = choose({k: shaped(res[k], (n,)) for k in _CHOOSE_KEYS}, self.objective, self.tolerance)
        one = {k: _pick(v, b, n) for k, v in res.items()}
        ls = _layer_score(layer, sl.mapping(b), one, hw, note=check_native(layer, hw).note, pb=pb)
        self._score_cache[key] = ls
        return ls

    def _shortlist(self, layer: Layer) -> Shortlist:
        mkey = (self.hardware, layer.shape_key())
        sl = _MAPPINGS.get(mkey)
        searched = sl is None
        if sl is None:
            disk = _DISK[0]
            sl = disk.get(self.hardware, layer.shape_key()) if disk is not None else None
            searched = sl is None
            if sl is None:
                sl = shortlist(layer, self.hardware)
                if disk is not None:
                    disk.put(self.hardware, layer.shape_key(), sl)
            _MAPPINGS.put(mkey, sl)
        with self._lock:
            self._mapping_keys.add(mkey)
            self._searches += searched
        return sl

    def prefetch(self, layer: Layer) -> None:
        """Search ``layer``'s shape now unless it is cached (its statistics are not read); a shape
        the hardware cannot run, or a dataflow without a shape search, is left to
        :meth:`score_layer`, which reports it."""
        if self.hardware.dataflow != "rs":
            return
        try:
            self._shortlist(layer)
        except UnsupportedLayerError:
            pass  # reported per layer by score_layer

    def prepare(self, layers: Sequence[Layer]) -> None:
        """Search the shortlists of ``layers``' distinct shapes not yet in the process-wide cache,
        ``self.workers`` at a time (threads: the search is NumPy work on arrays)."""
        if self.hardware.dataflow != "rs":
            return
        todo: dict[tuple[Any, ...], Layer] = {}
        for layer in layers:
            k = layer.shape_key()
            if k not in todo and _MAPPINGS.get((self.hardware, k)) is None:
                try:
                    check_native(layer, self.hardware)
                except UnsupportedLayerError:
                    continue  # reported per layer by score_layer
                todo[k] = layer
        if len(todo) < 2 or self.workers < 2:
            return
        with ThreadPoolExecutor(max_workers=min(self.workers, len(todo))) as pool:
            list(pool.map(self.prefetch, todo.values()))

    # -- workload -----------------------------------------------------------------------------
    def score(self, workload: Workload | Sequence[Layer] | str, *, batch: int | None = None,
              on_unsupported: str = "report") -> ScoreReport:
        """Score every layer. Layers the hardware cannot run are listed in ``unscored`` with their
        MACs (``on_unsupported="report"``, the default) or raise (``"raise"``)."""
        if on_unsupported not in ("report", "raise"):
            raise HwawareError("on_unsupported must be 'report' or 'raise'")
        wl = as_workload(workload)
        if batch is not None:
            if int(batch) <= 0:
                raise HwawareError(f"batch must be positive, got {batch}")
            wl = wl.with_batch(int(batch))
        scores: list[LayerScore] = []
        unscored: list[Unscored] = []
        layers = wl.layers
        self.prepare(layers)
        for i, layer in enumerate(layers):
            nxt = layers[i + 1].ifmap_zeros if i + 1 < len(layers) else None
            try:
                scores.append(self.score_layer(layer, first=(i == 0), next_zeros=nxt))
            except UnsupportedLayerError as exc:
                if on_unsupported == "raise":
                    raise
                unscored.append(Unscored(layer.name, layer.macs, str(exc)))
        if not scores:
            reasons = "; ".join(u.reason for u in unscored[:3])
            raise UnsupportedLayerError(f"no layer of the workload can be scored on {self.hardware.name}: {reasons}")
        n = layers[0].N if layers else 1
        return ScoreReport(self.hardware, self.objective, tuple(scores), _sum_scores(scores, self.hardware),
                           tuple(unscored), tuple(wl.unmodeled), batch=n)

    def cache_info(self) -> dict[str, int]:
        """``mappings``: distinct layer shapes this scorer mapped; ``searched``: how many of them it
        had to search (the rest came from the process-wide cache); ``layers``: scored layers it keeps."""
        return {"mappings": len(self._mapping_keys), "searched": self._searches, "layers": len(self._score_cache)}


_CHOOSE_KEYS = ("energy", "cycles", "stall_cycles", "active_pes")  # what mapper.choose reads


def _pick(v: Any, b: int, n: int) -> np.ndarray:
    """Entry ``b`` of an evaluated key, as a 1-element array: a per-mapping array of ``n`` values,
    or one value shared by every mapping."""
    a = np.asarray(v)
    return a[b:b + 1] if a.shape == (n,) else a.reshape(1)


def written_ratio(layer: Layer, next_zeros: float | None) -> float:
    """RLC-coded / raw size of the ofmap ``layer`` writes to DRAM (the rule in the module docstring)."""
    if layer.ofmap_rlc > 0:
        return layer.ofmap_rlc
    if layer.ofmap_relu_zeros is not None:
        z = layer.ofmap_relu_zeros
    else:
        z = next_zeros if next_zeros is not None else (layer.ofmap_zeros or layer.ifmap_zeros)
    return rlc_ratio(layer.E * layer.F, z)


def _layer_score(layer: Layer, mapping: Mapping, res: dict[str, np.ndarray], hw: Hardware, note: str,
                 pb: Problem | None = None) -> LayerScore:
    def v(key: str) -> float:
        return float(np.asarray(res[key]).ravel()[0])

    accesses = {lv: {ty: v(f"acc_{lv}_{ty}") for ty in TYPES} for lv in LEVELS}
    costs = hw.energy_costs()
    energy = {lv: v(f"energy_{lv}") for lv in LEVELS}
    energy["MAC"] = v("energy_MAC")
    by_type = {ty: sum(accesses[lv][ty] * costs[lv] for lv in LEVELS) for ty in TYPES}
    by_type["MAC"] = energy["MAC"]
    total = v("energy")
    hz = hw.core_MHz * 1e6
    proc_ms = v("cycles") / hz * 1e3
    tot_ms = proc_ms + v("stall_cycles") / hz * 1e3
    onchip = total - energy["DRAM"]
    clk = clock_J(hw, tot_ms)
    return LayerScore(
        name=layer.name, layer=layer, mapping=mapping, active_pes=int(v("active_pes")), macs=layer.macs,
        nonzero_macs=layer.nonzero_macs, accesses=accesses, energy=energy, energy_by_type=by_type,
        energy_total=total, dram_MB=sum(accesses["DRAM"].values()) * _MB,
        glb_MB=sum(accesses["GLB"].values()) * _MB, processing_latency_ms=proc_ms, total_latency_ms=tot_ms,
        power_mW=chip_power_mW(hw, onchip, tot_ms), energy_J=total * hw.unit_pJ * 1e-12 + clk, clock_J=clk,
        passes=int(v("passes")), note=note,
        # Eyexam needs the RS latency model's breakdown (other dataflows report no bounds)
        eyexam=bounds(pb, hw, res) if pb is not None and "compute_cycles_total" in res else (),
        bound=limiting_resource(res) if "compute_cycles_total" in res else "",
    )


def _sum_scores(scores: Sequence[LayerScore], hw: Hardware) -> LayerScore:
    acc = {lv: {ty: sum(s.accesses[lv][ty] for s in scores) for ty in TYPES} for lv in LEVELS}
    energy = {k: sum(s.energy[k] for s in scores) for k in (*LEVELS, "MAC")}
    by_type = {k: sum(s.energy_by_type[k] for s in scores) for k in (*TYPES, "MAC")}
    total = sum(s.energy_total for s in scores)
    tot_ms = sum(s.total_latency_ms for s in scores)
    onchip = total - energy["DRAM"]
    macs = sum(s.macs for s in scores)
    # MAC-weighted average of active PEs (the chip's Table V "Total" row reports 148 this way)
    pes = round(sum(s.active_pes * s.macs for s in scores) / macs) if macs else 0
    return LayerScore(
        name="total", layer=None, mapping=None, active_pes=int(pes), macs=macs,
        nonzero_macs=sum(s.nonzero_macs for s in scores), accesses=acc, energy=energy, energy_by_type=by_type,
        energy_total=total, dram_MB=sum(s.dram_MB for s in scores), glb_MB=sum(s.glb_MB for s in scores),
        processing_latency_ms=sum(s.processing_latency_ms for s in scores), total_latency_ms=tot_ms,
        power_mW=chip_power_mW(hw, onchip, tot_ms), energy_J=sum(s.energy_J for s in scores),
        clock_J=sum(s.clock_J for s in scores), passes=sum(s.passes for s in scores),
    )


def score(target: Any, *, hardware: Hardware | str | None = "eyeriss_v1", objective: str = "energy",
          batch: int | None = None, data: Any = None, input_size: Sequence[int] | None = None,
          batches: int | None = None, on_unsupported: str = "report", scorer: Scorer | None = None) -> ScoreReport:
    """Score a workload, a workload file, or a model (profiled on ``data`` or random input).

    ``hardware``: a preset name (``eyeriss_v1``, ``eyeriss_isca256``), a YAML file, or a Hardware.
    ``objective``: what the mapper minimizes per layer: ``energy``, ``latency`` or ``edp``.
    ``batch``: N for every layer (default: the batch the workload was profiled with).
    A model's layer shapes are mapped on a background thread while it is profiled
    (:mod:`.background_search`).
    """
    sc = scorer or Scorer(hardware, objective)
    with BackgroundSearch(sc) as bg:
        wl = _to_workload(target, data=data, input_size=input_size, batches=batches, on_layer=bg.submit)
    return sc.score(wl, batch=batch, on_unsupported=on_unsupported)


def _to_workload(target: Any, *, data: Any, input_size: Sequence[int] | None, batches: int | None,
                 on_layer: Any = None) -> Workload:
    import torch

    if isinstance(target, torch.nn.Module):
        from ..profiler import profile

        if data is None:
            if input_size is None:
                raise HwawareError("scoring a model needs data= (a batch or loader) or input_size=(N, C, H, W)")
            from .._checks import check_input_size

            size = check_input_size(input_size, "score: input_size")
            gen = torch.Generator().manual_seed(0)
            data = torch.randn(size, generator=gen)
        return profile(target, data, batches=batches, on_layer=on_layer)
    return as_workload(target)

