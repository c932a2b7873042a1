"""Where a scenario's compute times come from: a measurement always wins over a model.

:func:`prepare_workload` turns a scenario's ``model`` section into the workload the
simulator runs and a :class:`WorkloadOrigin` that every result row carries:

1. ``model.profile`` (a workload file from ``run_sim.py profile``): the file's measured
   times and ready times ("measured file", with its device, precision and date);
2. ``model.measured`` (forward/backward/optimizer milliseconds the user measured): those
   times exactly, ready times shaped by a profile here ("given in the scenario");
3. ``model.target_device`` alone: the calibrated estimate of
   :mod:`gradwire.models.estimate` from the fast meta-device trace, no timing here
   ("estimate (±X% ... on published throughputs)");
4. nothing: the profile measured on the device at hand ("measured here").

In cases 1 and 2 a ``target_device`` only names the GPU asked about (its codec costs);
it never overrides the measurement. The codecs always need real gradients, so every case
runs one real step of the model here for them (cached). A setting that the chosen source
would ignore is refused by :func:`model_setting_problems`, which the scenario loader runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from gradwire.errors import ConfigError, GradWireError, WorkloadError
from gradwire.models.profile import ParamInfo, Workload, profile_is_cached, profile_model
from gradwire.models.spec import ModelSpec


@dataclass(frozen=True)
class WorkloadOrigin:
    """Provenance of a workload's compute times (plain strings, for rows and dashboards)."""

    target_device: str  # the GPU asked about ("" when it is the device at hand)
    precision: str
    compute_source: str
    efficiency_source: str
    # the uncertainty of the compute times (gradwire.uncertainty): an estimate's stated
    # median held-out relative error (NaN: none stated), a measurement's spread
    # ((max - min) / median of the timed steps)
    compute_error: float = math.nan  # an estimate without a stated error is never drawn exact
    compute_spread: float = 0.0


def model_setting_problems(m: Any) -> list[tuple[str, str]]:
    """``(path, message)`` for every ``model`` setting that would be ignored or cannot hold."""
    from gradwire.models.llm_workload import llm_setting_problems
    from gradwire.models.usermodel import check_module_path

    out: list[tuple[str, str]] = llm_setting_problems(m)
    if m.module is not None:
        why = check_module_path(m.module)
        if why:
            out.append(("model.module", f"{m.module!r} {why}"))
        if m.name != "mlp":
            out.append(("model.name", f"ignored when model.module names the model ({m.module!r}); "
                                      "remove one of them"))  # fmt: skip
    elif m.loss is not None:
        out.append(("model.loss", "only for a model given by model.module (a zoo model has its own loss)"))
    if m.profile is not None and m.measured is not None:
        out.append(("model.measured", "ignored when model.profile gives measured times; remove one"))
    measured = m.profile is not None or m.measured is not None
    if m.efficiency is not None and (measured or m.target_device is None):
        why = "the compute times are measured" if measured else "nothing is estimated without model.target_device"
        out.append(("model.efficiency", f"would be ignored: {why}"))
    if m.precision is not None and m.measured is not None:
        out.append(("model.precision", "ignored when model.measured gives the times (they were "
                                       "measured at whatever precision ran); remove it"))  # fmt: skip
    if m.profile is not None:
        from pathlib import Path

        if not Path(m.profile).is_file():
            out.append(("model.profile", f"no file {m.profile!r}; write one with "
                                         "`run_sim.py profile MODEL --out FILE`"))  # fmt: skip
    if m.target_device is not None and m.precision is not None and not measured:
        from gradwire.models.devices import get_device, list_devices
        from gradwire.models.estimate import resolve_precision

        if m.target_device in list_devices():
            try:
                resolve_precision(get_device(m.target_device), m.precision)
            except ConfigError as exc:
                out.append(("model.precision", str(exc).removeprefix("model.precision: ")))
    return out


def scenario_spec(m: Any) -> ModelSpec:
    from gradwire.models.usermodel import model_spec
    from gradwire.models.zoo.llama import llm_spec

    return llm_spec(m) or model_spec(m.name, m.module, m.loss)


def _guard(spec: ModelSpec, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a user model's failure in forward or loss becomes one clear error."""
    if spec.input_kind != "custom":
        return fn()
    try:
        return fn()
    except GradWireError:
        raise
    except Exception as exc:
        raise ConfigError(f"model.module: {spec.name!r}: a training step failed with "
                          f"{type(exc).__name__}: {exc}") from None  # fmt: skip


def _one_step_args(sc: Any, dev: str) -> dict[str, Any]:
    """The profile made for the codecs' gradients: one real step here, its times unused."""
    return {"device": dev, "dtype": sc.model.dtype, "warmup": 0, "iters": 1, "seed": sc.seed,
            "keep_gradients": True, "precision": None}


def _full_args(sc: Any, dev: str, precision: str | None) -> dict[str, Any]:
    """The profile whose times are used: ``model.profile_iters`` timed steps here."""
    m = sc.model
    return {"device": dev, "dtype": m.dtype, "iters": m.profile_iters, "seed": sc.seed,
            "keep_gradients": True, "precision": precision}


def profile_calls(sc: Any, dev: str) -> list[tuple[str, dict[str, Any]]]:
    """The profiles :func:`prepare_workload` makes here for ``sc`` (``(kind, arguments of
    profile_model)``; kind ``"step"`` for the codecs' gradients, ``"timed"`` when its
    times are the workload's), so a caller can say what a run will cost before it runs."""
    from gradwire.models.llm_workload import is_decoder

    m = sc.model
    if is_decoder(m):  # built on the meta device only: never run here
        return []
    if m.measured is not None:
        return [("timed", _full_args(sc, dev, None))]
    if m.profile is not None or m.target_device:
        return [("step", _one_step_args(sc, dev))]
    return [("timed", _full_args(sc, dev, m.precision))]


def _cached_note(spec: ModelSpec, batch_size: int, args: dict[str, Any]) -> str:
    return " (cached)" if profile_is_cached(spec, batch_size, **args) else ""


def _one_step(spec: ModelSpec, sc: Any, dev: str, progress: bool) -> Workload:
    """One real step here for the codecs' gradients (its times are not used)."""
    args = _one_step_args(sc, dev)
    return _guard(spec, lambda: profile_model(spec, sc.model.batch_size, progress=progress, **args))


def _same_params(spec: ModelSpec, here: Workload, names: list[tuple[str, tuple[int, ...]]],
                 what: str, field: str) -> None:  # fmt: skip
    have = {p.name: tuple(p.shape) for p in here.params}
    want = dict(names)
    if have != want:
        diff = sorted(set(have.items()) ^ set(want.items()))[:4]
        raise ConfigError(f"{field}: {what} does not describe model {spec.name!r} as built here "
                          f"(parameters differ: {diff})")  # fmt: skip


def efficiencies_for(m: Any) -> Any:
    from gradwire.models.estimate import Efficiencies, shipped_efficiencies

    if m.efficiency is None:
        return shipped_efficiencies()
    e = m.efficiency
    return Efficiencies(e.gemm, e.small_gemm, e.memory, e.optimizer, e.launch_us * 1e-6,
                        "given in the scenario (model.efficiency)", math.nan, math.nan)  # fmt: skip


def prepare_workload(
    sc: Any, dev: str, *, progress: bool = False, say: Callable[[str], None] | None = None
) -> tuple[Workload, WorkloadOrigin]:
    """The scenario's workload (with gradients for the codecs) and where its times come from."""
    log = say or (lambda _m: None)
    m = sc.model
    spec = scenario_spec(m)
    if spec.meta_only:  # never run here: compute from the estimate or a profile file
        from gradwire.models.llm_workload import prepare_meta_workload

        return prepare_meta_workload(sc, spec, log)
    target = m.target_device or ""
    if m.profile is not None:
        from gradwire.models.workload_file import read_workload_file

        f = read_workload_file(m.profile)
        if f.model != spec.name:
            raise ConfigError(f"model.profile: {m.profile!r} profiles {f.model!r}, but the scenario's "
                              f"model is {spec.name!r}")  # fmt: skip
        if f.batch_size != m.batch_size:
            raise ConfigError(f"model.batch_size: {m.batch_size} differs from the batch the profile "
                              f"file {m.profile!r} measured ({f.batch_size}); set {f.batch_size} "
                              "or profile again")  # fmt: skip
        if m.precision is not None and m.precision != (f.precision or None):
            raise ConfigError(f"model.precision: {m.precision!r} differs from the profile file's "
                              f"({f.precision or 'PyTorch default'}); remove it or profile again")  # fmt: skip
        log(f"compute from {f.describe()}; one step here for the codecs' gradients"
            f"{_cached_note(spec, m.batch_size, _one_step_args(sc, dev))}")
        here = _one_step(spec, sc, dev, progress)
        _same_params(spec, here, [(p.name, p.shape) for p in f.params], f"file {m.profile!r}", "model.profile")
        wl = replace(here, forward_s=f.forward_s, backward_s=f.backward_s, optimizer_s=f.optimizer_s,
                     params=list(f.params), estimate=False, target_device=target or None,
                     times_source=f.describe(), precision=f.precision)  # fmt: skip
        origin = WorkloadOrigin(target or f.provenance["device_name"], f.precision or "PyTorch default",
                                f.describe(), "none (measured)")  # fmt: skip
        return wl, origin
    if m.measured is not None:
        from gradwire.models.devices import with_measured_times

        args = _full_args(sc, dev, None)
        log(f"profiling {spec.name} (batch {m.batch_size}) on {dev} for ready-time shape and gradients"
            f"{_cached_note(spec, m.batch_size, args)}")
        here = _guard(spec, lambda: profile_model(spec, m.batch_size, progress=progress, **args))
        t = m.measured
        wl = with_measured_times(here, t.forward_ms / 1e3, t.backward_ms / 1e3, t.optimizer_ms / 1e3,
                                 device_label=target or None)  # fmt: skip
        source = "given in the scenario (model.measured)"
        return replace(wl, times_source=source), WorkloadOrigin(target, "as measured", source,
                                                                 "none (measured)")  # fmt: skip
    if target:
        from gradwire.models.devices import get_device
        from gradwire.models.estimate import estimate_step
        from gradwire.models.flops import trace_spec

        eff = efficiencies_for(m)
        trace = _guard(spec, lambda: trace_spec(spec, m.batch_size, seed=sc.seed))
        est = estimate_step(trace, target, m.precision, eff)
        log(f"estimated {spec.name} on {target} ({est.precision}) from the meta-device trace; "
            f"one step here for the codecs' gradients{_cached_note(spec, m.batch_size, _one_step_args(sc, dev))}")
        here = _one_step(spec, sc, dev, progress)
        _same_params(spec, here, list(trace.params), "the meta-device trace", "model.module")
        gpu = get_device(target)
        if here.peak_memory_bytes > gpu.memory_bytes:
            raise WorkloadError(
                f"{spec.name!r} at batch_size={m.batch_size} needs about "
                f"{here.peak_memory_bytes / 2**30:.1f} GiB but a {gpu.name} has "
                f"{gpu.memory_bytes / 2**30:.0f} GiB; use a smaller batch_size")
        params = [ParamInfo(n, s, math.prod(s), r)
                  for (n, s), r in zip(trace.params, est.ready_s, strict=True)]  # fmt: skip
        wl = replace(here, forward_s=est.forward_s, backward_s=est.backward_s,
                     optimizer_s=est.optimizer_s, params=params, estimate=True,
                     target_device=gpu.name, times_source=est.source, precision=est.precision)  # fmt: skip
        return wl, WorkloadOrigin(gpu.name, est.precision, est.source, eff.source, compute_error=est.error)
    args = _full_args(sc, dev, m.precision)
    log(f"profiling {spec.name} (batch {m.batch_size}, {m.dtype}) on {dev}{_cached_note(spec, m.batch_size, args)}")
    here = _guard(spec, lambda: profile_model(spec, m.batch_size, progress=progress, **args))
    load = f", load {here.host_load:.1f} on {os.cpu_count() or 1} cores" if here.host_load >= 0 else ""
    source = f"measured here ({here.device_name or here.device}{load})"
    prec = m.precision or "PyTorch default"
    return replace(here, times_source=source), WorkloadOrigin("", prec, source, "none (measured)",
                                                               compute_spread=here.step_spread)
