"""Device profiles for what-if hardware, and rescaling a measured profile to another GPU.

``devices.yaml`` (shipped with the package) lists data-centre GPUs with their peak dense
FLOP/s per dtype, memory bandwidth and memory, each with its datasheet source.
:func:`rescale` turns a profile measured here (say on a laptop CPU) into an estimate for
a target GPU with a per-layer roofline (Williams, Waterman and Patterson, CACM 2009):
each layer's time is ``max(FLOPs / (peak * compute_efficiency), bytes / (bandwidth *
memory_efficiency))``, using the FLOPs and bytes counted when profiling. The result is
flagged ``estimate=True`` and must be labelled so wherever it is shown. With the default
efficiencies of 1 the estimate is the roofline's lower bound; a user with measured
per-iteration times gives them with :func:`with_measured_times` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

import numpy as np
import yaml

from gradwire.errors import ConfigError, UnknownNameError, WorkloadError
from gradwire.models.profile import OPTIMIZER_BYTES_PER_ELEMENT_ACCESS, ParamInfo, Workload

BYTES_PER_ELEMENT = {"float32": 4, "float16": 2, "bfloat16": 2}  # by model.dtype


@dataclass(frozen=True)
class DeviceProfile:
    """One GPU: ``peak_flops`` maps a dtype name to peak dense FLOP/s."""

    name: str
    description: str
    peak_flops: dict[str, float]
    memory_bandwidth_Bps: float
    memory_bytes: int
    source: str


@lru_cache(maxsize=1)
def _load() -> dict[str, DeviceProfile]:
    text = resources.files("gradwire.models").joinpath("devices.yaml").read_text()
    raw = yaml.safe_load(text)["devices"]
    return {
        name: DeviceProfile(
            name=name,
            description=str(d["description"]),
            peak_flops={k: float(v) for k, v in d["peak_flops"].items()},
            memory_bandwidth_Bps=float(d["memory_bandwidth_Bps"]),
            memory_bytes=int(d["memory_bytes"]),
            source=str(d["source"]),
        )
        for name, d in raw.items()
    }


def list_devices() -> list[str]:
    """Names of the GPUs in ``devices.yaml``."""
    return sorted(_load())


def get_device(name: str) -> DeviceProfile:
    """The profile of GPU ``name`` (case-insensitive); unknown names list the valid ones."""
    table = _load()
    for key, dev in table.items():
        if key.lower() == str(name).lower():
            return dev
    raise UnknownNameError("device", str(name), list(table))


def _roofline_s(flops: float, nbytes: float, peak_flops: float, bandwidth_Bps: float) -> float:
    return max(flops / peak_flops, nbytes / bandwidth_Bps)


def rescale(
    workload: Workload,
    target: str,
    *,
    compute_efficiency: float = 1.0,
    memory_efficiency: float = 1.0,
    flops_dtype: str | None = None,
) -> Workload:
    """Estimate ``workload``'s step times on GPU ``target`` by a per-layer roofline.

    Forward and backward times are sums over layers of ``max(FLOPs / (P * e_c), bytes /
    (BW * e_m))`` with ``P`` the target's peak FLOP/s for ``flops_dtype`` (default: the
    profile's dtype; ``"tf32"`` for tensor-core float32) and ``BW`` its memory bandwidth
    in bytes/s. A parameter's gradient is ready once backward has passed every layer
    that runs after its own in forward, and its own layer. The optimizer (SGD with
    momentum) is memory-bound: 5 accesses per parameter element. Peak memory is kept
    from the measurement; a batch that does not fit the target raises ``WorkloadError``.
    """
    dev = get_device(target)
    for pname, value in (
        ("compute_efficiency", compute_efficiency),
        ("memory_efficiency", memory_efficiency),
    ):
        if not (isinstance(value, int | float) and 0.0 < value <= 1.0):
            raise ConfigError(f"{pname} must lie in (0, 1], got {value!r}")
    kind = flops_dtype or workload.dtype
    if kind not in dev.peak_flops:
        raise WorkloadError(
            f"device {dev.name!r} has no {kind} peak; supported: {', '.join(sorted(dev.peak_flops))}"
        )
    if not workload.layers:
        raise WorkloadError(
            f"profile of {workload.model!r} holds no per-layer FLOPs and bytes; profile it again "
            "with gradwire.models.profile_model to rescale it"
        )
    if workload.peak_memory_bytes > dev.memory_bytes:
        raise WorkloadError(
            f"{workload.model!r} at batch_size={workload.batch_size} needs about "
            f"{workload.peak_memory_bytes / 2**30:.1f} GiB but a {dev.name} has "
            f"{dev.memory_bytes / 2**30:.0f} GiB; use a smaller batch_size"
        )
    peak = dev.peak_flops[kind] * compute_efficiency
    bw = dev.memory_bandwidth_Bps * memory_efficiency
    fwd = [_roofline_s(la.forward_flops, la.forward_bytes, peak, bw) for la in workload.layers]
    bwd = [_roofline_s(la.backward_flops, la.backward_bytes, peak, bw) for la in workload.layers]
    forward_s, backward_s = float(sum(fwd)), float(sum(bwd))

    # Backward visits layers in reverse forward order: the work done when a layer's
    # gradients are ready is that of every layer at or after it in forward order.
    orders = np.array([la.order for la in workload.layers])
    bwd_arr = np.array(bwd)
    ready_at_layer: dict[str, float] = {}
    for la in workload.layers:
        done = float(bwd_arr[orders >= la.order].sum())
        for pname in la.params:
            ready_at_layer[pname] = done
    raw = [ready_at_layer.get(p.name, backward_s) for p in workload.params]
    ready = np.minimum(np.maximum.accumulate(np.array(raw, dtype=float)), backward_s)
    params = [replace(p, ready_s=float(t)) for p, t in zip(workload.params, ready, strict=True)]

    elem = BYTES_PER_ELEMENT.get(workload.dtype, 4)
    optimizer_s = OPTIMIZER_BYTES_PER_ELEMENT_ACCESS * elem * workload.num_params / bw
    return replace(
        workload,
        forward_s=forward_s,
        backward_s=backward_s,
        optimizer_s=optimizer_s,
        params=params,
        estimate=True,
        target_device=dev.name,
        times_source=(
            f"roofline estimate for {dev.name} ({kind} peak x {compute_efficiency:g}, "
            f"bandwidth x {memory_efficiency:g})"
        ),
    )


def with_measured_times(
    workload: Workload,
    forward_s: float,
    backward_s: float,
    optimizer_s: float,
    *,
    device_label: str | None = None,
) -> Workload:
    """``workload`` with per-iteration times measured elsewhere by the user (seconds).

    Gradient ready times keep their measured shape: each is scaled by the ratio of the
    given backward time to the profiled one.
    """
    for pname, value in (
        ("forward_s", forward_s),
        ("backward_s", backward_s),
        ("optimizer_s", optimizer_s),
    ):
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"{pname} must be a finite number of seconds >= 0, got {value!r}")
    if backward_s <= 0:
        raise ConfigError(f"backward_s must be > 0 seconds, got {backward_s!r}")
    ratio = backward_s / workload.backward_s if workload.backward_s > 0 else 0.0
    params = [
        ParamInfo(p.name, p.shape, p.numel, min(p.ready_s * ratio, float(backward_s)))
        for p in workload.params
    ]
    return replace(
        workload,
        forward_s=float(forward_s),
        backward_s=float(backward_s),
        optimizer_s=float(optimizer_s),
        params=params,
        estimate=False,
        target_device=device_label if device_label is not None else workload.target_device,
        times_source="given by the user" + (f" for {device_label}" if device_label else ""),
    )
