"""Statistical properties of the stochastic quantizers, against the papers' closed forms.

Tolerances come from the measured variance: with N independent draws, a per-coordinate
mean is off by at most ``z * sqrt(var / N)``, with ``z`` chosen so that all coordinates
of all tests pass together with probability above 1 - 1e-6 (Bonferroni over the
coordinates). Every draw uses its own seeded worker state, so the tests are reproducible.
"""

from __future__ import annotations

import math

import pytest
import torch

from gradwire.codecs import make_codec
from gradwire.codecs.base import Codec

N_DRAWS = 2000


def gaussian(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def heavy(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g))


def draws(codec: Codec, x: torch.Tensor, n: int = N_DRAWS) -> torch.Tensor:
    """``n`` independent quantizations of ``x`` (float64, shape [n, *x.shape])."""
    states = [codec.new_state(worker=k) for k in range(n)]
    return codec.quantize_many(x.unsqueeze(0).expand(n, *x.shape).contiguous(), states).double()


def z_bound(coords: int) -> float:
    """Two-sided normal quantile for family-wise error 1e-6 over ``coords`` coordinates."""
    p = 1e-6 / coords
    return math.sqrt(2) * torch.special.erfinv(torch.tensor(1 - p, dtype=torch.float64)).item()


def two_point_variance(x: torch.Tensor, grid: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Closed-form variance of unbiased rounding of ``|x| / scale`` to its neighbours on
    ``grid`` (normalised levels, 0 ... 1): ``scale^2 (r - lo)(hi - r)``, in float64.
    ``scale`` holds each coordinate's bucket scale."""
    r = (x.double().abs() / scale.clamp(min=1e-300)).clamp(max=1.0)
    g = grid.double()
    j = (torch.searchsorted(g, r, right=True) - 1).clamp(max=g.numel() - 2)
    lo, hi = g[j], g[j + 1]
    return scale**2 * (r - lo) * (hi - r)


def bucket_scale(x: torch.Tensor, d: int, norm: str) -> torch.Tensor:
    """Each coordinate's bucket scale (L2 or max norm over its bucket), float64."""
    n = x.numel()
    xb = torch.nn.functional.pad(x.double(), (0, -n % d)).reshape(-1, d)
    sc = xb.norm(dim=1) if norm == "l2" else xb.abs().amax(1)
    return sc.repeat_interleave(d)[:n]


def assert_unbiased(samples: torch.Tensor, x: torch.Tensor, var: torch.Tensor) -> None:
    """|sample mean - x| <= z sqrt(var / N) per coordinate, ``var`` from the closed form
    (a sample variance is 0 for rare-event coordinates whose rounding never fired);
    plus float32 rounding of level * scale / s."""
    n = samples.shape[0]
    err = (samples.mean(0) - x.double()).abs()
    tol = z_bound(x.numel()) * (var / n).sqrt() + 1e-6 * float(x.double().abs().max())
    assert bool((err <= tol).all())
    # the measured spread agrees with the closed form (a loose check of the variance)
    assert float(samples.var(0).sum()) == pytest.approx(float(var.sum()), rel=0.1)


@pytest.mark.parametrize(
    ("spec", "grid", "d", "norm"),
    [
        ("qsgd(levels=1, bucket=64, min_numel=0)", "uniform1", 64, "l2"),
        ("qsgd(bits=4, bucket=100, min_numel=0)", "uniform7", 100, "l2"),
        ("qsgd(levels=16, bucket=512, encoding='elias', min_numel=0)", "uniform16", 512, "l2"),
        ("qsgdinf(bits=2, bucket=64, min_numel=0)", "uniform1", 64, "max"),
        ("qsgdinf(bits=4, bucket=512, min_numel=0)", "uniform7", 512, "max"),
        ("nuqsgd(bits=3, bucket=64, min_numel=0)", "table", 64, "l2"),
        ("nuqsgd(bits=4, bucket=512, min_numel=0)", "table", 512, "l2"),
        ("nuqsgd(levels=5, bucket=128, multiplier=0.3, min_numel=0)", "table", 128, "l2"),
    ],
)
def test_quantizers_are_unbiased(spec: str, grid: str, d: int, norm: str) -> None:
    codec = make_codec(spec)
    x = heavy(300, seed=11)
    if grid == "table":
        levels = codec.level_values()  # type: ignore[attr-defined]
    else:
        s = int(grid.removeprefix("uniform"))
        levels = torch.arange(s + 1, dtype=torch.float64) / s
    var = two_point_variance(x, levels, bucket_scale(x, d, norm))
    assert_unbiased(draws(codec, x), x, var)


def test_terngrad_is_unbiased_when_clipping_is_inactive() -> None:
    # Uniform entries in [-1, 1]: sigma = 0.577, so 2.5 sigma > max|g| and nothing is clipped.
    x = torch.rand(300, generator=torch.Generator().manual_seed(4)) * 2 - 1
    var = two_point_variance(x, torch.tensor([0.0, 1.0]), bucket_scale(x, 300, "max"))
    assert_unbiased(draws(make_codec("terngrad(min_numel=0)"), x), x, var)


def bucket_mse(codec: Codec, x: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per bucket: estimated E||Q(v) - v||^2 and its standard error."""
    err = ((draws(codec, x) - x.double()) ** 2).reshape(N_DRAWS, -1, d).sum(2)
    return err.mean(0), err.std(0) / math.sqrt(N_DRAWS)


@pytest.mark.parametrize("name", ["qsgd", "qsgdinf"])
@pytest.mark.parametrize(("s", "d"), [(1, 64), (7, 512), (32, 1024)])
def test_variance_stays_under_lemma_3_1(name: str, s: int, d: int) -> None:
    """Lemma 3.1: E||Q_s(v) - v||^2 <= min(d / s^2, sqrt(d) / s) ||v||^2 per bucket."""
    x = heavy(2 * d, seed=s)
    mse, se = bucket_mse(make_codec(f"{name}(levels={s}, bucket={d}, min_numel=0)"), x, d)
    norms2 = (x.double().reshape(-1, d) ** 2).sum(1)
    bound = min(d / s**2, math.sqrt(d) / s) * norms2
    assert bool((mse <= bound + 5 * se).all())


@pytest.mark.parametrize(("levels", "p", "d"), [(7, 0.5, 512), (3, 0.5, 128), (5, 0.3, 256)])
def test_nuqsgd_variance_stays_under_its_bound(levels: int, p: float, d: int) -> None:
    """Rounding r in [l_j, l_j / p] costs (r - l_j)(l_j/p - r) <= (1-p)^2/(4p) r^2, and
    below l_1 costs r (l_1 - r) <= l_1 r; summed over a bucket:
    E||Q(v) - v||^2 <= ((1-p)^2/(4p) + min(d l_1^2 / 4, l_1 sqrt(d))) ||v||^2
    (the form of NUQSGD's Theorem 3, eps_Q)."""
    x = heavy(2 * d, seed=levels)
    codec = make_codec(f"nuqsgd(levels={levels}, bucket={d}, multiplier={p}, min_numel=0)")
    mse, se = bucket_mse(codec, x, d)
    l1 = p ** (levels - 1)
    eps = (1 - p) ** 2 / (4 * p) + min(d * l1**2 / 4, l1 * math.sqrt(d))
    norms2 = (x.double().reshape(-1, d) ** 2).sum(1)
    assert bool((mse <= eps * norms2 + 5 * se).all())


def test_nuqsgd_has_lower_variance_than_qsgd_at_equal_bits() -> None:
    """At 4 bits on Gaussian buckets of 512 most normalised entries are far below 1/7, where
    NUQSGD's levels (1/64, 1/32, ...) are much finer than QSGD's uniform ones."""
    d = 512
    x = gaussian(2 * d, seed=3)
    q_mse, _ = bucket_mse(make_codec(f"qsgd(bits=4, bucket={d}, min_numel=0)"), x, d)
    n_mse, _ = bucket_mse(make_codec(f"nuqsgd(bits=4, bucket={d}, min_numel=0)"), x, d)
    assert bool((n_mse < 0.5 * q_mse).all())


def qsgd_elias_bound(s: int, d: int) -> float:
    """Theorem 3.2 with the o(1) term dropped:
    (3 + 3/2 log(2 (s^2 + d) / (s (s + sqrt d)))) s (s + sqrt d) + 32 bits per bucket."""
    sd = s * (s + math.sqrt(d))
    return (3 + 1.5 * math.log2(2 * (s * s + d) / sd)) * sd + 32


def mean_bits(codec: Codec, x: torch.Tensor, n: int = 200) -> tuple[float, float]:
    bits = torch.tensor([float(codec.encode(x, codec.new_state(worker=k)).nbits)
                         for k in range(n)], dtype=torch.float64)
    return float(bits.mean()), float(bits.std() / math.sqrt(n))


@pytest.mark.parametrize(("s", "d"), [(1, 1024), (2, 1024), (1, 4096), (4, 4096)])
@pytest.mark.parametrize("kind", ["gaussian", "constant"])
def test_elias_bits_stay_under_theorem_3_2_in_the_sparse_regime(s: int, d: int,
                                                                kind: str) -> None:
    x = gaussian(d, seed=s) if kind == "gaussian" else torch.ones(d)
    codec = make_codec(f"qsgd(levels={s}, bucket={d}, encoding='elias', min_numel=0)")
    mean, se = mean_bits(codec, x)
    assert mean + 3 * se <= qsgd_elias_bound(s, d)
    # and the sparsity part of Lemma 3.1: E||Q||_0 <= s (s + sqrt d)
    nnz = (draws(codec, x, 500) != 0).sum(1).double()
    assert float(nnz.mean()) <= s * (s + math.sqrt(d))


@pytest.mark.parametrize("d", [256, 1024, 4096])
@pytest.mark.parametrize("kind", ["gaussian", "constant", "heavy"])
def test_dense_bits_stay_under_corollary_3_3(d: int, kind: str) -> None:
    """s = sqrt(d): expected length <= 2.8 d + 32 bits per bucket."""
    x = {"gaussian": gaussian(d), "constant": torch.ones(d), "heavy": heavy(d)}[kind]
    s = math.isqrt(d)
    codec = make_codec(f"qsgd(levels={s}, bucket={d}, encoding='dense', min_numel=0)")
    mean, se = mean_bits(codec, x, 100)
    assert mean + 3 * se <= 2.8 * d + 32


def test_elias_is_much_smaller_than_fixed_for_few_levels() -> None:
    x = heavy(100_000)
    fixed = make_codec("qsgd(bits=2, bucket=512)").encode(x).nbits
    elias = make_codec("qsgd(bits=2, bucket=512, encoding='elias')").encode(x).nbits
    assert elias < 0.75 * fixed
