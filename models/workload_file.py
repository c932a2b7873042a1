"""Portable workload files: a profile measured on the user's GPU, simulated anywhere.

``run_sim.py profile MODEL --out workload.json`` (:mod:`gradwire.models.profile_cli`)
measures forward, backward and optimizer times and every gradient's ready time on the
device at hand (CUDA events on a GPU) and writes them with their provenance: device
name, precision, batch, torch and CUDA versions, date. A scenario names the file with
``model.profile``; its compute times are then used as measured, on any machine.

The file is JSON with a format name and version. A file with fields missing, or written
in a newer format than this version reads, is refused with a :class:`ConfigError` naming
``model.profile`` and what is wrong. Gradients are not stored (they would make the file as
large as the model); the codecs get them from one step of the same model here.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradwire.errors import ConfigError
from gradwire.models.profile import ParamInfo, Workload

FORMAT = "gradwire-workload"
FORMAT_VERSION = 1
FIELD = "model.profile"
_REQUIRED = {
    "format": str, "format_version": int, "model": dict, "batch_size": int, "precision": str,
    "dtype": str, "provenance": dict, "times": dict, "params": list,
}  # fmt: skip
_PROVENANCE = ("device", "device_name", "torch_version", "date")
_TIMES = ("forward_s", "backward_s", "optimizer_s")


@dataclass(frozen=True)
class WorkloadFile:
    """A read workload file: ``model`` is a zoo name or ``package.module:factory``."""

    path: str
    model: str
    module: str | None
    loss: str | None
    batch_size: int
    precision: str  # "" : PyTorch's default on the profiling device
    dtype: str
    provenance: dict[str, Any]
    forward_s: float
    backward_s: float
    optimizer_s: float
    params: tuple[ParamInfo, ...]
    seq_len: int | None = None  # tokens per sequence of a decoder (LLM) profile

    def describe(self) -> str:
        p = self.provenance
        prec = self.precision or "PyTorch default"
        return (f"measured file ({p['device_name']}, {prec}, batch {self.batch_size}, torch "
                f"{p['torch_version']}, {p['date']}: {Path(self.path).name})")  # fmt: skip


def workload_document(
    workload: Workload, *, module: str | None = None, loss: str | None = None,
    seq_len: int | None = None,
) -> dict[str, Any]:
    """The JSON document of a profiled ``workload`` (``seq_len``: a decoder's sequence length)."""
    import torch

    model: dict[str, Any] = {"name": workload.model, "module": module, "loss": loss}
    if seq_len is not None:
        model["seq_len"] = seq_len
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model,
        "batch_size": workload.batch_size,
        "precision": workload.precision,
        "dtype": workload.dtype,
        "provenance": {
            "device": workload.device,
            "device_name": workload.device_name,
            "torch_version": workload.torch_version,
            "cuda_version": torch.version.cuda,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "warmup": workload.warmup,
            "iters": workload.iters,
            "seed": workload.seed,
            "timer": "CUDA events" if workload.device == "cuda" else "time.perf_counter",
            "peak_memory_bytes": workload.peak_memory_bytes,
        },
        "times": {k: getattr(workload, k) for k in _TIMES},
        "params": [{"name": p.name, "shape": list(p.shape), "ready_s": p.ready_s}
                   for p in workload.params],
    }


def write_workload_file(
    workload: Workload, path: str | Path, *, module: str | None = None, loss: str | None = None,
    seq_len: int | None = None,
) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = workload_document(workload, module=module, loss=loss, seq_len=seq_len)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out


def _bad(path: str | Path, why: str) -> ConfigError:
    return ConfigError(f"{FIELD}: {str(path)!r} {why}")


def parse_workload_document(doc: Any, path: str | Path = "<document>") -> WorkloadFile:
    """Check and read a workload document (see :func:`read_workload_file`)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(path, f"is not a GradWire workload file (no \"format\": \"{FORMAT}\")")
    version = doc.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise _bad(path, f"has format version {version}, newer than this GradWire reads "
                         f"({FORMAT_VERSION}); upgrade GradWire or profile again with this one")  # fmt: skip
    missing = [k for k, t in _REQUIRED.items() if not isinstance(doc.get(k), t)]
    missing += [f"provenance.{k}" for k in _PROVENANCE if not isinstance(doc.get("provenance"), dict)
                or k not in doc["provenance"]]  # fmt: skip
    missing += [f"times.{k}" for k in _TIMES if not isinstance(doc.get("times"), dict)
                or not isinstance(doc["times"].get(k), int | float)]  # fmt: skip
    if missing:
        raise _bad(path, f"lacks {', '.join(dict.fromkeys(missing))}; profile again with "
                         "`run_sim.py profile`")  # fmt: skip
    times = {k: float(doc["times"][k]) for k in _TIMES}
    if not all(math.isfinite(v) and v >= 0 for v in times.values()) or times["backward_s"] <= 0:
        raise _bad(path, f"has invalid times {times}; they must be finite seconds, backward > 0")
    params = []
    for i, p in enumerate(doc["params"]):
        if not (isinstance(p, dict) and isinstance(p.get("name"), str)
                and isinstance(p.get("shape"), list) and isinstance(p.get("ready_s"), int | float)):  # fmt: skip
            raise _bad(path, f"lacks name, shape or ready_s in params[{i}]")
        shape = tuple(int(d) for d in p["shape"])
        params.append(ParamInfo(p["name"], shape, math.prod(shape), float(p["ready_s"])))
    ready = [p.ready_s for p in params]
    if not params or any(b < a for a, b in itertools.pairwise(ready)) \
            or ready[-1] > times["backward_s"] * (1 + 1e-9):  # fmt: skip
        raise _bad(path, "has ready times that are not non-decreasing within backward")
    model = doc["model"]
    if not isinstance(model.get("name"), str):
        raise _bad(path, "lacks model.name")
    return WorkloadFile(
        path=str(path), model=model["name"], module=model.get("module"), loss=model.get("loss"),
        batch_size=int(doc["batch_size"]), precision=doc["precision"], dtype=doc["dtype"],
        provenance=dict(doc["provenance"]), params=tuple(params), **times,
        seq_len=model["seq_len"] if isinstance(model.get("seq_len"), int) else None,
    )


def read_workload_file(path: str | Path) -> WorkloadFile:
    """Read and check a workload file; every problem is a ``ConfigError`` naming
    ``model.profile``."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise _bad(path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(path, f"is not JSON: {exc}") from None
    return parse_workload_document(doc, path)
