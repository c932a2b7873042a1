"""Codec cost model: declared kernel-level work evaluated on a device's constants.

Each codec declares, beside its encode and decode (``Codec.work(shape)``), the work one
call does on one tensor as a :class:`Work`: bytes streamed through memory (the passes
over the data, reads plus writes), kernel launches per tensor and per call, a fixed
host overhead per call, and the work that is not a streaming pass -- random numbers
drawn, elements through a selection (top-k), elements bit-packed or unpacked, elements
through a variable-length (Elias) coder, elements through reductions (norms, means) and
floating-point operations (PowerSGD's small matrix products and orthogonalization). A
device is described by :class:`DeviceConstants`, one price per kind of work (seconds per
byte, per launch, per call, per random number, ...). The time of a call is the dot
product of the two, so it is linear in elements for streaming passes and linear in the
number of tensors for launches, by construction.

Constants come from one of three places, each carried as the profile's source string:
a calibration file measured on the device (``run_sim.py calibrate-codecs``, see
:mod:`gradwire.codecs.calibrate`), a shipped calibration under ``models/codec_costs/``,
or :func:`gpu_defaults`, built from the device profile's datasheet bandwidth and FLOP
rates (``models/devices.yaml``) with stated launch and call latencies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields

from gradwire.errors import ConfigError

# The kinds of work, in the order of the feature vector and of the fitted constants.
KINDS = ("bytes", "launches", "calls", "rng", "select", "pack", "varlen", "reduce", "flops")


@dataclass(frozen=True)
class Work:
    """What one encode (or decode) call does on one tensor; every field is a total count.

    ``bytes``: bytes read plus written by streaming passes; ``launches``: kernels launched
    (a synchronizing host read counts as one); ``calls``: fixed host overheads (one per
    codec call; 0 for the identity, which runs nothing); ``rng``: random numbers drawn;
    ``select``: elements through a selection such as top-k (its reads are not a streaming
    pass); ``pack``: elements bit-packed or unpacked; ``varlen``: elements through a
    sequential variable-length coder; ``reduce``: elements through reductions;
    ``flops``: floating-point operations of dense linear algebra.
    """

    bytes: float = 0.0
    launches: float = 0.0
    calls: float = 0.0
    rng: float = 0.0
    select: float = 0.0
    pack: float = 0.0
    varlen: float = 0.0
    reduce: float = 0.0
    flops: float = 0.0

    def vector(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, k)) for k in KINDS)

    def __add__(self, other: Work) -> Work:
        return Work(*(a + b for a, b in zip(self.vector(), other.vector(), strict=True)))

    def scaled(self, k: float) -> Work:
        return Work(*(k * a for a in self.vector()))

    def per_tensor(self) -> Work:
        """The part charged per tensor (everything but the fixed per-call host overhead)."""
        return Work(**{**asdict(self), "calls": 0.0})

    def per_call(self) -> Work:
        return Work(calls=self.calls)


@dataclass(frozen=True)
class CodecWork:
    """The declared work of encoding and of decoding one tensor."""

    encode: Work
    decode: Work


def stream(n: int, *bytes_per_element: float) -> float:
    """Bytes moved by passes over ``n`` elements (each argument: one pass, read + write)."""
    return float(n) * float(sum(bytes_per_element))


def raw_work(n: int, elem_bytes: int = 4) -> CodecWork:
    """The small-tensor path of a lossy codec: a finiteness sum and a copy; decode copies."""
    return CodecWork(
        encode=Work(bytes=stream(n, elem_bytes, 2 * elem_bytes), launches=3, calls=1, reduce=n),
        decode=Work(bytes=stream(n, 2 * elem_bytes), launches=1, calls=1),
    )


@dataclass(frozen=True)
class DeviceConstants:
    """Seconds per unit of each kind of work on one device (all >= 0)."""

    byte_s: float
    launch_s: float
    call_s: float
    rng_s: float
    select_s: float
    pack_s: float
    varlen_s: float
    reduce_s: float
    flop_s: float

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"device constant {f.name}={v!r} must be a finite number >= 0")

    def vector(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, f.name)) for f in fields(self))

    @classmethod
    def from_vector(cls, values: Sequence[float]) -> DeviceConstants:
        return cls(*(float(v) for v in values))

    @property
    def bandwidth_Bps(self) -> float:
        return 1.0 / self.byte_s if self.byte_s > 0 else math.inf

    def seconds(self, work: Work) -> float:
        """Time of ``work`` on this device."""
        return float(sum(w * c for w, c in zip(work.vector(), self.vector(), strict=True)))


CONSTANT_NAMES = tuple(f.name for f in fields(DeviceConstants))

# Latencies a datasheet does not give, used only when no calibration file exists:
# a CUDA kernel launch through PyTorch's dispatcher (~5 us) and a codec call's Python
# overhead (~20 us). `run_sim.py calibrate-codecs --device cuda` measures both.
DEFAULT_LAUNCH_S = 5e-6
DEFAULT_CALL_S = 20e-6
# A top-k selection is a radix select: four 8-bit digit passes over 32-bit keys.
SELECT_PASSES_BYTES = 16.0
# Integer operations per random number (a counter-based hash), per packed element, per
# reduced element; priced at the device's float32 rate.
RNG_OPS, PACK_OPS, REDUCE_OPS = 20.0, 4.0, 2.0
# GradWire's variable-length (Elias) coders run on the host, one core, about 200 M
# elements/s on a current server core.
DEFAULT_VARLEN_S = 5e-9


def gpu_defaults(device: str, memory_efficiency: float = 0.7,
                 compute_efficiency: float = 0.4) -> DeviceConstants:
    """Constants of a GPU from its profile in ``models/devices.yaml`` (an estimate).

    Bytes at ``memory_bandwidth * memory_efficiency``; FLOPs (and integer work) at
    ``peak_flops['float32'] * compute_efficiency``; launch and call latencies as stated
    in :data:`DEFAULT_LAUNCH_S` and :data:`DEFAULT_CALL_S`.
    """
    from gradwire.models.devices import get_device

    dev = get_device(device)
    byte_s = 1.0 / (dev.memory_bandwidth_Bps * memory_efficiency)
    op_s = 1.0 / (dev.peak_flops["float32"] * compute_efficiency)
    return DeviceConstants(
        byte_s=byte_s, launch_s=DEFAULT_LAUNCH_S, call_s=DEFAULT_CALL_S, rng_s=RNG_OPS * op_s,
        select_s=SELECT_PASSES_BYTES * byte_s, pack_s=PACK_OPS * op_s, varlen_s=DEFAULT_VARLEN_S,
        reduce_s=REDUCE_OPS * op_s, flop_s=op_s,
    )


def total_work(works: Iterable[Work]) -> Work:
    out = Work()
    for w in works:
        out = out + w
    return out


def codec_seconds(codec: object, shapes: Sequence[tuple[int, ...]], constants: DeviceConstants,
                  *, per_tensor_overhead_s: float = 0.0) -> tuple[float, float]:
    """Encode and decode seconds of ``codec`` on the tensors ``shapes``, one call each.

    ``per_tensor_overhead_s`` adds a stated host cost per tensor per encode and per
    decode (a framework's Python loop over tensors, unfused operations).
    """
    enc = dec = 0.0
    for shape in shapes:
        w = codec.work(tuple(shape))  # type: ignore[attr-defined]
        enc += constants.seconds(w.encode) + per_tensor_overhead_s
        dec += constants.seconds(w.decode) + per_tensor_overhead_s
    return enc, dec
