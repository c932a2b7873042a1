"""The one place where a codec's declared exchange becomes the iteration the simulator runs.

:func:`iteration_spec` turns (compute times, per-bucket codec costs and payload sizes, the
codec's :class:`~gradwire.codecs.exchange.Exchange`, the collectives and their options)
into an :class:`~gradwire.simulator.timeline.IterationSpec`. The user path
(:func:`gradwire.pipeline.evaluate_point`) and the validation predictor
(:mod:`gradwire.validate.model`) both call it, so what is validated is what users run.
The accounting it applies, each from a declaration:

* an in-place exchange (fp32 gradients allreduced as they are) costs no codec time and
  moves the gradient's own bytes (2 per element for bf16/fp16 gradients);
* a summable cast (fp16, bf16) pays its encode (one cast) and one decode (the cast back);
* payloads that cannot be summed go through the quantized collective; a gathering
  collective with ``length_prefix`` first gathers every rank's payload length (8 bytes,
  as the DDP hook does) and moves every payload padded to the longest, and a rank decodes
  as many payloads as the collective declares, adding each into a float32 sum;
* a re-quantizing collective (compressed reduce-scatter + allgather) gets the encode of
  its first 1/p chunk up front and, per hop, the decode and re-encode of one 1/p chunk;
* an exchange of several rounds (PowerSGD: P, then Q) splits the encode work as the
  codec declares (``encode_split``), the later shares running between the rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradwire.codecs.exchange import Exchange
from gradwire.errors import ConfigError
from gradwire.simulator.collectives.base import check_options, collective_info, with_settings
from gradwire.simulator.timeline import BucketCost, IterationSpec, Round

LENGTH_MESSAGE_BYTES = 8  # the int64 payload length (in bits) each rank gathers first

# torch.distributed's DDP defaults: bucket_cap_mb=25 (MiB) and a first bucket capped at
# 1 MiB (dist._DEFAULT_FIRST_BUCKET_BYTES) so that communication starts early in backward
DDP_BUCKET_CAP_MIB = 25.0
DDP_FIRST_BUCKET_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BucketInput:
    """One bucket's measured facts: ``round_bytes[r][k]`` is rank r's bytes in round k
    (fewer ranks than the cluster: reused cyclically); seconds for one rank's whole
    encode, for decoding ONE payload of the bucket, and for adding one decoded payload
    into the running float32 sum (``sum_s``)."""

    numel: int
    ready_s: float
    round_bytes: tuple[tuple[float, ...], ...]
    encode_s: float
    decode_s: float
    sum_s: float = 0.0  # adding one decoded payload into the float32 sum of the bucket


@dataclass(frozen=True)
class ExchangeChoice:
    """The collectives a scenario picks, with their options; ``algorithm`` and ``protocol``
    (``exchange.algorithm``/``exchange.protocol``) go to the summable collective as options
    of those names, ``gpu`` (``model.target_device``) to one that takes a ``gpu`` option
    (:func:`~gradwire.simulator.collectives.base.with_settings`)."""

    summable: str = "ring_allreduce"
    quantized: str = "ring_allgather"
    summable_options: Mapping[str, Any] = field(default_factory=dict)
    quantized_options: Mapping[str, Any] = field(default_factory=dict)
    algorithm: str = "auto"
    protocol: str = "auto"
    gpu: str | None = None

    @classmethod
    def of(cls, scenario: Any) -> ExchangeChoice:
        """A scenario's ``exchange`` section: its collectives and their options."""
        e = scenario.exchange
        return cls(e.summable, e.quantized, dict(e.summable_options), dict(e.quantized_options),
                   e.algorithm, e.protocol, scenario.model.target_device)

    def _summable(self) -> tuple[dict[str, Any], list[str]]:
        return with_settings(self.summable, self.summable_options, "exchange.summable",
                             {"algorithm": self.algorithm, "protocol": self.protocol}, self.gpu)

    def collective_for(self, summable: bool) -> tuple[str, Mapping[str, Any], str]:
        """``(collective, options, scenario field)`` that carries summable or encoded payloads."""
        if summable:
            return self.summable, self._summable()[0], "exchange.summable"
        return self.quantized, self.quantized_options, "exchange.quantized"

    def describe(self) -> list[str]:
        """Each collective with the options it runs with, in words where it says (``--check``)."""
        out = []
        for summable in (True, False):
            name, opts, fld = self.collective_for(summable)
            told = collective_info(name).describe
            shown = ", ".join(f"{k}={v!r}" for k, v in opts.items()) or "defaults"
            out.append(f"{fld}: {name} ({shown})" + (f"; {told(opts)}" if told else ""))
        return out

    def problems(self, summable: bool, codecs: Sequence[str]) -> list[str]:
        """``"field: message"`` for options the chosen collective does not take, and for a
        collective that cannot carry the payloads of ``codecs`` (summable or not)."""
        name, opts, fld = self.collective_for(summable)
        out = check_options(name, opts, f"{fld}_options") + (self._summable()[1] if summable else [])
        if codecs and not collective_info(name).can_carry(summable):
            what = "summable payloads" if summable else "encoded payloads that must be decoded before summing"
            out.append(f"{fld}: {name} cannot carry {what} (codecs {', '.join(codecs)}); choose a "
                       f"collective that {'sums' if summable else 'gathers or re-quantizes'} (see docs/simulator.md)")
        return out

    def for_codec(self, exchange: Exchange, codec: str) -> tuple[str, dict[str, Any]]:
        """The collective (and options) that carries ``codec``'s rounds; an error when the
        chosen collective cannot carry them or does not take its options."""
        problems = self.problems(exchange.summable, [codec])
        if problems:
            raise ConfigError("; ".join(problems))
        name, opts, _ = self.collective_for(exchange.summable)
        return name, dict(opts)


def ddp_buckets(numels: Sequence[int], bucket_cap_bytes: float = DDP_BUCKET_CAP_MIB * 2**20, *,
                elem_bytes: int = 4, first_bucket_bytes: float = DDP_FIRST_BUCKET_BYTES) -> list[list[int]]:
    """Group parameter indices (in gradient-ready order) into buckets as DDP does.

    DDP (``compute_bucket_assignment_by_size``, and the rebuild after the first iteration
    in gradient-ready order) closes a bucket once its bytes reach the current limit; the
    limits are ``[first_bucket_bytes, bucket_cap_bytes]``, the last repeated.
    """
    if bucket_cap_bytes <= 0 or first_bucket_bytes <= 0:
        raise ConfigError(f"bucket sizes must be > 0 bytes, got cap {bucket_cap_bytes} and first {first_bucket_bytes}")
    buckets: list[list[int]] = []
    cur: list[int] = []
    size = 0.0
    limit = float(min(first_bucket_bytes, bucket_cap_bytes))
    for i, n in enumerate(numels):
        cur.append(i)
        size += n * elem_bytes
        if size >= limit:
            buckets.append(cur)
            cur, size = [], 0.0
            limit = float(bucket_cap_bytes)
    if cur:
        buckets.append(cur)
    return buckets


def iteration_spec(
    *,
    forward_s: float,
    backward_s: float,
    optimizer_s: float,
    buckets: Sequence[BucketInput],
    exchange: Exchange,
    codec: str,
    choice: ExchangeChoice,
    p: int,
    grad_elem_bytes: int = 4,
    overlap: bool = True,
    codec_overlap: str = "shared",
) -> IterationSpec:
    """The iteration of one codec on one cluster (see the module docstring)."""
    name, opts = choice.for_codec(exchange, codec)
    info = collective_info(name)
    out: list[BucketCost] = []
    for b in buckets:
        rb = [tuple(float(x) for x in r) for r in b.round_bytes]
        if not rb or any(len(r) != len(exchange.rounds) for r in rb):
            raise ConfigError(f"codec {codec!r}: each rank needs one byte count per round "
                              f"({len(exchange.rounds)}), got {b.round_bytes}")
        if exchange.in_place:
            out.append(BucketCost(b.numel, b.ready_s, (float(b.numel * grad_elem_bytes),), 0.0, 0.0))
            continue
        enc, dec = float(b.encode_s), float(b.decode_s)
        if len(exchange.rounds) > 1:
            split = exchange.encode_split
            rounds = tuple(Round(tuple(r[k] for r in rb), None, enc * split[k] if k else 0.0)
                           for k in range(len(exchange.rounds)))
            out.append(BucketCost(b.numel, b.ready_s, rounds[0].payload_bytes, enc * split[0], dec, rounds))
            continue
        sizes = tuple(r[0] for r in rb)
        # encoded payloads are decoded and added into the sum: each decode brings an add
        dec_sum = dec + float(b.sum_s) if not exchange.summable else dec
        if info.requantizes:
            out.append(BucketCost(b.numel, b.ready_s, sizes, enc / p, dec_sum / p,
                                  hop_decode_s=dec_sum / p, hop_encode_s=enc / p))
        elif info.length_prefix and not exchange.summable:
            padded = (max(sizes),)
            rounds = (Round((float(LENGTH_MESSAGE_BYTES),)), Round(padded))
            out.append(BucketCost(b.numel, b.ready_s, padded, enc, dec_sum, rounds))
        else:
            out.append(BucketCost(b.numel, b.ready_s, sizes, enc, dec))
    return IterationSpec(forward_s, backward_s, optimizer_s, tuple(out), name, opts, overlap, codec_overlap)


__all__ = [
    "DDP_BUCKET_CAP_MIB",
    "DDP_FIRST_BUCKET_BYTES",
    "LENGTH_MESSAGE_BYTES",
    "BucketInput",
    "ExchangeChoice",
    "ddp_buckets",
    "iteration_spec",
]
