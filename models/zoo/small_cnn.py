"""A small convolutional network for 28x28 digits, sized for fast convergence runs.

Two 5x5 convolutions (16 and 32 channels, same padding) each followed by ReLU and 2x2
max-pooling, then one linear layer to 10 classes: 416 + 12,832 + 15,690 = 28,938
parameters. It trains to high accuracy on the bundled digits in seconds on a CPU.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from gradwire.models.data import DATA_SOURCE, digits_batch
from gradwire.models.spec import MODELS, ModelSpec


def build() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


@MODELS.register("small_cnn")
def spec() -> ModelSpec:
    return ModelSpec(
        name="small_cnn",
        description="digits CNN: conv5x5(16)-pool-conv5x5(32)-pool-linear(10), 28x28 input",
        published_params=(1 * 16 * 25 + 16) + (16 * 32 * 25 + 32) + (32 * 7 * 7 * 10 + 10),
        source="architecture defined in gradwire.models.zoo.small_cnn (count by construction)",
        input_kind="image",
        data_source=DATA_SOURCE + ", upsampled to 28x28",
        builder=build,
        batch_fn=partial(digits_batch, size=28, flatten=False),
    )
