"""Batch makers shared by the zoo: real digits, synthetic images, synthetic tokens."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from gradwire.models.spec import BatchFn


def _images(
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    shape: tuple[int, int, int],
    classes: int,
) -> tuple[Tensor, Tensor]:
    # Drawn on the CPU with the caller's generator so the batch is the same on every device.
    x = torch.randn((batch_size, *shape), generator=generator)
    y = torch.randint(0, classes, (batch_size,), generator=generator)
    return x.to(device), y.to(device)


def synthetic_images(shape: tuple[int, int, int], classes: int) -> BatchFn:
    """Standard-normal images of ``shape`` (C, H, W) with uniform labels in ``[0, classes)``."""
    return partial(_images, shape=shape, classes=classes)


def _tokens(
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    seq_len: int,
    vocab: int,
    per_token_targets: bool,
    classes: int,
) -> tuple[Tensor, Tensor]:
    x = torch.randint(0, vocab, (batch_size, seq_len + int(per_token_targets)), generator=generator)
    if per_token_targets:
        # Next-token prediction: the targets are the inputs shifted by one.
        return x[:, :-1].contiguous().to(device), x[:, 1:].contiguous().to(device)
    y = torch.randint(0, classes, (batch_size,), generator=generator)
    return x.to(device), y.to(device)


def synthetic_tokens(
    seq_len: int, vocab: int, *, per_token_targets: bool, classes: int = 2
) -> BatchFn:
    """Uniform random token ids ``[B, seq_len]``; targets are next tokens or a class label."""
    return partial(
        _tokens,
        seq_len=seq_len,
        vocab=vocab,
        per_token_targets=per_token_targets,
        classes=classes,
    )


def _frames(
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    frames: int,
    features: int,
    classes: int,
) -> tuple[Tensor, Tensor]:
    x = torch.randn((batch_size, frames, features), generator=generator)
    y = torch.randint(0, classes, (batch_size, frames), generator=generator)
    return x.to(device), y.to(device)


def synthetic_frames(frames: int, features: int, classes: int) -> BatchFn:
    """Standard-normal feature frames ``[B, frames, features]`` with a label per frame."""
    return partial(_frames, frames=frames, features=features, classes=classes)
