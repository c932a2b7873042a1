"""Model zoo: published parameter counts, seeded building, batches, bundled digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

from gradwire.errors import ConfigError, UnknownNameError, WorkloadError
from gradwire.models import MODELS, build_model, count_params, get_model
from gradwire.models.data import load_digits

EXPECTED = {
    "mlp", "small_cnn", "alexnet", "vgg19", "resnet18", "resnet50", "resnet152",
    "resnet110", "lstm", "gpt2_small", "bert_base",
}  # fmt: skip


def test_registry_holds_the_contracted_names() -> None:
    assert EXPECTED <= set(MODELS.names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_count_matches_published(name: str) -> None:
    spec = get_model(name)
    n = count_params(build_model(name, device="meta"))  # meta: no memory for VGG/GPT-2
    assert spec.source
    assert abs(n - spec.published_params) <= spec.params_rel_tol * spec.published_params


def test_canonical_counts_are_exact_and_match_known_totals() -> None:
    # torchvision weights cards and Hugging Face checkpoints (see each model's source).
    known = {
        "alexnet": 61_100_840,
        "vgg19": 143_667_240,
        "resnet18": 11_689_512,
        "resnet50": 25_557_032,
        "resnet152": 60_192_808,
        "gpt2_small": 124_439_808,
        "bert_base": 109_482_240 + 768 * 2 + 2,
    }
    for name, count in known.items():
        assert count_params(build_model(name, device="meta")) == count, name


def test_mlp_and_lstm_counts_follow_their_closed_forms() -> None:
    assert count_params(build_model("mlp", device="meta")) == 784 * 4096 + 4096 + 4096 * 10 + 10
    h, f = 768, 120
    lstm = 4 * h * (f + h) + 8 * h + 2 * (4 * h * (2 * h) + 8 * h) + h * 1000 + 1000
    assert count_params(build_model("lstm", device="meta")) == lstm
    # QSGD paper sizes (rounded in the paper): 3.3M MLP, 13M LSTM, 1.7M ResNet-110 (He et al.)
    assert abs(count_params(build_model("mlp", device="meta")) - 3.3e6) < 0.05e6
    assert abs(count_params(build_model("resnet110", device="meta")) - 1.7e6) < 0.05e6


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        get_model("resnet51")
    assert "resnet50" in str(err.value) and "mlp" in str(err.value)


def test_build_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = build_model("small_cnn", seed=3)
    b = build_model("small_cnn", seed=3)
    c = build_model("small_cnn", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    for (na, pa), (_, pb), (_, pc) in zip(
        a.named_parameters(), b.named_parameters(), c.named_parameters(), strict=True
    ):
        assert torch.equal(pa, pb), na
        assert not torch.equal(pa, pc), na


@pytest.mark.parametrize(
    ("name", "x_shape", "y_shape", "x_dtype"),
    [
        ("mlp", (5, 784), (5,), torch.float32),
        ("small_cnn", (5, 1, 28, 28), (5,), torch.float32),
        ("alexnet", (5, 3, 224, 224), (5,), torch.float32),
        ("resnet110", (5, 3, 32, 32), (5,), torch.float32),
        ("lstm", (5, 100, 120), (5, 100), torch.float32),
        ("gpt2_small", (5, 128), (5, 128), torch.int64),
        ("bert_base", (5, 128), (5,), torch.int64),
    ],
)
def test_batches_are_shaped_deterministic_and_seeded(
    name: str, x_shape: tuple[int, ...], y_shape: tuple[int, ...], x_dtype: torch.dtype
) -> None:
    spec = get_model(name)
    state = torch.get_rng_state()
    x1, y1 = spec.make_batch(5, generator=torch.Generator().manual_seed(1))
    x2, y2 = spec.make_batch(5, generator=torch.Generator().manual_seed(1))
    x3, _ = spec.make_batch(5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert tuple(x1.shape) == x_shape and tuple(y1.shape) == y_shape and x1.dtype == x_dtype
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)


def test_gpt2_targets_are_next_tokens() -> None:
    x, y = get_model("gpt2_small").make_batch(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert int(x.max()) < 50257 and int(x.min()) >= 0


def test_mlp_batches_are_real_digits() -> None:
    x, y = get_model("mlp").make_batch(64, generator=torch.Generator().manual_seed(0))
    x_train, y_train, _, _ = load_digits(size=28)
    flat = x_train.reshape(x_train.shape[0], -1)
    # every sample is one of the training digits, with its label
    match = (x[:, None, :] == flat[None, :, :]).all(dim=2)
    assert bool(match.any(dim=1).all())
    idx = match.float().argmax(dim=1)
    assert torch.equal(y_train[idx], y)


@pytest.mark.parametrize(
    "name",
    ["mlp", "small_cnn", pytest.param("resnet110", marks=pytest.mark.slow),
     pytest.param("lstm", marks=pytest.mark.slow)],
)  # fmt: skip
def test_forward_and_loss_on_a_real_batch(name: str) -> None:
    spec = get_model(name)
    model = build_model(name)
    x, y = spec.make_batch(2, generator=torch.Generator().manual_seed(0))
    loss = spec.loss(model(x), y)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_bad_batch_size_is_a_workload_error() -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(WorkloadError, match="batch_size"):
            get_model("mlp").make_batch(bad, generator=torch.Generator())  # type: ignore[arg-type]


def test_load_digits_split_shapes_and_values() -> None:
    x_tr, y_tr, x_te, y_te = load_digits(size=28, seed=0, test_fraction=0.2)
    assert x_tr.shape == (1797 - 359, 1, 28, 28) and x_te.shape == (359, 1, 28, 28)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    assert float(x_tr.min()) >= 0.0 and float(x_tr.max()) <= 1.0
    # the split is a partition of the bundled set: label histograms add up
    sk = sk_load_digits()
    counts = np.bincount(np.concatenate([y_tr.numpy(), y_te.numpy()]), minlength=10)
    assert np.array_equal(counts, np.bincount(sk.target, minlength=10))


def test_load_digits_at_native_size_is_the_bundled_data_scaled() -> None:
    x_tr, y_tr, x_te, y_te = load_digits(size=8, seed=5, test_fraction=0.5)
    perm = np.random.default_rng(5).permutation(1797)
    sk = sk_load_digits()
    x_all = torch.cat([x_te, x_tr]).squeeze(1).numpy()
    y_all = torch.cat([y_te, y_tr]).numpy()
    assert np.allclose(x_all, sk.images[perm] / 16.0)
    assert np.array_equal(y_all, sk.target[perm])


def test_load_digits_is_deterministic_and_seeded() -> None:
    a = load_digits(seed=1)
    b = load_digits(seed=1)
    c = load_digits(seed=2)
    assert all(torch.equal(s, t) for s, t in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])


def test_load_digits_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        load_digits(test_fraction=1.0)
    with pytest.raises(ConfigError, match="size"):
        load_digits(size=4)
