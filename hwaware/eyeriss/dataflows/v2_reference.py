"""Reference data on Eyeriss v2 and its sparse MobileNet, published by the v2 authors' group.

Source: the artifact of Wu, Tsai, Parashar, Sze, Emer, "Sparseloop: An Analytical Approach to Sparse
Tensor Accelerator Modeling", MICRO 2022 — github.com/Accelergy-Project/micro22-sparseloop-artifact,
``workspace/2022.micro.artifact/evaluation_setups/fig12_eyerissv2_pe_setup`` (commits 7a7a6f0 and
5752c71). Its Fig. 12 validates Sparseloop against the cycles of one Eyeriss v2 PE processing the
layers of a workload called ``mobilenet0.5-sparse``. What it establishes (facts, copied as numbers):

- **the MobileNet**: 28 layers whose shapes are MobileNet v1 at width 0.5 and 128 x 128 input (e.g.
  L07 is the 1x1 layer 64 -> 64 channels at 32 x 32 outputs; L27 512 -> 512 at 4 x 4) — the variant
  the JETCAS abstract's "sparse MobileNet" leaves unnamed, and the one the published v1 throughput
  bound allows (bench/eyeriss_v2.py);
- **its sparsity**: bit masks of the non-zero input activations and weights of nine layers
  (``actual_data_masks/L??_iacts.txt`` / ``L??_weights.txt``); ``DENSITY`` holds their counts;
- **one v2 PE's cycles per layer** (``scripts/ground_truth_cycles.yaml``, all 28 layers): the whole
  layer processed by a single PE. On the eight 1x1 layers with masks they are 1.01-1.07x the non-zero
  products under independent zeros (one MAC per cycle, zeros of both operands skipped); on the
  depthwise layers they are 0.87-1.00x the dense MACs (no saving from zeros); the dense first layer
  takes exactly its 1,769,472 MACs (one MAC per cycle: no two-MAC SIMD on it).
"""

from __future__ import annotations

from ...workload import Workload

MOBILENET = (0.5, 128)  # (width multiplier, input resolution) of the workload "mobilenet0.5-sparse"

# cycles of one v2 PE processing the whole layer, L01..L28 (ground_truth_cycles.yaml)
PE_CYCLES = (
    1769472, 544768, 461302, 278528, 873643, 513024, 1702140, 145920, 1499682, 270848,
    2491491, 73728, 1144158, 147456, 2238663, 147456, 2173758, 124096, 1457458, 147456,
    1677684, 147456, 1821557, 36864, 948572, 73728, 775316, 95443,
)

# layer number -> ((non-zero iacts, iacts), (non-zero weights, weights)), counted from the masks
MASK_COUNTS = {
    7: ((47716, 65536), (2131, 4096)),
    9: ((14158, 16384), (6704, 8192)),
    13: ((6823, 8192), (21111, 32768)),
    19: ((9956, 16384), (36035, 65536)),
    20: ((8053, 16384), (2190, 2304)),
    21: ((10506, 16384), (39299, 65536)),
    23: ((9968, 16384), (45795, 65536)),
    25: ((2774, 4096), (85128, 131072)),
    27: ((4775, 8192), (78606, 262144)),
}
DENSITY = {n: (a / b, c / d) for n, ((a, b), (c, d)) in MASK_COUNTS.items()}  # (iact, weight)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def assumed_density(layer_number: int, depthwise: bool) -> tuple[float, float]:
    """(iact, weight) density of a layer: the measured one where the artifact has masks; the first
    layer dense (the image, and its reference cycles equal its dense MACs); any other layer the mean
    of the measured layers of its kind (depthwise: L20, the only one measured; the others, the FC layer
    included: the eight measured 1x1 layers) — an assumption for 19 of the 28 layers."""
    if layer_number in DENSITY:
        return DENSITY[layer_number]
    if layer_number == 1:
        return 1.0, 1.0
    kind = [d for n, d in DENSITY.items() if (n == 20) == depthwise]
    return _mean(d[0] for d in kind), _mean(d[1] for d in kind)


def sparse_mobilenet(wl: Workload) -> Workload:
    """``wl`` (MobileNet 0.5-128's 28 layers, as profiled) with the reference sparsity applied."""
    if len(wl.layers) != len(PE_CYCLES):
        raise ValueError(f"the reference sparse MobileNet has {len(PE_CYCLES)} layers, the workload "
                         f"{len(wl.layers)}: profile MobileNet v1 at width {MOBILENET[0]}, input {MOBILENET[1]}")
    dens = [assumed_density(i, depthwise=L.groups > 1 and L.groups == L.M) for i, L in enumerate(wl.layers, start=1)]
    # only the reference statistics: the profile's own (a randomly initialized model's ofmap zeros
    # and measured RLC sizes) are dropped, so the result does not depend on the profiled weights
    return Workload(tuple(L.replace(ifmap_zeros=1.0 - d_if, weight_zeros=1.0 - d_w, ofmap_zeros=0.0, ifmap_rlc=0.0)
                          for L, (d_if, d_w) in zip(wl.layers, dens)))
