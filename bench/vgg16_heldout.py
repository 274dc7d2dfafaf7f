"""Held-out check: the Eyeriss model on VGG-16 against the facts in the JSSC 2017 text.

    python bench/vgg16_heldout.py

The model was calibrated on AlexNet only. The paper's per-layer VGG-16 table (Table VI) is withheld
from this project; its text still states: 0.7 frames/s at 236 mW with batch N = 3, 321.1 MB of DRAM
traffic per batch (0.0035 accesses/MAC), and CONV1-2 taking "nearly four times longer" than CONV4-2
although both have the same MACs. VGG-16's activation sparsity on ImageNet is not in the paper, so
the model is run over a range of ifmap zero fractions (the first layer's input is dense).
"""

from __future__ import annotations

from hwaware.eyeriss import Scorer
from hwaware.report_table import format_table
from hwaware.workload import Layer, Workload

# (in channels, out channels, input size) of VGG-16's 13 CONV layers (3x3, stride 1, padding 1)
VGG16 = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56), (256, 256, 56),
         (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28), (512, 512, 14), (512, 512, 14),
         (512, 512, 14)]
NAMES = ["CONV1-1", "CONV1-2", "CONV2-1", "CONV2-2", "CONV3-1", "CONV3-2", "CONV3-3", "CONV4-1", "CONV4-2",
         "CONV4-3", "CONV5-1", "CONV5-2", "CONV5-3"]


def workload(zeros: float, batch: int = 3) -> Workload:
    return Workload(tuple(
        Layer(n, N=batch, M=m, C=c, H=h, W=h, R=3, S=3, padding=1, ifmap_zeros=0.0 if i == 0 else zeros)
        for i, (n, (c, m, h)) in enumerate(zip(NAMES, VGG16))))


def main() -> None:
    rows = []
    for z in (0.3, 0.4, 0.5, 0.6, 0.7):
        rep = Scorer("eyeriss_v1").score(workload(z))
        t = rep.total
        ratio = rep["CONV1-2"].total_latency_ms / rep["CONV4-2"].total_latency_ms
        rows.append([f"{z:.0%}", f"{rep.frames_per_s:.2f}", f"{t.power_mW:.0f}", f"{t.dram_MB:.1f}",
                     f"{t.dram_MB * 1e6 / 2 / t.macs:.4f}", f"{ratio:.2f}"])
    rows.append(None)
    rows.append(["chip (text)", "0.7", "236", "321.1", "0.0035", "~4"])
    print("VGG-16 CONV layers at N=3 on eyeriss_v1 (model calibrated on AlexNet only)")
    print(format_table(["ifmap zeros", "frames/s", "power mW", "DRAM MB", "DRAM acc/MAC", "CONV1-2/CONV4-2"], rows))


if __name__ == "__main__":
    main()
