"""Preparing a workload for a target GPU: the fast meta-device trace plus the estimate.

Usage::

    python benchmarks/estimate.py                      # ResNet-50 b64 and GPT-2 small b16 on A100
    python benchmarks/estimate.py --device H100 --precision amp_bf16

For each model: the wall and CPU time of ``trace_spec`` (build on the meta device, one
traced forward + backward) plus ``estimate_step`` (the calibrated per-class estimate),
which is everything a target-device workload needs but the codecs' gradients; the
estimated forward, backward and optimizer times at every precision the device has; and
the ratio of the preparation time to one estimated training step of the model on the
CPU it would otherwise be profiled on (measured here for one step at batch 2, scaled
linearly to the batch: a lower bound of the old CPU-profiling cost). Prints one JSON
object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from gradwire.models import get_model, profile_model
from gradwire.models.estimate import PRECISIONS, estimate_step
from gradwire.models.flops import trace_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--device", default="A100")
    ap.add_argument("--precision", default=None, help="precision of the timed estimate")
    ap.add_argument("--models", default="resnet50:64,gpt2_small:16")
    ap.add_argument("--no-cpu-step", action="store_true", help="skip the CPU comparison step")
    a = ap.parse_args()
    out = {"device": a.device, "load_average_at_start": round(os.getloadavg()[0], 2), "models": {}}
    for item in a.models.split(","):
        name, batch = item.split(":")
        b = int(batch)
        w0, c0 = time.perf_counter(), time.process_time()
        tr = trace_spec(get_model(name), b)
        est = estimate_step(tr, a.device, a.precision)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        per_prec = {}
        for p in (None, *PRECISIONS):
            try:
                e = estimate_step(tr, a.device, p)
            except Exception as exc:  # a precision the device lacks
                per_prec[str(p)] = str(exc)
                continue
            per_prec[e.precision] = {"forward_ms": round(e.forward_s * 1e3, 2),
                                     "backward_ms": round(e.backward_s * 1e3, 2),
                                     "optimizer_ms": round(e.optimizer_s * 1e3, 2),
                                     "step_ms": round((e.forward_s + e.backward_s + e.optimizer_s) * 1e3, 2)}
        row = {"batch": b, "prepare_wall_s": round(wall, 3), "prepare_cpu_s": round(cpu, 3),
               "ops": len(tr.names), "params": tr.num_params, "estimate": per_prec,
               "stated_error": est.source}
        if not a.no_cpu_step:
            wl = profile_model(name, 2, device="cpu", warmup=0, iters=1, cache=False, keep_gradients=False)
            cpu_step = (wl.forward_s + wl.backward_s + wl.optimizer_s) * b / 2
            row["cpu_step_at_batch_s_lower_bound"] = round(cpu_step, 2)
            row["ratio_cpu_step_to_prepare"] = round(cpu_step / wall, 1)
        out["models"][name] = row
        print(f"{name} batch {b} on {a.device}: prepared in {wall:.2f} s wall ({cpu:.2f} s CPU), "
              f"{len(tr.names)} ops traced; {est.precision}: forward {est.forward_s * 1e3:.2f} ms, "
              f"backward {est.backward_s * 1e3:.2f} ms, optimizer {est.optimizer_s * 1e3:.2f} ms"
              + (f"; one CPU step at this batch >= {row['cpu_step_at_batch_s_lower_bound']} s "
                 f"({row['ratio_cpu_step_to_prepare']}x the preparation)" if not a.no_cpu_step else ""))
    print(f"threads {torch.get_num_threads()}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
