"""The meta-device trace of the shipped LLM decoders: FLOPs against the closed form, time to trace.

One command: ``python benchmarks/llm_trace.py [--seq-len N]``. For each shipped size it
builds the decoder on the meta device, traces one training step at batch 1, and prints the
traced FLOPs against ``6 N_matmul T + 14 B s^2 L h`` (their ratio must be 1) and against the
rule of thumb ``6 N T``, the estimated step on an H100 at amp_bf16, and the seconds the
trace took on this machine.
"""

from __future__ import annotations

import argparse
import time

from gradwire.models import build_model, count_params
from gradwire.models.estimate import estimate_step
from gradwire.models.flops import trace_spec
from gradwire.models.zoo.llama import SHIPPED, decoder_spec, training_flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: each model's)")
    ap.add_argument("--device", default="H100", help="target GPU of the estimate (default H100)")
    a = ap.parse_args()
    print(f"{'model':<14}{'params':>16}{'seq':>6}{'traced TFLOP':>14}{'/closed form':>14}{'/6NT':>8}"
          f"{'fwd+bwd ms':>12}{'trace s':>9}")
    for e in SHIPPED:
        seq = a.seq_len or e.seq_len
        n = count_params(build_model(e.name, device="meta"))
        t0 = time.perf_counter()
        tr = trace_spec(decoder_spec(e.name, e.config, seq), 1)
        dt = time.perf_counter() - t0
        est = estimate_step(tr, a.device, "amp_bf16")
        f = tr.total_flops()
        print(f"{e.name:<14}{n:>16,}{seq:>6}{f / 1e12:>14.1f}{f / training_flops(e.config, 1, seq):>14.6f}"
              f"{f / (6 * n * seq):>8.3f}{(est.forward_s + est.backward_s) * 1e3:>12.0f}{dt:>9.2f}")


if __name__ == "__main__":
    main()
