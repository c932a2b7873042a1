"""NCCL allreduce bus bandwidth: the simulator against published nccl-tests sweeps.

For every row of benchmarks/data/nccl_busbw.csv (one 8x A100 node, 1 MiB-16 GiB; two 8x
H100 nodes, 1 MiB-8 GiB; sources in the file) it simulates ``nccl_allreduce`` with NCCL's
own algorithm/protocol choice on the system's profile (simulator/nccl_profiles.yaml,
public specifications, nothing fitted), and prints the predicted bus bandwidth
(algbw x 2(n-1)/n) beside the measured one, the chosen algorithm/protocol, the error, and
per system and overall the median and largest |error|.

    .venv/bin/python benchmarks/nccl_busbw.py [--csv benchmarks/data/nccl_busbw.csv]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np

from gradwire.simulator import nccl
from gradwire.simulator.collectives import run_collective
from gradwire.simulator.collectives.nccl_allreduce import plan

CSV = Path(__file__).with_name("data") / "nccl_busbw.csv"
# csv (gpus, nodes, text in the system column) -> profile in simulator/nccl_profiles.yaml
SYSTEMS = {("A100", 8, 1): "a100_8x_node", ("H100", 16, 2): "h100_a3mega_2x8"}


def profile_for(system: str, gpus: int, nodes: int) -> str:
    for (word, g, n), name in SYSTEMS.items():
        if word in system and g == gpus and n == nodes:
            return name
    raise SystemExit(f"no profile for {system!r} ({gpus} GPUs, {nodes} nodes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=CSV)
    args = ap.parse_args()
    rows = [r for r in csv.DictReader(open(args.csv, encoding="utf-8")) if r["collective"] == "all_reduce"]
    head = f"{'id':<5} {'profile':<16} {'bytes':>11} {'choice':<12} {'measured':>9} {'predicted':>9} {'error':>8}"
    print("busbw in GB/s (1e9 bytes/s); error = predicted / measured - 1")
    print(head)
    print("-" * len(head))
    errs: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for row in rows:
        n = int(row["gpus"])
        name = profile_for(row["system"], n, int(row["nodes"]))
        topo = nccl.profile_topology(name)
        m = float(row["message_bytes"])
        gpu = str(nccl.load_profiles()[name]["gpu"])  # LL128's default follows the GPU
        _, alg, proto, _k = plan(topo, np.arange(n), m, 1.0, algorithm="auto", protocol="auto",
                                 channels=0, ll128=None, gpu=gpu)
        t = run_collective(topo, "nccl_allreduce", m, record=False, gpu=gpu).time_s
        bus = m / t * 2 * (n - 1) / n / 1e9
        meas = float(row["busbw_GBps"])
        err = bus / meas - 1
        errs.setdefault(name, []).append(err)
        print(f"{row['id']:<5} {name:<16} {int(m):>11} {alg + '/' + proto:<12} {meas:>9.2f} {bus:>9.2f} {err:>+8.1%}")
    print("-" * len(head))
    every = [e for v in errs.values() for e in v]
    for name, v in [*errs.items(), ("all", every)]:
        a = [abs(e) for e in v]
        print(f"{name:<22} points {len(v):>3}  median |error| {statistics.median(a):6.1%}  max |error| {max(a):6.1%}")
    print(f"wall {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
