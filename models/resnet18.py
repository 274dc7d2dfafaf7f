"""ResNet-18 (He et al., CVPR 2016) for 3x32x32 images (``builtin:shapes``, CIFAR-10).

torchvision's ``resnet18`` (the 18-layer topology: a stem, four stages of two BasicBlocks with
64, 128, 256, 512 filters, global average pooling, one FC layer), with the stem adapted to small
images as is usual for CIFAR-sized inputs: a 3x3 stride-1 convolution instead of the 7x7 stride-2
one, and no max pooling, would keep 32x32 maps in the first stage (0.56 GMAC per image, too slow
to train on a CPU in minutes); here the stem is a 3x3 stride-2 convolution without max pooling,
so the stages run at 16, 8, 4 and 2 pixels (about 0.14 GMAC per image, 11.2M weights).

Module names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``).
"""

from __future__ import annotations

from torch import nn

INPUT_SIZE = (3, 32, 32)


def resnet18(num_classes: int = 10) -> nn.Module:
    """ResNet-18 with randomly initialized weights and the small-image stem."""
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
