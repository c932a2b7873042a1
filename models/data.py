"""Real bundled data: scikit-learn's handwritten digits upsampled to model input size.

scikit-learn ships 1,797 8x8 grey-scale digits (UCI ML hand-written digits, 16 grey
levels) inside the package, so nothing is downloaded at run time. :func:`load_digits`
scales them to [0, 1], upsamples them bilinearly to ``size x size`` (28x28 is the QSGD
MLP's MNIST-sized input) and splits them into train and test sets with a seeded,
stratified-free permutation that is the same on every machine.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gradwire.errors import ConfigError

DATA_SOURCE = "scikit-learn load_digits (1,797 real 8x8 handwritten digits, bundled)"


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 1,797 digits as ``(images [N, 8, 8] in [0, 1], labels [N])``."""
    # Read scikit-learn's bundled CSV (64 pixels then the label per row) directly:
    # importing scikit-learn itself costs seconds, which the quickstart should not pay.
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.exists():
            table = np.loadtxt(path, delimiter=",", dtype=np.float32)
            images = table[:, :64].reshape(-1, 8, 8) / 16.0  # pixel values are 0..16
            return images, table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    return images, np.asarray(bunch.target, dtype=np.int64)


def load_digits(
    *, size: int = 28, seed: int = 0, test_fraction: float = 0.2
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(X_train, y_train, X_test, y_test)``: ``X`` float32 ``[N, 1, size, size]`` in
    [0, 1], ``y`` int64 class labels 0..9.

    The split is a permutation drawn from ``numpy.random.default_rng(seed)``; the test set
    holds ``round(test_fraction * 1797)`` samples.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError(f"load_digits: size must be an integer >= 8 pixels, got {size!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(
            f"load_digits: test_fraction must lie strictly between 0 and 1, got {test_fraction!r}"
        )
    # Copies: callers may modify what they get without touching the cached split.
    return tuple(t.clone() for t in _split(size, seed, float(test_fraction)))  # type: ignore[return-value]


@lru_cache(maxsize=8)
def _split(size: int, seed: int, test_fraction: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    images, labels = _raw_digits()
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    if size != 8:
        # Bilinear with align_corners=False keeps the value range inside [0, 1].
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False
        )
    x = x.clamp_(0.0, 1.0).contiguous()
    y = torch.from_numpy(labels)
    n = x.shape[0]
    n_test = round(test_fraction * n)
    if n_test == 0 or n_test == n:
        raise ConfigError(
            f"load_digits: test_fraction={test_fraction} leaves an empty train or test set"
        )
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def digits_batch(
    batch_size: int, generator: torch.Generator, device: torch.device, *, size: int, flatten: bool
) -> tuple[Tensor, Tensor]:
    """A batch of real training digits drawn with replacement using ``generator``."""
    x_train, y_train, _, _ = _split(size, 0, 0.2)  # indexing below copies
    idx = torch.randint(0, x_train.shape[0], (batch_size,), generator=generator)
    x = x_train[idx]
    if flatten:
        x = x.reshape(batch_size, -1)
    return x.to(device), y_train[idx].to(device)
