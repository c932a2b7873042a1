"""The codec interface: a gradient in, real encoded bytes and their exact bit length out.

A :class:`Codec` turns a tensor (any float dtype, CPU or CUDA) into a :class:`Payload`
holding the real bitstream as a 1-D ``uint8`` tensor on the tensor's device, plus the
exact number of meaningful bits. The payload's ``nbits`` is what crosses the simulated
network: it is measured from the bytes produced, never from a formula. ``decode`` rebuilds
the tensor from those bytes alone (plus shape and dtype, which every receiver knows from
the model).

Every payload carries what a receiver needs to check it before reading a byte: the wire
format version, the codec's name and full spec, the element count (from ``shape``) and
the exact bit length. The receiver knows the shape, dtype and codec of each tensor from
the model and the run's configuration (as every DDP rank does), so none of this is put on
the wire or counted in ``nbits``; what arrives over a network is the byte string and its
length, and :meth:`Codec.decode` checks every length and every decoded field against what
the codec could have produced, raising :class:`~gradwire.errors.PayloadError` on any
inconsistency and never reading past the bytes it was given.

Per-worker state (the random generator, the error-feedback residual, PowerSGD's warm
start) lives in an explicit :class:`CodecState`, one per worker and per tensor, never in
the codec object, so one codec instance can serve many simulated workers.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

from gradwire.codecs.cost import CodecWork
from gradwire.codecs.exchange import PAYLOAD, Exchange
from gradwire.errors import CodecError, ConfigError, NonFiniteGradientError, PayloadError
from gradwire.registry import Registry

FORMAT_VERSION = 1  # of every codec's wire layout; a decoder refuses any other
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


@dataclass(frozen=True)
class Payload:
    """What one worker puts on the wire for one tensor.

    ``data`` is the real encoded bitstream (1-D ``torch.uint8`` on the encoder's device);
    ``nbits`` its exact length in bits (``8 * len(data) - 7 <= nbits <= 8 * len(data)``
    for bit-packed streams); ``shape``/``dtype`` describe the tensor it decodes to.
    """

    data: torch.Tensor
    nbits: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    codec: str = ""
    spec: str = ""  # the encoder's full spec (``qsgd(bits=4, ...)``); "" when not known
    version: int = FORMAT_VERSION

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: the bitstream rounded up to whole bytes."""
        return (self.nbits + 7) // 8

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def bits_per_element(self) -> float:
        return self.nbits / max(1, self.numel)


@dataclass
class CodecState:
    """Explicit per-worker, per-tensor state of a codec.

    ``generator`` drives every random choice of a stochastic codec (seeded: same seed, same
    bytes); ``residual`` is the error-feedback memory; ``extra`` holds codec-specific state
    such as PowerSGD's warm-started ``Q``.
    """

    generator: torch.Generator
    residual: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def new_generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed`` (never the global RNG)."""
    try:
        dev = torch.device(device) if device is not None else torch.device("cpu")
    except (RuntimeError, TypeError):
        raise ConfigError(f"codec state: device {device!r} is not a torch device; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"codec state: device {str(dev)!r} was asked for but no CUDA device is "
                          "available; create the state on 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"codec state: device {str(dev)!r} is not supported; use 'cpu' or 'cuda'")
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    return gen


def check_finite(tensor: torch.Tensor, codec: str) -> None:
    """Raise :class:`NonFiniteGradientError` if ``tensor`` holds NaN or Inf."""
    if not tensor.is_floating_point():
        raise ConfigError(f"codec {codec!r}: expected a floating-point tensor, got {tensor.dtype}")
    # Fast path: a NaN or Inf element makes the float32 sum non-finite, and a finite sum
    # proves there is none. torch.isfinite is several times slower on CPU, so it only
    # runs when the sum is not finite (a NaN/Inf, or an overflowing sum of huge values).
    if tensor.numel() and math.isfinite(float(tensor.sum(dtype=torch.float32))):
        return
    if tensor.numel() and not bool(torch.isfinite(tensor).all()):
        n_nan = int(torch.isnan(tensor).sum())
        n_inf = int(torch.isinf(tensor).sum())
        raise NonFiniteGradientError(
            f"codec {codec!r}: gradient of shape {tuple(tensor.shape)} holds {n_nan} NaN and "
            f"{n_inf} Inf values; fix the model or lower the learning rate before compressing"
        )
    # finite, but the float32 sum overflowed: wider dtypes may hold values float32 cannot
    if tensor.numel() and torch.finfo(tensor.dtype).max > FLOAT32_MAX:
        big = float(tensor.detach().abs().max())
        if big > FLOAT32_MAX:
            raise CodecError(
                f"codec {codec!r}: gradient of shape {tuple(tensor.shape)} ({tensor.dtype}) holds "
                f"values up to {big:.3g}, beyond float32's range ({FLOAT32_MAX:.3g}) in which the "
                "codec computes and sends; scale the loss down before compressing"
            )


def check_input(tensor: Any, codec: str) -> None:
    """A dense, strided tensor with storage on a CPU or CUDA device, or a clear error."""
    if not isinstance(tensor, torch.Tensor):
        raise CodecError(f"codec {codec!r}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.layout != torch.strided:
        raise CodecError(f"codec {codec!r}: a {tensor.layout} tensor cannot be encoded; "
                         "pass a dense tensor (tensor.to_dense())")
    if tensor.device.type not in ("cpu", "cuda"):
        raise CodecError(f"codec {codec!r}: a tensor on device {tensor.device.type!r} has no data to "
                         "encode; pass a CPU or CUDA tensor")


def check_encoded_finite(values: torch.Tensor, codec: str, shape: Sequence[int], what: str) -> None:
    """Float fields of a payload (scales, means, factors) must be finite: an Inf there means
    the computation overflowed float32 although the gradient itself was finite."""
    if values.numel() and not math.isfinite(float(values.sum(dtype=torch.float32))):
        if not bool(torch.isfinite(values).all()):
            raise CodecError(
                f"codec {codec!r}: encoding the gradient of shape {tuple(shape)} overflows float32 "
                f"in its {what}; scale the loss down before compressing"
            )


def payload_error(payload: Payload, codec: str, what: str) -> PayloadError:
    return PayloadError(
        f"codec {codec!r}: payload for a tensor of shape {tuple(payload.shape)} is corrupt or "
        f"was not made by this codec: {what}"
    )


def expect_nbytes(payload: Payload, codec: str, nbytes: int, nbits: int | None = None) -> None:
    """The payload holds exactly ``nbytes`` bytes (and ``nbits`` bits, when fixed)."""
    if payload.data.numel() != nbytes:
        raise payload_error(payload, codec, f"{payload.data.numel()} bytes where the format has {nbytes}")
    if nbits is not None and payload.nbits != nbits:
        raise payload_error(payload, codec, f"nbits={payload.nbits} where the format has {nbits}")


def expect_finite(values: torch.Tensor, payload: Payload, codec: str, what: str, *,
                  nonneg: bool = False) -> None:
    """Decoded float fields (scales, means) must be finite (and >= 0 for norms)."""
    if not values.numel():
        return
    if not math.isfinite(float(values.sum(dtype=torch.float32))) and not bool(torch.isfinite(values).all()):
        raise payload_error(payload, codec, f"a {what} is NaN or Inf")
    if nonneg and bool((values < 0).any()):
        raise payload_error(payload, codec, f"a {what} is negative")


MAX_BITS_PER_ELEMENT = 128  # above any codec's worst case (raw float64 is 64, onebit 65)


def check_received_nbits(nbits: int, numel: int, codec: str, rank: int) -> None:
    """A payload length announced by another rank, before any buffer is sized by it."""
    bound = MAX_BITS_PER_ELEMENT * numel + 1024
    if not 0 <= nbits <= bound:
        raise PayloadError(
            f"codec {codec!r}: rank {rank} announced a payload of {nbits} bits for a bucket of "
            f"{numel} elements (at most {bound}); its bytes are corrupt or the ranks run different codecs"
        )


def wire_spec(codec: Codec) -> str:
    """``codec.spec()``, computed once per codec: a codec's parameters define its wire format
    and do not change after construction, and this runs on every encode and decode."""
    cached = codec.__dict__.get("_wire_spec")
    if cached is None:
        cached = codec.spec()
        codec.__dict__["_wire_spec"] = cached
    return str(cached)


def check_payload(payload: Any, codec: Codec) -> None:
    """What every decoder checks before reading: type, version, codec and spec, lengths."""
    name = codec.name
    if not isinstance(payload, Payload):
        raise PayloadError(f"codec {name!r}: decode expects a Payload, got {type(payload).__name__}")
    if payload.version != FORMAT_VERSION:
        raise payload_error(payload, name, f"format version {payload.version}, this GradWire reads "
                                           f"version {FORMAT_VERSION}")
    if payload.codec and payload.codec != name:
        raise payload_error(payload, name, f"it was encoded by codec {payload.codec!r}")
    if payload.spec and payload.spec != wire_spec(codec):
        raise payload_error(payload, name, f"it was encoded by {payload.spec}, not {codec.spec()}")
    data = payload.data
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or data.dim() != 1:
        kind = f"{data.dtype} {data.dim()}-D tensor" if isinstance(data, torch.Tensor) else type(data).__name__
        raise payload_error(payload, name, f"data must be a 1-D uint8 tensor, got a {kind}")
    if data.layout != torch.strided or data.device.type not in ("cpu", "cuda"):
        raise payload_error(payload, name, f"data must be a dense CPU or CUDA tensor, got {data.device}")
    if not data.is_contiguous():
        raise payload_error(payload, name, "data is not contiguous")
    if not isinstance(payload.shape, tuple) or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in payload.shape):
        raise payload_error(payload, name, f"shape {payload.shape!r} is not a tuple of sizes >= 0")
    if not isinstance(payload.dtype, torch.dtype) or not payload.dtype.is_floating_point:
        raise payload_error(payload, name, f"dtype {payload.dtype!r} is not a floating-point dtype")
    nbits = payload.nbits
    if isinstance(nbits, bool) or not isinstance(nbits, int) or (not (
            8 * data.numel() - 7 <= nbits <= 8 * data.numel()) and not (data.numel() == 0 and nbits == 0)):
        raise payload_error(payload, name, f"nbits={nbits!r} does not fit its {data.numel()} bytes "
                                           "(8 * bytes - 7 <= nbits <= 8 * bytes)")


def state_for(codec: Codec, tensor: torch.Tensor, state: CodecState | None) -> CodecState:
    """``state`` itself, or a fresh worker-0 state on ``tensor``'s device when it is None."""
    return state if state is not None else codec.new_state(tensor.device)


def raw_payload(tensor: torch.Tensor, codec: str) -> Payload:
    """A payload holding ``tensor`` uncompressed in its own dtype (small-tensor path)."""
    data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).clone()
    return Payload(data, 8 * data.numel(), tuple(tensor.shape), tensor.dtype, codec)


def raw_decode(payload: Payload) -> torch.Tensor:
    """Inverse of :func:`raw_payload`."""
    size = torch.empty((), dtype=payload.dtype).element_size()
    expect_nbytes(payload, payload.codec or "raw", payload.numel * size, 8 * payload.numel * size)
    values = payload.data.view(payload.dtype)
    expect_finite(values, payload, payload.codec or "raw", "value")  # encoders refuse NaN/Inf
    return values.reshape(payload.shape).clone()


def ef_input(tensor: torch.Tensor, state: CodecState) -> torch.Tensor:
    """Error feedback, first half: ``val = g + e`` in fp32 (``e`` starts at zero)."""
    val = tensor.detach().to(torch.float32)
    res = state.residual
    if res is not None:
        if res.shape != val.shape:
            raise ConfigError(
                f"error-feedback residual has shape {tuple(res.shape)} but the gradient has "
                f"shape {tuple(val.shape)}; use one state per tensor"
            )
        val = val + res.to(val.device)
    return val


def ef_update(state: CodecState, val: torch.Tensor, decoded: torch.Tensor) -> None:
    """Error feedback, second half: ``e <- val - decoded`` (what was not sent is kept)."""
    state.residual = val - decoded.to(torch.float32)


class Codec(ABC):
    """A gradient compressor. Subclasses are small, one per file, registered in ``CODECS``.

    Class attributes tell the simulator how payloads may travel:
    ``summable`` -- payloads can be reduced by allreduce without decoding (fp32, fp16, bf16);
    ``stateful`` -- the codec keeps per-worker state across iterations (error feedback);
    ``exchange`` -- how a bucket crosses the network (:mod:`gradwire.codecs.exchange`);
    it agrees with ``summable``.
    """

    name: ClassVar[str] = ""
    summable: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    exchange: ClassVar[Exchange] = PAYLOAD

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every codec's encode and decode run behind the same guards, so a new codec file
        # cannot forget them: encode refuses tensors it cannot read and stamps its spec on
        # the payload; decode checks the payload's version, codec and lengths first.
        super().__init_subclass__(**kwargs)
        enc = cls.__dict__.get("encode")
        if enc is not None and not getattr(enc, "_guarded", False):
            cls.encode = _guard_encode(enc)  # type: ignore[method-assign]
        dec = cls.__dict__.get("decode")
        if dec is not None and not getattr(dec, "_guarded", False):
            cls.decode = _guard_decode(dec)  # type: ignore[method-assign]
        for name in ("quantize", "quantize_many"):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_guarded", False):
                setattr(cls, name, _guard_input(fn))

    def __init__(self, *, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ConfigError(f"codec {self.name!r}: seed={seed!r} is impossible; seed must be an "
                              "integer in 0..2^32-1")
        self.seed = int(seed)

    # --- what a subclass implements -------------------------------------------------
    @abstractmethod
    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        """Encode ``tensor`` into a payload; ``state`` is updated in place (residual, RNG)."""

    @abstractmethod
    def decode(self, payload: Payload) -> torch.Tensor:
        """Rebuild the tensor from ``payload.data`` alone."""

    def params(self) -> dict[str, Any]:
        """The parameters that define this codec (shown in results and specs)."""
        return {}

    def work(self, shape: tuple[int, ...]) -> CodecWork:
        """The declared work of one encode and one decode of a float32 tensor of ``shape``
        (:mod:`gradwire.codecs.cost`); every registered codec declares it in its own file."""
        raise CodecError(f"codec {self.name!r} declares no cost model (Codec.work); "
                         "declare its passes, launches and non-streaming work beside it")

    def round_bits(self, nbits: int, shape: tuple[int, ...]) -> tuple[int, ...]:
        """How a payload of ``nbits`` for a tensor of ``shape`` splits over the exchange's
        rounds (one entry per round of ``exchange.rounds``). One round: all of it."""
        return (nbits,)

    def quantize(self, tensor: torch.Tensor, state: CodecState | None = None) -> torch.Tensor:
        """The value ``decode(encode(tensor, state))`` returns, computed without building bytes.

        Uses the same random draws as :meth:`encode` for an equal state and updates the
        state the same way (error-feedback residual, generator, warm start). Subclasses
        override this with a byte-free path; this fallback goes through the real bytes.
        """
        return self.decode(self.encode(tensor, state))

    def quantize_many(
        self, stacked: torch.Tensor, states: Sequence[CodecState]
    ) -> torch.Tensor:
        """``quantize`` for K workers at once: ``stacked[k]`` is worker k's gradient.

        ``stacked`` has shape ``[K, *shape]``; row k is quantized with ``states[k]``, and
        the result has the same shape and dtype. Vectorized in the qsgd family, onebit,
        signsgd and terngrad; this default loops over the K rows.
        """
        if stacked.dim() < 1 or stacked.shape[0] != len(states):
            raise ConfigError(
                f"quantize_many: stacked has leading size {stacked.shape[0] if stacked.dim() else 0}"
                f" but {len(states)} states were given; pass one state per worker"
            )
        return torch.stack([self.quantize(stacked[k], states[k]) for k in range(len(states))])

    # --- shared behaviour -----------------------------------------------------------
    def new_state(self, device: torch.device | str | None = None, worker: int = 0) -> CodecState:
        """Fresh state for one worker; worker ``k`` gets an independent seeded stream."""
        return CodecState(generator=new_generator(self.seed * 1_000_003 + worker, device))

    def spec(self) -> str:
        """``name(k=v, ...)``: parseable back by ``make_codec``."""
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{self.name}({inner})" if inner else self.name

    def aggregate(
        self, tensors: Sequence[torch.Tensor], states: Sequence[CodecState]
    ) -> torch.Tensor:
        """Mean over workers of what each worker's payload decodes to.

        This is the exchange semantics of an allgather (or an allreduce of summable
        payloads). Multi-round codecs (PowerSGD) override it with their real protocol.
        """
        if len(tensors) != len(states) or not tensors:
            raise ConfigError("aggregate: one state per tensor is required (at least one worker)")
        # quantize == decode(encode(.)) bit-exactly (tested for every codec), so the
        # vectorized path gives the exchange semantics without building K bitstreams.
        decoded = self.quantize_many(torch.stack(list(tensors)), states).to(torch.float32)
        return decoded.mean(dim=0).to(tensors[0].dtype)

    def __repr__(self) -> str:
        return self.spec()


def _guard_encode(encode: Callable[..., Payload]) -> Callable[..., Payload]:
    @functools.wraps(encode)
    def guarded(self: Codec, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        check_input(tensor, self.name)
        payload = encode(self, tensor, state)
        return payload if payload.spec else replace(payload, spec=wire_spec(self))

    guarded._guarded = True  # type: ignore[attr-defined]
    return guarded


def _guard_input(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(fn)
    def guarded(self: Codec, tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        check_input(tensor, self.name)
        return fn(self, tensor, *args, **kwargs)

    guarded._guarded = True  # type: ignore[attr-defined]
    return guarded


def _guard_decode(decode: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(decode)
    def guarded(self: Codec, payload: Payload) -> torch.Tensor:
        check_payload(payload, self)
        return decode(self, payload)

    guarded._guarded = True  # type: ignore[attr-defined]
    return guarded


CODECS: Registry[Codec] = Registry("codec")


def make_codec(spec: str | Codec, *, default_seed: int | None = None, **overrides: Any) -> Codec:
    """Build a codec from ``"qsgd(bits=4, bucket=512)"``, a bare name, or pass one through.

    ``overrides`` replace the spec's parameters; ``default_seed`` is used only when the
    spec names no ``seed`` of its own (a scenario's seed, say).
    """
    if isinstance(spec, Codec):
        return spec
    from gradwire.registry import parse_spec

    name, params = parse_spec(spec)
    if default_seed is not None:
        params.setdefault("seed", default_seed)
    params.update(overrides)
    return CODECS.create(name, **params)
