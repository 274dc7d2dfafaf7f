"""Equal-area storage splits: how much register file and global buffer each dataflow gets.

ISCA 2016 (Chen, Emer, Sze) compares dataflows at the same number of PEs and the same storage
area. Its baseline storage area for P PEs is ``P x Area(512 B RF) + Area(P x 512 B global buffer)``;
each dataflow then moves area between the two according to what it needs (survey Sec. V-B.5: "since
the no local reuse dataflow does not require any RF in PE, it is allocated with a much larger global
buffer").

The area of a byte of register file relative to a byte of buffer comes from the ISCA paper's own
setup (Sec. VI-B): at 256 PEs "the difference in total on-chip storage size can be as high as 80 kB"
and "for the global buffer alone, the size difference is up to 2.6x". RS keeps the baseline (512 B RF,
the largest RF, so the smallest buffer, 128 kB); NLR gives its RF up (the largest buffer). So
128 + 128 x k <= 2.6 x 128 kB: ``RF_AREA_PER_BYTE`` k = 1.6 buffer bytes per RF byte, and then NLR's
total exceeds RS's by 128 x 0.6 = 76.8 kB, inside the 80 kB the text states. NLR keeps 2-byte operand
registers for ifmap, weight and psum (6 B) and gets 128 + 256 * (512 - 6) * 1.6 / 1024 = 330 kB of
buffer. RS, WS and OS keep 512 B per PE and the 128 kB buffer (they use the register file for their
stationary data; the paper's WS keeps "a single weight" per PE and a larger buffer, its per-dataflow
sizes are in its Fig. 7b, an image — not modelled). The Eyeriss chip's own ratio (JSSC 2017 Sec.
VII: spads 2.5x the GLB's area for 1.5x less capacity, 3.75) was used before: it gave NLR 602 kB,
2.6x more than the paper's bound allows.
"""

from __future__ import annotations

import dataclasses

from ..hardware import Hardware

RF_AREA_PER_BYTE = 1.6  # buffer-byte equivalents per RF byte: (2.6 x 128 - 128) / 128, ISCA 2016 Sec. VI-B
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
