"""Codec throughput and size on a 25M-element gradient and on a real MLP's gradient.

For every codec: encode and decode throughput in GB/s of fp32 input, compression ratio
``32 n / bits``, bits per element, and encode+decode time as a ratio to an fp16 cast
(``x.half()`` then ``.float()``) of the same tensor measured in the same run. On a CUDA
device a device-to-device copy is timed as well. Times are medians over ``--repeats``
runs after one warm-up, each from a fresh codec state (see ``measure_codec``).

    .venv/bin/python benchmarks/codecs.py            # 25M elements + MLP 784-4096-10
    .venv/bin/python benchmarks/codecs.py --quick    # 2.5M elements, fewer repeats
    .venv/bin/python benchmarks/codecs.py --numel 10000000 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from gradwire.codecs import make_codec
from gradwire.codecs.measure import measure_codec

CODECS = [
    "fp32",
    "fp16",
    "bf16",
    "qsgd(bits=4, bucket=512)",
    "qsgd(bits=8, bucket=512)",
    "qsgd(bits=2, bucket=128)",
    "qsgd(bits=4, bucket=512, encoding='elias')",
    "qsgd(bits=2, bucket=128, encoding='elias')",
    "qsgd(levels=23, bucket=512, encoding='dense')",
    "qsgdinf(bits=4, bucket=512)",
    "nuqsgd(bits=4, bucket=512)",
    "onebit",
    "signsgd",
    "signsgd(error_feedback=True)",
    "terngrad",
    "topk(ratio=0.01)",
    "powersgd(rank=4)",
]


def synthetic(numel: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Heavy-tailed gradient: normal noise times a log-normal per-element scale."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(numel, generator=g) * torch.exp(torch.randn(numel, generator=g)) * 1e-3
    rows = 1000 if numel % 1000 == 0 else 1
    return x.reshape(rows, -1).to(device)


def mlp_gradients(device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """Gradients of an MLP 784-4096-10 on one random batch of 256 (cross-entropy)."""
    g = torch.Generator().manual_seed(seed)
    w1 = (torch.randn(4096, 784, generator=g) / 28).requires_grad_()
    b1 = torch.zeros(4096, requires_grad=True)
    w2 = (torch.randn(10, 4096, generator=g) / 64).requires_grad_()
    b2 = torch.zeros(10, requires_grad=True)
    x = torch.randn(256, 784, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    logits = torch.relu(x @ w1.T + b1) @ w2.T + b2
    torch.nn.functional.cross_entropy(logits, y).backward()
    return [p.grad.detach().to(device) for p in (w1, b1, w2, b2) if p.grad is not None]


def median_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def baseline(tensors: list[torch.Tensor], repeats: int) -> tuple[float, float, float]:
    """fp16 cast (encode, decode) seconds and device copy seconds, summed over tensors."""
    dev = tensors[0].device
    halves = [t.half() for t in tensors]
    enc = median_time(lambda: [t.half() for t in tensors], dev, repeats)
    dec = median_time(lambda: [h.float() for h in halves], dev, repeats)
    copy = median_time(lambda: [t.clone() for t in tensors], dev, repeats)
    return enc, dec, copy


def table(title: str, tensors: list[torch.Tensor], specs: list[str], repeats: int) -> None:
    n = sum(t.numel() for t in tensors)
    gbytes = 4 * n / 1e9
    enc16, dec16, copy = baseline(tensors, repeats)
    dev = tensors[0].device
    print(f"\n{title}: {n:,} elements in {len(tensors)} tensor(s) on {dev}")
    print(f"fp16 cast: encode {gbytes / enc16:.2f} GB/s, decode {gbytes / dec16:.2f} GB/s; "
          f"device copy {gbytes / copy:.2f} GB/s")
    head = (f"{'codec':46s} {'enc GB/s':>9s} {'dec GB/s':>9s} {'ratio':>7s} {'bits/el':>8s} "
            f"{'x fp16 cast':>11s}")
    print(head)
    print("-" * len(head))
    for spec in specs:
        codec = make_codec(spec)
        costs = [measure_codec(codec, t, repeats=repeats, warmup=1) for t in tensors]
        enc = sum(c.encode_s for c in costs)
        dec = sum(c.decode_s for c in costs)
        bits = sum(c.nbits for c in costs)
        print(f"{spec:46s} {gbytes / enc:9.3f} {gbytes / dec:9.3f} "
              f"{32 * n / bits:7.2f} {bits / n:8.3f} {(enc + dec) / (enc16 + dec16):11.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2.5M elements, 1 repeat")
    ap.add_argument("--numel", type=int, default=None, help="synthetic gradient size")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--codecs", nargs="*", default=None, help="codec specs (default: all)")
    args = ap.parse_args()
    numel = args.numel or (2_500_000 if args.quick else 25_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    device = torch.device(args.device)
    specs = args.codecs or CODECS
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    print("qsgd/nuqsgd bits=b means s = 2^(b-1) - 1 levels (sign + b-1 magnitude bits); "
          "tensors under min_numel=10,000 elements are sent raw")
    table("synthetic heavy-tailed gradient", [synthetic(numel, device)], specs, repeats)
    table("MLP 784-4096-10 gradient (per tensor, small ones raw)", mlp_gradients(device), specs,
          repeats)


if __name__ == "__main__":
    main()
