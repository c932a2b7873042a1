"""Speed of the flow-level network simulator as the cluster grows.

For p = 8 ... 4096 GPUs (servers of 8 GPUs, one NIC each, on a k-ary fat-tree) it
simulates one ring allreduce and one hierarchical allreduce of 100 MB and prints, per run,
the wall-clock seconds, the number of simulated transfers, the simulated time and the
closed form beside it. Wall-clock per transfer should stay flat or fall as p grows (the
engine's cost follows the number of transfer batches, not p^2 Python work).

    .venv/bin/python benchmarks/simulator.py [--p 8 64 256 1024 4096] [--mbytes 100]
"""

from __future__ import annotations

import argparse
import time

from gradwire.simulator.analytic import closed_form
from gradwire.simulator.collectives import run_collective
from gradwire.simulator.topology import make_topology

GPUS_PER_SERVER = 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, nargs="+", default=[8, 64, 256, 1024, 4096])
    ap.add_argument("--mbytes", type=float, default=100.0, help="allreduce buffer, MB (1e6 bytes)")
    ap.add_argument("--nic-gbps", type=float, default=100.0)
    ap.add_argument("--nvlink-gbps", type=float, default=2400.0)
    args = ap.parse_args()
    m = args.mbytes * 1e6
    print(f"servers of {GPUS_PER_SERVER} GPUs (NVLink {args.nvlink_gbps:g} Gbit/s, 1 us), one "
          f"{args.nic_gbps:g} Gbit/s NIC each (5 us per hop), fat-tree fabric; {args.mbytes:g} MB allreduce")
    head = (f"{'p':>5} {'collective':<23} {'build_s':>8} {'wall_s':>8} {'transfers':>10} "
            f"{'us/transfer':>11} {'sim_s':>10} {'closed_s':>10} {'rel_diff':>9}")
    print(head)
    print("-" * len(head))
    # warm-up: first-call costs (imports, numpy dispatch) are not the engine's
    run_collective(make_topology("star", 4, bandwidth_Bps=1e9), "ring_allreduce", 1e6)
    prev: dict[str, tuple[float, int]] = {}
    growth: list[str] = []
    for p in args.p:
        t0 = time.perf_counter()
        topo = make_topology("servers", p, gpus_per_server=GPUS_PER_SERVER,
                             intra_bandwidth_Bps=args.nvlink_gbps * 1e9 / 8, intra_latency_s=1e-6,
                             nic_bandwidth_Bps=args.nic_gbps * 1e9 / 8, nic_latency_s=5e-6,
                             fabric="fat_tree")
        build = time.perf_counter() - t0
        for name in ("ring_allreduce", "hierarchical_allreduce"):
            t0 = time.perf_counter()
            run = run_collective(topo, name, m)
            wall = time.perf_counter() - t0
            cf = closed_form(topo, name, m)
            print(f"{p:>5} {name:<23} {build:>8.3f} {wall:>8.3f} {run.n_transfers:>10} "
                  f"{1e6 * wall / run.n_transfers:>11.3f} {run.time_s:>10.6f} {cf:>10.6f} "
                  f"{run.time_s / cf - 1:>9.1e}")
            if name in prev:
                w0, n0 = prev[name]
                growth.append(f"{name} p={p}: wall x{wall / w0:.1f} for transfers x{run.n_transfers / n0:.1f}")
            prev[name] = (wall, run.n_transfers)
    print()
    print("growth from the previous p:")
    for line in growth:
        print("  " + line)


if __name__ == "__main__":
    main()
