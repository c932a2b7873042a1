"""The convergence runner: exchange semantics against oracles, determinism, and the issue's
training claims (QSGD 8-bit matches fp32 on digits; 1-bit SGD needs error feedback)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from gradwire.codecs import make_codec
from gradwire.codecs.onebit import OneBit
from gradwire.convergence import TASKS, run_convergence, time_to_accuracy
from gradwire.convergence.runner import _Exchange, _shards
from gradwire.errors import ConfigError, UnknownNameError, WorkloadError


def exchange(spec: str, shape: tuple[int, ...], k: int, mode: str, seed: int = 0) -> _Exchange:
    codec = make_codec(spec, seed=seed)
    return _Exchange(codec, ["w"], [torch.Size(shape)], k, mode, seed, torch.device("cpu"))


# --- exchange semantics ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["allgather", "compressed_allreduce"])
def test_fp32_exchange_is_the_mean(mode: str) -> None:
    g = torch.randn(5, 3, 7, generator=torch.Generator().manual_seed(1))
    out = exchange("fp32", (3, 7), 5, mode).combine("w", g)
    torch.testing.assert_close(out, g.mean(0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("k", "n"), [(3, 7), (4, 8), (5, 3)])
def test_ring_requantizes_every_hop(k: int, n: int) -> None:
    """fp16 ring reduce-scatter + allgather, against a chunk-by-chunk, hop-by-hop oracle:
    chunk c starts at worker c; each hop rounds the partial sum to fp16 (encode/decode)
    and the receiver adds its own chunk; the owner's sum is rounded once more."""
    g = torch.randn(k, n, generator=torch.Generator().manual_seed(k * 100 + n))
    out = exchange("fp16", (n,), k, "compressed_allreduce").combine("w", g)

    def fp16(t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.float16).to(torch.float32)

    chunk = -(-n // k)
    expect = torch.zeros(n)
    for c in range(k):
        sl = slice(c * chunk, min(n, (c + 1) * chunk))
        if sl.start >= n:
            continue
        partial = g[c, sl].clone()
        for hop in range(1, k):
            partial = fp16(partial) + g[(c + hop) % k, sl]
        expect[sl] = fp16(partial) / k
    assert torch.equal(out, expect)
    # The hop-by-hop rounding really differs from rounding each worker once.
    once = fp16(g).mean(0)
    assert not torch.equal(out, once) or k * n < 10


@pytest.mark.parametrize("mode", ["allgather", "compressed_allreduce"])
def test_stochastic_exchange_is_unbiased(mode: str) -> None:
    """QSGD is unbiased (Lemma 3.1) and so is a sum of independently quantized partial
    sums: over R independent seeds the mean of the exchanged gradient approaches the true
    mean within 5 standard errors (estimated from the draws)."""
    k, n, reps = 4, 64, 300
    g = torch.randn(k, n, generator=torch.Generator().manual_seed(3))
    draws = torch.stack([
        exchange("qsgd(bits=2, bucket=16, min_numel=0)", (n,), k, mode, seed=s).combine("w", g)
        for s in range(reps)
    ])
    se = draws.std(0) / math.sqrt(reps)
    err = (draws.mean(0) - g.mean(0)).abs()
    assert bool((err <= 5 * se + 1e-7).all()), float((err / (se + 1e-12)).max())
    assert float(draws.std(0).mean()) > 0  # the codec really was stochastic


def test_each_worker_keeps_its_own_error_feedback() -> None:
    """After one allgather exchange of 1-bit SGD, worker k's residual is its own
    ``g_k - onebit(g_k)``: nothing leaks between workers."""
    k = 3
    g = torch.randn(k, 8, 16, generator=torch.Generator().manual_seed(5))
    ex = exchange("onebit(min_numel=0)", (8, 16), k, "allgather")
    out = ex.combine("w", g)
    solo = OneBit(min_numel=0)
    decoded = []
    for w in range(k):
        st = solo.new_state(worker=w)
        decoded.append(solo.quantize(g[w], st))
        torch.testing.assert_close(ex.states["w"][w].residual, g[w] - decoded[w])
    torch.testing.assert_close(out, torch.stack(decoded).mean(0))


@pytest.mark.parametrize("mode", ["allgather", "compressed_allreduce"])
def test_multi_round_codec_uses_its_own_protocol(mode: str) -> None:
    """PowerSGD overrides ``aggregate`` (two allreduces of low-rank factors): the runner
    must hand it the K workers' gradients whatever the exchange."""
    k = 3
    g = torch.randn(k, 32, 24, generator=torch.Generator().manual_seed(9))
    ex = exchange("powersgd(rank=2)", (32, 24), k, mode)
    ref = make_codec("powersgd(rank=2)", seed=0)
    expect = ref.aggregate(list(g), [ref.new_state(worker=w) for w in range(k)])
    torch.testing.assert_close(ex.combine("w", g), expect)
    # ...and the result is a rank-2 matrix, not the plain mean.
    assert int(torch.linalg.matrix_rank(expect)) <= 2


def test_shards_partition_the_training_set() -> None:
    perm, starts, lengths = _shards(1438, 16, seed=3)
    assert sorted(perm.tolist()) == list(range(1438))
    assert int(lengths.sum()) == 1438 and int(lengths.max() - lengths.min()) <= 1
    assert starts.tolist() == (torch.cumsum(lengths, 0) - lengths).tolist()


# --- runs -----------------------------------------------------------------------------

SMALL: dict[str, Any] = {"model": "mlp", "workers": 3, "batch_per_worker": 8, "steps": 4, "eval_every": 2}


def test_same_seed_same_curves_and_codecs_share_batches() -> None:
    a = run_convergence(codecs=["fp32", "qsgd(bits=4, bucket=512)"], seed=7, **SMALL)
    b = run_convergence(codecs=["fp32", "qsgd(bits=4, bucket=512)"], seed=7, **SMALL)
    for ca, cb in zip(a, b, strict=True):
        assert (ca.steps, ca.train_loss, ca.test_acc, ca.step_loss) == (
            cb.steps, cb.train_loss, cb.test_acc, cb.step_loss)
    assert a[0].steps == [0, 2, 4]
    assert len(a[0].step_loss) == 4
    # Same initial weights and same first minibatch for every codec.
    assert a[0].train_loss[0] == a[1].train_loss[0]
    assert a[0].step_loss[0] == a[1].step_loss[0]
    assert a[0].step_loss[1:] != a[1].step_loss[1:]  # 4-bit noise changes the trajectory
    c = run_convergence(codecs=["fp32"], seed=8, **SMALL)
    assert c[0].train_loss != a[0].train_loss


def test_fp32_ring_training_matches_allgather_training() -> None:
    """fp32 re-encoding loses nothing, so the ring exchange trains the same model up to
    float summation order."""
    ag = run_convergence(codecs=["fp32"], seed=2, exchange="allgather", **SMALL)[0]
    ring = run_convergence(codecs=["fp32"], seed=2, exchange="compressed_allreduce", **SMALL)[0]
    assert ring.steps == ag.steps
    assert ring.train_loss == pytest.approx(ag.train_loss, rel=1e-4)
    assert ring.step_loss == pytest.approx(ag.step_loss, rel=1e-4)


def test_time_to_accuracy_on_a_real_run() -> None:
    curves = run_convergence(codecs=["fp32", "onebit"], seed=1, **{**SMALL, "steps": 6})
    it = {"fp32": 0.2, "onebit": 0.05}
    recs = {r["codec"]: r for r in time_to_accuracy(curves, it)}
    best = max(curves[0].test_acc)
    for c in curves:
        r = recs[c.codec]
        assert r["target"] == pytest.approx(0.99 * best)
        hits = [s for s, a in zip(c.steps, c.test_acc, strict=True) if a >= r["target"]]
        assert r["steps_to_target"] == (hits[0] if hits else None)
        if hits:
            assert r["time_to_target_s"] == pytest.approx(hits[0] * it[c.codec])
    assert recs["fp32"]["reached"]


def test_bad_arguments_raise_named_errors() -> None:
    with pytest.raises(ConfigError, match="exchange"):
        run_convergence(codecs=["fp32"], exchange="ring", **SMALL)
    with pytest.raises(ConfigError, match="workers"):
        run_convergence(codecs=["fp32"], **{**SMALL, "workers": 0})
    with pytest.raises(ConfigError, match="codecs"):
        run_convergence(codecs=[], **SMALL)
    with pytest.raises(UnknownNameError, match="valid tasks"):
        run_convergence(codecs=["fp32"], task="imagenet", **SMALL)
    with pytest.raises(UnknownNameError, match="valid codecs"):
        run_convergence(codecs=["qsgd8"], **SMALL)
    with pytest.raises(WorkloadError, match="inputs of shape"):
        run_convergence(codecs=["fp32"], **{**SMALL, "model": "resnet18"})


def test_tasks_are_fixed_and_disjoint() -> None:
    for name in TASKS.names():
        t = TASKS.create(name)
        assert t.x_train.dtype == torch.float32 and t.y_train.dtype == torch.int64
        assert t.sample_numel == 784 and t.classes == 10
        assert set(t.y_train.tolist()) == set(range(10))
        assert t.x_test.shape[0] > 0
    c1, c2 = TASKS.create("clusters"), TASKS.create("clusters")
    assert torch.equal(c1.x_train, c2.x_train)


# --- the training claims ------------------------------------------------------


@pytest.mark.slow
def test_qsgd_8bit_within_one_point_of_fp32_on_digits() -> None:
    fp32, q8 = run_convergence(
        model="mlp", task="digits", codecs=["fp32", "qsgd(bits=8, bucket=512)"],
        workers=4, batch_per_worker=16, steps=40, lr=0.1, eval_every=40, seed=0,
    )
    assert fp32.test_acc[-1] > 0.85  # the run really learned
    assert abs(q8.test_acc[-1] - fp32.test_acc[-1]) <= 0.01


@pytest.mark.slow
def test_onebit_needs_error_feedback() -> None:
    ef, noef = run_convergence(
        model="mlp", task="digits", codecs=["onebit", "onebit(error_feedback=False)"],
        workers=2, batch_per_worker=16, steps=40, lr=0.1, eval_every=40, seed=0,
    )
    assert noef.codec == "onebit(error_feedback=False)"
    # With error feedback 1-bit SGD converges: the full training-set loss falls from
    # ln(10) ~ 2.3 to a quarter of that, and the test accuracy is far above chance.
    assert ef.train_loss[-1] < 0.25 * ef.train_loss[0]
    assert ef.test_acc[-1] > 0.8
    # Without it, it does measurably worse than with it.
    assert noef.train_loss[-1] > ef.train_loss[-1] + 0.05
