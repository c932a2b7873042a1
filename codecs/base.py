"""The codec interface: a gradient in, real encoded bytes and their exact bit length out.

A :class:`Codec` turns a tensor (any float dtype, CPU or CUDA) into a :class:`Payload`
holding the real bitstream as a 1-D ``uint8`` tensor on the tensor's device, plus the
exact number of meaningful bits. The payload's ``nbits`` is what crosses the simulated
network: it is measured from the bytes produced, never from a formula. ``decode`` rebuilds
the tensor from those bytes alone (plus shape and dtype, which every receiver knows from
the model).

Per-worker state (the random generator, the error-feedback residual, PowerSGD's warm
start) lives in an explicit :class:`CodecState`, one per worker and per tensor, never in
the codec object, so one codec instance can serve many simulated workers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from gradwire.codecs.cost import CodecWork
from gradwire.codecs.exchange import PAYLOAD, Exchange
from gradwire.errors import CodecError, ConfigError, NonFiniteGradientError
from gradwire.registry import Registry


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
    dev = torch.device(device) if device is not None else torch.device("cpu")
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


def state_for(codec: Codec, tensor: torch.Tensor, state: CodecState | None) -> CodecState:
    """``state`` itself, or a fresh worker-0 state on ``tensor``'s device when it is None."""
    return state if state is not None else codec.new_state(tensor.device)


def raw_payload(tensor: torch.Tensor, codec: str) -> Payload:
    """A payload holding ``tensor`` uncompressed in its own dtype (small-tensor path)."""
    data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).clone()
    return Payload(data, 8 * data.numel(), tuple(tensor.shape), tensor.dtype, codec)


def raw_decode(payload: Payload) -> torch.Tensor:
    """Inverse of :func:`raw_payload`."""
    return payload.data.view(payload.dtype).reshape(payload.shape).clone()


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

    def __init__(self, *, seed: int = 0) -> None:
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
