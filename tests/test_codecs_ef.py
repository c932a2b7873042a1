"""Error feedback and multi-worker exchange: what is not sent is kept, not lost.

With error feedback ``e_{t+1} = g_t + e_t - decoded_t``, so after T steps the decoded
updates sum to ``sum_t g_t - e_T`` exactly; the codec is useful when ``e_T`` stays
bounded while ``sum_t g_t`` grows, and that is what these tests check.
"""

from __future__ import annotations

import pytest
import torch

from gradwire.codecs import make_codec
from gradwire.codecs.base import Codec


def stream(shape: tuple[int, ...], steps: int, seed: int = 0) -> list[torch.Tensor]:
    """Gradients with a persistent mean (so their sum grows like T) plus noise."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=g) * 0.3
    return [mean + torch.randn(shape, generator=g) for _ in range(steps)]


def run_ef(codec: Codec, grads: list[torch.Tensor]) -> tuple[torch.Tensor, list[float]]:
    state = codec.new_state()
    total = torch.zeros_like(grads[0], dtype=torch.float64)
    norms = []
    for g in grads:
        total += codec.decode(codec.encode(g, state)).double()
        assert state.residual is not None
        norms.append(float(state.residual.norm()))
    assert state.residual is not None
    exact = torch.stack(grads).double().sum(0)
    # sum of decoded updates + final residual == sum of true gradients
    assert torch.allclose(total + state.residual.double(), exact, atol=1e-3 * float(exact.abs().max()))
    return total - exact, norms


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        ("onebit(min_numel=0)", (64, 50)),
        ("onebit(bucket=128, min_numel=0)", (3000,)),
        ("signsgd(error_feedback=True, min_numel=0)", (3000,)),
        ("topk(ratio=0.05, min_numel=0)", (3000,)),
    ],
)
def test_error_feedback_tracks_the_sum_of_true_gradients(spec: str, shape: tuple[int, ...]) -> None:
    steps = 120
    grads = stream(shape, steps)
    gap, norms = run_ef(make_codec(spec), grads)
    exact = torch.stack(grads).double().sum(0)
    # the residual stays bounded: the second half never exceeds twice the first half's peak
    assert max(norms[steps // 2 :]) <= 2 * max(norms[: steps // 2])
    # ... while the true sum grows, so the relative gap shrinks
    assert float(gap.norm()) <= 0.2 * float(exact.norm())


def test_without_error_feedback_the_gap_grows() -> None:
    """Control for the test above: 1-bit with a fresh (zero) residual every step drifts."""
    codec = make_codec("onebit(bucket=128, min_numel=0)")
    grads = stream((3000,), 120)
    no_ef = sum(codec.decode(codec.encode(g, codec.new_state())).double() for g in grads)
    exact = torch.stack(grads).double().sum(0)
    gap_ef, _ = run_ef(codec, grads)
    assert float((no_ef - exact).norm()) > 5 * float(gap_ef.norm())


def test_onebit_reconstruction_values_are_the_side_means() -> None:
    codec = make_codec("onebit(bucket=4, min_numel=0)")
    x = torch.tensor([1.0, -2.0, 3.0, 0.0, -1.0, -3.0])
    state = codec.new_state()
    d = codec.decode(codec.encode(x, state))
    # bucket 1: non-negative {1, 3, 0} mean 4/3, negative {-2}; bucket 2: negatives only
    expected = torch.tensor([4 / 3, -2.0, 4 / 3, 4 / 3, -2.0, -2.0])
    assert torch.allclose(d, expected)
    assert state.residual is not None and torch.allclose(state.residual, x - expected)


def test_signsgd_majority_vote() -> None:
    codec = make_codec("signsgd(min_numel=0)")
    g = torch.Generator().manual_seed(1)
    workers = [torch.randn(200, generator=g) for _ in range(4)]
    states = [codec.new_state(worker=k) for k in range(4)]
    votes = torch.stack([torch.where(w >= 0, 1.0, -1.0) for w in workers]).sum(0)
    assert torch.equal(codec.aggregate(workers, states), torch.sign(votes))


def test_default_aggregate_is_the_mean_of_decoded_payloads() -> None:
    codec = make_codec("qsgd(bits=3, bucket=64, min_numel=0)")
    g = torch.Generator().manual_seed(2)
    workers = [torch.randn(30, 20, generator=g) for _ in range(3)]
    via_bytes = torch.stack([codec.decode(codec.encode(w, codec.new_state(worker=k)))
                             for k, w in enumerate(workers)]).mean(0)
    agg = codec.aggregate(workers, [codec.new_state(worker=k) for k in range(3)])
    assert torch.allclose(agg, via_bytes, rtol=0, atol=1e-6)


def test_powersgd_single_worker_protocol_equals_its_payload() -> None:
    codec = make_codec("powersgd(rank=2)")
    grads = stream((40, 30), 3, seed=3)
    sa, sb = codec.new_state(), codec.new_state()
    for g in grads:
        assert torch.allclose(codec.aggregate([g], [sa]), codec.decode(codec.encode(g, sb)),
                              atol=1e-5)
        assert sa.residual is not None and sb.residual is not None
        assert torch.allclose(sa.residual, sb.residual, atol=1e-5)


def test_powersgd_recovers_low_rank_averages_exactly() -> None:
    """Workers' matrices u v_k^T share a column space, so the rank-2 protocol returns the
    exact mean u mean(v_k)^T and leaves no residual."""
    g = torch.Generator().manual_seed(4)
    u = torch.randn(50, 1, generator=g)
    mats = [u @ torch.randn(1, 36, generator=g) for _ in range(3)]
    codec = make_codec("powersgd(rank=2)")
    states = [codec.new_state(worker=k) for k in range(3)]
    agg = codec.aggregate(mats, states)
    assert torch.allclose(agg, torch.stack(mats).mean(0), atol=1e-5)
    q = states[0].extra["Q"]
    assert all(torch.equal(s.extra["Q"], q) for s in states)  # one shared warm start


def test_powersgd_error_feedback_keeps_what_rank_r_misses() -> None:
    codec = make_codec("powersgd(rank=1)")
    k, steps = 3, 100
    grads = [stream((30, 24), steps, seed=10 + w) for w in range(k)]
    states = [codec.new_state(worker=w) for w in range(k)]
    total = torch.zeros(30, 24, dtype=torch.float64)
    norms = []
    for t in range(steps):
        total += codec.aggregate([grads[w][t] for w in range(k)], states).double()
        norms.append(max(float(s.residual.norm()) for s in states if s.residual is not None))
    exact = torch.stack([torch.stack(grads[w]).double().sum(0) for w in range(k)]).mean(0)
    mean_res = torch.stack([s.residual.double() for s in states if s.residual is not None]).mean(0)
    assert torch.allclose(total + mean_res, exact, atol=1e-3)
    assert max(norms[steps // 2 :]) <= 2 * max(norms[: steps // 2])
    assert float((total - exact).norm()) < 0.25 * float(exact.norm())


def test_powersgd_vectors_are_averaged_exactly() -> None:
    codec = make_codec("powersgd")
    vecs = [torch.randn(17, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    states = [codec.new_state(worker=k) for k in range(3)]
    assert torch.allclose(codec.aggregate(vecs, states), torch.stack(vecs).mean(0))


@pytest.mark.parametrize("shape", [(40, 30), (1000,), (3, 4, 5)])
def test_onebit_numba_and_torch_paths_agree(shape: tuple[int, ...]) -> None:
    """The CPU kernel (float64 sums) and the torch path (CUDA) give the same bits and the
    same means up to float32 summation order."""
    codec = make_codec("onebit(bucket=64, min_numel=0)")
    val = torch.randn(shape, generator=torch.Generator().manual_seed(6))
    bits, m0, m1, dec = codec._cpu(val.contiguous(), shape)  # type: ignore[attr-defined]
    tb, t0, t1, tdec = codec._torch(val.unsqueeze(0), shape)  # type: ignore[attr-defined]
    assert torch.equal(bits, tb[0])
    assert torch.allclose(m0, t0[0], rtol=1e-5) and torch.allclose(m1, t1[0], rtol=1e-5)
    assert torch.allclose(dec, tdec[0], rtol=1e-5)


def test_onebit_without_error_feedback_keeps_no_memory() -> None:
    """The switch that shows why 1-bit SGD needs error feedback really drops the memory,
    and its bytes still decode to its quantized value exactly."""
    import torch

    from gradwire.codecs import make_codec

    codec = make_codec("onebit(error_feedback=False, min_numel=0)")
    assert not codec.stateful and codec.spec() == "onebit(bucket=512, min_numel=0, error_feedback=False)"
    g = torch.randn(3000, generator=torch.Generator().manual_seed(1))
    st, st2 = codec.new_state(), codec.new_state()
    decoded = codec.decode(codec.encode(g, st))
    assert st.residual is None
    assert torch.equal(decoded, codec.quantize(g, st2))
    # with feedback on, the same input leaves exactly what was not sent
    ef = make_codec("onebit(min_numel=0)")
    st3 = ef.new_state()
    sent = ef.decode(ef.encode(g, st3))
    assert st3.residual is not None and torch.allclose(st3.residual, g - sent)


def test_make_codec_default_seed_yields_to_the_specs_own() -> None:
    from gradwire.codecs import make_codec

    assert make_codec("qsgd(bits=4)", default_seed=7).seed == 7
    assert make_codec("qsgd(bits=4, seed=3)", default_seed=7).seed == 3
    assert make_codec("qsgd(bits=4, seed=3)", seed=5).seed == 5  # an override always wins
