"""Equal-area storage splits: how much register file and global buffer each dataflow gets.

ISCA 2016 (Chen, Emer, Sze) compares dataflows at the same number of PEs and the same storage
area. Its baseline storage area for P PEs is ``P x Area(512 B RF) + Area(P x 512 B global buffer)``;
each dataflow then moves area between the two according to what it needs (survey Sec. V-B.5: "since
the no local reuse dataflow does not require any RF in PE, it is allocated with a much larger global
buffer").

The area of a byte of register file relative to a byte of buffer SRAM comes from the Eyeriss chip
(JSSC 2017 Sec. VII, Fig. 15): all spads take 2.5x the area of the GLB while holding 1.5x less
data, so a spad byte costs ``RF_AREA_PER_BYTE = 2.5 * 1.5 = 3.75`` GLB bytes. With that rule, for
256 PEs: RS, WS and OS keep 512 B per PE and the 128 kB buffer (they use the register file for
their stationary data); NLR keeps only 2-byte operand registers for ifmap, weight and psum (6 B)
and gets 128 + 256 * (512 - 6) * 3.75 / 1024 = 602 kB of buffer.
"""

from __future__ import annotations

import dataclasses

from ..hardware import Hardware

RF_AREA_PER_BYTE = 2.5 * 1.5  # GLB-byte equivalents per spad byte, JSSC 2017 Sec. VII
BASELINE_RF_BYTES = 512  # per PE, ISCA 2016 baseline

# register-file words per PE each dataflow keeps (filter, ifmap, psum); None = the hardware's own
RF_SPLIT: dict[str, tuple[int, int, int] | None] = {
    "rs": None,
    "ws": None,
    "os_a": None,
    "os_b": None,
    "os_c": None,
    "nlr": (1, 1, 1),
}


def storage_split(hw: Hardware, dataflow: str) -> Hardware:
    """``hw`` with its register files and buffer re-split for ``dataflow`` at equal storage area."""
    split = RF_SPLIT.get(dataflow)
    if split is None:
        return hw
    bytes_per_word = hw.word_bits // 8
    old_rf = (hw.spad_filter + hw.spad_ifmap + hw.spad_psum) * bytes_per_word
    new_rf = sum(split) * bytes_per_word
    freed_kB = hw.num_pes * (old_rf - new_rf) * RF_AREA_PER_BYTE / 1024
    glb = hw.glb_kB + freed_kB
    return dataclasses.replace(
        hw, spad_filter=split[0], spad_ifmap=split[1], spad_psum=split[2], glb_kB=round(glb, 1),
        glb_banks=max(hw.glb_banks, round(glb / (hw.glb_kB / hw.glb_banks))),
    )
