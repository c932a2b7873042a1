"""How a codec's bucket crosses the network: the exchange a codec declares.

Every codec class carries one :class:`Exchange` (``Codec.exchange``). It says, in plain
facts that the iteration builder, the validation predictor, the convergence runner and the
DDP hook factory all read:

* ``rounds``: the collectives a bucket takes, in order; each is ``"sum"`` (payloads an
  allreduce can add as they are: fp32, fp16/bf16 casts, PowerSGD's factors) or
  ``"payload"`` (encoded bytes that must be decoded before they can be summed). PowerSGD
  takes two dependent ``"sum"`` rounds (P, then Q after orthogonalizing P).
* ``in_place``: the gradient itself is what is exchanged (fp32 in fp32 training): no codec
  work at all, as DDP's own allreduce.
* ``encode_split``: the fraction of the codec's encode work done before each round (the
  rest of round k's share is the local work between round k-1 and round k); sums to 1.
* the per-round bytes come from the codec's real payload (``Codec.round_bits``).

A codec whose payloads are not summable may also travel through a re-quantizing
reduce-scatter (``requantizable``): every hop decodes a chunk, adds its own and re-encodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gradwire.errors import ConfigError

RoundKind = Literal["sum", "payload"]


@dataclass(frozen=True)
class Exchange:
    """A codec's declared exchange (see the module docstring)."""

    rounds: tuple[RoundKind, ...] = ("payload",)
    in_place: bool = False
    encode_split: tuple[float, ...] = (1.0,)
    # an uncompressed exchange practitioners run as their baseline (fp32, fp16/bf16 casts)
    baseline: bool = False

    def __post_init__(self) -> None:
        if not self.rounds or any(k not in ("sum", "payload") for k in self.rounds):
            raise ConfigError(f"Exchange.rounds must be a non-empty list of 'sum'/'payload', got {self.rounds}")
        if len(self.encode_split) != len(self.rounds) or any(x < 0 for x in self.encode_split) or \
                not math.isclose(sum(self.encode_split), 1.0, rel_tol=1e-9):
            raise ConfigError(f"Exchange.encode_split must give one share >= 0 per round summing to 1, "
                              f"got {self.encode_split} for {len(self.rounds)} rounds")
        if self.in_place and self.rounds != ("sum",):
            raise ConfigError("an in-place exchange is one 'sum' round (the gradient itself)")

    @property
    def summable(self) -> bool:
        """Every round's payloads can be added without decoding."""
        return all(k == "sum" for k in self.rounds)

    @property
    def requantizable(self) -> bool:
        """One payload round that a re-quantizing reduce-scatter can carry."""
        return self.rounds == ("payload",)


IN_PLACE = Exchange(("sum",), in_place=True, baseline=True)
CAST = Exchange(("sum",), baseline=True)
PAYLOAD = Exchange(("payload",))

__all__ = ["CAST", "IN_PLACE", "PAYLOAD", "Exchange", "RoundKind"]
