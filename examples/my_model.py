"""A user's own model for GradWire: ``model.module: "examples.my_model:factory"``.

``factory()`` returns the module and a batch function; ``make_batch(batch_size)`` returns
``(inputs, targets)`` for one training step. Any model can be given the same way: no
registration, no change to GradWire. Run ``python run_sim.py examples/my_model.yaml``
from the repository root (the folder that holds ``examples/``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SmallConvNet(nn.Module):
    """Two 3x3 convolutions, global pooling and a linear classifier over 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def make_batch(batch_size: int) -> tuple[Tensor, Tensor]:
    """32x32 RGB images and labels in [0, 10) (GradWire seeds the generator)."""
    return torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))


def factory() -> tuple[nn.Module, object]:
    return SmallConvNet(), make_batch
