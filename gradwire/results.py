"""Result records: the flat rows every table, dashboard and store is built from.

One :class:`Row` per (scenario point, codec). Tables and dashboards are pure functions of
rows (plus, for the drawings, the :class:`Trace` of one simulated iteration); they never
re-run a simulation. Units are SI and live in the field names (``_s`` seconds, ``bytes``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Row:
    """The outcome of one codec at one scenario point (one simulated training iteration).

    Breakdown (critical-path rank): ``iteration_s = compute_s + encode_exposed_s +
    exposed_comm_s + decode_exposed_s + other`` where ``compute_s`` is forward + backward +
    optimizer. ``comm_s`` is the wall time communication was in flight;
    ``hidden_comm_s = comm_s - exposed_comm_s`` is what overlapped with compute.
    """

    scenario: str
    point: int
    point_id: str
    codec: str  # full spec, e.g. "qsgd(bits=4, bucket=512)"
    codec_name: str  # registry name, e.g. "qsgd"
    model: str
    batch_size: int
    workers: int
    topology: str
    collective: str
    device: str
    seed: int
    overlap: bool
    iteration_s: float
    compute_s: float
    forward_s: float
    backward_s: float
    optimizer_s: float
    encode_s: float
    decode_s: float
    comm_s: float
    exposed_comm_s: float
    hidden_comm_s: float
    bytes_per_rank: float  # bytes each rank sends per iteration
    bits_per_element: float  # payload bits / gradient elements
    compression_ratio: float  # 32 * elements / payload bits
    speedup_vs_fp32: float = math.nan
    speedup_vs_onebit: float = math.nan
    estimate: bool = False  # compute times rescaled to another device (an estimate)
    params: dict[str, Any] = field(default_factory=dict)  # swept / scenario values by path
    # provenance: the GPU asked about, its precision, and where each time comes from
    # ("measured here", "measured file (...)", "estimate (±X% ... on published throughputs)")
    target_device: str = ""
    precision: str = ""
    efficiency_source: str = ""
    compute_source: str = ""
    codec_source: str = ""
    network_source: str = ""
    # an uncompressed exchange (fp32, or a 16-bit cast with its accumulation): the codec's
    # declaration; the fastest such row at the point is the best baseline
    uncompressed: bool = False
    best_baseline: str = ""
    speedup_vs_best_baseline: float = math.nan
    # the point's verdict (gradwire.verdict): this codec against the point's best
    # uncompressed baseline, its 90% interval over the inputs' stated errors;
    # the verdict_* columns are the point's (the same on every row of the point)
    speedup_low: float = math.nan
    speedup_high: float = math.nan
    verdict: str = ""  # compress | keep baseline | not decided | no verdict
    verdict_option: str = ""  # the point's fastest compressed option (codec by collective)
    verdict_line: str = ""
    interval_basis: str = ""
    # data parallelism (ddp, or a sharded mode: gradwire.sharding) and the memory per rank
    # it needs: model states (parameters, gradients, optimizer state; the ZeRO paper's
    # accounting) and the parameters a sharded mode holds gathered at once on top
    parallelism: str = "ddp"
    model_state_bytes: float = math.nan
    gathered_params_bytes: float = 0.0
    device_memory_bytes: float = math.nan  # the target GPU's memory (datasheet), when named

    @property
    def memory_bytes(self) -> float:
        """Model states and gathered parameters per rank (activations not counted)."""
        return self.model_state_bytes + self.gathered_params_bytes

    def flat(self) -> dict[str, Any]:
        """A flat dict: scenario parameters become ``param.<path>`` columns."""
        d = asdict(self)
        params = d.pop("params")
        for k, v in params.items():
            d[f"param.{k}"] = v
        return d


@dataclass(frozen=True)
class Segment:
    """One interval of one rank's timeline: kind is forward, backward, encode, comm,
    decode or optimizer; ``label`` names the bucket or collective step."""

    rank: int
    kind: str
    start_s: float
    end_s: float
    label: str = ""
    count: int = 1  # simulated segments this one stands for (see coarsen_segments)


# A drawn lane (one rank, one kind) holds at most this many segments: a ring of 16,384
# ranks has 32,766 steps per bucket, far more than a drawing has pixels (or a browser
# can hold for every trace of a sweep).
MAX_SEGMENTS_PER_LANE = 400


def segment_ends(label: str) -> tuple[str, str]:
    """The first and last simulated labels of a (possibly coarsened) segment's label."""
    parts = label.split(" … ")
    if len(parts) == 1:
        return label, label
    return parts[0], parts[-1].rsplit(" (", 1)[0]


def coarsen_segments(segments: Sequence[Segment], max_per_lane: int = MAX_SEGMENTS_PER_LANE
                     ) -> tuple[list[Segment], float]:
    """At most ``max_per_lane`` segments per (rank, kind), and the longest gap filled.

    A lane with more segments has its closest neighbours merged: the gaps between
    consecutive segments (after the running end of those before) are filled from the
    shortest up, just enough of them to leave ``max_per_lane`` segments. A merged segment
    spans its first start to its last end, counts the segments it stands for and is
    labelled ``first … last (n segments)``. Lanes within the limit are unchanged, so the
    returned gap is 0 when nothing was merged; otherwise the drawing's busy time per lane
    exceeds the simulated one by at most the filled gaps, each no longer than it.
    """
    if max_per_lane < 1:
        raise ValueError(f"max_per_lane must be >= 1, got {max_per_lane}")
    lanes: dict[tuple[int, str], list[Segment]] = {}
    for sg in segments:
        lanes.setdefault((sg.rank, sg.kind), []).append(sg)
    out: list[Segment] = []
    filled = 0.0
    for (rank, kind), lane in lanes.items():
        if len(lane) <= max_per_lane:
            out += lane
            continue
        lane = sorted(lane, key=lambda sg: (sg.start_s, sg.end_s))
        start = np.fromiter((sg.start_s for sg in lane), dtype=np.float64, count=len(lane))
        end = np.maximum.accumulate(np.fromiter((sg.end_s for sg in lane), dtype=np.float64,
                                                count=len(lane)))
        gaps = start[1:] - end[:-1]
        # the (n - max)-th shortest gap: filling every gap up to it leaves <= max segments
        cut = float(np.partition(gaps, len(lane) - max_per_lane - 1)[len(lane) - max_per_lane - 1])
        heads = np.concatenate(([0], np.flatnonzero(gaps > cut) + 1, [len(lane)]))
        filled = max(filled, max(cut, 0.0))
        for a, b in zip(heads[:-1].tolist(), heads[1:].tolist(), strict=True):
            n = sum(sg.count for sg in lane[a:b])
            label = lane[a].label
            if b - a > 1:
                label = f"{segment_ends(lane[a].label)[0]} … {segment_ends(lane[b - 1].label)[1]} ({n} segments)"
            out.append(Segment(rank, kind, float(start[a]), float(end[b - 1]), label, n))
    out.sort(key=lambda sg: (sg.rank, sg.start_s, sg.kind))
    return out, filled


@dataclass(frozen=True)
class LinkUse:
    """Per-direction link load over one iteration."""

    src: str
    dst: str
    bandwidth_Bps: float
    busy_s: float
    bytes: float
    utilization: float  # busy_s / iteration_s


@dataclass
class Trace:
    """What the dashboard draws for one (point, codec): the timeline and the network load."""

    point: int
    codec: str
    segments: list[Segment] = field(default_factory=list)
    links: list[LinkUse] = field(default_factory=list)
    # node -> (x, y) and node -> kind ("gpu", "nic", "switch") for drawing the topology
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    node_kinds: dict[str, str] = field(default_factory=dict)
    # the longest gap between segments that coarsen_segments filled (0: every simulated
    # segment is kept as it was)
    resolution_s: float = 0.0


def add_speedups(rows: Sequence[Row]) -> list[Row]:
    """Fill ``speedup_vs_fp32`` and ``speedup_vs_onebit`` from the same point's rows.

    The reference is the row at the same ``point`` whose ``codec_name`` is ``fp32`` (resp.
    ``onebit``); a point without one gets NaN. ``speedup_vs_best_baseline`` compares with the
    fastest ``uncompressed`` row of the point (named in ``best_baseline``), so a codec is
    credited only for what it gains over the best uncompressed exchange.
    """
    from dataclasses import replace

    ref_fp32: dict[int, float] = {}
    ref_onebit: dict[int, float] = {}
    for r in rows:
        if r.codec_name == "fp32":
            ref_fp32.setdefault(r.point, r.iteration_s)
        elif r.codec_name == "onebit":
            ref_onebit.setdefault(r.point, r.iteration_s)
    best: dict[int, Row] = {}
    for r in rows:
        if r.uncompressed and (r.point not in best or r.iteration_s < best[r.point].iteration_s):
            best[r.point] = r
    out = []
    for r in rows:
        f = ref_fp32.get(r.point, math.nan)
        o = ref_onebit.get(r.point, math.nan)
        b = best.get(r.point)
        out.append(
            replace(r, speedup_vs_fp32=f / r.iteration_s, speedup_vs_onebit=o / r.iteration_s,
                    best_baseline=b.codec if b else "",
                    speedup_vs_best_baseline=b.iteration_s / r.iteration_s if b else math.nan)
        )
    return out


def rows_to_records(rows: Iterable[Row]) -> list[dict[str, Any]]:
    return [r.flat() for r in rows]
