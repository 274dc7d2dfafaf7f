"""Weight stationary (WS): weights stay in the PE register files; ifmaps are broadcast, psums move.

Survey Sec. V-B.1 and ISCA 2016 Sec. IV-A (nn-X/neuFlow, TPU): a weight is read from DRAM into a
PE's register file once and used for every MAC that needs it while resident (all n*E*F output
positions of the images in flight); ifmaps are broadcast to the PEs and psums are accumulated
spatially across the array.

Mapping (searched exhaustively, smallest tile per tile count):
- the array holds a block of weights: ``pm`` filter groups x ``pc`` channels x all R*S taps, one
  (filter group, channel, tap) per PE, ``w`` filters per PE (register file: w weights + w psum
  delay slots + 1 ifmap register), so ``pm*pc*R*S <= PEs`` and the block covers ``w*pm`` filters;
- ``n`` images are processed per weight load;
- loop order: image tile > filter block > channel block, with a buffer plan that keeps either the
  n images' whole ifmap (read from DRAM once) or only the current channel block's (re-read from
  DRAM for every filter block), plus the n*w*pm*E*F psums of the filter block.

Counts (whole layer; Q = MACs, b = ceil(C/pc) channel blocks, fb = ceil(M/(w*pm)) filter blocks):
weights DRAM = GLB = array = #w*ceil(N/n) (loaded once per image tile), RF = Q;
ifmap GLB = fill + #if*fb, array = Q/w (a delivery feeds the PE's w filters), RF = Q when w > 1;
psum array = #of*b*(pc*R*S - 1) (the spatial accumulation chain), GLB = 2*#of*b, DRAM = #of.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..cost import Problem
from ..hardware import Hardware
from .framework import (
    Candidate,
    DataflowMapping,
    ceil,
    counts,
    dram,
    glb_plan,
    rf_words,
    tile_options,
    tiles,
)

NAME = "ws"
TITLE = "weight stationary"


def candidates(pb: Problem, hw: Hardware) -> Iterator[Candidate]:
    P, G, N, M, C = hw.num_pes, pb.G, pb.N, pb.M, pb.C
    taps = pb.R * pb.S
    if taps > P:
        return
    rf = rf_words(hw)
    n_if, n_w, n_of, Q = float(pb.n_if), float(pb.n_w), float(pb.n_of), float(pb.macs)
    si, sw = pb.ifmap_scale, pb.weight_scale
    g_if = (1.0 - pb.ifmap_zeros) if hw.gate_zero_ifmap else 1.0
    img = C * pb.Hp * pb.Wp  # one image's ifmap words (per group)
    for w in tile_options(M, (rf - 1) // 2):
        for pc in tile_options(C, P // taps):
            pm = min(P // (pc * taps), ceil(M, w))
            mb = w * pm
            fb, b = ceil(M, mb), ceil(C, pc)
            for n in tiles(N):
                nt = ceil(N, n)
                psum_words = n * mb * pb.E * pb.F
                plan = glb_plan(pb, hw, [
                    (n * img + psum_words, n_if, n_w * nt),
                    (n * pc * pb.Hp * pb.Wp + psum_words, n_if * fb, n_w * nt),
                ])
                if plan is None:
                    continue
                d_if, d_w = plan
                acc = counts(
                    **dram(pb, d_if, d_w),
                    GLB_ifmap=(d_if + n_if * fb) * si, GLB_filter=n_w * nt * sw, GLB_psum=2.0 * n_of * b,
                    # ifmaps are consumed as they arrive (only weights are local): one delivery per MAC
                    array_ifmap=Q * si, array_filter=n_w * nt * sw,
                    array_psum=n_of * b * (pc * taps - 1),
                    RF_filter=Q * g_if * sw,
                )
                passes = G * nt * fb * b
                yield Candidate(
                    DataflowMapping(NAME, (("w", w), ("pm", pm), ("pc", pc), ("n", n))), acc,
                    cycles=float(passes * n * pb.E * pb.F * w), active_pes=pm * pc * taps, passes=passes,
                )
