"""Convergence-loop throughput: iterations per second with K workers, per codec.

Each iteration of :func:`gradwire.convergence.run_convergence` computes K real per-worker
gradients of the model (one batched ``vmap(grad)`` pass), passes each through the codec
with its own state (``quantize_many``), averages, and takes an SGD step. This script times
that loop per codec (evaluations excluded: ``eval_every`` is larger than ``steps``) after
one warm-up run, and splits one iteration into its parts (per-worker gradients, codec
exchange, optimizer step) so the report says where the time goes.

    .venv/bin/python benchmarks/convergence.py --workers 16 --steps 10
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from gradwire.convergence import run_convergence
from gradwire.convergence.runner import _build_codec, _Exchange
from gradwire.models import build_model

DEFAULT_CODECS = [
    "fp32",
    "fp16",
    "qsgd(bits=8, bucket=512)",
    "qsgd(bits=4, bucket=512)",
    "qsgdinf(bits=4, bucket=512)",
    "nuqsgd(bits=4, bucket=512)",
    "onebit",
]


def breakdown(
    spec: str, model: str, workers: int, batch: int, reps: int, exchange: str
) -> dict[str, float]:
    """Median seconds of each part of one iteration, measured side by side."""
    net = build_model(model, seed=0)
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    names = list(params)

    def loss_fn(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(net, p, (x,)), y)

    gen = torch.Generator().manual_seed(0)
    x = torch.rand((workers, batch, 784), generator=gen)
    if model != "mlp":
        x = x.reshape(workers, batch, 1, 28, 28)
    y = torch.randint(0, 10, (workers, batch), generator=gen)
    per_worker = vmap(grad_and_value(loss_fn), in_dims=(None, 0, 0))
    codec, _ = _build_codec(spec, 0)
    ex = _Exchange(codec, names, [params[n].shape for n in names], workers, exchange, 0,
                   torch.device("cpu"))
    parts: dict[str, list[float]] = {"gradients_s": [], "codec_exchange_s": [], "step_s": []}
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        grads, _ = per_worker(params, x, y)
        t1 = time.perf_counter()
        mean = {n: ex.combine(n, grads[n]) for n in names}
        t2 = time.perf_counter()
        with torch.no_grad():
            for n in names:
                params[n].add_(mean[n], alpha=-0.01)
        t3 = time.perf_counter()
        parts["gradients_s"].append(t1 - t0)
        parts["codec_exchange_s"].append(t2 - t1)
        parts["step_s"].append(t3 - t2)
    return {k: sorted(v[1:])[len(v[1:]) // 2] for k, v in parts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16, help="samples per worker")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--codecs", nargs="*", default=DEFAULT_CODECS)
    ap.add_argument("--exchange", default="allgather")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model {args.model}, "
          f"K={args.workers}, batch/worker {args.batch}, {args.steps} steps, {args.exchange}")
    print(f"{'codec':32s} {'run it/s':>8s} {'loop it/s':>9s} {'grads ms':>9s} {'codec ms':>9s} "
          f"{'step ms':>8s}")
    for spec in args.codecs:
        common = {"model": args.model, "workers": args.workers, "batch_per_worker": args.batch,
                  "eval_every": 10**9, "exchange": args.exchange}
        run_convergence(codecs=[spec], steps=1, **common)  # warm-up (numba, allocator)
        t0 = time.perf_counter()
        run_convergence(codecs=[spec], steps=args.steps, **common)
        # "run it/s" includes the model build and two evaluations (steps 0 and last);
        # "loop it/s" is one iteration's parts alone (median of 3 after a warm-up).
        rate = args.steps / (time.perf_counter() - t0)
        b = breakdown(spec, args.model, args.workers, args.batch, reps=3, exchange=args.exchange)
        loop = 1.0 / sum(b.values())
        print(f"{spec:32s} {rate:8.2f} {loop:9.2f} {1e3 * b['gradients_s']:9.1f} "
              f"{1e3 * b['codec_exchange_s']:9.1f} {1e3 * b['step_s']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
