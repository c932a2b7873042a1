"""Compute times on a GPU that is not at hand, from the meta-device trace and a device profile.

Each operation of an :class:`~gradwire.models.flops.OpTrace` is priced on the target
device at the scenario's precision, with an achieved efficiency per operation class:

- a matrix product or convolution (seen as a GEMM) whose dimensions all reach one 128-wide
  tensor-core tile and whose arithmetic intensity reaches the device's ridge point (peak
  FLOP/s over bandwidth) is a *large GEMM*: ``FLOPs / peak * x_gemm``;
- any other is a *small GEMM*: ``max(FLOPs / peak, bytes / bandwidth) * x_small``;
- every other operation (elementwise, normalization, reductions, copies) is
  *memory-bound*: ``bytes / bandwidth * x_memory``;
- the optimizer (SGD with momentum: parameter, gradient and buffer read, parameter and
  buffer written, in float32) is ``bytes / bandwidth * x_optimizer``;
- every operation also pays a fixed ``launch_s`` (kernel launch and framework overhead).

``x = 1 / efficiency``. The efficiencies are fitted on published single-GPU throughputs by
:mod:`gradwire.models.calibrate`, which states their held-out error; the shipped values
live in ``efficiency.json``. Under automatic mixed precision activations move in 16 bits
(half the bytes). The peak used per class follows the precision: ``fp32`` the FP32 rate,
``tf32`` the TF32 tensor-core rate, ``amp_fp16`` / ``amp_bf16`` the 16-bit tensor-core rate,
and PyTorch's default (``precision: null``) TF32 for cuDNN convolutions and FP32 for
matrix products (``torch.backends.cudnn.allow_tf32`` is on and
``torch.backends.cuda.matmul.allow_tf32`` off by default). A gradient is ready when the
backward operations before its accumulation have run, so ready times are monotone and
the last gradient is ready at the end of backward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from gradwire.errors import ConfigError, WorkloadError
from gradwire.models.devices import DeviceProfile, get_device
from gradwire.models.flops import BACKWARD, CONV, FORWARD, MEMORY, OpTrace

PRECISIONS = ("fp32", "tf32", "amp_bf16", "amp_fp16")
OPTIMIZER_BYTES_PER_ELEMENT = 5 * 4  # SGD momentum in float32: 3 reads + 2 writes
TERMS = ("gemm", "small_gemm", "memory", "optimizer", "launch")
# A GEMM with a dimension below one 128-wide tensor-core tile (cuBLAS/CUTLASS's common
# 128x128 block) leaves the tile partly idle: it is a small GEMM.
SMALL_GEMM_DIM = 128


@dataclass(frozen=True)
class Precision:
    """How a precision maps onto a device's peaks: ``conv_peak`` and ``matmul_peak`` name
    keys of ``DeviceProfile.peak_flops``; ``activation_bytes_scale`` is 0.5 under AMP."""

    name: str
    label: str
    conv_peak: str
    matmul_peak: str
    activation_bytes_scale: float


def default_precision(device: DeviceProfile) -> str:
    """The label of PyTorch's default on ``device`` (see :func:`resolve_precision`)."""
    return resolve_precision(device, None).label


def resolve_precision(device: DeviceProfile, precision: str | None) -> Precision:
    """``precision`` (one of :data:`PRECISIONS`, or ``None`` for PyTorch's default) on
    ``device``; a precision the device cannot run raises ``ConfigError``."""
    peaks = device.peak_flops
    if precision is None:
        if "tf32" in peaks:
            return Precision("default", "fp32 (PyTorch default: TF32 convolutions, FP32 matmuls)",
                             "tf32", "float32", 1.0)  # fmt: skip
        return Precision("default", "fp32 (PyTorch default)", "float32", "float32", 1.0)
    table = {
        "fp32": ("float32", 1.0),
        "tf32": ("tf32", 1.0),
        "amp_fp16": ("float16", 0.5),
        "amp_bf16": ("bfloat16", 0.5),
    }
    if precision not in table:
        raise ConfigError(f"model.precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    key, scale = table[precision]
    if key not in peaks:
        have = [p for p, (k, _) in table.items() if k in peaks]
        raise ConfigError(
            f"model.precision: {device.name} has no {precision} ({key}) rate; use one of "
            f"{', '.join(have)}"
        )
    return Precision(precision, precision, key, key, scale)


@dataclass(frozen=True)
class Efficiencies:
    """Achieved efficiency per operation class (fractions of peak, in (0, 1]) and the fixed
    cost per operation in seconds; ``source`` says where they come from and ``error``
    states their held-out error (fractions) on published throughputs."""

    gemm: float
    small_gemm: float
    memory: float
    optimizer: float
    launch_s: float
    source: str
    error_median: float
    error_max: float
    # (device, precision, median, max, rows): held-out error on that GPU's published rows
    per_device: tuple[tuple[str, str, float, float, int], ...] = ()

    def multipliers(self) -> np.ndarray:
        """The fitted unknowns ``(1/e_gemm, 1/e_small, 1/e_memory, 1/e_optimizer, launch_s)``."""
        return np.array([1 / self.gemm, 1 / self.small_gemm, 1 / self.memory,
                         1 / self.optimizer, self.launch_s])  # fmt: skip

    def error_for(self, device: str | None = None, precision: str | None = None) -> float:
        """The stated median held-out relative error on ``device`` at ``precision`` when
        published rows of that pair were held out, else over all rows (NaN: not stated)."""
        for dev, prec, med, _mx, _n in self.per_device:
            if dev == device and prec == precision:
                return med
        return self.error_median

    def stated(self, device: str | None = None, precision: str | None = None) -> str:
        """The estimate's label with its held-out error: on ``device`` at ``precision``
        when published rows of that pair were held out, else over all rows."""
        if not self.error_median == self.error_median:  # NaN: no measured error
            return f"estimate ({self.source}; no stated error)"
        for dev, prec, med, mx, n in self.per_device:
            if dev == device and prec == precision:
                return (f"estimate (±{100 * med:.0f}% median, {100 * mx:.0f}% max held-out on "
                        f"{n} published {dev} {prec} throughputs; all rows ±{100 * self.error_median:.0f}% "
                        f"median, {100 * self.error_max:.0f}% max)")  # fmt: skip
        none = f"; no published {device} {precision} rows" if device is not None else ""
        return (f"estimate (±{100 * self.error_median:.0f}% median, {100 * self.error_max:.0f}% "
                f"max held-out on published throughputs{none})")  # fmt: skip


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    text = resources.files("gradwire.models").joinpath("efficiency.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def per_device_errors(table: list[dict[str, Any]]) -> tuple[tuple[str, str, float, float, int], ...]:
    """``(device, precision, median, max, rows)`` from the calibration's per-GPU table."""
    return tuple((str(t["device"]), str(t["precision"]), float(t["median_abs_error"]),
                  float(t["max_abs_error"]), int(t["rows"])) for t in table)  # fmt: skip


def shipped_efficiencies() -> Efficiencies:
    """The efficiencies fitted on every published row (``efficiency.json``), with the
    leave-one-model-out error of the same fitting procedure."""
    d = _shipped()
    e = d["efficiencies"]
    return Efficiencies(e["gemm"], e["small_gemm"], e["memory"], e["optimizer"], e["launch_s"],
                        source=d["source"], error_median=d["heldout"]["median_abs_error"],
                        error_max=d["heldout"]["max_abs_error"],
                        per_device=per_device_errors(d["heldout"]["per_gpu_precision"]))  # fmt: skip


def op_terms(trace: OpTrace, device: DeviceProfile, prec: Precision) -> np.ndarray:
    """``[ops, 5]`` seconds-at-peak per operation in the columns of :data:`TERMS` (the
    optimizer column is zero here; see :func:`optimizer_terms`)."""
    peak = np.where(trace.op_class == CONV, device.peak_flops[prec.conv_peak],
                    device.peak_flops[prec.matmul_peak])  # fmt: skip
    t_compute = trace.flops / peak
    t_memory = trace.bytes * prec.activation_bytes_scale / device.memory_bandwidth_Bps
    is_gemm = trace.op_class != MEMORY
    large = is_gemm & (t_compute >= t_memory) & (trace.min_dim >= SMALL_GEMM_DIM)
    out = np.zeros((len(trace.flops), len(TERMS)))
    out[:, 0] = np.where(large, t_compute, 0.0)
    out[:, 1] = np.where(is_gemm & ~large, np.maximum(t_compute, t_memory), 0.0)
    out[:, 2] = np.where(~is_gemm, t_memory, 0.0)
    out[:, 4] = 1.0
    return out


def optimizer_terms(trace: OpTrace, device: DeviceProfile) -> np.ndarray:
    out = np.zeros(len(TERMS))
    out[3] = OPTIMIZER_BYTES_PER_ELEMENT * trace.num_params / device.memory_bandwidth_Bps
    return out


def step_terms(trace: OpTrace, device: DeviceProfile, prec: Precision) -> np.ndarray:
    """One row of the calibration's design matrix: the whole step's seconds-at-peak per
    term (the step time is this row times :meth:`Efficiencies.multipliers`)."""
    return op_terms(trace, device, prec).sum(axis=0) + optimizer_terms(trace, device)


@dataclass(frozen=True)
class ComputeEstimate:
    """Estimated step of one model on one device: seconds; ``ready_s`` in ``trace.params``
    order (backward order), seconds after backward starts."""

    forward_s: float
    backward_s: float
    optimizer_s: float
    ready_s: tuple[float, ...]
    device: str
    precision: str
    source: str
    error: float = float("nan")  # the stated median held-out relative error (NaN: none stated)


def estimate_step(
    trace: OpTrace,
    device: str,
    precision: str | None = None,
    efficiencies: Efficiencies | None = None,
) -> ComputeEstimate:
    """Forward, backward and optimizer seconds and gradient ready times of ``trace`` on GPU
    ``device`` at ``precision`` (default: PyTorch's) with ``efficiencies`` (default: the
    shipped, calibrated ones)."""
    dev = get_device(device)
    prec = resolve_precision(dev, precision)
    eff = efficiencies or shipped_efficiencies()
    x = eff.multipliers()
    per_op = op_terms(trace, dev, prec) @ x
    fwd = per_op[trace.phase == FORWARD]
    bwd = per_op[trace.phase == BACKWARD]
    cum = np.concatenate([[0.0], np.cumsum(bwd)])
    backward_s = float(cum[-1])
    if trace.ready_op.size and int(trace.ready_op.max()) > len(bwd):
        raise WorkloadError("trace: a gradient is ready after more operations than backward ran")
    ready = np.maximum.accumulate(cum[trace.ready_op])
    # Operations after the last accumulation (none that produce a gradient) end backward.
    if ready.size:
        ready[-1] = backward_s
    opt = float(optimizer_terms(trace, dev) @ x)
    # PyTorch's default without TF32 is plain FP32, which the published FP32 rows measure
    rows_prec = prec.name if prec.name != "default" or "tf32" in dev.peak_flops else "fp32"
    return ComputeEstimate(
        forward_s=float(fwd.sum()),
        backward_s=backward_s,
        optimizer_s=opt,
        ready_s=tuple(float(t) for t in ready),
        device=dev.name,
        precision=prec.label,
        source=eff.stated(dev.name, rows_prec),
        error=eff.error_for(dev.name, rows_prec),
    )
