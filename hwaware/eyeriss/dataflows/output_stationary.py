"""Output stationary (OS) and its three variants: psums accumulate in place in the PE register files.

Survey Sec. V-B.2 and Fig. 26, ISCA 2016 Sec. IV-B (ShiDianNao, Gupta et al.): every PE owns output
values and accumulates all C*R*S products of each in its register file; ifmaps and weights are
streamed through the array. The variants differ in which outputs are in flight at once:

- ``os_a`` (SOC-MOP): many output pixels of a single output channel (targets CONV layers);
- ``os_b`` (MOC-MOP): several channels x several pixels;
- ``os_c`` (MOC-SOP): many channels, a single output pixel (targets FC layers).

Mapping: ``mc`` output channels x ``px`` output pixels (a tile of ``ex`` rows x ``fx`` columns) x
``nb`` images in flight (their ifmaps resident in the buffer), spread over the PEs, whose register
files hold them (register file minus two operand registers per PE). Operands are consumed as they
arrive (nothing but psums is local), so every MAC takes one ifmap and one weight delivery; what the
in-flight set changes is how often ifmaps and weights are re-read from the buffer and DRAM. The
search covers every tile count of the variant's own dimension (os_a: pixels, os_c: channels) and
powers of two elsewhere.

Counts (whole layer; Q = MACs, T = output tiles per image and channel block, win = the ifmap
window of a tile, K = C*R*S): psum RF = 2*#of*(K-1), GLB = 2*#of (final write, read-out),
DRAM = #of; ifmap GLB = fill + G*N*ceil(M/mc)*T*C*win, array = Q; weights GLB = fill +
#w*ceil(N/nb)*T, array = Q. The buffer keeps one image's ifmap and, if
it fits, all weights of the layer (read from DRAM once) or of the channel block (once per image).
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
    pow2,
    rf_words,
    tile_options,
)

VARIANTS = {
    "os_a": "output stationary, single output channel, multiple pixels (SOC-MOP)",
    "os_b": "output stationary, multiple channels and pixels (MOC-MOP)",
    "os_c": "output stationary, multiple channels, single pixel (MOC-SOP)",
}


def candidates(pb: Problem, hw: Hardware, variant: str) -> Iterator[Candidate]:
    if variant not in VARIANTS:
        raise ValueError(variant)
    P, N, M = hw.num_pes, pb.N, pb.M
    pix = pb.E * pb.F
    slots = P * (rf_words(hw) - 2)  # outputs the array can hold (2 operand registers per PE)
    if slots < 1:
        return
    if variant == "os_a":
        chans = [1]
    elif variant == "os_c":
        chans = tile_options(M, slots)
    else:
        chans = [v for v in pow2(min(M, slots)) if v > 1] + ([M] if 1 < M <= slots else [])
    for mc in sorted(set(chans)):
        if variant == "os_c":
            pixels = [1]
        elif variant == "os_a":
            pixels = tile_options(pix, slots)
        else:
            pixels = [v for v in pow2(min(pix, slots // mc)) if v > 1 or pix == 1] + ([pix] if pix * mc <= slots else [])
        for px in sorted(set(pixels)):
            for nb in pow2(min(N, slots // (mc * px))) + ([N] if N * mc * px <= slots else []):
                yield from _tiles(pb, hw, variant, mc, px, nb)


def _tiles(pb: Problem, hw: Hardware, variant: str, mc: int, px: int, nb: int) -> Iterator[Candidate]:
    G, N, M, C, E, F = pb.G, pb.N, pb.M, pb.C, pb.E, pb.F
    K = C * pb.R * pb.S
    n_if, n_w, n_of, Q = float(pb.n_if), float(pb.n_w), float(pb.n_of), float(pb.macs)
    si, sw = pb.ifmap_scale, pb.weight_scale
    g_if = (1.0 - pb.ifmap_zeros) if hw.gate_zero_ifmap else 1.0
    img = C * pb.Hp * pb.Wp  # one image's ifmap of one group (groups run one after the other)
    fb = ceil(M, mc)
    block_w = mc * K
    nbt = ceil(N, nb)  # image groups in flight
    in_flight = mc * px * nb
    for fx in sorted({min(F, px), min(F, max(1, round(px ** 0.5)))}):
        ex = min(ceil(px, fx), E)
        T = ceil(E, ex) * ceil(F, fx)  # output tiles per image and channel block
        win = (pb.U * (ex - 1) + pb.R) * (pb.U * (fx - 1) + pb.S)
        strip = C * (pb.U * (ex - 1) + pb.R) * pb.Wp
        # channel block outermost; the buffer holds the ifmaps of the nb images in flight
        plan = glb_plan(pb, hw, [
            (M * K + nb * img, n_if, n_w),  # all weights resident: read once
            (block_w + nb * img, n_if, n_w * nbt),  # the block's weights per image group
            (nb * img, n_if, n_w * nbt * T),  # weights streamed per output tile
            (block_w + nb * strip, n_if * fb, n_w * nbt),  # ifmap strips re-read per block
            # channel by channel (the psums wait in the register files): one channel's windows of
            # the images in flight resident; ifmaps re-read per block and tile, weights per tile
            (nb * win, n_if * fb * T * win / (pb.Hp * pb.Wp), n_w * nbt * T),
        ])
        if plan is None:
            continue
        d_if, d_w = plan
        acc = counts(
            **dram(pb, d_if, d_w),
            # an ifmap window is read per image, tile and channel block; a weight per image group
            # and tile (broadcast to the outputs in flight)
            GLB_ifmap=(d_if + G * N * fb * T * C * win) * si,
            GLB_filter=(d_w + n_w * nbt * T) * sw, GLB_psum=2.0 * n_of,
            # operands are consumed as they arrive (only psums are local): one delivery per MAC
            array_ifmap=Q * si, array_filter=Q * g_if * sw,
            RF_psum=2.0 * n_of * (K - 1),
        )
        passes = G * nbt * fb * T
        yield Candidate(
            DataflowMapping(variant, (("mc", mc), ("px", px), ("nb", nb), ("ex", ex), ("fx", fx))),
            acc, cycles=float(passes * ceil(in_flight, hw.num_pes) * K),
            active_pes=min(hw.num_pes, in_flight), passes=passes,
        )
