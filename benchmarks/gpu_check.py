"""The CUDA paths no CPU test reaches, in one run of a few minutes on an NVIDIA GPU.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--calibrate]

1. Every codec's round trip on CUDA is bit-exact: ``decode(encode(x))`` equals
   ``quantize(x)`` for the same seed, and the fixed-width encodings' bytes equal the CPU's.
2. Fixed-width encodings make no host round trip in the hot path: encode + decode run
   under ``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronizing
   call (``.item()``, ``.cpu()``, ``bool(tensor)``).
3. The DDP communication hook of every codec on NCCL with two processes (one GPU each;
   skipped with a message on a single-GPU machine): ranks stay identical.
4. GB/s of fixed-width 4-bit QSGD encode + decode against a device-to-device copy, both
   in gradient bytes (4 per element) per second; target: at least half the copy's.
5. With ``--calibrate``: ``run_sim.py calibrate-codecs --device cuda`` into
   ``models/codec_costs/<GPU>.json``, the shipped calibration scenarios use for that GPU.

Without CUDA it prints that every check was skipped and exits 0. The summary is printed
and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
ROUND_TRIP = ["fp32", "fp16", "bf16", "qsgd(bits=4, bucket=512)", "qsgd(bits=8, bucket=512)",
              "qsgd(bits=4, encoding='elias')", "qsgd(bits=4, encoding='dense')", "qsgdinf(bits=4)",
              "nuqsgd(bits=4)", "terngrad", "onebit", "signsgd", "signsgd(error_feedback=True)",
              "topk(ratio=0.01)", "powersgd(rank=4)"]
FIXED_WIDTH = ["qsgd(bits=4, bucket=512)", "qsgd(bits=8, bucket=512)", "qsgdinf(bits=4)",
               "nuqsgd(bits=4)", "terngrad", "onebit", "signsgd"]


def round_trips() -> list[dict[str, Any]]:
    from gradwire.codecs import make_codec
    from gradwire.codecs.measure import fresh_state

    out = []
    gen = torch.Generator().manual_seed(0)
    shapes = [(1024, 1000), (123457,)]
    for spec in ROUND_TRIP:
        codec = make_codec(spec)
        rec: dict[str, Any] = {"codec": spec}
        try:
            exact = same_bytes = True
            for shape in shapes:
                x = torch.randn(shape, generator=gen)
                xc = x.cuda()
                p = codec.encode(xc, fresh_state(codec, xc.device, 7))
                d = codec.decode(p)
                q = codec.quantize(xc, fresh_state(codec, xc.device, 7))
                exact &= bool(torch.equal(d, q)) and d.device.type == "cuda"
                pc = codec.encode(x, fresh_state(codec, x.device, 7))
                same_bytes &= pc.nbits == p.nbits and bool(torch.equal(pc.data, p.data.cpu()))
            rec.update(bit_exact=exact, bytes_equal_cpu=same_bytes)
        except Exception as exc:  # a check, not a test: record and go on
            rec.update(bit_exact=False, error=f"{type(exc).__name__}: {exc}")
        out.append(rec)
    return out


def host_syncs() -> list[dict[str, Any]]:
    from gradwire.codecs import make_codec
    from gradwire.codecs.measure import fresh_state

    out = []
    x = torch.randn(1 << 22, device="cuda")
    for spec in FIXED_WIDTH:
        codec = make_codec(spec)
        codec.decode(codec.encode(x, fresh_state(codec, x.device, 1)))  # warm-up, allocations
        state = fresh_state(codec, x.device, 1)
        torch.cuda.synchronize()
        rec: dict[str, Any] = {"codec": spec}
        try:
            torch.cuda.set_sync_debug_mode("error")
            codec.decode(codec.encode(x, state))
            rec["no_host_sync"] = True
        except RuntimeError as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            rec.update(no_host_sync=False,
                       sync_at=f"{Path(where.filename).name}:{where.lineno} {where.line}")
        finally:
            torch.cuda.set_sync_debug_mode("default")
        out.append(rec)
    return out


def bandwidth(n: int = 10**8, repeats: int = 10) -> dict[str, Any]:
    from gradwire.codecs import make_codec
    from gradwire.codecs.measure import fresh_state

    x = torch.randn(n, device="cuda")
    y = torch.empty_like(x)
    codec = make_codec("qsgd(bits=4, bucket=512)")

    def timed(fn: Any) -> float:
        fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(repeats):
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return sorted(times)[len(times) // 2]

    state = fresh_state(codec, x.device, 0)
    copy_s = timed(lambda: y.copy_(x))
    codec_s = timed(lambda: codec.decode(codec.encode(x, state)))
    copy_gbs, codec_gbs = 4 * n / copy_s / 1e9, 4 * n / codec_s / 1e9
    return {"numel": n, "copy_GBps": copy_gbs, "qsgd4_encode_decode_GBps": codec_gbs,
            "ratio": codec_gbs / copy_gbs, "target_ratio": 0.5, "meets_target": codec_gbs >= 0.5 * copy_gbs}


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from gradwire.codecs import CODECS
    from gradwire.codecs.ddp_hook import make_ddp_hook

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    results = {}
    for name in CODECS.names():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(),
                                    torch.nn.Linear(512, 10)).cuda()
        ddp = DDP(model, device_ids=[rank], bucket_cap_mb=1)
        ddp.register_comm_hook(*make_ddp_hook(name))
        opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
        gen = torch.Generator().manual_seed(100 + rank)
        try:
            for _ in range(3):
                xb = torch.randn(64, 256, generator=gen).cuda()
                yb = torch.randint(0, 10, (64,), generator=gen).cuda()
                opt.zero_grad()
                torch.nn.functional.cross_entropy(ddp(xb), yb).backward()
                opt.step()
            flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            results[name] = {"max_rank_diff": float(max((g - gathered[0]).abs().max() for g in gathered))}
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def ddp_nccl() -> dict[str, Any]:
    if torch.cuda.device_count() < 2:
        return {"skipped": f"NCCL needs one GPU per process; this machine has "
                           f"{torch.cuda.device_count()} GPU(s)"}
    import torch.multiprocessing as mp

    from gradwire.validate.hookcheck import free_port

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        mp.spawn(_ddp_worker, args=(2, free_port(), out), nprocs=2, join=True)
        res: dict[str, Any] = json.loads(Path(out).read_text())
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--calibrate", action="store_true",
                   help="also run calibrate-codecs --device cuda into models/codec_costs/<GPU>.json")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: every GPU check skipped (nothing was run)")
        return 0
    summary: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                               "cuda": torch.version.cuda}
    for name, fn in (("round_trip", round_trips), ("host_sync", host_syncs),
                     ("bandwidth", bandwidth), ("ddp_nccl", ddp_nccl)):
        print(f"--- {name}", flush=True)
        try:
            summary[name] = fn()
        except Exception as exc:
            summary[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(summary[name], indent=1), flush=True)
    if a.calibrate:
        from gradwire.codecs.calibrate import device_name, device_profile

        prof = device_profile(device_name("cuda")) or "gpu"
        target = ROOT / "models" / "codec_costs" / f"{prof.upper()}.json"
        from gradwire.codecs.calibrate import cli_main

        summary["calibration"] = {"file": str(target),
                                  "rc": cli_main(["--device", "cuda", "--out", str(target)])}
    Path(a.out).write_text(json.dumps(summary, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
