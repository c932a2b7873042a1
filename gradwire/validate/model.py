"""From calibration measurements to simulator inputs, and predictions of measured cases.

:class:`Calibration` holds what the ping-pong and the one bulk transfer measured and turns
it into the two numbers the flow-level network takes: ``per_message_overhead_s`` (the
one-way time of a small gloo message: stack latency plus software) and ``efficiency``
(payload bytes per shaped byte). The bulk transfer runs on an otherwise idle link, so it
sees the data framing only; in ring collectives every link also carries the TCP
acknowledgements of the opposite flow (66-byte frames; the receiver's segment count during
the bulk transfer gives how many per data segment, one per two with delayed ACKs), which
:meth:`Calibration.efficiency_for` adds from the frame sizes rather than from a fitted
factor.

:func:`predict_collective` simulates gloo's allreduce and allgather on a star topology at
the shaped rate; :func:`iteration_spec` builds the :class:`IterationSpec` of one DDP
training iteration from the measured compute profile, bucket layout and codec costs.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gradwire.errors import ConfigError

MTU_FRAME_BYTES = 1514  # what tbf counts for one full TCP segment: 1448 + 32 + 20 + 14
MSS_BYTES = 1448  # TCP payload per full segment with timestamps, MTU 1500
ACK_FRAME_BYTES = 66  # a pure ACK with timestamps: 32 TCP + 20 IP + 14 Ethernet
ACK_EVERY = 2  # delayed ACK: one acknowledgement per two full segments
LENGTH_MESSAGE_BYTES = 8  # the int64 payload length each rank allgathers before a payload


@dataclass(frozen=True)
class Calibration:
    """What the calibration measured on one shaped network (K hosts, one rate)."""

    rate_bps: float  # the tbf rate, bit/s
    one_way_s: float  # median one-way time of a 4-byte gloo message (ping-pong / 2)
    bulk_bytes: int
    bulk_s: float  # send of bulk_bytes plus a small acknowledgement message back
    acks_per_segment: float = 1.0 / ACK_EVERY  # receiver's TCP segments per data segment

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
        """Efficiency when the link's egress also carries ACKs of the flow coming in."""
        if not bidirectional:
            return self.efficiency
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
    return Calibration(rate_bps, statistics.median(one_way), int(result["bulk_bytes"]),
                       statistics.median(bulk), acks)


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


COST_SOURCES = ("in_situ", "standalone")


def iteration_spec(train: Mapping[str, Any], ranks: Sequence[Mapping[str, Any]], k: int,
                   costs: str = "in_situ") -> Any:
    """The :class:`IterationSpec` of one measured DDP configuration.

    ``train`` is rank 0's ``train`` entry for one codec; ``ranks`` the same entry of every
    rank (payload sizes differ per rank for variable-length codes). Compute times are the
    slowest rank's medians; encode/decode the slowest rank's; a quantized bucket's
    collective is the allgather of payloads padded to the longest (as the DDP hook sends
    them), preceded by the allgather of the 8-byte lengths.

    ``costs="in_situ"`` takes encode and decode times from the DDP hook's own timers in the
    measured run (what the codec really cost there, with the other ranks competing for the
    same cores); ``"standalone"`` from timing the codec on the same gradients outside DDP.
    Either way the network side comes from the calibration alone.
    """
    if costs not in COST_SOURCES:
        raise ConfigError(f"costs must be one of {COST_SOURCES}, got {costs!r}")
    from gradwire.codecs.base import make_codec
    from gradwire.simulator.timeline import BucketCost, IterationSpec

    codec = make_codec(str(train["codec"]))
    prof = [r["profile"] for r in ranks]
    ready = {p["name"]: max(pr["params"][i]["ready_s"] for pr in prof)
             for i, p in enumerate(prof[0]["params"])}
    buckets: list[BucketCost] = []
    summable = codec.summable
    for b, names in enumerate(train["buckets"]):
        cost = [r["costs"][b] for r in ranks]
        ready_s = max(ready[n] for n in names)
        numel = int(cost[0]["numel"])
        if costs == "in_situ":
            calls = [r["hook_calls"][b] for r in ranks]
            enc = max(c["encode_s"] for c in calls)
            dec_all = max(c["decode_s"] for c in calls)  # all k payloads decoded and averaged
        else:
            enc = max(c["encode_s"] for c in cost)
            dec_all = k * max(c["decode_s"] for c in cost)
        costs_b = cost
        if codec.name == "fp32":
            buckets.append(BucketCost(numel, ready_s, (4.0 * numel,), 0.0, 0.0))
        elif summable:
            buckets.append(BucketCost(numel, ready_s, (float(costs_b[0]["nbytes"]),), enc, 0.0))
        else:
            padded = float(max(c["nbytes"] for c in costs_b))
            buckets.append(BucketCost(1, ready_s, (LENGTH_MESSAGE_BYTES,), enc, 0.0))
            # The hook decodes all k payloads (its own too) before averaging; the timeline
            # charges k decodes after an allgather, so the bucket carries one payload's.
            buckets.append(BucketCost(numel, ready_s, (padded,), 0.0, dec_all / k))
    # Two ranks exchange quantized payloads as one message each way (see the DDP hook).
    collective = ("gloo_ring_allreduce" if summable
                  else "gloo_pair_allgather" if k == 2 else "gloo_ring_allgather")
    return IterationSpec(
        forward_s=max(p["forward_s"] for p in prof),
        backward_s=max(p["backward_s"] for p in prof),
        optimizer_s=max(p["optimizer_s"] for p in prof),
        buckets=tuple(buckets), collective=collective, collective_opts={}, overlap=True,
    )


def predict_iteration(train: Mapping[str, Any], ranks: Sequence[Mapping[str, Any]], k: int,
                      cal: Calibration, costs: str = "in_situ") -> Any:
    """Simulated :class:`IterationResult` of one measured DDP configuration."""
    from gradwire.simulator.timeline import simulate_iteration

    spec = iteration_spec(train, ranks, k, costs)
    return simulate_iteration(spec, _topology(k, cal), per_message_overhead_s=cal.one_way_s,
                              efficiency=cal.efficiency_for(bidirectional=True))
