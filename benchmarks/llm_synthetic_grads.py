"""How far the synthetic gradient source is from real gradients, codec by codec.

One command: ``python benchmarks/llm_synthetic_grads.py``. A small Llama-style decoder (the
architecture of the shipped LLMs, small enough to run on this CPU) takes one real training
step on uniform random tokens from seeded weights; each codec then encodes every real
gradient and the synthetic source's draw of the same shape (:mod:`gradwire.llm_codecs`).
Printed per codec: payload bits per element of each, and their ratio. Fixed-width codes
give 1.000 by construction; variable-length codes (QSGD's Elias coding) and anything whose
size follows the values show how much the normal draw misses a real gradient's
distribution. A freshly initialised model's gradients are not a trained LLM's either, so
the ratio is an indication of the source's error, not its measurement on a real run.
"""

from __future__ import annotations

import argparse

import torch

from gradwire.codecs import make_codec
from gradwire.llm_codecs import payload_bits
from gradwire.models.spec import build_spec
from gradwire.models.zoo.llama import DecoderConfig, decoder_spec

CODECS = ("bf16", "qsgd(bits=4, bucket=512)", "qsgd(bits=4, bucket=512, encoding='elias')",
          "qsgd(bits=2, bucket=512, encoding='elias')", "terngrad", "topk(ratio=0.01)", "onebit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cfg = DecoderConfig(a.layers, a.hidden, int(a.hidden * 8 / 3) // 64 * 64, a.hidden // 64,
                        max(1, a.hidden // 256), 32_000)  # fmt: skip
    spec = decoder_spec("bench", cfg, a.seq_len)
    model = build_spec(spec, seed=a.seed)
    x, y = spec.make_batch(a.batch, generator=torch.Generator().manual_seed(a.seed))
    spec.loss(model(x), y).backward()
    grads = {n: p.grad.detach() for n, p in model.named_parameters() if p.grad is not None}
    n_el = sum(g.numel() for g in grads.values())
    print(f"decoder {cfg.layers} layers, hidden {cfg.hidden}, {n_el:,} parameters, one real step "
          f"(batch {a.batch} x {a.seq_len} tokens, seed {a.seed})")
    print(f"{'codec':<46}{'real bits/el':>13}{'synthetic':>11}{'synthetic/real':>16}")
    for c in CODECS:
        codec = make_codec(c)
        real = synth = 0
        for g in grads.values():
            real += codec.encode(g, codec.new_state("cpu")).nbits
            synth += payload_bits(codec, tuple(g.shape), a.seed, 1, "cpu")[0]
        print(f"{c:<46}{real / n_el:>13.4f}{synth / n_el:>11.4f}{synth / real:>16.3f}")


if __name__ == "__main__":
    main()
