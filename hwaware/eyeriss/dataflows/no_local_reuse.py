"""No local reuse (NLR): no register files; a large global buffer and adder trees in the array.

Survey Sec. V-B.3 and ISCA 2016 Sec. IV-C (DianNao, Zhang et al. FPGA 2015): nothing stays in the
PEs. Each cycle the array reads ``pk`` inputs (a slice of the C*R*S reduction) from the buffer and
multicasts them to ``pm`` filter lanes, reads pm*pk weights (single-cast), reduces each lane's pk
products in an adder tree and writes pm psums back to the buffer. The area saved on register files
goes to the global buffer (:mod:`.area`), which holds the images in flight, their psums and, when
it fits, the layer's weights.

Mapping (searched exhaustively): ``pm`` lanes x ``pk`` reduction width (pm*pk <= PEs), ``n``
images per weight fetch from DRAM.

Counts (whole layer; Q = MACs, K = C*R*S, b = ceil(K/pk)): weights GLB = fill + Q, array = Q;
ifmap GLB = fill + G*N*E*F*K*ceil(M/pm), array = Q; psum array = #of*b*(pk-1) (adder-tree
inputs), GLB = 2*#of*b, DRAM = #of. RF = 0 for every type.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..cost import Problem
from ..hardware import Hardware
from .framework import Candidate, DataflowMapping, ceil, counts, dram, glb_plan, tile_options, tiles

NAME = "nlr"
TITLE = "no local reuse"


def candidates(pb: Problem, hw: Hardware) -> Iterator[Candidate]:
    P, G, N, M = hw.num_pes, pb.G, pb.N, pb.M
    K = pb.C * pb.R * pb.S
    n_if, n_w, n_of, Q = float(pb.n_if), float(pb.n_w), float(pb.n_of), float(pb.macs)
    si, sw = pb.ifmap_scale, pb.weight_scale
    img = pb.C * pb.Hp * pb.Wp  # one image's ifmap of one group (groups run one after the other)
    for pk in tile_options(K, P):
        pm = min(P // pk, M)
        b, fb = ceil(K, pk), ceil(M, pm)
        for n in tiles(N):
            nt = ceil(N, n)
            psums = n * pm * pb.E * pb.F
            plan = glb_plan(pb, hw, [
                (n * img + psums + M * K, n_if, n_w),  # the group's weights resident: read once
                (n * img + psums + pm * K, n_if, n_w * nt),  # a lane block's weights per image tile
            ])
            if plan is None:
                continue
            d_if, d_w = plan
            acc = counts(
                **dram(pb, d_if, d_w),
                GLB_ifmap=(d_if + G * N * pb.E * pb.F * K * fb) * si, GLB_filter=(d_w + Q) * sw,
                GLB_psum=2.0 * n_of * b,
                array_ifmap=Q * si, array_filter=Q * sw, array_psum=n_of * b * (pk - 1),
            )
            passes = G * N * pb.E * pb.F * fb * b
            yield Candidate(DataflowMapping(NAME, (("pm", pm), ("pk", pk), ("n", n))), acc,
                            cycles=float(passes), active_pes=pm * pk, passes=passes)
