"""VGG-16 (Simonyan & Zisserman, ICLR 2015; configuration D), 224x224 RGB input.

Thirteen 3x3 CONV layers with padding 1 in five stages (64, 128, 256, 512, 512 filters), 2x2/2
max-pooling after each stage, then FC6 (25088->4096), FC7 (4096->4096), FC8 (4096->classes).
Totals (survey, Sze et al. Proc. IEEE 2017, Table II): 138M weights, 15.5G MACs per image.

Module names are flat (``conv1_1``..``conv5_3``, ``fc6``..``fc8``), matching the paper's
``CONV1-1``..``CONV5-3`` naming used in the Eyeriss evaluation.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

INPUT_SIZE = (3, 224, 224)

# filters of each CONV layer, stage by stage
STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Sequential):
    """VGG-16; ``forward`` is the plain chain of the named modules."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        layers: list[tuple[str, nn.Module]] = []
        in_ch = 3
        for s, widths in enumerate(STAGES, start=1):
            for i, out_ch in enumerate(widths, start=1):
                layers.append((f"conv{s}_{i}", nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)))
                layers.append((f"relu{s}_{i}", nn.ReLU()))
                in_ch = out_ch
            layers.append((f"pool{s}", nn.MaxPool2d(kernel_size=2, stride=2)))
        layers += [
            ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(512 * 7 * 7, 4096)),
            ("relu6", nn.ReLU()),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)),
            ("relu7", nn.ReLU()),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]
        super().__init__(OrderedDict(layers))


def vgg16(num_classes: int = 1000) -> VGG16:
    """VGG-16 with randomly initialized weights (PyTorch defaults)."""
    return VGG16(num_classes=num_classes)
