"""ImageNet ResNets (He et al., CVPR 2016): ResNet-18 (basic blocks), ResNet-50 and
ResNet-152 (bottleneck blocks), in torchvision's v1.5 layout (stride on the 3x3 conv).

Parameter counts from torchvision's weights cards: ResNet-18 11,689,512, ResNet-50
25,557,032, ResNet-152 60,192,808 (the QSGD paper's 25M and 60M).
"""

from __future__ import annotations

from torch import Tensor, nn

from gradwire.models.spec import MODELS, ModelSpec
from gradwire.models.zoo.common import synthetic_images


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(
        self, block: type[BasicBlock] | type[Bottleneck], depths: list[int], num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        stages = []
        for i, depth in enumerate(depths):
            width = 64 * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _spec(
    name: str,
    block: type[BasicBlock] | type[Bottleneck],
    depths: list[int],
    params: int,
    paper: str,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        description=f"{name.replace('resnet', 'ResNet-')} ({block.__name__} blocks {depths}), 224x224 ImageNet input",
        published_params=params,
        source=f"torchvision {name.replace('resnet', 'ResNet')}_Weights.IMAGENET1K_V1 num_params{paper}",
        input_kind="image",
        data_source="synthetic: standard-normal 3x224x224 images, uniform labels (1000 classes)",
        builder=lambda: ResNet(block, depths),
        batch_fn=synthetic_images((3, 224, 224), 1000),
    )


@MODELS.register("resnet18")
def resnet18() -> ModelSpec:
    return _spec("resnet18", BasicBlock, [2, 2, 2, 2], 11_689_512, "")


@MODELS.register("resnet50")
def resnet50() -> ModelSpec:
    return _spec("resnet50", Bottleneck, [3, 4, 6, 3], 25_557_032, " (QSGD paper: 25M)")


@MODELS.register("resnet152")
def resnet152() -> ModelSpec:
    return _spec("resnet152", Bottleneck, [3, 8, 36, 3], 60_192_808, " (QSGD paper: 60M)")
