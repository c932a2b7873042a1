"""The model zoo: one small file per model, registered by name in ``gradwire.models.MODELS``."""

from gradwire.models.zoo import (
    alexnet,
    bert_base,
    gpt2_small,
    llama,
    lstm,
    mlp,
    published,
    resnet,
    resnet110,
    small_cnn,
    vgg19,
)

__all__ = [
    "alexnet",
    "bert_base",
    "gpt2_small",
    "llama",
    "lstm",
    "mlp",
    "published",
    "resnet",
    "resnet110",
    "small_cnn",
    "vgg19",
]
