"""The original AlexNet (Krizhevsky et al., NIPS 2012) as run on the Eyeriss chip.

227x227 RGB input; five CONV layers with the original two-GPU grouping (CONV2, CONV4 and CONV5
are split into 2 groups, CONV3 and the FC layers see all channels); ReLU after every CONV/FC;
local response normalization then 3x3/2 max-pooling after CONV1 and CONV2; max-pooling after
CONV5; dropout before FC7 and FC8.

Shapes of CONV1-5 in the letters of the Eyeriss paper (JSSC 2017, Table III; H is the *padded*
input size, C the channels per filter, M the filters of all groups):

    layer  H    R   U  E   C    M    groups
    CONV1  227  11  4  55  3    96   1
    CONV2  31   5   1  27  48   256  2      (27 + 2*2 padding)
    CONV3  15   3   1  13  256  384  1      (13 + 2*1 padding)
    CONV4  15   3   1  13  192  384  2
    CONV5  15   3   1  13  192  256  2

Totals (survey, Sze et al. Proc. IEEE 2017, Table II): 61M weights, 724M MACs per image.

Module names are flat (the model is an ``nn.Sequential``): ``conv1``..``conv5`` and
``fc6``..``fc8`` are the profiled layers, so profiler records carry the paper's names.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

INPUT_SIZE = (3, 227, 227)


class AlexNet(nn.Sequential):
    """Paper AlexNet; ``forward`` is the plain chain of the named modules below."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        def lrn() -> nn.LocalResponseNorm:
            # Krizhevsky et al.: n=5, alpha=1e-4, beta=0.75, k=2 (alpha divided by n, as in Caffe)
            return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)

        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(3, 96, kernel_size=11, stride=4)),
            ("relu1", nn.ReLU()),
            ("norm1", lrn()),
            ("pool1", nn.MaxPool2d(kernel_size=3, stride=2)),
            ("conv2", nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2)),
            ("relu2", nn.ReLU()),
            ("norm2", lrn()),
            ("pool2", nn.MaxPool2d(kernel_size=3, stride=2)),
            ("conv3", nn.Conv2d(256, 384, kernel_size=3, padding=1)),
            ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2)),
            ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2)),
            ("relu5", nn.ReLU()),
            ("pool5", nn.MaxPool2d(kernel_size=3, stride=2)),
            ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(256 * 6 * 6, 4096)),
            ("relu6", nn.ReLU()),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)),
            ("relu7", nn.ReLU()),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]))


def alexnet(num_classes: int = 1000) -> AlexNet:
    """Paper AlexNet with randomly initialized weights (PyTorch defaults)."""
    return AlexNet(num_classes=num_classes)
