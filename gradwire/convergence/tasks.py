"""Training tasks for convergence runs: a train/test split of real or seed-fixed data.

A :class:`Task` is the data a convergence run learns: float32 inputs and int64 labels,
split into a training set (sharded among the virtual workers) and a held-out test set.
``digits`` is scikit-learn's bundled set of 1,797 real handwritten digits upsampled to
28x28 (the QSGD paper's MLP input size); ``clusters`` is a harder generated problem
(scikit-learn's ``make_classification`` with a fixed seed: 784 features of which 64 are
informative and 64 linear combinations of those, 10 classes of 2 Gaussian clusters each,
5% flipped labels) that needs many more steps, so codec differences show in the curves. Both are built without any download and
are identical on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from gradwire.registry import Registry


@dataclass(frozen=True)
class Task:
    """A classification data set split into train and test.

    ``x_train`` is float32 ``[N, *sample_shape]``, ``y_train`` int64 ``[N]`` with labels
    in ``[0, classes)``; likewise the test set. Inputs are reshaped to the model's input
    shape by the runner (the element count per sample must agree).
    """

    name: str
    description: str
    classes: int
    x_train: Tensor = field(repr=False)
    y_train: Tensor = field(repr=False)
    x_test: Tensor = field(repr=False)
    y_test: Tensor = field(repr=False)

    @property
    def sample_numel(self) -> int:
        return int(self.x_train[0].numel())


TASKS: Registry[Task] = Registry("task")


@TASKS.register("digits")
@lru_cache(maxsize=1)
def digits() -> Task:
    """scikit-learn's 1,797 real 8x8 digits upsampled to 1x28x28; 1,438 train, 359 test."""
    from gradwire.models.data import load_digits

    x_tr, y_tr, x_te, y_te = load_digits(size=28, seed=0)
    return Task(
        name="digits",
        description="scikit-learn handwritten digits (1,797 real images) upsampled to 28x28",
        classes=10,
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
    )


CLUSTERS_SAMPLES = 4000
CLUSTERS_TEST = 1000
CLUSTERS_INFORMATIVE = 64
CLUSTERS_SEP = 1.5
CLUSTERS_SCALE = 0.35


@TASKS.register("clusters")
@lru_cache(maxsize=1)
def clusters() -> Task:
    """A generated 10-class problem on 784 features (shaped 1x28x28), fixed seed 0.

    ``make_classification(n_samples=4000, n_features=784, n_informative=64,
    n_redundant=64, n_classes=10, n_clusters_per_class=2, class_sep=1.5, flip_y=0.05)``;
    features standardised with the training set's mean and standard deviation, then
    scaled by 0.35; the first 3,000 samples train, the last 1,000 test. The 5% flipped labels cap the reachable
    test accuracy near 95%.
    """
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=CLUSTERS_SAMPLES,
        n_features=784,
        n_informative=CLUSTERS_INFORMATIVE,
        n_redundant=CLUSTERS_INFORMATIVE,
        n_classes=10,
        n_clusters_per_class=2,
        class_sep=CLUSTERS_SEP,
        flip_y=0.05,
        random_state=0,
    )
    x = x.astype(np.float32)
    n_train = CLUSTERS_SAMPLES - CLUSTERS_TEST
    mean = x[:n_train].mean(axis=0)
    std = x[:n_train].std(axis=0) + np.float32(1e-6)
    # Standardised features scaled so that a sample's norm is close to a 28x28 digit's
    # (about 10): the same learning rate then suits both tasks.
    x = (x - mean) / std * np.float32(CLUSTERS_SCALE)
    xt = torch.from_numpy(np.ascontiguousarray(x)).reshape(-1, 1, 28, 28)
    yt = torch.from_numpy(y.astype(np.int64))
    return Task(
        name="clusters",
        description="generated 10-class Gaussian-cluster problem, 784 features, 5% label noise",
        classes=10,
        x_train=xt[:n_train],
        y_train=yt[:n_train],
        x_test=xt[n_train:],
        y_test=yt[n_train:],
    )
