"""AlexNet (Krizhevsky et al., 2012), single-tower layout as in torchvision.

Five convolutions and three fully connected layers on 224x224 ImageNet images:
61,100,840 parameters (torchvision's ``alexnet`` weights card; the QSGD paper rounds
its AlexNet to 62M). Synthetic standard-normal 3x224x224 batches, 1000 classes.
"""

from __future__ import annotations

from torch import nn

from gradwire.models.spec import MODELS, ModelSpec
from gradwire.models.zoo.common import synthetic_images


def build(num_classes: int = 1000) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.AdaptiveAvgPool2d((6, 6)),
        nn.Flatten(),
        nn.Dropout(p=0.5),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


@MODELS.register("alexnet")
def spec() -> ModelSpec:
    return ModelSpec(
        name="alexnet",
        description="AlexNet, 5 conv + 3 FC, 224x224 ImageNet input, 1000 classes",
        published_params=61_100_840,
        source="torchvision AlexNet_Weights.IMAGENET1K_V1 num_params (QSGD paper: 62M)",
        input_kind="image",
        data_source="synthetic: standard-normal 3x224x224 images, uniform labels (1000 classes)",
        builder=build,
        batch_fn=synthetic_images((3, 224, 224), 1000),
    )
