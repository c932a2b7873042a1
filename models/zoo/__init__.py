"""The model zoo: one small file per model, registered by name in ``gradwire.models.MODELS``."""

from gradwire.models.zoo import mlp, small_cnn

__all__ = ["mlp", "small_cnn"]
