"""A synthetic sweep workload with a closed-form answer, for exercising the sweep engine.

Profiling a real model takes minutes; the engine's own properties (same rows serially and
on Dask, nothing repeated after a crash, failures recorded, throughput with points that cost
a known amount of CPU) are easier to check with points whose result is known exactly. Each
:class:`SyntheticPoint` is one (workers, bandwidth, codec bits) cell; :func:`evaluate_synthetic`
returns one :class:`~gradwire.results.Row` whose iteration time is the alpha-beta cost of a
ring allreduce of the shared gradient size, ``T = compute + 2 (p-1) alpha + 2 (p-1)/p * n b / (8 B)``
(Thakur, Rabenseifner & Gropp 2005, eq. for ring reduce-scatter + allgather), optionally after
burning a fixed amount of CPU time, sleeping, logging its evaluation to a counter file, or
raising, as the shared :class:`SyntheticShared` asks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradwire.results import Row, Segment, Trace

__all__ = [
    "SyntheticPoint",
    "SyntheticShared",
    "counted_evaluations",
    "evaluate_synthetic",
    "ring_allreduce_s",
    "synthetic_points",
]


@dataclass(frozen=True)
class SyntheticPoint:
    index: int
    point_id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class SyntheticShared:
    """What every point needs, computed once: the 'gradient' sizes plus test/benchmark knobs.

    ``numels`` stands in for a profiled workload (sent once to every worker);
    ``cpu_s`` is the CPU time each point burns; ``sleep_s`` a wall-clock wait per point;
    ``fail_indices`` the point indices that raise; ``counter_path`` a file each evaluation
    appends its point id to (to count evaluations across processes and crashes);
    ``crash_once_path``: the first evaluation of point ``crash_index`` creates this file
    and kills its own process (a worker dying mid-task), later ones run normally.
    """

    numels: np.ndarray
    compute_s: float = 0.05
    latency_s: float = 5e-6
    cpu_s: float = 0.0
    sleep_s: float = 0.0
    fail_indices: frozenset[int] = field(default_factory=frozenset)
    counter_path: str | None = None
    crash_once_path: str | None = None
    crash_index: int = 0


def synthetic_points(workers: list[int], bandwidths_Gbps: list[float], bits: list[int],
                     scenario: str = "synthetic") -> list[SyntheticPoint]:
    """The cartesian product of the axes, with ids hashed from the resolved values."""
    points: list[SyntheticPoint] = []
    for w in workers:
        for bw in bandwidths_Gbps:
            for b in bits:
                values = {"workers": w, "cluster.bandwidth_Gbps": bw, "bits": b}
                blob = json.dumps({"scenario": scenario, **values}, sort_keys=True)
                pid = hashlib.sha256(blob.encode()).hexdigest()[:16]
                points.append(SyntheticPoint(len(points), pid, values))
    return points


def _burn_cpu(seconds: float) -> None:
    """Busy work for ``seconds`` of this thread's CPU time (a stand-in for a simulation)."""
    if seconds <= 0:
        return
    end = time.thread_time() + seconds
    acc = 0
    while time.thread_time() < end:
        for i in range(20_000):
            acc = (acc * 31 + i) % 1_000_003


def ring_allreduce_s(nbytes: float, workers: int, bandwidth_Bps: float, latency_s: float) -> float:
    """Alpha-beta ring allreduce time: ``2 (p-1) alpha + 2 (p-1)/p * n / B`` seconds."""
    p = workers
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * latency_s + 2 * (p - 1) / p * nbytes / bandwidth_Bps


def evaluate_synthetic(point: SyntheticPoint, shared: SyntheticShared) -> tuple[list[Row], list[Trace]]:
    """One row and one two-segment trace for the point (see the module docstring)."""
    if shared.counter_path is not None:
        # O_APPEND writes of one short line are atomic across processes.
        with open(shared.counter_path, "a") as fh:
            fh.write(point.point_id + "\n")
    if shared.crash_once_path is not None and point.index == shared.crash_index:
        try:
            fd = os.open(shared.crash_once_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os._exit(17)  # no cleanup, like a worker killed by the OOM killer
    if shared.sleep_s > 0:
        time.sleep(shared.sleep_s)
    _burn_cpu(shared.cpu_s)
    if point.index in shared.fail_indices:
        raise ValueError(f"synthetic failure at point {point.index} (listed in fail_indices)")
    workers = int(point.values["workers"])
    bandwidth_Bps = float(point.values["cluster.bandwidth_Gbps"]) * 1e9 / 8
    bits = int(point.values["bits"])
    numel = int(np.sum(shared.numels))
    nbytes = numel * bits / 8
    comm_s = ring_allreduce_s(nbytes, workers, bandwidth_Bps, shared.latency_s)
    iteration_s = shared.compute_s + comm_s
    row = Row(
        scenario="synthetic", point=point.index, point_id=point.point_id, codec=f"synthetic(bits={bits})",
        codec_name="fp32" if bits == 32 else "synthetic", model="synthetic", batch_size=1,
        workers=workers, topology="ring", collective="ring_allreduce", device="cpu", seed=0,
        overlap=False, iteration_s=iteration_s, compute_s=shared.compute_s,
        forward_s=shared.compute_s / 3, backward_s=2 * shared.compute_s / 3, optimizer_s=0.0,
        encode_s=0.0, decode_s=0.0, comm_s=comm_s, exposed_comm_s=comm_s, hidden_comm_s=0.0,
        bytes_per_rank=2 * (workers - 1) / workers * nbytes, bits_per_element=float(bits),
        compression_ratio=32.0 / bits, params=dict(point.values),
    )
    trace = Trace(point=point.index, codec=row.codec, segments=[
        Segment(0, "backward", 0.0, shared.compute_s, "backward"),
        Segment(0, "comm", shared.compute_s, iteration_s, "ring_allreduce"),
    ])
    return [row], [trace]


def counted_evaluations(counter_path: str | Path) -> list[str]:
    """Point ids logged by :func:`evaluate_synthetic`, one per evaluation, in order."""
    p = Path(counter_path)
    if not p.exists():
        return []
    return [line for line in p.read_text().splitlines() if line]

