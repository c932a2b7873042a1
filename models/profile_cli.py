"""``run_sim.py profile MODEL --out workload.json``: profile one GPU, predict the cluster.

Runs on the machine that has the user's GPU (or on a CPU: the same code, so it is
tested without one). ``MODEL`` is a zoo name or ``package.module:factory``. The command
measures forward, backward and optimizer times and every gradient's ready time (CUDA
events on a GPU), and writes a portable workload file
(:mod:`gradwire.models.workload_file`) that a scenario names with ``model.profile``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.console import Console


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_sim.py profile",
        description="Measure one training step of a model on this machine's GPU (or CPU) and "
        "write a portable workload file for `model.profile`.",
    )
    p.add_argument("model", help="zoo model name  or package.module:factory")
    p.add_argument("--out", required=True, help="workload file to write (JSON)")
    p.add_argument("--batch", type=int, default=32, help="batch size per GPU (default 32)")
    p.add_argument("--precision", choices=["fp32", "tf32", "amp_bf16", "amp_fp16"], default=None,
                   help="precision to run at (default: PyTorch's default on the device)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="device to profile on (default: cuda when present)")
    p.add_argument("--loss", choices=["cross_entropy", "mse"], default=None,
                   help="loss of a model given by import path (default cross_entropy)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--iters", type=int, default=10, help="timed steps (default 10; medians kept)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch")
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens per sequence of a decoder (LLM); default its pre-training context")
    return p


def main(argv: Sequence[str]) -> int:
    from gradwire.errors import ConfigError
    from gradwire.models.profile import profile_model
    from gradwire.models.usermodel import model_spec
    from gradwire.models.workload_file import write_workload_file

    a = _parser().parse_args(list(argv))
    console = Console()
    module = a.model if ":" in a.model else None
    if a.loss is not None and module is None:
        raise ConfigError("--loss: only for a model given as package.module:factory")
    spec = model_spec(a.model, module, a.loss)
    if a.seq_len is not None or spec.meta_only:
        from gradwire.models.zoo.llama import SHIPPED, decoder_spec, spec_seq_len

        entry = next((s for s in SHIPPED if s.name == a.model), None)
        if entry is None:
            raise ConfigError(f"--seq-len: only for a decoder ({', '.join(s.name for s in SHIPPED)})")
        seq = a.seq_len if a.seq_len is not None else entry.seq_len
        spec = decoder_spec(entry.name, entry.config, seq, published=entry.published_params,
                            source=entry.source)  # fmt: skip
    device = None if a.device == "auto" else a.device
    wl = profile_model(spec, a.batch, device=device, warmup=a.warmup, iters=a.iters, seed=a.seed,
                       keep_gradients=False, cache=False, time_budget_s=None, precision=a.precision)
    seq = spec_seq_len(spec) if spec.meta_only else None
    path = write_workload_file(wl, a.out, module=module, loss=a.loss, seq_len=seq)
    console.print(wl.describe())
    console.print(f"device {wl.device_name}, precision {a.precision or 'PyTorch default'}, "
                  f"{wl.iters} timed steps; wrote {path}")
    return 0
