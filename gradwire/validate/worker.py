"""One rank of a shaped-network measurement: ``python -m gradwire.validate.worker ...``.

Started by :mod:`gradwire.validate.harness` inside a host namespace, it joins a gloo
process group on the namespace addresses and runs, in order, the tasks named in its job
file (JSON):

* ``calibrate``: a ping-pong of 4-byte messages between ranks 0 and 1 (one-way message
  time), ONE bulk transfer rank 0 -> rank 1 (effective goodput of one flow), and with
  more than two ranks one concurrent ring of bulk transfers (every rank to its successor
  at once, plain send/receive: the goodput of a link carrying a flow each way while the
  host forwards K flows). No collective is timed here, so the calibration never sees the
  cases it is judged on.
* ``collectives``: real gloo ``all_reduce`` of float32 buffers and ``all_gather_into_tensor``
  of uint8 payloads, per size, a warm-up and timed repetitions (per repetition the slowest
  rank's time).
* ``train``: per codec, the QSGD paper's MLP: a local compute profile (forward, backward
  with every gradient's ready time, optimizer step, no communication); real DDP training
  with the codec's communication hook (warm-up and timed iterations); then the codec's
  encode/decode cost and payload size on the real gradient of every bucket DDP used.

Each rank writes its results as JSON to ``<out>/rank<r>.json``. Every loop is bounded in
count, and the process group has a timeout, so a lost peer ends the run with an error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from functools import partial
from typing import Any

import torch
import torch.distributed as dist

from gradwire.validate.hygiene import die_with_parent


def _max_over_ranks(x: float) -> float:
    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def calibrate(job: dict[str, Any]) -> dict[str, Any]:
    """One-way small-message time (ping-pong) and one bulk transfer, ranks 0 and 1."""
    rank = dist.get_rank()
    n_ping = int(job.get("pings", 200))
    bulk_bytes = int(job["bulk_bytes"])
    small = torch.zeros(1, dtype=torch.int32)
    one_way: list[float] = []
    dist.barrier()
    if rank in (0, 1):
        peer = 1 - rank
        for i in range(n_ping + 10):
            t0 = time.perf_counter()
            if rank == 0:
                dist.send(small, peer)
                dist.recv(small, peer)
            else:
                dist.recv(small, peer)
                dist.send(small, peer)
            if rank == 0 and i >= 10:  # the first round trips open connections
                one_way.append((time.perf_counter() - t0) / 2)
    dist.barrier()
    bulk = torch.zeros(bulk_bytes, dtype=torch.uint8)
    bulk_s: list[float] = []
    segs0 = _tcp_out_segments()
    if rank in (0, 1):
        for _ in range(int(job.get("bulk_reps", 1))):
            if rank == 0:
                t0 = time.perf_counter()
                dist.send(bulk, 1)
                dist.recv(small, 1)  # the receiver's acknowledgement: one small message
                bulk_s.append(time.perf_counter() - t0)
            else:
                dist.recv(bulk, 0)
                dist.send(small, 0)
    # TCP segments this host sent during the bulk transfer (its namespace's counters): the
    # sender's are data, the receiver's are its acknowledgements.
    out_segments = _tcp_out_segments() - segs0
    dist.barrier()
    # Two ranks share one gloo connection, on which the two directions run one after the
    # other (see gloo_pair_allgather): a ring of two would time that, not the links.
    ring_s = _ring_bulk(bulk, int(job.get("ring_reps", 3))) if dist.get_world_size() > 2 else []
    return {"one_way_s": one_way, "bulk_bytes": bulk_bytes, "bulk_s": bulk_s,
            "out_segments": out_segments, "ring_bulk_s": ring_s}


def _wait_all(works: list[Any]) -> None:
    for w in works:
        if w is not None:
            w.wait()


def _ring_bulk(bulk: torch.Tensor, reps: int) -> list[float]:
    """Every rank sends ``bulk`` to its successor while receiving one from its predecessor,
    all at once (plain point-to-point, no collective): each link then carries one flow each
    way, as in a ring collective, and the host forwards K flows at once. Per repetition
    the slowest rank's time, its small acknowledgement included."""
    rank, world = dist.get_rank(), dist.get_world_size()
    nxt, prv = (rank + 1) % world, (rank - 1) % world
    inbox = torch.empty_like(bulk)
    small = torch.zeros(1, dtype=torch.int32)
    out: list[float] = []
    for _ in range(reps):
        dist.barrier()
        t0 = time.perf_counter()
        _wait_all([dist.isend(bulk, nxt), dist.irecv(inbox, prv)])
        # the receiver's acknowledgement, as in the one-flow bulk transfer
        _wait_all([dist.isend(small, prv), dist.irecv(torch.zeros(1, dtype=torch.int32), nxt)])
        out.append(_max_over_ranks(time.perf_counter() - t0))
    return out


def _tcp_out_segments() -> int:
    """``Tcp: OutSegs`` of this network namespace (-1 when /proc/net/snmp is unreadable)."""
    try:
        with open("/proc/net/snmp") as fh:
            lines = [ln.split() for ln in fh if ln.startswith("Tcp:")]
        return int(lines[1][lines[0].index("OutSegs")])
    except (OSError, ValueError, IndexError):
        return -1


def collectives(job: dict[str, Any]) -> dict[str, Any]:
    """Time gloo allreduce (float32, ``size`` bytes per rank) and allgather (uint8, ``size``
    bytes gathered in all, ``size/world`` per rank) for each size; slowest rank per rep."""
    world = dist.get_world_size()
    reps = int(job.get("reps", 3))
    out: list[dict[str, Any]] = []
    for op in job.get("ops", ["allreduce", "allgather"]):
        for size in job["sizes_bytes"]:
            size = int(size)
            if op == "allreduce":
                buf = torch.ones(size // 4, dtype=torch.float32)
                run = partial(dist.all_reduce, buf)
            else:
                per = size // world
                inp = torch.full((per,), dist.get_rank(), dtype=torch.uint8)
                outb = torch.empty(per * world, dtype=torch.uint8)
                run = partial(dist.all_gather_into_tensor, outb, inp)
            times = []
            for rep in range(reps + 1):
                dist.barrier()
                t0 = time.perf_counter()
                run()
                dt = _max_over_ranks(time.perf_counter() - t0)
                if rep > 0:  # the first is a warm-up
                    times.append(dt)
            out.append({"op": op, "size_bytes": size, "times_s": times})
    return {"cases": out}


def _profile(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
             opt: torch.optim.Optimizer, reps: int) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Forward/backward/optimizer times and each parameter's gradient-ready time (s after
    backward starts), medians over ``reps`` local iterations after one warm-up."""
    names = [n for n, _ in model.named_parameters()]
    ready: dict[str, float] = {}
    t_b = [0.0]

    def mark(name: str) -> Any:
        def hook(_p: torch.Tensor) -> None:
            ready[name] = time.perf_counter() - t_b[0]
        return hook

    handles = [p.register_post_accumulate_grad_hook(mark(n)) for n, p in model.named_parameters()]
    fw, bw, op = [], [], []
    last: list[torch.Tensor] = []
    ready_runs: list[dict[str, float]] = []
    for i in range(reps + 1):
        x, y = batches[i % len(batches)]
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        t_b[0] = t1
        loss.backward()
        t2 = time.perf_counter()
        if i == reps:
            last = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
        opt.step()
        opt.zero_grad(set_to_none=False)
        t3 = time.perf_counter()
        if i > 0:
            fw.append(t1 - t0)
            bw.append(t2 - t1)
            op.append(t3 - t2)
            ready_runs.append(dict(ready))
    for h in handles:
        h.remove()
    med = statistics.median
    return {
        "forward_s": med(fw), "backward_s": med(bw), "optimizer_s": med(op),
        "params": [
            {"name": n, "numel": int(p.numel()), "ready_s": med([r[n] for r in ready_runs])}
            for n, p in zip(names, model.parameters(), strict=True)
        ],
    }, last


def _codec_costs(spec: str, grads: list[torch.Tensor], reps: int) -> dict[str, Any]:
    from gradwire.codecs.base import make_codec
    from gradwire.codecs.measure import measure_accumulate

    codec = make_codec(spec)
    out = []
    for k, g in enumerate(grads):
        st = codec.new_state(g.device, worker=dist.get_rank() + 1000 * k)
        enc, dec = [], []
        payload = codec.encode(g, st)
        for _ in range(reps):
            t0 = time.perf_counter()
            payload = codec.encode(g, st)
            t1 = time.perf_counter()
            codec.decode(payload)
            t2 = time.perf_counter()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
        out.append({"numel": int(g.numel()), "nbytes": int(payload.nbytes),
                    "encode_s": statistics.median(enc), "decode_s": statistics.median(dec),
                    "sum_s": measure_accumulate(g, repeats=reps)})
    return {"buckets": out}


def _groups_from_numels(params: list[dict[str, Any]], numels: list[int]) -> list[list[int]]:
    """Parameter indices of each DDP bucket: parameters in gradient-ready order cut into
    consecutive groups of the bucket sizes DDP reported (element counts, in hook order)."""
    order = sorted(range(len(params)), key=lambda i: params[i]["ready_s"])
    groups: list[list[int]] = []
    pos = 0
    for n in numels:
        g: list[int] = []
        total = 0
        while pos < len(order) and total < n:
            g.append(order[pos])
            total += int(params[order[pos]]["numel"])
            pos += 1
        if total != n:
            raise RuntimeError(f"DDP bucket of {n} elements does not match the gradient-ready order")
        groups.append(g)
    if pos != len(order):
        raise RuntimeError("DDP buckets do not cover every parameter")
    return groups


def train(job: dict[str, Any]) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from gradwire.codecs.ddp_hook import make_ddp_hook
    from gradwire.models import build_model
    from gradwire.models.data import load_digits

    rank = dist.get_rank()
    batch = int(job.get("batch", 64))
    x_train, y_train, _, _ = load_digits(size=28)
    gen = torch.Generator().manual_seed(1000 + rank)
    n_batches = 8
    batches = []
    for _ in range(n_batches):
        idx = torch.randint(0, x_train.shape[0], (batch,), generator=gen)
        batches.append((x_train[idx].reshape(batch, -1), y_train[idx]))
    warmup, iters = int(job.get("warmup", 2)), int(job.get("iterations", 5))
    results = []
    for spec in job["codecs"]:
        torch.manual_seed(0)  # identical initial weights on every rank (DDP also broadcasts)
        local = build_model("mlp")
        opt_l = torch.optim.SGD(local.parameters(), lr=0.01)
        dist.barrier()
        prof, last = _profile(local, batches, opt_l, reps=int(job.get("profile_reps", 5)))
        torch.manual_seed(0)
        model = DDP(build_model("mlp"))
        state, hook = make_ddp_hook(spec)
        model.register_comm_hook(state, hook)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        dist.barrier()
        ends = []
        n_log = n_timed = 0
        t_start = time.perf_counter()
        for i in range(warmup + iters):
            x, y = batches[i % n_batches]
            n_log = len(state.log)
            if i == warmup:
                n_timed = n_log
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=False)
            ends.append(time.perf_counter())
        periods = [b - a for a, b in zip([t_start, *ends[:-1]], ends, strict=True)][warmup:]
        # The buckets DDP really used, in the order their hooks ran (last iteration).
        last_calls = state.log[n_log:]
        groups = _groups_from_numels(prof["params"], [c.numel for c in last_calls])
        grads = [torch.cat([last[i].reshape(-1) for i in g]) for g in groups]
        dist.barrier()
        costs = _codec_costs(spec, grads, reps=int(job.get("codec_reps", 3)))
        # Per bucket, the hook's own encode/decode timers: medians over the timed iterations.
        timed = state.log[n_timed:]
        nb = len(last_calls)
        calls = [
            {"index": c.index, "numel": c.numel,
             "encode_s": statistics.median(x.encode_s for x in timed[b::nb]),
             "decode_s": statistics.median(x.decode_s for x in timed[b::nb]),
             "payload_bytes": c.payload_bytes, "wire_bytes": c.wire_bytes}
            for b, c in enumerate(last_calls)
        ]
        results.append({
            "codec": spec, "profile": prof, "buckets": [[prof["params"][i]["name"] for i in g] for g in groups],
            "costs": costs["buckets"], "periods_s": periods,
            "mean_period_s": _max_over_ranks(sum(periods) / len(periods)),
            "hook_calls": calls, "final_loss": float(loss.detach()),
        })
        del model
    return {"train": results}


TASKS = {"calibrate": calibrate, "collectives": collectives, "train": train}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gradwire.validate.worker")
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--world", type=int, required=True)
    ap.add_argument("--master", required=True, help="rank 0's address inside the shaped network")
    ap.add_argument("--port", type=int, default=29500)
    ap.add_argument("--job", required=True, help="JSON file: {'tasks': [{'task': ..., ...}]}")
    ap.add_argument("--out", required=True, help="directory for rank<r>.json")
    ap.add_argument("--timeout-s", type=float, default=300.0)
    ap.add_argument("--parent-pid", type=int, default=None,
                    help="the driver's pid: this worker exits when the driver is gone")
    a = ap.parse_args(argv)
    die_with_parent(a.parent_pid)
    torch.set_num_threads(1)  # one core's worth per rank: the host CPUs are shared
    with open(a.job) as fh:
        job = json.load(fh)
    os.environ["MASTER_ADDR"] = a.master
    os.environ["MASTER_PORT"] = str(a.port)
    dist.init_process_group("gloo", rank=a.rank, world_size=a.world,
                            timeout=timedelta(seconds=a.timeout_s))
    results: dict[str, Any] = {"rank": a.rank, "world": a.world}
    try:
        for t in job["tasks"]:
            results[t["task"]] = TASKS[t["task"]](t)
    finally:
        dist.destroy_process_group()
    with open(os.path.join(a.out, f"rank{a.rank}.json"), "w") as fh:
        json.dump(results, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
