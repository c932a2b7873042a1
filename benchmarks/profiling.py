"""Profiling speed: a cold profile (no cache) versus the cached second call.

Usage::

    python benchmarks/profiling.py                         # ResNet-50, batch 32, CPU
    python benchmarks/profiling.py --model mlp --batch 64
    python benchmarks/profiling.py --model resnet50 --batch 32 --iters 3 --warmup 1

Reports the wall time of ``profile_model`` from a cold, empty cache directory (meta pass
for FLOPs and bytes, model build, warm-up and timed steps, gradient capture, writing the
cache) with the process CPU time it used (the machine may be shared: CPU time divided by
the thread count is the wall time on an idle machine), then the wall time of the same
call again (served from the cache), and the measured step times. Prints one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from gradwire.models import profile_model


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        w = profile_model(
            args.model,
            args.batch,
            device=args.device,
            warmup=args.warmup,
            iters=args.iters,
            cache_dir=cache,
            progress=True,
        )
        cold_s = time.perf_counter() - t0
        cold_cpu_s = time.process_time() - c0
        t0 = time.perf_counter()
        again = profile_model(
            args.model,
            args.batch,
            device=args.device,
            warmup=args.warmup,
            iters=args.iters,
            cache_dir=cache,
        )
        cached_s = time.perf_counter() - t0
    assert again.to_json() == w.to_json()
    print(w.describe())
    print(
        f"cold profile: {cold_s:.2f} s wall, {cold_cpu_s:.2f} s CPU over {torch.get_num_threads()} "
        f"threads (load average {load0:.1f} at start); cached call: {cached_s * 1e3:.1f} ms"
    )
    print(
        json.dumps(
            {
                "model": w.model,
                "batch_size": w.batch_size,
                "device": w.device,
                "device_name": w.device_name,
                "threads": torch.get_num_threads(),
                "cold_profile_s": round(cold_s, 3),
                "cold_profile_cpu_s": round(cold_cpu_s, 3),
                "load_average_at_start": round(load0, 2),
                "timed_iters": w.iters,
                "cached_call_s": round(cached_s, 4),
                "forward_s": round(w.forward_s, 4),
                "backward_s": round(w.backward_s, 4),
                "optimizer_s": round(w.optimizer_s, 4),
                "params": w.num_params,
                "tensors": len(w.params),
            }
        )
    )


if __name__ == "__main__":
    main()
