"""Time-proportional energy (clock network, leakage): energy a chip spends per cycle, busy or not.

The access-count model (:mod:`hwaware.eyeriss.cost`) charges energy per access and per MAC. A chip
also spends energy every cycle its clock runs: Eyeriss's power breakdown (JSSC 2017 Sec. VI-A,
Fig. 16, post-layout simulation of AlexNet CONV1 and CONV5) has the ALUs at "less than 10%" and the
data-movement components (spads, GLB, NoC) at "up to 45%" of the total, and "besides the clock
network, the spads dominate": the clock network is the largest item. The Eyeriss v2 paper credits
its energy-efficiency gain over v1 to this part: it "largely correlates to the speedup since the
higher overall utilization of the PEs reduces the proportion of the static power consumption, e.g.,
clock network" (JETCAS 2019 Sec. V-A).

One rule for every chip:

- :data:`TIME_SHARE` = 1 - 0.45 - 0.10 = 0.45 of the calibration chip's power is charged per cycle
  (what is neither ALU nor data movement, at the bounds the JSSC text gives; a lower bound of that
  part, which holds the clock network and control);
- it is spread over the chip's PEs: ``Hardware.clock_pJ`` is that energy per PE per core cycle,
  charged for every PE of the chip over the whole latency (stalls included), whether a PE is busy or
  not. On Eyeriss (168 PEs, 200 MHz, 278 mW on AlexNet CONV1-5, JSSC Table V):
  0.45 x 278 mW / (168 x 200 MHz) = 3.72 pJ per PE-cycle (:func:`clock_pJ_from_power`);
- the per-access unit ``unit_pJ`` is then fitted on the same AlexNet total with this term taken out
  (:func:`unit_pJ_from_power`, ``python bench/fidelity.py`` prints both).

``clock_pJ = 0`` (the default of a custom Hardware) is the access-count model alone, with clock
power folded into ``unit_pJ`` as a per-access cost.
"""

from __future__ import annotations

from .hardware import Hardware

ALU_SHARE = 0.10  # JSSC 2017 Sec. VI-A: "the ALUs only account for less than 10% of the total power"
DATA_MOVEMENT_SHARE = 0.45  # ibid.: "data movement related components ... account for up to 45%"
# the rest (clock network, control, leakage): charged per cycle
TIME_SHARE = 1.0 - ALU_SHARE - DATA_MOVEMENT_SHARE


def clock_pJ_from_power(power_mW: float, num_pes: int, core_MHz: float, share: float = TIME_SHARE) -> float:
    """Time-proportional energy per PE per cycle (pJ) of a chip measured at ``power_mW``, of which
    ``share`` is time-proportional: share x P / (PEs x f)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    return share * power_mW * 1e-3 / (num_pes * core_MHz * 1e6) * 1e12


def unit_pJ_from_power(power_mW: float, latency_ms: float, onchip_units: float, clock_pJ: float, num_pes: int,
                       core_MHz: float) -> float:
    """pJ per normalized access unit that makes the model's chip power equal ``power_mW`` over
    ``latency_ms`` given ``onchip_units`` of on-chip access energy and ``clock_pJ`` per PE-cycle."""
    cycles = latency_ms * 1e-3 * core_MHz * 1e6
    rest_pJ = power_mW * 1e-3 * latency_ms * 1e-3 * 1e12 - clock_pJ * num_pes * cycles
    if rest_pJ <= 0 or onchip_units <= 0:
        raise ValueError("the time-proportional energy exceeds the measured energy: lower the share")
    return rest_pJ / onchip_units


def clock_J(hw: Hardware, latency_ms: float) -> float:
    """Time-proportional energy (J) of ``hw`` running for ``latency_ms``: every PE, every cycle."""
    return hw.clock_pJ * 1e-12 * hw.num_pes * latency_ms * 1e-3 * hw.core_MHz * 1e6


def chip_power_mW(hw: Hardware, onchip_units: float, latency_ms: float) -> float:
    """Chip power (DRAM excluded): on-chip access energy x ``unit_pJ`` plus the time-proportional
    energy, over ``latency_ms``."""
    if latency_ms <= 0:
        return 0.0
    joules = onchip_units * hw.unit_pJ * 1e-12 + clock_J(hw, latency_ms)
    return joules / (latency_ms * 1e-3) * 1e3
