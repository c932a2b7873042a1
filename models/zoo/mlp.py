"""The QSGD paper's perceptron: 784 inputs, one hidden layer of 4096 ReLU units, 10 outputs.

Alistarh et al., "QSGD" (NeurIPS 2017), section 5 trains this two-layer network on MNIST;
here it learns real handwritten digits from scikit-learn upsampled to 28x28.
Parameters: 784*4096 + 4096 + 4096*10 + 10 = 3,256,330.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from gradwire.models.data import DATA_SOURCE, digits_batch
from gradwire.models.spec import MODELS, ModelSpec

INPUTS = 28 * 28
HIDDEN = 4096
CLASSES = 10


def build() -> nn.Module:
    return nn.Sequential(
        nn.Linear(INPUTS, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, CLASSES),
    )


@MODELS.register("mlp")
def spec() -> ModelSpec:
    return ModelSpec(
        name="mlp",
        description="QSGD paper MLP: 784-4096-10, ReLU (MNIST-size digits)",
        published_params=INPUTS * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES,
        source="Alistarh et al., QSGD, NeurIPS 2017, sec. 5 (one hidden layer of 4096 units, ~3.3M)",
        input_kind="image",
        data_source=DATA_SOURCE + ", upsampled to 28x28, flattened",
        builder=build,
        batch_fn=partial(digits_batch, size=28, flatten=True),
    )
