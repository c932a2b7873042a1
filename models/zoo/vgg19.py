"""VGG-19 (Simonyan and Zisserman, 2015, configuration E) without batch normalisation.

Sixteen 3x3 convolutions and three fully connected layers on 224x224 images:
143,667,240 parameters (torchvision ``vgg19`` weights card; the QSGD paper's 143M).
"""

from __future__ import annotations

from torch import nn

from gradwire.models.spec import MODELS, ModelSpec
from gradwire.models.zoo.common import synthetic_images

# Configuration E: channel counts, "M" a 2x2 max-pool.
CONFIG_E: list[int | str] = [
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, 256, "M"),
    *(512, 512, 512, 512, "M"),
    *(512, 512, 512, 512, "M"),
]


def build(num_classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = []
    channels = 3
    for v in CONFIG_E:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            assert isinstance(v, int)  # the fixed table above, not user input
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d((7, 7)),
        nn.Flatten(),
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=0.5),
        nn.Linear(4096, num_classes),
    )


@MODELS.register("vgg19")
def spec() -> ModelSpec:
    return ModelSpec(
        name="vgg19",
        description="VGG-19 (configuration E), 224x224 ImageNet input, 1000 classes",
        published_params=143_667_240,
        source="torchvision VGG19_Weights.IMAGENET1K_V1 num_params (QSGD paper: 143M)",
        input_kind="image",
        data_source="synthetic: standard-normal 3x224x224 images, uniform labels (1000 classes)",
        builder=build,
        batch_fn=synthetic_images((3, 224, 224), 1000),
    )
