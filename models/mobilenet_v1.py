"""MobileNet V1 (Howard et al., 2017), the network NetAdapt (Yang et al., ECCV 2018) adapts.

A 3x3/2 CONV stem, then 13 depthwise-separable blocks (3x3 depthwise CONV + BN + ReLU, then
1x1 pointwise CONV + BN + ReLU), global average pooling and one FC layer. ``width_mult`` (the
paper's alpha) scales every channel count; ``input_size`` (the paper's resolution multiplier)
is the square input side and must be a multiple of 32. At width 1.0 and 224x224: 4.2M weights
and 569M MACs per image (Howard et al., Table 1/4).

Module names: ``stem.conv``, ``block1.dw`` .. ``block13.pw`` (each block is an ``nn.Sequential``
with ``dw, dw_bn, dw_relu, pw, pw_bn, pw_relu``), ``pool``, ``flatten``, ``fc``. There is no
custom ``forward`` anywhere, so the network is a plain chain that structured surgery can follow.
The model object carries ``INPUT_SIZE`` for its own resolution.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

INPUT_SIZE = (3, 224, 224)

# (pointwise output channels, depthwise stride) of the 13 blocks, at width 1.0
BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
STEM_CHANNELS = 32


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise CONV (stride ``stride``) + BN + ReLU, then 1x1 CONV + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__(OrderedDict([
            ("dw", nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, groups=in_ch, bias=False)),
            ("dw_bn", nn.BatchNorm2d(in_ch)),
            ("dw_relu", nn.ReLU()),
            ("pw", nn.Conv2d(in_ch, out_ch, 1, bias=False)),
            ("pw_bn", nn.BatchNorm2d(out_ch)),
            ("pw_relu", nn.ReLU()),
        ]))


class MobileNetV1(nn.Sequential):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, input_size: int = 224) -> None:
        if not width_mult > 0:
            raise ValueError(f"mobilenet_v1: width_mult must be positive, got {width_mult}")
        if input_size < 32 or input_size % 32:
            raise ValueError(f"mobilenet_v1: input_size must be a multiple of 32 (>= 32), got {input_size}")

        def ch(c: int) -> int:
            return max(1, int(round(c * width_mult)))

        stem = ch(STEM_CHANNELS)
        layers: list[tuple[str, nn.Module]] = [
            ("stem", nn.Sequential(OrderedDict([
                ("conv", nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)),
                ("bn", nn.BatchNorm2d(stem)),
                ("relu", nn.ReLU()),
            ]))),
        ]
        in_ch = stem
        for i, (out, stride) in enumerate(BLOCKS, start=1):
            layers.append((f"block{i}", DepthwiseSeparable(in_ch, ch(out), stride)))
            in_ch = ch(out)
        layers += [
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(in_ch, num_classes)),
        ]
        super().__init__(OrderedDict(layers))
        self.INPUT_SIZE = (3, input_size, input_size)


def mobilenet_v1(num_classes: int = 1000, width_mult: float = 1.0, input_size: int = 224) -> MobileNetV1:
    """MobileNet V1 with randomly initialized weights."""
    return MobileNetV1(num_classes=num_classes, width_mult=width_mult, input_size=input_size)
