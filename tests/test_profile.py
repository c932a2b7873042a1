"""Profiling: ready times in autograd order, captured gradients, FLOP counts, cache, errors."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
import torch

import gradwire.models.profile as prof
from gradwire.errors import ConfigError, UnknownNameError, WorkloadError
from gradwire.models import build_model, get_model, profile_model


def _autograd_reference(
    name: str, batch: int, seed: int
) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Order in which autograd produces leaf gradients (tensor hooks) and the gradients."""
    spec = get_model(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(name, seed=seed)
        x, y = spec.make_batch(batch, generator=torch.Generator().manual_seed(seed))
        order: list[str] = []
        for n, p in model.named_parameters():
            p.register_hook(lambda g, n=n: order.append(n))
        named = list(model.named_parameters())
        grads = torch.autograd.grad(spec.loss(model(x), y), [p for _, p in named])
    return order, {n: g for (n, _), g in zip(named, grads, strict=True)}


@pytest.mark.parametrize(
    "name", ["mlp", "small_cnn", pytest.param("resnet110", marks=pytest.mark.slow)]
)
def test_ready_times_follow_autograd_and_gradients_equal_autograds(name: str) -> None:
    batch = 2 if name == "resnet110" else 8
    w = profile_model(name, batch, device="cpu", warmup=0, iters=1, seed=7, cache=False)
    order, ref = _autograd_reference(name, batch, seed=7)
    assert [p.name for p in w.params] == order
    ready = [p.ready_s for p in w.params]
    assert all(a <= b for a, b in itertools.pairwise(ready))
    assert ready[0] >= 0.0 and ready[-1] <= w.backward_s
    assert w.gradients is not None and set(w.gradients) == set(ref)
    for n, g in ref.items():
        assert w.gradients[n].dtype == torch.float32
        torch.testing.assert_close(w.gradients[n], g, rtol=1e-5, atol=1e-7)
    shapes = {n: tuple(g.shape) for n, g in ref.items()}
    for p in w.params:
        assert p.shape == shapes[p.name] and p.numel == ref[p.name].numel()
    assert w.num_params == sum(g.numel() for g in ref.values())


def test_mlp_profile_backward_order_and_stats() -> None:
    w = profile_model("mlp", 16, device="cpu", warmup=1, iters=2, cache=False)
    names = [p.name for p in w.params]
    # backward reaches the output layer (index 2) before the hidden layer (index 0)
    assert {n.split(".")[0] for n in names[:2]} == {"2"} and {
        n.split(".")[0] for n in names[2:]
    } == {"0"}
    assert w.device == "cpu" and w.dtype == "float32" and not w.estimate
    assert "digits" in w.data_source and w.torch_version == torch.__version__
    assert min(w.forward_s, w.backward_s, w.optimizer_s) > 0
    assert w.compute_s == pytest.approx(w.forward_s + w.backward_s + w.optimizer_s)
    assert w.gradients is not None
    for st in w.grad_stats:
        g = w.gradients[st["name"]].double()
        assert st["norm"] == pytest.approx(float(g.norm()), rel=1e-9)
        assert st["max_abs"] == pytest.approx(float(g.abs().max()), rel=1e-9)
        assert st["zero_fraction"] == pytest.approx(float((g == 0).double().mean()))
    # ReLU hidden units that are dead for the whole batch give exactly-zero weight rows
    assert 0.0 < next(s for s in w.grad_stats if s["name"] == "0.weight")["zero_fraction"] < 1.0
    # memory: at least parameters, gradients and momentum in float32
    assert w.peak_memory_bytes >= 3 * 4 * w.num_params


def test_meta_pass_counts_mlp_flops_in_closed_form() -> None:
    b = 16
    costs = prof._meta_costs(get_model("mlp"), b, torch.float32)
    fwd = sum(la.forward_flops for la in costs.layers)
    bwd = sum(la.backward_flops for la in costs.layers)
    assert fwd == 2 * b * (784 * 4096 + 4096 * 10)
    # output layer: gradient of input and of weights; hidden layer: weights only (the
    # input needs no gradient)
    assert bwd == pytest.approx(2 * (2 * b * 4096 * 10) + 2 * b * 784 * 4096)
    # tensors saved for backward: at least the input and the hidden activations
    assert costs.saved_activation_bytes >= 4 * b * (784 + 4096)
    assert costs.param_bytes == 4 * (784 * 4096 + 4096 + 4096 * 10 + 10)


def test_cache_round_trip_does_no_profiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = profile_model("small_cnn", 8, device="cpu", iters=1, cache_dir=tmp_path)

    def no_profiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached profile must not be measured again")

    monkeypatch.setattr(prof, "_measure", no_profiling)
    monkeypatch.setattr(prof, "_meta_costs", no_profiling)
    t0 = time.perf_counter()
    again = profile_model("small_cnn", 8, device="cpu", iters=1, cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 1.0
    assert again.to_json() == first.to_json()
    assert first.gradients is not None and again.gradients is not None
    assert list(again.gradients) == list(first.gradients)
    for n, g in first.gradients.items():
        assert torch.equal(again.gradients[n], g)
    # another batch size is another key: it must profile
    with pytest.raises(AssertionError, match="must not be measured"):
        profile_model("small_cnn", 4, device="cpu", iters=1, cache_dir=tmp_path)


def test_profile_without_gradients(tmp_path: Path) -> None:
    w = profile_model(
        "small_cnn", 4, device="cpu", iters=1, cache_dir=tmp_path, keep_gradients=False
    )
    assert w.gradients is None and len(w.grad_stats) == len(w.params)
    again = profile_model(
        "small_cnn", 4, device="cpu", iters=1, cache_dir=tmp_path, keep_gradients=False
    )
    assert again.gradients is None and again.to_json() == w.to_json()


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))
    assert prof.default_cache_dir() == tmp_path / "profiles"


def test_bfloat16_profile_runs_and_keeps_float32_gradients() -> None:
    w = profile_model(
        "small_cnn", 4, device="cpu", dtype="bfloat16", warmup=0, iters=1, cache=False
    )
    assert w.dtype == "bfloat16" and w.gradients is not None
    assert all(g.dtype == torch.float32 for g in w.gradients.values())


def test_profile_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    profile_model("mlp", 4, device="cpu", warmup=0, iters=1, cache=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_unknown_model_and_bad_arguments() -> None:
    with pytest.raises(UnknownNameError, match=r"valid models: .*mlp"):
        profile_model("resnet51", 8, cache=False)
    for bad in (0, -1, 1.5):
        with pytest.raises(WorkloadError, match="batch_size"):
            profile_model("mlp", bad, cache=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dtype"):
        profile_model("mlp", 8, dtype="float8", cache=False)
    with pytest.raises(ConfigError, match="iters"):
        profile_model("mlp", 8, iters=0, cache=False)
    if not torch.cuda.is_available():
        with pytest.raises(WorkloadError, match="CUDA"):
            profile_model("mlp", 8, device="cuda", cache=False)


def test_impossible_batch_is_refused_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("an impossible batch must be refused before running")

    monkeypatch.setattr(prof, "_measure", must_not_run)
    with pytest.raises(WorkloadError, match=r"batch_size=1000000000.*smaller batch_size"):
        profile_model("mlp", 10**9, device="cpu", cache=False)


def test_out_of_memory_while_running_is_a_workload_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")

    monkeypatch.setattr(prof, "_measure", oom)
    with pytest.raises(WorkloadError, match="ran out of memory"):
        profile_model("mlp", 8, device="cpu", cache=False)


def test_time_budget_stops_timing_after_one_step() -> None:
    w = profile_model(
        "small_cnn", 4, device="cpu", warmup=0, iters=50, cache=False, time_budget_s=1e-9
    )
    assert w.iters == 1
    full = profile_model(
        "small_cnn", 4, device="cpu", warmup=0, iters=3, cache=False, time_budget_s=None
    )
    assert full.iters == 3
    with pytest.raises(ConfigError, match="time_budget_s"):
        profile_model("small_cnn", 4, cache=False, time_budget_s=0.0)


def test_damaged_cache_entry_is_profiled_again(tmp_path: Path) -> None:
    first = profile_model("mlp", 4, device="cpu", warmup=0, iters=1, cache_dir=tmp_path)
    (entry,) = list(tmp_path.iterdir())
    (entry / "gradients.npy").write_bytes(b"not an array")
    again = profile_model("mlp", 4, device="cpu", warmup=0, iters=1, cache_dir=tmp_path)
    assert again.gradients is not None and first.gradients is not None
    for n, g in first.gradients.items():
        assert torch.equal(again.gradients[n], g)  # same seed: the same first-step gradients
    (entry / "profile.json").write_text("[1, 2")
    assert profile_model("mlp", 4, device="cpu", warmup=0, iters=1, cache_dir=tmp_path).gradients


def test_a_profile_on_a_busy_host_is_warned_about_and_records_its_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import warnings

    from gradwire.codecs.host_cache import HostLoadWarning

    busy = 4.0 * (os.cpu_count() or 1)
    monkeypatch.setattr(os, "getloadavg", lambda: (busy, 0.0, 0.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wl = profile_model("mlp", 2, device="cpu", iters=1, warmup=0, cache_dir=tmp_path)
    assert any(issubclass(w.category, HostLoadWarning) and "profiling 'mlp'" in str(w.message) for w in caught)
    assert wl.host_load == busy
    again = profile_model("mlp", 2, device="cpu", iters=1, warmup=0, cache_dir=tmp_path)  # from the cache
    assert again.host_load == busy
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        idle = profile_model("mlp", 2, device="cpu", iters=1, warmup=0, cache_dir=tmp_path / "idle")
    assert not any(issubclass(w.category, HostLoadWarning) for w in quiet)
    assert idle.host_load == 0.0
