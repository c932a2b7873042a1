"""Payload fuzzer: real payloads of every codec, corrupted, truncated and extended.

Run as a script (``python tests/fuzz_payloads.py --cases N --seed S``) it prints one JSON
line of counts; the test suite runs it in a subprocess, so a decoder that crashes the
process (a segmentation fault in a compiled kernel) fails the test instead of killing it.
Every mutated payload must either decode to a finite tensor of the right shape and dtype
or be refused with :class:`~gradwire.errors.PayloadError` (a clean refusal); anything else
is counted as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from dataclasses import replace
from typing import Any

import numpy as np
import torch

SPECS = (
    "fp32", "fp16", "bf16",
    "qsgd(bits=4, bucket=512)", "qsgd(bits=8, bucket=128)", "qsgd(bits=2, encoding='elias')",
    "qsgd(levels=22, bucket=512, encoding='elias')", "qsgd(bits=4, encoding='dense')",
    "qsgd(bits=12, bucket=64, encoding='dense')", "qsgdinf(bits=4)", "nuqsgd(bits=3)",
    "onebit", "signsgd", "signsgd(error_feedback=True)", "topk(ratio=0.01)", "topk(ratio=0.3)",
    "powersgd(rank=2)", "terngrad",
)
SHAPES = ((97, 131), (20_000,), (7, 3, 500), (50,))  # the last is under min_numel: sent raw


def mutate(payload: Any, rng: np.random.Generator) -> tuple[str, Any]:
    """One random corruption of ``payload``: (kind, mutated payload)."""
    data = payload.data.clone()
    n = data.numel()
    kind = rng.choice(["flip", "bytes", "truncate", "truncate_keep_nbits", "extend",
                       "extend_keep_nbits", "nbits", "zero", "ones", "shape", "spec", "version"])
    if kind == "flip" and n:
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, n))
            data[i] ^= int(1 << int(rng.integers(0, 8)))
        return kind, replace(payload, data=data)
    if kind == "bytes" and n:
        i = int(rng.integers(0, n))
        j = min(n, i + int(rng.integers(1, 65)))
        data[i:j] = torch.from_numpy(rng.integers(0, 256, j - i, dtype=np.uint8))
        return kind, replace(payload, data=data)
    if kind in ("truncate", "truncate_keep_nbits") and n:
        cut = int(rng.integers(1, n + 1))
        short = data[: n - cut].clone()
        nbits = payload.nbits if kind.endswith("keep_nbits") else 8 * short.numel()
        return kind, replace(payload, data=short, nbits=nbits)
    if kind in ("extend", "extend_keep_nbits"):
        extra = torch.from_numpy(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
        longer = torch.cat([data, extra])
        nbits = payload.nbits if kind.endswith("keep_nbits") else 8 * longer.numel()
        return kind, replace(payload, data=longer, nbits=nbits)
    if kind == "nbits":
        return kind, replace(payload, nbits=int(payload.nbits + rng.integers(-64, 65)))
    if kind == "zero":
        return kind, replace(payload, data=torch.zeros_like(data))
    if kind == "ones":
        return kind, replace(payload, data=torch.full_like(data, 255))
    if kind == "shape":
        shape = tuple(int(d) + int(rng.integers(-1, 2)) for d in payload.shape)
        return kind, replace(payload, shape=tuple(max(0, d) for d in shape))
    if kind == "spec":
        return kind, replace(payload, spec=payload.spec + "x")
    return "version", replace(payload, version=payload.version + 1)


def run(cases: int, seed: int) -> dict[str, Any]:
    from gradwire.codecs import make_codec
    from gradwire.errors import PayloadError

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    counts: dict[str, Any] = {"cases": 0, "accepted": 0, "clean_errors": 0, "tracebacks": 0,
                              "bad_output": 0, "codecs": len(SPECS), "examples": []}
    payloads = []
    for spec in SPECS:
        codec = make_codec(spec)
        for shape in SHAPES:
            g = torch.randn(shape, generator=gen) * 1e-2
            payloads.append((codec, codec.encode(g, codec.new_state())))
    for i in range(cases):
        codec, payload = payloads[i % len(payloads)]
        kind, bad = mutate(payload, rng)
        counts["cases"] += 1
        try:
            out = codec.decode(bad)
        except PayloadError:
            counts["clean_errors"] += 1
            continue
        except Exception:
            counts["tracebacks"] += 1
            if len(counts["examples"]) < 5:
                counts["examples"].append(f"{codec.spec()} {kind}: {traceback.format_exc(limit=3)}")
            continue
        counts["accepted"] += 1
        ok = (tuple(out.shape) == tuple(bad.shape) and out.dtype == bad.dtype
              and bool(torch.isfinite(out).all()))
        if not ok:
            counts["bad_output"] += 1
            if len(counts["examples"]) < 5:
                counts["examples"].append(f"{codec.spec()} {kind}: accepted with shape "
                                          f"{tuple(out.shape)} / non-finite values")
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    counts = run(a.cases, a.seed)
    print(json.dumps(counts))
    return 0 if counts["tracebacks"] == 0 and counts["bad_output"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
