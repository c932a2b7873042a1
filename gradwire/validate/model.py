"""From calibration measurements to simulator inputs, and predictions of measured cases.

:class:`Calibration` holds what the ping-pong and the one bulk transfer measured and turns
it into the two numbers the flow-level network takes: ``per_message_overhead_s`` (the
one-way time of a small gloo message: stack latency plus software) and ``efficiency``
(payload bytes per shaped byte). The bulk transfer runs on an otherwise idle link, so it
sees the data framing only; in ring collectives every link also carries the TCP
acknowledgements of the opposite flow (66-byte frames; the receiver's segment count during
the bulk transfer gives how many per data segment, one per two with delayed ACKs). With
more than two hosts the calibration also times a concurrent ring of plain bulk transfers
(every host sending to its successor at once), which measures that ring efficiency
directly, host forwarding of K concurrent flows included; :meth:`Calibration.efficiency_for`
uses it, and falls back to the frame-size estimate for two hosts.

:func:`predict_collective` simulates gloo's allreduce and allgather on a star topology at
the shaped rate; :func:`iteration_spec` builds the :class:`IterationSpec` of one DDP
training iteration from the measured compute profile, bucket layout and codec costs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gradwire.errors import ConfigError

MTU_FRAME_BYTES = 1514  # what tbf counts for one full TCP segment: 1448 + 32 + 20 + 14
MSS_BYTES = 1448  # TCP payload per full segment with timestamps, MTU 1500
ACK_FRAME_BYTES = 66  # a pure ACK with timestamps: 32 TCP + 20 IP + 14 Ethernet
ACK_EVERY = 2  # delayed ACK: one acknowledgement per two full segments


@dataclass(frozen=True)
class Calibration:
    """What the calibration measured on one shaped network (K hosts, one rate)."""

    rate_bps: float  # the tbf rate, bit/s
    one_way_s: float  # median one-way time of a 4-byte gloo message (ping-pong / 2)
    bulk_bytes: int
    bulk_s: float  # send of bulk_bytes plus a small acknowledgement message back
    acks_per_segment: float = 1.0 / ACK_EVERY  # receiver's TCP segments per data segment
    ring_bulk_s: float | None = None  # every rank sends bulk_bytes to its successor at once

    @property
    def bandwidth_Bps(self) -> float:
        return self.rate_bps / 8.0

    @property
    def goodput_Bps(self) -> float:
        """Payload bytes/s of the bulk transfer, its two message latencies taken out."""
        drain = self.bulk_s - 2.0 * self.one_way_s
        if drain <= 0:
            raise ConfigError(
                f"calibration: bulk transfer of {self.bulk_bytes} bytes took {self.bulk_s:.3g} s, "
                f"no more than two message latencies ({self.one_way_s:.3g} s); use a larger bulk_bytes"
            )
        return self.bulk_bytes / drain

    @property
    def efficiency(self) -> float:
        """Payload bytes per shaped byte on a one-way link (``goodput / rate``), at most 1."""
        return min(1.0, self.goodput_Bps / self.bandwidth_Bps)

    def efficiency_for(self, bidirectional: bool) -> float:
        """Efficiency when the link's egress also carries ACKs of the flow coming in.

        Measured by the concurrent ring of bulk transfers when the calibration has one (it
        also sees what forwarding K flows at once costs the host); otherwise the one-flow
        efficiency less the ACK frames' share of the link."""
        if not bidirectional:
            return self.efficiency
        if self.ring_bulk_s is not None:
            drain = self.ring_bulk_s - 2.0 * self.one_way_s
            if drain <= 0:
                raise ConfigError(f"calibration: ring bulk transfer took {self.ring_bulk_s:.3g} s, no more "
                                  "than two message latencies; use a larger bulk_bytes")
            return min(1.0, self.bulk_bytes / drain / self.bandwidth_Bps)
        ack_share = ACK_FRAME_BYTES * self.acks_per_segment / MTU_FRAME_BYTES
        return self.efficiency / (1.0 + ack_share)

    @property
    def network_bound(self) -> bool:
        """Whether one bulk flow came within 10% of the framing limit (1448/1514).

        Below it the emulating machine's CPUs, not the shaped links, set the pace (a
        shared host cannot push K flows through veths, bridge and tbf at a high rate);
        the simulator models networks, so such cases are reported but not judged.
        """
        return self.efficiency >= 0.9 * MSS_BYTES / MTU_FRAME_BYTES

    def as_dict(self) -> dict[str, float]:
        return {
            "rate_bps": self.rate_bps, "one_way_s": self.one_way_s, "bulk_bytes": self.bulk_bytes,
            "bulk_s": self.bulk_s, "efficiency": self.efficiency,
            "acks_per_segment": self.acks_per_segment,
            "ring_bulk_s": self.ring_bulk_s if self.ring_bulk_s is not None else math.nan,
            "efficiency_ring": self.efficiency_for(True),
            "network_bound": float(self.network_bound),
        }


def calibration_from(result: Mapping[str, Any], rate_bps: float,
                     receiver: Mapping[str, Any] | None = None) -> Calibration:
    """Build a :class:`Calibration` from rank 0's ``calibrate`` result.

    With the receiver's (rank 1's) result too, the ACK rate is measured: the segments the
    receiver sent during the bulk transfer per data segment the sender sent (kernel
    counters of the two namespaces); otherwise delayed ACKs (one per two) are assumed.
    """
    one_way = [float(x) for x in result["one_way_s"]]
    bulk = [float(x) for x in result["bulk_s"]]
    if not one_way or not bulk:
        raise ConfigError("calibration result holds no ping-pong or no bulk measurement")
    acks = 1.0 / ACK_EVERY
    if receiver is not None:
        sent, acked = int(result.get("out_segments", -1)), int(receiver.get("out_segments", -1))
        if sent > 0 and acked >= 0:
            acks = min(1.0, acked / sent)
    ring = [float(x) for x in result.get("ring_bulk_s", [])]
    # Bulk transfers measure what the links carry; other load on the host only adds time,
    # so the fastest repetition is the least disturbed estimate (the ping-pong's latency
    # is a distribution: its median).
    return Calibration(rate_bps, statistics.median(one_way), int(result["bulk_bytes"]),
                       min(bulk), acks, min(ring) if ring else None)


def _topology(k: int, cal: Calibration) -> Any:
    from gradwire.simulator.topology import make_topology

    # The whole measured one-way message time goes into the per-message overhead: the
    # links themselves get zero propagation latency (veths on one machine).
    return make_topology("star", num_gpus=k, bandwidth_Bps=cal.bandwidth_Bps, latency_s=0.0)


def collective_for(op: str) -> str:
    """The simulator collective that models gloo's ``op``."""
    names = {"allreduce": "gloo_ring_allreduce", "allgather": "gloo_ring_allgather"}
    if op not in names:
        raise ConfigError(f"op must be one of {sorted(names)}, got {op!r}")
    return names[op]


def predict_collective(op: str, size_bytes: float, k: int, cal: Calibration) -> float:
    """Predicted seconds of gloo ``op`` on K shaped hosts.

    ``allreduce``: ``size_bytes`` of float32 per rank; ``allgather``: ``size_bytes`` gathered
    in all (``size_bytes / k`` from each rank, the nccl-tests convention).
    """
    from gradwire.simulator.collectives import run_collective

    per_rank = size_bytes if op == "allreduce" else size_bytes / k
    run = run_collective(_topology(k, cal), collective_for(op), per_rank,
                         per_message_overhead_s=cal.one_way_s,
                         efficiency=cal.efficiency_for(bidirectional=True), record=False)
    return run.time_s


def iteration_spec(train: Mapping[str, Any], ranks: Sequence[Mapping[str, Any]], k: int) -> Any:
    """The :class:`IterationSpec` of one measured DDP configuration, built by the same
    function the user path uses (:func:`gradwire.iteration.iteration_spec`).

    ``train`` is rank 0's ``train`` entry for one codec; ``ranks`` the same entry of every
    rank (payload sizes differ per rank for variable-length codes). Compute times are the
    slowest rank's medians; the buckets are the ones DDP used in the run; codec times come
    from timing the codec on the same gradients outside DDP (the slowest rank's), never
    from the measured run itself; the network side comes from the calibration alone.
    gloo's collectives carry the exchange: its ring allreduce for summable codecs, its
    allgather (the pair exchange for two ranks, as the DDP hook does) for payloads.
    """
    from gradwire.codecs.base import make_codec
    from gradwire.iteration import BucketInput, ExchangeChoice
    from gradwire.iteration import iteration_spec as build

    codec = make_codec(str(train["codec"]))
    ex = codec.exchange
    if len(ex.rounds) != 1:
        raise ConfigError(f"validation measures one-round codecs; {codec.spec()!r} has {len(ex.rounds)} rounds")
    prof = [r["profile"] for r in ranks]
    ready = {p["name"]: max(pr["params"][i]["ready_s"] for pr in prof)
             for i, p in enumerate(prof[0]["params"])}
    buckets = []
    for b, names in enumerate(train["buckets"]):
        cost = [r["costs"][b] for r in ranks]
        buckets.append(BucketInput(
            numel=int(cost[0]["numel"]), ready_s=max(ready[n] for n in names),
            round_bytes=tuple((float(c["nbytes"]),) for c in cost),
            encode_s=max(float(c["encode_s"]) for c in cost),
            decode_s=max(float(c["decode_s"]) for c in cost),
            sum_s=max(float(c.get("sum_s", 0.0)) for c in cost),
        ))
    choice = ExchangeChoice("gloo_ring_allreduce", "gloo_pair_allgather" if k == 2 else "gloo_ring_allgather")
    return build(
        forward_s=max(p["forward_s"] for p in prof), backward_s=max(p["backward_s"] for p in prof),
        optimizer_s=max(p["optimizer_s"] for p in prof), buckets=buckets, exchange=ex,
        codec=codec.spec(), choice=choice, p=k, overlap=True, codec_overlap="shared",
    )


def predict_iteration(train: Mapping[str, Any], ranks: Sequence[Mapping[str, Any]], k: int,
                      cal: Calibration) -> Any:
    """Simulated :class:`IterationResult` of one measured DDP configuration."""
    from gradwire.simulator.timeline import simulate_iteration

    spec = iteration_spec(train, ranks, k)
    return simulate_iteration(spec, _topology(k, cal), per_message_overhead_s=cal.one_way_s,
                              efficiency=cal.efficiency_for(bidirectional=True))
