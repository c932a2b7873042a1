"""NCCL allreduce bus bandwidth: the simulator against published nccl-tests sweeps.

For every row of benchmarks/data/nccl_busbw.csv (one 8x A100 node, 1 MiB-16 GiB; two 8x
H100 nodes, 1 MiB-8 GiB; sources in the file) it simulates ``nccl_allreduce`` with NCCL's
own algorithm/protocol choice on the system's profile (simulator/nccl_profiles.yaml), and
prints the predicted bus bandwidth (algbw x 2(n-1)/n) beside the measured one, the chosen
algorithm/protocol, the error, and per system and overall the median and largest |error|,
for the held-out rows and for all.

A profile's bandwidths come from public specifications; its ``latency_us`` (the system's
own latency per operation beyond NCCL's model) is measured, and ``--fit`` shows how:

* ``ll``: from the smallest message of the same published sweep (``ll_anchor``, a row that
  is not in the csv and not judged): its measured time minus the model's LL time there;
* ``ll128`` and ``simple``: fitted on the even rows of the system's sweep (1, 4, 16 MiB...,
  in size order) by least squares of log(predicted/measured) over a grid; the odd rows are
  held out, and the table reports their error apart.

    .venv/bin/python benchmarks/nccl_busbw.py [--csv benchmarks/data/nccl_busbw.csv] [--fit]
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from gradwire.simulator import nccl
from gradwire.simulator.collectives import run_collective
from gradwire.simulator.collectives.nccl_allreduce import plan

CSV = Path(__file__).with_name("data") / "nccl_busbw.csv"
# csv (gpus, nodes, text in the system column) -> profile in simulator/nccl_profiles.yaml
SYSTEMS = {("A100", 8, 1): "a100_8x_node", ("H100", 16, 2): "h100_a3mega_2x8"}
GRID_US = np.concatenate([np.arange(0.0, 300.0, 5.0), np.arange(300.0, 2000.0, 20.0)])


def profile_for(system: str, gpus: int, nodes: int) -> str:
    for (word, g, n), name in SYSTEMS.items():
        if word in system and g == gpus and n == nodes:
            return name
    raise SystemExit(f"no profile for {system!r} ({gpus} GPUs, {nodes} nodes)")


def held_out(rows: list[dict[str, str]]) -> dict[str, bool]:
    """Row id -> whether it is held out: the odd rows of each system in size order."""
    out: dict[str, bool] = {}
    by_system: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_system.setdefault(r["system"], []).append(r)
    for rs in by_system.values():
        for i, r in enumerate(sorted(rs, key=lambda r: float(r["message_bytes"]))):
            out[r["id"]] = i % 2 == 1
    return out


def sim_s(topo: Any, n: int, m: float, opts: dict[str, Any]) -> float:
    return run_collective(topo, "nccl_allreduce", m, record=False, **opts).time_s


def fit(rows: list[dict[str, str]]) -> None:
    """Print each profile's ``latency_us`` as obtained from the data (see the docstring)."""
    profiles = nccl.load_profiles()
    hold = held_out(rows)
    for name, pr in profiles.items():
        mine = [r for r in rows if profile_for(r["system"], int(r["gpus"]), int(r["nodes"])) == name]
        if not mine:
            continue
        n = int(mine[0]["gpus"])
        topo = nccl.profile_topology(name)
        base = {"gpu": pr["gpu"], "cpu": pr["cpu"]}
        anchor = pr["ll_anchor"]
        ll_s = min(sim_s(topo, n, float(anchor["bytes"]), {**base, "algorithm": a, "protocol": "ll"})
                   for a in nccl.ALGORITHMS)
        ll_us = max(0.0, float(anchor["time_us"]) - ll_s * 1e6)
        layout = nccl.layout_of(topo, np.arange(n), ll128=nccl.ll128_default(pr["gpu"]))
        protos = nccl.allowed_protocols(layout)
        fit_rows = [r for r in mine if not hold[r["id"]]]
        t = {(r["id"], a, q): sim_s(topo, n, float(r["message_bytes"]), {**base, "algorithm": a, "protocol": q})
             for r in fit_rows for a in nccl.ALGORITHMS for q in protos}

        def loss(extra: dict[str, float], fit_rows: list[dict[str, str]] = fit_rows,
                 t: dict[tuple[str, str, str], float] = t, protos: tuple[str, ...] = protos) -> float:
            out = 0.0
            for r in fit_rows:
                pred = min(t[(r["id"], a, q)] + extra[q] * 1e-6 for a in nccl.ALGORITHMS for q in protos)
                meas = float(r["message_bytes"]) / (float(r["algbw_GBps"]) * 1e9)
                out += math.log(pred / meas) ** 2
            return out

        best = min((loss({"ll": ll_us, "ll128": a, "simple": b}), a, b) for a in GRID_US for b in GRID_US)
        print(f"{name}: latency_us: {{ll: {ll_us:.1f}, ll128: {best[1]:.1f}, simple: {best[2]:.1f}}}  "
              f"(ll from the {anchor['bytes']}-byte row; ll128/simple fitted on {len(fit_rows)} even rows, "
              f"sum of squared log errors {best[0]:.4f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--fit", action="store_true", help="print each profile's latency_us as fitted")
    args = ap.parse_args()
    rows = [r for r in csv.DictReader(open(args.csv, encoding="utf-8")) if r["collective"] == "all_reduce"]
    if args.fit:
        fit(rows)
        return
    hold = held_out(rows)
    profiles = nccl.load_profiles()
    head = (f"{'id':<5} {'profile':<16} {'bytes':>11} {'part':<8} {'choice':<12} {'measured':>9} "
            f"{'predicted':>9} {'error':>8}")
    print("busbw in GB/s (1e9 bytes/s); error = predicted / measured - 1; part: fit rows set the "
          "profile's ll128/simple latency, held-out rows judge it")
    print(head)
    print("-" * len(head))
    errs: dict[str, list[tuple[bool, float]]] = {}
    t0 = time.perf_counter()
    for row in rows:
        n = int(row["gpus"])
        name = profile_for(row["system"], n, int(row["nodes"]))
        pr = profiles[name]
        opts = {"gpu": str(pr["gpu"]), "cpu": str(pr["cpu"]), "latency_us": dict(pr["latency_us"])}
        topo = nccl.profile_topology(name)
        m = float(row["message_bytes"])
        _, alg, proto, _k = plan(topo, np.arange(n), m, 1.0, algorithm="auto", protocol="auto",
                                 channels=0, ll128=None, gpu=opts["gpu"], cpu=opts["cpu"],
                                 latency_us=opts["latency_us"])
        t = sim_s(topo, n, m, opts)
        bus = m / t * 2 * (n - 1) / n / 1e9
        meas = float(row["busbw_GBps"])
        err = bus / meas - 1
        errs.setdefault(name, []).append((hold[row["id"]], err))
        part = "held-out" if hold[row["id"]] else "fit"
        print(f"{row['id']:<5} {name:<16} {int(m):>11} {part:<8} {alg + '/' + proto:<12} {meas:>9.2f} "
              f"{bus:>9.2f} {err:>+8.1%}")
    print("-" * len(head))
    every = [e for v in errs.values() for e in v]
    for name, v in [*errs.items(), ("all", every)]:
        for label, sel in (("held-out", [abs(e) for h, e in v if h]), ("all rows", [abs(e) for _h, e in v])):
            print(f"{name:<16} {label:<9} points {len(sel):>3}  median |error| {statistics.median(sel):6.1%}  "
                  f"max |error| {max(sel):6.1%}")
    print(f"wall {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
