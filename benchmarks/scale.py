"""One training iteration from 8 to 16,384 GPUs: wall time and peak memory of the simulator.

The iteration: forward 30 ms, backward 60 ms producing four 25 MB DDP buckets (at 15, 30,
45 and 60 ms), optimizer 2 ms, on servers of 8 GPUs (NVSwitch, 2.4 Tbit/s per GPU) with
one 100 Gbit/s NIC each on a k-ary fat-tree. Exchanges: flat ring allreduce, NCCL's
pipelined double binary tree (``nccl_allreduce`` forced to ``tree``), hierarchical
allreduce, a compressed allgather (4-bit payloads, an eighth of the buffer) and the
compressed reduce-scatter + allgather that re-quantizes at every hop (``compressed_allreduce``,
10 us of codec work per hop). Each run is its own process, so the peak resident memory
(``ru_maxrss``, the interpreter's ~50 MB included) is the run's own, and ``cpu_s`` is its
processor time (less sensitive than wall time to other load on the machine); the previous engine
(one row per flow, ``UngroupedNetwork``) runs beside it up to ``--old-max`` GPUs and its
wall time is shown as the ratio old/new.

    .venv/bin/python benchmarks/scale.py [--p 8 64 256 1024 4096 16384] [--old-max 1024]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

MB = 1e6
RUNS: dict[str, tuple[str, dict[str, object], float, float]] = {
    # label: (collective, options, payload per bucket as a fraction of 25 MB, hop codec s)
    "ring": ("ring_allreduce", {}, 1.0, 0.0),
    "tree": ("nccl_allreduce", {"algorithm": "tree", "protocol": "simple"}, 1.0, 0.0),
    "hierarchical": ("hierarchical_allreduce", {}, 1.0, 0.0),
    "allgather (4-bit)": ("ring_allgather", {}, 1 / 8, 0.0),
    "reduce-scatter (4-bit)": ("compressed_allreduce", {}, 1 / 8, 1e-5),
}


def one(p: int, label: str, old: bool) -> dict[str, float]:
    from gradwire.simulator.network import Network
    from gradwire.simulator.network_ungrouped import UngroupedNetwork
    from gradwire.simulator.timeline import BucketCost, IterationSpec, simulate_iteration
    from gradwire.simulator.topology import servers

    name, opts, frac, hop = RUNS[label]
    t0 = time.perf_counter()
    topo = servers(p // 8, 8, 3e11, 12.5e9, fabric="fat_tree")
    t1 = time.perf_counter()
    buckets = tuple(BucketCost(int(25 * MB / 4), 0.015 * (i + 1), (25 * MB * frac,), 1e-4 * frac, 1e-4 * frac,
                               hop_decode_s=hop / 2, hop_encode_s=hop / 2) for i in range(4))
    spec = IterationSpec(0.03, 0.06, 0.002, buckets, name, opts)
    c1 = time.process_time()
    res = simulate_iteration(spec, topo, network=UngroupedNetwork if old else Network)
    t2 = time.perf_counter()
    return {"build_s": t1 - t0, "wall_s": t2 - t1, "cpu_s": time.process_time() - c1,
            "iteration_s": res.iteration_s,
            "transfers": res.n_transfers,
            "peak_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def spawn(p: int, label: str, old: bool, timeout_s: float) -> dict[str, float] | None:
    cmd = [sys.executable, __file__, "--one", str(p), label] + (["--old"] if old else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{label} at p={p} failed:\n{exc.stderr}") from None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, nargs="+", default=[8, 64, 256, 1024, 4096, 16384])
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--old-max", type=int, default=1024, help="largest p the previous engine runs at")
    ap.add_argument("--old-timeout", type=float, default=120.0)
    ap.add_argument("--one", nargs=2, metavar=("P", "RUN"), help=argparse.SUPPRESS)
    ap.add_argument("--old", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], args.old)))
        return
    head = (f"{'p':>6} {'exchange':<23} {'wall_s':>8} {'cpu_s':>8} {'peak_MB':>8} {'transfers':>14} {'sim_iter_s':>10} "
            f"{'old_wall_s':>10} {'old_MB':>8} {'old/new':>8}")
    print(head)
    print("-" * len(head))
    for p in args.p:
        for label in args.runs:
            new = spawn(p, label, False, 3600)
            assert new is not None
            old = spawn(p, label, True, args.old_timeout) if p <= args.old_max else None
            if old is not None:
                assert abs(old["iteration_s"] - new["iteration_s"]) <= 1e-9 * new["iteration_s"]
                o = f"{old['wall_s']:>10.3f} {old['peak_MB']:>8.0f} {old['wall_s'] / new['wall_s']:>8.1f}"
            else:
                o = f"{'-':>10} {'-':>8} {'-':>8}"
            print(f"{p:>6} {label:<23} {new['wall_s']:>8.3f} {new['cpu_s']:>8.3f} {new['peak_MB']:>8.0f} "
                  f"{int(new['transfers']):>14,d} "
                  f"{new['iteration_s']:>10.4f} {o}", flush=True)


if __name__ == "__main__":
    main()
