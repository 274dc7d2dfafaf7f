"""A VGG-shaped CNN for 3x32x32 images (``builtin:shapes``) whose Eyeriss energy is feature-map traffic.

The study network of energy-aware vs magnitude pruning (bench/prune_compare.py). Like AlexNet and
VGG-16 it keeps the feature maps large in the first layers (two 3x3 CONVs at 32x32, two at 16x16)
where it has few weights, and holds most of its weights in the late layers (conv5 and two fully
connected layers) where the feature maps are small. Scored on Eyeriss v1 at the chip's batch of 4,
ifmap and psum accesses are most of the energy (bench/prune_compare.py prints the split), as in the
CONV layers of AlexNet that the CVPR 2017 paper prunes.

    conv1 3->32 @32x32, conv2 32->32 @32x32, pool, conv3 32->64 @16x16, conv4 64->64 @16x16, pool,
    conv5 64->128 @8x8, global average pooling, fc6 128->256, fc7 256->10

Each CONV is followed by BN and ReLU (global pooling, as in the small CNN: the shapes sit anywhere
in the image). About 0.17M weights and 29M MACs per image.
Module names are flat (an ``nn.Sequential``): ``conv1``..``conv5``, ``fc6``, ``fc7``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

INPUT_SIZE = (3, 32, 32)

# output channels of conv1..conv5; "M" = 2x2 max-pooling
PLAN = (32, 32, "M", 64, 64, "M", 128)


class VGGSmall(nn.Sequential):
    def __init__(self, num_classes: int = 10, width: float = 1.0, hidden: int = 256) -> None:
        if not width > 0:
            raise ValueError(f"vgg_small: width must be positive, got {width}")
        layers: list[tuple[str, nn.Module]] = []
        in_ch, i, p = 3, 0, 0
        for v in PLAN:
            if v == "M":
                p += 1
                layers.append((f"pool{p}", nn.MaxPool2d(2)))
                continue
            i += 1
            out_ch = max(1, int(round(int(v) * width)))
            layers += [
                (f"conv{i}", nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)),
                (f"bn{i}", nn.BatchNorm2d(out_ch)),
                (f"relu{i}", nn.ReLU()),
            ]
            in_ch = out_ch
        layers += [
            ("gap", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(in_ch, hidden)),
            ("relu6", nn.ReLU()),
            ("fc7", nn.Linear(hidden, num_classes)),
        ]
        super().__init__(OrderedDict(layers))


def vgg_small(num_classes: int = 10, width: float = 1.0) -> VGGSmall:
    """The VGG-shaped study CNN with randomly initialized weights."""
    return VGGSmall(num_classes=num_classes, width=width)
