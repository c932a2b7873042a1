"""Full-precision and half-precision casts: ``fp32`` (identity), ``fp16``, ``bf16``.

These are the uncompressed baselines every compressed codec is compared with. A cast codec
sends the tensor in its wire dtype whatever the input dtype is, and decodes back to the
input's dtype; NaN or Inf raises :class:`~gradwire.errors.NonFiniteGradientError` like every
other codec, and values beyond fp16's range (65504) raise too rather than silently becoming
Inf.

Where the reduction is accumulated is a parameter, ``accumulate``, and it changes the
declared exchange (never the timeline):

* ``accumulate="wire"`` (the default): the collective adds the payloads in the wire dtype as
  they travel, as NCCL does for a bf16/fp16 allreduce or reduce-scatter (DDP's
  ``bf16_compress_hook``; FSDP2's ``MixedPrecisionPolicy(param_dtype=torch.bfloat16)``, whose
  ``reduce_dtype`` defaults to the compute dtype). The payloads are summable: one cast
  before, one cast back after, the additions inside the collective.
* ``accumulate="fp32"``: every received payload is cast up and added into a float32 sum by
  the receiver, so no partial sum is ever rounded to the wire dtype on the way. The
  payloads are not summable by the collective: they travel through the scenario's
  ``exchange.quantized`` collective like any encoded payload (an all-gather: every rank
  casts up and adds all p payloads; a re-quantizing reduce-scatter: every hop adds in
  float32 and casts the partial sum back for the wire), with the bytes and the per-payload
  decode-and-add work that collective declares.

``fp32`` has one accumulation only (its wire dtype is float32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch

from gradwire.codecs.base import (
    CODECS,
    Codec,
    CodecState,
    Payload,
    check_finite,
    expect_finite,
    expect_nbytes,
)
from gradwire.codecs.cost import CodecWork, Work, stream
from gradwire.codecs.exchange import CAST, IN_PLACE, Exchange
from gradwire.errors import CodecError, ConfigError

ACCUMULATE = ("wire", "fp32")
# 16-bit payloads added into a float32 sum by their receiver: not summable on the way, and
# still an uncompressed baseline
WIRE_CAST_FP32_SUM = Exchange(("payload",), baseline=True)


class CastCodec(Codec):
    """Send the tensor cast to ``wire_dtype``; decode casts back to the input dtype."""

    wire_dtype: ClassVar[torch.dtype] = torch.float32
    summable = True
    exchange = CAST

    def __init__(self, *, accumulate: str = "wire", seed: int = 0) -> None:
        super().__init__(seed=seed)
        if accumulate not in ACCUMULATE:
            raise ConfigError(f"codec {self.name!r}: accumulate={accumulate!r} is not one of "
                              f"{', '.join(ACCUMULATE)} (where the reduction is added up)")  # fmt: skip
        self.accumulate = "wire" if self.wire_dtype == torch.float32 else accumulate
        if self.accumulate == "fp32":
            # the instance's declaration shadows the class's: payloads the receiver adds in fp32
            setattr(self, "summable", False)  # noqa: B010  (a ClassVar overridden per instance)
            setattr(self, "exchange", WIRE_CAST_FP32_SUM)  # noqa: B010

    def params(self) -> dict[str, object]:
        return {"accumulate": self.accumulate} if self.accumulate != "wire" else {}

    def _wire(self, tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_floating_point():
            check_finite(tensor, self.name)  # raises the dtype error
        wire = tensor.detach().reshape(-1).to(self.wire_dtype)
        # One pass over the wire values catches NaN/Inf inputs and cast overflow alike.
        if wire.numel() and not math.isfinite(float(wire.sum(dtype=torch.float32))):
            check_finite(tensor, self.name)
            if bool(torch.isfinite(wire).all()):
                return wire  # only the sum overflowed; every value is representable
            raise CodecError(
                f"codec {self.name!r}: gradient values up to {float(tensor.abs().max()):.3g} "
                f"overflow {self.wire_dtype}; use bf16 or fp32, or scale the loss down"
            )
        return wire

    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        wire = self._wire(tensor)
        # A same-dtype .to() returns the input itself: clone so the payload owns its bytes.
        data = (wire.clone() if wire.data_ptr() == tensor.data_ptr() else wire).view(torch.uint8)
        return Payload(data, 8 * data.numel(), tuple(tensor.shape), tensor.dtype, self.name)

    def decode(self, payload: Payload) -> torch.Tensor:
        size = torch.empty((), dtype=self.wire_dtype).element_size()
        expect_nbytes(payload, self.name, size * payload.numel, 8 * size * payload.numel)
        wire = payload.data.view(self.wire_dtype)
        # an encoder never sends NaN or Inf (it refuses them), so one arriving is corruption
        expect_finite(wire, payload, self.name, "value")
        return wire.to(payload.dtype).reshape(payload.shape)

    def quantize(self, tensor: torch.Tensor, state: CodecState | None = None) -> torch.Tensor:
        return self._wire(tensor).to(tensor.dtype).reshape(tensor.shape)

    def quantize_many(self, stacked: torch.Tensor, states: Sequence[CodecState]) -> torch.Tensor:
        return self.quantize(stacked)

    # --- cost model (gradwire.codecs.cost) ---------------------------------------------
    def work(self, shape: tuple[int, ...]) -> CodecWork:
        """fp32 is the identity (DDP sends the gradient itself): no work. A cast: one pass
        fp32 -> wire dtype plus the finiteness sum over the wire values; decode casts back."""
        n = math.prod(shape)
        if self.wire_dtype == torch.float32:
            return CodecWork(Work(), Work())
        w = self.wire_dtype.itemsize
        return CodecWork(
            encode=Work(bytes=stream(n, 4 + w, w), launches=3, calls=1, reduce=n),
            decode=Work(bytes=stream(n, w + 4), launches=1, calls=1),
        )


@CODECS.register("fp32")
class FP32(CastCodec):
    """Identity: 32 bits per element (the uncompressed baseline)."""

    name = "fp32"
    wire_dtype = torch.float32
    # DDP's own allreduce of the gradient buffer: no codec work, the gradient's own bytes
    exchange = IN_PLACE


@CODECS.register("fp16")
class FP16(CastCodec):
    """IEEE half precision: 16 bits per element, round to nearest even."""

    name = "fp16"
    wire_dtype = torch.float16


@CODECS.register("bf16")
class BF16(CastCodec):
    """bfloat16: 16 bits per element, fp32's exponent range, 8-bit mantissa."""

    name = "bf16"
    wire_dtype = torch.bfloat16
