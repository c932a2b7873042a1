"""ResNet-110 for CIFAR-10 (He et al., CVPR 2016, section 4.2).

Three stages of 18 basic blocks with 16, 32 and 64 channels on 32x32 images; shortcuts
that change shape are parameter-free (option A: stride-2 subsampling and zero-padded
channels), as in the paper's CIFAR experiments. He et al. report 1.7M parameters; the
QSGD paper rounds to 1M. Synthetic standard-normal 3x32x32 batches, 10 classes.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradwire.models.spec import MODELS, ModelSpec
from gradwire.models.zoo.common import synthetic_images


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride = stride
        self.pad = cout - cin

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.pad:
            # Option A: subsample and zero-pad channels; no parameters.
            short = nn.functional.pad(
                x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.pad)
            )
        return nn.functional.relu(out + short)


class ResNetCifar(nn.Module):
    def __init__(self, depth: int = 110, num_classes: int = 10) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks: list[nn.Module] = []
        cin = 16
        for i, cout in enumerate((16, 32, 64)):
            for j in range(n):
                blocks.append(_Block(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


@MODELS.register("resnet110")
def spec() -> ModelSpec:
    return ModelSpec(
        name="resnet110",
        description="ResNet-110 for CIFAR-10 (3x18 basic blocks, 16/32/64 channels, option-A shortcuts)",
        published_params=1_700_000,
        source="He et al., Deep Residual Learning, CVPR 2016, Table 6: 1.7M (QSGD paper: 1M)",
        input_kind="image",
        data_source="synthetic: standard-normal 3x32x32 images, uniform labels (10 classes)",
        builder=ResNetCifar,
        batch_fn=synthetic_images((3, 32, 32), 10),
        params_rel_tol=0.03,  # the paper gives 1.7M rounded to two digits
    )
