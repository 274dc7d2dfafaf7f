"""A small CNN for 3x32x32 images (``builtin:shapes``, CIFAR-10) that trains in minutes on a CPU.

Four 3x3 CONV layers (32, 64, 128, 128 filters at width 1.0), each followed by BN and ReLU;
2x2 max-pooling after the first three; global average pooling; one FC layer. About 0.24M
weights and 12M MACs per image at width 1.0.

Module names are flat (the model is an ``nn.Sequential``): ``conv1``..``conv4`` (with ``bn1``..
``bn4``, ``relu1``..``relu4``, ``pool1``..``pool3``), ``gap``, ``flatten``, ``fc``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

INPUT_SIZE = (3, 32, 32)

WIDTHS = (32, 64, 128, 128)


class SmallCNN(nn.Sequential):
    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        if not width > 0:
            raise ValueError(f"small_cnn: width must be positive, got {width}")
        layers: list[tuple[str, nn.Module]] = []
        in_ch = 3
        for i, w in enumerate(WIDTHS, start=1):
            out_ch = max(1, int(round(w * width)))
            layers += [
                (f"conv{i}", nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)),
                (f"bn{i}", nn.BatchNorm2d(out_ch)),
                (f"relu{i}", nn.ReLU()),
            ]
            if i < len(WIDTHS):
                layers.append((f"pool{i}", nn.MaxPool2d(2)))
            in_ch = out_ch
        layers += [
            ("gap", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(in_ch, num_classes)),
        ]
        super().__init__(OrderedDict(layers))


def small_cnn(num_classes: int = 10, width: float = 1.0) -> SmallCNN:
    """The small CNN with randomly initialized weights."""
    return SmallCNN(num_classes=num_classes, width=width)
