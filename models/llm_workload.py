"""Workloads of meta-only models (the LLM decoders): compute without ever running them here.

A decoder of :mod:`gradwire.models.zoo.llama` is too large to run on the host, and is not
needed to: :func:`prepare_meta_workload` takes its parameter shapes and the order backward
produces their gradients from the meta-device trace (:mod:`gradwire.models.flops`), and its
times from

1. ``model.profile`` (a workload file measured on a GPU with ``run_sim.py profile``): the
   file's times and ready times, checked against the traced parameter list; or
2. ``model.target_device``: the compute estimate of :mod:`gradwire.models.estimate` on the
   trace, with its stated held-out error.

No gradients come with the workload (``gradients`` is ``None``): the codecs' payload sizes
come from a seeded synthetic source (:mod:`gradwire.llm_codecs`), labelled as such in every
row. :func:`llm_setting_problems` refuses what cannot hold: a meta-only model without a
target device, compute measured by running it here, a sequence length for a model that
has its own, an inline configuration that cannot be built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from gradwire.errors import ConfigError
from gradwire.models.profile import ParamInfo, Workload
from gradwire.models.spec import ModelSpec

NO_MEMORY = "not measured: a meta-only model is never run here"
# What a decoder given inline may ask for: the trace runs every layer's operations on the meta
# device (linear in layers; Llama 3.1 405B has 126), and the synthetic payloads encode up to
# 2 x 64 rows of the widest tensor on the host.
LIMITS = {"layers": 256, "hidden": 65_536, "intermediate": 262_144, "heads": 1_024, "kv_heads": 1_024,
          "vocab": 4_194_304, "seq_len": 1_048_576}  # fmt: skip


def is_decoder(m: Any) -> bool:
    """Whether a scenario's ``model`` section names a decoder (shipped size or inline ``llm``)."""
    from gradwire.models.zoo.llama import SHIPPED

    return m.llm is not None or (m.module is None and m.name in {s.name for s in SHIPPED})


def llm_setting_problems(m: Any) -> list[tuple[str, str]]:
    """``(path, message)`` for every ``model`` setting a decoder cannot honour."""
    from gradwire.models.spec import MODELS
    from gradwire.models.zoo.llama import config_from

    out: list[tuple[str, str]] = []
    if m.llm is not None:
        if m.module is not None:
            out.append(("model.llm", "and model.module both name the model; remove one"))
        if m.name in MODELS:
            out.append(("model.name", f"{m.name!r} is a zoo model; give the inline model.llm a "
                                      "name of its own (e.g. my-decoder)"))  # fmt: skip
        out += config_from(m.llm).problems()
        for f, top in LIMITS.items():
            v = getattr(m.llm, f)
            if isinstance(v, int) and v > top:
                out.append((f"model.llm.{f}", f"{v:,} is beyond what a run here can trace (at most {top:,})"))
    if m.seq_len is not None and m.seq_len > LIMITS["seq_len"]:
        out.append(("model.seq_len", f"{m.seq_len:,} tokens is beyond {LIMITS['seq_len']:,}"))
    if not is_decoder(m):
        if m.seq_len is not None:
            out.append(("model.seq_len", f"only for a decoder (a shipped Llama size or model.llm); "
                                         f"model {m.module or m.name!r} has its own input shape"))  # fmt: skip
        return out
    label = m.name
    if m.target_device is None:
        out.append(("model.target_device", f"{label!r} is built on the meta device only and is never "
                                           "run here; name the GPU asked about (e.g. H100): its "
                                           "compute is estimated there, or measured in model.profile"))  # fmt: skip
    if m.measured is not None:
        out.append(("model.measured", f"{label!r} is never run here, so measured times cannot be "
                                      "given a ready-time shape; use model.profile (a profile made "
                                      "on the GPU) or the estimate (model.target_device)"))  # fmt: skip
    return out


def _workload(spec: ModelSpec, sc: Any, params: list[ParamInfo], fwd: float, bwd: float,
              opt: float, **kw: Any) -> Workload:  # fmt: skip
    m = sc.model
    return Workload(
        model=spec.name, batch_size=m.batch_size, device="meta", dtype=m.dtype,
        torch_version=torch.__version__, data_source=spec.data_source, forward_s=fwd,
        backward_s=bwd, optimizer_s=opt, peak_memory_bytes=0, params=params, gradients=None,
        grad_stats=[], peak_memory_method=NO_MEMORY, seed=sc.seed, **kw,
    )  # fmt: skip


def prepare_meta_workload(
    sc: Any, spec: ModelSpec, say: Callable[[str], None] | None = None
) -> tuple[Workload, Any]:
    """The workload of a meta-only ``spec`` (no gradients) and its ``WorkloadOrigin``."""
    from gradwire.models.devices import get_device
    from gradwire.models.flops import trace_spec
    from gradwire.models.sources import WorkloadOrigin, efficiencies_for
    from gradwire.models.zoo.llama import spec_seq_len

    log = say or (lambda _m: None)
    m = sc.model
    if m.target_device is None:  # the scenario check refuses this first
        raise ConfigError(f"model.target_device: {spec.name!r} is never run here; name the GPU asked about")
    target = get_device(m.target_device).name
    trace = trace_spec(spec, m.batch_size, seed=sc.seed)
    if m.profile is not None:
        from gradwire.models.workload_file import read_workload_file

        f = read_workload_file(m.profile)
        if f.model != spec.name:
            raise ConfigError(f"model.profile: {m.profile!r} profiles {f.model!r}, but the scenario's "
                              f"model is {spec.name!r}")  # fmt: skip
        if f.batch_size != m.batch_size:
            raise ConfigError(f"model.batch_size: {m.batch_size} differs from the batch the profile "
                              f"file {m.profile!r} measured ({f.batch_size}); set {f.batch_size}")  # fmt: skip
        if m.precision is not None and m.precision != (f.precision or None):
            raise ConfigError(f"model.precision: {m.precision!r} differs from the profile file's "
                              f"({f.precision or 'PyTorch default'}); remove it or profile again")  # fmt: skip
        seq = spec_seq_len(spec)
        if f.seq_len != seq:
            raise ConfigError(f"model.seq_len: the scenario's {seq}-token sequences differ from the "
                              f"profile file {m.profile!r}'s ({f.seq_len or 'not recorded'}); set "
                              "model.seq_len to match or profile again with --seq-len")  # fmt: skip
        have = {p.name: tuple(p.shape) for p in f.params}
        if have != dict(trace.params):
            diff = sorted(set(have.items()) ^ set(trace.params))[:4]
            raise ConfigError(f"model.profile: file {m.profile!r} does not describe {spec.name!r} "
                              f"at this configuration (parameters differ: {diff})")  # fmt: skip
        log(f"compute of {spec.name} from {f.describe()}; shapes from the meta-device trace")
        wl = _workload(spec, sc, list(f.params), f.forward_s, f.backward_s, f.optimizer_s,
                       estimate=False, target_device=target, times_source=f.describe(),
                       precision=f.precision, device_name="meta (never run here)")  # fmt: skip
        return wl, WorkloadOrigin(target, f.precision or "PyTorch default", f.describe(), "none (measured)")
    from gradwire.models.estimate import estimate_step

    eff = efficiencies_for(m)
    est = estimate_step(trace, m.target_device, m.precision, eff)
    log(f"estimated {spec.name} on {target} ({est.precision}) from the meta-device trace "
        f"({trace.total_flops():.3g} FLOPs per step); never run here")  # fmt: skip
    params = [ParamInfo(n, s, math.prod(s), r) for (n, s), r in zip(trace.params, est.ready_s, strict=True)]
    wl = _workload(spec, sc, params, est.forward_s, est.backward_s, est.optimizer_s, estimate=True,
                   target_device=target, times_source=est.source, precision=est.precision,
                   device_name="meta (never run here)")  # fmt: skip
    return wl, WorkloadOrigin(target, est.precision, est.source, eff.source, compute_error=est.error)


__all__ = ["NO_MEMORY", "is_decoder", "llm_setting_problems", "prepare_meta_workload"]
