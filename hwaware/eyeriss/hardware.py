"""Hardware description of a row-stationary (Eyeriss-class) accelerator.

Numbers of the ``eyeriss_v1`` preset come from the JSSC 2017 chip paper (Chen, Krishna, Emer, Sze):
a 12x14 PE array (Sec. III); per-PE spads of 224 filter, 12 ifmap and 24 psum 16-bit words
(Sec. V-C); a 108 kB global buffer = 100 kB for ifmaps/psums in 25 banks of 4 kB + 8 kB for filters
(Sec. V-A); 64-bit filter/psum GIN and GON, 16-bit ifmap GIN (Sec. V-B); 200 MHz core and a 64-bit
DRAM link at 60 MHz (Table V); native shapes of Table IV. Normalized access energies (DRAM 200,
GLB 6, inter-PE array 2, RF 1, MAC 1) are those of the ISCA 2016 analysis (NOTES.md).

Every field can be changed from Python (``dataclasses.replace(hw, glb_kB=...)`` or
``Hardware.from_dict``) or from a YAML hardware file; invalid values raise :class:`HwawareError`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._suggest import did_you_mean
from ..errors import HwawareError

# dataflows the model can score (hwaware.eyeriss.dataflows); "rs" is the chip's row stationary
DATAFLOWS = ("rs", "ws", "os_a", "os_b", "os_c", "nlr", "v2")


@dataclass(frozen=True)
class Hardware:
    """A row-stationary accelerator. Sizes in 16-bit words unless the name says otherwise."""

    name: str = "custom"
    # PE array
    pe_rows: int = 12
    pe_cols: int = 14
    # per-PE scratchpads (words)
    spad_filter: int = 224
    spad_ifmap: int = 12
    spad_psum: int = 24
    # global buffer for ifmaps and psums (kB = 1024 bytes), its banking, and the filter buffer
    glb_kB: float = 100.0
    glb_banks: int = 25
    glb_filter_kB: float = 8.0
    word_bits: int = 16
    # NoC bus widths in words per core cycle (JSSC Sec. V-B: 64-bit filter/psum GIN and GON, 16-bit ifmap GIN)
    filter_bus_words: int = 4
    ifmap_bus_words: int = 1
    psum_bus_words: int = 4
    # clocks and DRAM link
    core_MHz: float = 200.0
    dram_MHz: float = 60.0
    dram_bus_bits: int = 64
    # normalized access energy per 16-bit word, relative to one 16-bit MAC (ISCA 2016)
    e_DRAM: float = 200.0
    e_GLB: float = 6.0
    e_array: float = 2.0
    e_RF: float = 1.0
    e_MAC: float = 1.0
    # energy of one normalized unit (one 16-bit MAC incl. its share of clock and control), in pJ.
    # The single calibration constant of the power model; fitted on AlexNet (docs/eyeriss_model.md).
    unit_pJ: float = 1.0
    # time-proportional energy (clock network, leakage) per PE per core cycle, pJ, charged for every PE
    # over the whole latency (hwaware.eyeriss.clock); 0 = folded into unit_pJ as a per-access cost
    clock_pJ: float = 0.0
    # data statistics (JSSC Sec. IV-B) and the CVPR 2017 sparsity rules
    rlc_fmaps: bool = True  # fmaps in DRAM are run-length compressed ...
    rlc_first_input: bool = False  # ... except the network's input
    gate_zero_ifmap: bool = True  # zero ifmap skips the filter-spad read and the MAC (energy only)
    gate_zero_weights: bool = True  # CVPR 2017 model: a zero (pruned) weight skips its MAC too
    compress_weights: bool = True  # CVPR 2017 model: sparse weights are stored run-length coded
    # native shape support (JSSC Table IV); M and C above the limit run in chunks of the limit
    max_R: int = 12
    max_S: int = 32
    max_M: int = 1024
    max_C: int = 1024
    vertical_strides: tuple[int, ...] = (1, 2, 4)
    max_horizontal_stride: int = 12
    default_batch: int = 4
    # which dataflow runs on the array (hwaware.eyeriss.dataflows); resolve "PRESET:ws" to re-split storage
    dataflow: str = "rs"
    # mapping policy: only mappings with at least this fraction of the most active PEs a layer can
    # get are considered (the chip keeps its array filled; docs/eyeriss_model.md, "Mapping")
    mapping_fill: float = 0.9
    # one image's ifmaps of a pass (q*r channels of U(e-1)+R rows) take no more GLB banks than one
    # channel's strip does. Observed on the Eyeriss chip (Table III and the VGG-16 latencies; docs/
    # eyeriss_model.md, "Mapping", M8), so on in the eyeriss_v1 preset and off by default
    ifmap_tile_one_bank: bool = False
    # MACs a PE can do per cycle: 1 on Eyeriss; 2 on Eyeriss v2 (SIMD on two weights that share an iact,
    # JETCAS 2019 Sec. IV-B; used by the v2 model, hwaware.eyeriss.dataflows.eyeriss_v2)
    macs_per_pe: int = 1
    notes: str = ""

    _POSITIVE_INT = ("pe_rows", "pe_cols", "spad_filter", "spad_ifmap", "spad_psum", "glb_banks",
                     "word_bits", "filter_bus_words", "ifmap_bus_words", "psum_bus_words",
                     "dram_bus_bits", "max_R", "max_S", "max_M", "max_C", "max_horizontal_stride",
                     "default_batch", "macs_per_pe")
    _POSITIVE_FLOAT = ("glb_kB", "core_MHz", "dram_MHz", "unit_pJ")
    _NONNEG_FLOAT = ("clock_pJ", "glb_filter_kB", "e_DRAM", "e_GLB", "e_array", "e_RF", "e_MAC")

    def __post_init__(self) -> None:
        where = f"hardware '{self.name}'"
        for k in self._POSITIVE_INT:
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise HwawareError(f"{where}: '{k}' must be a positive integer, got {v!r}")
        for k in self._POSITIVE_FLOAT + self._NONNEG_FLOAT:
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise HwawareError(f"{where}: '{k}' must be a number, got {v!r}")
            if not math.isfinite(v):
                raise HwawareError(f"{where}: '{k}' must be a finite number, got {v}")
            if (k in self._POSITIVE_FLOAT and v <= 0) or v < 0:
                raise HwawareError(f"{where}: '{k}' must be {'positive' if k in self._POSITIVE_FLOAT else 'non-negative'}, got {v}")
            object.__setattr__(self, k, float(v))
        if isinstance(self.mapping_fill, bool) or not isinstance(self.mapping_fill, (int, float)) \
                or not 0.0 <= self.mapping_fill <= 1.0:
            raise HwawareError(f"{where}: 'mapping_fill' must be a number in [0, 1], got {self.mapping_fill!r}")
        object.__setattr__(self, "mapping_fill", float(self.mapping_fill))
        for k in ("rlc_fmaps", "rlc_first_input", "gate_zero_ifmap", "gate_zero_weights", "compress_weights",
                  "ifmap_tile_one_bank"):
            if not isinstance(getattr(self, k), bool):
                raise HwawareError(f"{where}: '{k}' must be true or false, got {getattr(self, k)!r}")
        if self.dataflow not in DATAFLOWS:
            raise HwawareError(f"{where}: unknown dataflow '{self.dataflow}'{did_you_mean(str(self.dataflow), DATAFLOWS)}; "
                               f"allowed: {', '.join(DATAFLOWS)}")
        strides = self.vertical_strides
        if isinstance(strides, int):
            strides = (strides,)
        if not strides or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in strides):
            raise HwawareError(f"{where}: 'vertical_strides' must be a list of positive integers, got {strides!r}")
        object.__setattr__(self, "vertical_strides", tuple(sorted(set(strides))))
        if self.max_R > self.pe_rows:
            raise HwawareError(f"{where}: max_R={self.max_R} cannot exceed pe_rows={self.pe_rows}")
        if self.glb_words < self.glb_banks:
            raise HwawareError(f"{where}: glb_kB={self.glb_kB} is too small for {self.glb_banks} banks")

    # --- derived -------------------------------------------------------------------------------
    @property
    def num_pes(self) -> int:
        return self.pe_rows * self.pe_cols

    @property
    def glb_words(self) -> int:
        """Words of the ifmap/psum global buffer (100 kB -> 51200 words)."""
        return int(self.glb_kB * 1024 * 8 // self.word_bits)

    @property
    def glb_bank_words(self) -> int:
        return self.glb_words // self.glb_banks

    @property
    def dram_words_per_cycle(self) -> float:
        """DRAM bandwidth in words per core cycle (64 b x 60 MHz / 16 b / 200 MHz = 1.2)."""
        return self.dram_bus_bits / self.word_bits * self.dram_MHz / self.core_MHz

    @property
    def peak_gmacs(self) -> float:
        return self.num_pes * self.macs_per_pe * self.core_MHz / 1e3

    def energy_costs(self) -> dict[str, float]:
        return {"DRAM": self.e_DRAM, "GLB": self.e_GLB, "array": self.e_array, "RF": self.e_RF, "MAC": self.e_MAC}

    # --- (de)serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["vertical_strides"] = list(self.vertical_strides)
        return d

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base: Hardware | None = None, where: str = "hardware") -> Hardware:
        """Build from a mapping; ``base: NAME`` (or the ``base`` argument) starts from a preset."""
        if not isinstance(data, dict):
            raise HwawareError(f"{where}: expected a mapping of hardware fields, got {type(data).__name__}")
        data = dict(data)
        base_name = data.pop("base", None)
        if base_name is not None:
            base = get_preset(str(base_name))
        allowed = cls.field_names()
        for key in data:
            if key not in allowed:
                raise HwawareError(
                    f"{where}: unknown key '{key}'{did_you_mean(key, allowed)}; allowed: base, {', '.join(allowed)}"
                )
        if "name" not in data:
            data["name"] = Path(where).stem if where != "hardware" else (base.name + "*" if base else "custom")
        start = base.to_dict() if base is not None else {}
        start.update(data)
        if "vertical_strides" in start and isinstance(start["vertical_strides"], list):
            start["vertical_strides"] = tuple(start["vertical_strides"])
        return cls(**start)

    @classmethod
    def load(cls, path: str | Path) -> Hardware:
        path = Path(path)
        if not path.is_file():
            raise HwawareError(f"hardware file not found: {path} (or give a preset: {', '.join(PRESETS)})")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise HwawareError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
        return cls.from_dict(data or {}, where=str(path))


PRESETS: dict[str, Hardware] = {}


def register_preset(hw: Hardware) -> Hardware:
    """Add a preset; a name clash is an error (presets are part of the contract)."""
    if hw.name in PRESETS:
        raise HwawareError(f"hardware preset '{hw.name}' is already registered")
    PRESETS[hw.name] = hw
    return hw


# Power on the AlexNet CONV1-5 total (278 mW, JSSC Table V), split by hwaware.eyeriss.clock's rule:
# 45% charged per cycle, 0.45 x 278 mW / (168 PEs x 200 MHz) = 3.72 pJ per PE-cycle; the rest per
# access, fitted with this clock_pJ on the model's on-chip energy and total latency of the Table V
# workload (hwaware.eyeriss.clock.unit_pJ_from_power; bench/fidelity.py prints the refit and
# tests/test_eyeriss_fidelity.py fails when the preset drifts from it by more than 0.5%, as it must be
# refitted whenever the access counts or latencies change): 1.543 pJ since the written-ofmap rule
# (issue 10, session 5), 1.561 before it; 2.85 pJ before the clock term.
_V1_CLOCK_PJ = 3.72
_V1_UNIT_PJ = 1.54
register_preset(Hardware(
    name="eyeriss_v1",
    unit_pJ=_V1_UNIT_PJ,
    clock_pJ=_V1_CLOCK_PJ,
    ifmap_tile_one_bank=True,
    notes="Eyeriss chip, JSSC 2017: 12x14 PEs, 108 kB GLB, 200 MHz core, 64-bit DRAM link at 60 MHz.",
))

register_preset(Hardware(
    name="eyeriss_isca256",
    pe_rows=16,
    pe_cols=16,
    # 512 B RF per PE (survey Sec. V, ISCA 2016 setup); split in the chip's proportions
    spad_filter=220,
    spad_ifmap=12,
    spad_psum=24,
    glb_kB=128.0,
    glb_banks=32,
    max_R=16,
    default_batch=16,
    notes="ISCA 2016 dataflow-comparison setup: 256 PEs, 512 B RF/PE, ~128 kB buffer, batch 16.",
))

# Eyeriss v2 (Chen, Yang, Emer, Sze, JETCAS 2019), scored by its own model (hwaware.eyeriss.dataflows.
# eyeriss_v2); sources of each number in docs/dataflows.md ("Eyeriss v2 parameters"). 8 x 2 clusters of
# 3 x 4 PEs seen by the RS mapper as 16 rows of 12; spads in 8-bit entries (weights 96 x 24 bit = 192,
# iacts 16, psums 32 of 20 bit); GLB 16 clusters x (3 iact banks of 1.5 kB + 4 psum banks of 1.875 kB)
# = 192 kB in 112 banks, no weight buffer (weights go from off-chip to the PEs).
_V2_CLUSTERS = 8 * 2
register_preset(Hardware(
    name="eyeriss_v2",
    dataflow="v2",
    pe_rows=_V2_CLUSTERS,
    pe_cols=3 * 4,
    spad_filter=96 * 2,
    spad_ifmap=16,
    spad_psum=32,
    glb_kB=_V2_CLUSTERS * (3 * 1.5 + 4 * 1.875),
    glb_banks=_V2_CLUSTERS * (3 + 4),
    glb_filter_kB=0.0,
    macs_per_pe=2,
    unit_pJ=_V1_UNIT_PJ,  # same 65 nm process as v1: v1's per-access constant (an assumption)
    # the clock rule of hwaware.eyeriss.clock at v2's logic area: "an area increase of around two times"
    # over v1 at the same PE count (JETCAS 2019 Sec. V-A, logic only), so twice v1's energy per PE-cycle
    clock_pJ=2 * _V1_CLOCK_PJ,
    default_batch=1,
    notes="Eyeriss v2, JETCAS 2019: 192 PEs in 16 clusters, hierarchical mesh, CSC sparse PEs, 8-bit data.",
))


def get_preset(name: str) -> Hardware:
    try:
        return PRESETS[name]
    except KeyError:
        raise HwawareError(
            f"unknown hardware '{name}'{did_you_mean(name, PRESETS)}; presets: {', '.join(PRESETS)} "
            "(or a YAML hardware file)"
        ) from None


def resolve_hardware(hw: Hardware | str | Path | dict[str, Any] | None) -> Hardware:
    """Accept a Hardware, a preset name, a YAML file path, or a dict of overrides."""
    if hw is None:
        return PRESETS["eyeriss_v1"]
    if isinstance(hw, Hardware):
        return hw
    if isinstance(hw, dict):
        return Hardware.from_dict(hw, base=PRESETS["eyeriss_v1"] if "base" not in hw else None)
    text = str(hw)
    if text in PRESETS:
        return PRESETS[text]
    if ":" in text and not Path(text).exists():  # "PRESET_OR_FILE:dataflow", e.g. eyeriss_isca256:ws
        from .dataflows import with_dataflow

        base, dataflow = text.rsplit(":", 1)
        return with_dataflow(resolve_hardware(base), dataflow)
    if text.endswith((".yaml", ".yml")) or Path(text).exists():
        return Hardware.load(text)
    return get_preset(text)
