"""What produced a stored point, and the lock that keeps one driver per results folder.

A row is only as good as its inputs, and a results folder outlives the run that made it:
a re-run may be a newer GradWire, on another machine, with codec costs from another
source or measured again. :func:`point_provenance` names all of that for one point (the
GradWire version, a fingerprint of the device, the codec cost source, and a digest of the
exact prepared inputs the point's simulation reads), the store keeps it with the point,
and a re-run reuses a stored point only when its provenance equals the new one, saying
what it recomputes and why (:func:`explain_stale`).

:class:`OutputLock` is an advisory ``flock`` on ``<out>/.gradwire.lock`` held for a whole
run: a second driver on the same folder waits for it (up to a limit) or is refused with
the holder's pid, so two drivers never compute the same points at once. The kernel drops
the lock when its holder dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from gradwire.errors import StoreError

__all__ = ["DEFAULT_COST_SOURCE", "LOCK_NAME", "OutputLock", "device_fingerprint", "explain_stale",
           "inputs_digest", "open_out_dir", "point_provenance"]

LOCK_NAME = ".gradwire.lock"
# what a run says about its codec costs when the prepared profiles name no source
DEFAULT_COST_SOURCE = "measured in this run"


@lru_cache(maxsize=1)
def device_fingerprint() -> str:
    """The machine whose measurements a row holds: CPU model and cores, GPU, torch build."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu} x{cores}; {gpu}; torch {torch.__version__}"


def _canonical(value: Any) -> Any:
    """A JSON-ready, order-stable form of prepared inputs (dataclasses, tuples, floats)."""
    if hasattr(value, "__dataclass_fields__"):
        # descriptions of where numbers come from ("..., measured now" then "..., cached" for
        # the same numbers) are not inputs: the provenance's cost source carries their kind
        return {k: _canonical(getattr(value, k)) for k in sorted(value.__dataclass_fields__)
                if not k.endswith("_source")}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return repr(value)  # exact, and NaN-safe
    if isinstance(value, str | int | bool) or value is None:
        return value
    return repr(value)


def inputs_digest(parts: Sequence[Any]) -> str:
    """A stable hash of the exact inputs a point's simulation reads."""
    blob = json.dumps([_canonical(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def point_provenance(inputs: str, cost_source: str) -> dict[str, str]:
    from gradwire import __version__

    return {"gradwire": __version__, "device": device_fingerprint(), "codec_cost_source": cost_source,
            "inputs": inputs}


_WHY = {"gradwire": "another GradWire version", "device": "another device",
        "codec_cost_source": "another codec cost source", "inputs": "other profiled or measured inputs"}


def explain_stale(stored: Mapping[str, Mapping[str, Any]], wanted: Mapping[str, Mapping[str, Any]]) -> str:
    """One line saying how many stored points are recomputed, and why (most common first)."""
    reasons: dict[str, int] = {}
    for pid, want in wanted.items():
        have = stored.get(pid)
        if have is None:
            continue
        key = next((k for k in _WHY if have.get(k) != want.get(k)), None)
        if key is not None:
            label = _WHY[key] if have.get(key) is not None else "no provenance (an older store)"
            if key == "codec_cost_source" and have.get(key) is not None:
                label += f" ({have.get(key)!r} then, {want.get(key)!r} now)"
            reasons[label] = reasons.get(label, 0) + 1
    if not reasons:
        return ""
    n = sum(reasons.values())
    parts = ", ".join(f"{c} made with {r}" for r, c in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return f"recomputing {n} stored point(s): {parts}"


def open_out_dir(path: str | Path) -> Path:
    """The results folder, created if needed; a clear error when it cannot be."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out}: is a file, not a folder; pass a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"--out {out}: cannot create the folder ({exc.strerror}); pass a writable folder") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise StoreError(f"--out {out}: the folder is not writable; pass a writable folder")
    return out


class OutputLock:
    """An exclusive advisory lock on a results folder for the length of a run.

    ``wait_s`` is how long a second driver waits for the first to finish before it is
    refused; ``say`` is told once when it starts waiting.
    """

    def __init__(self, out_dir: str | Path, *, wait_s: float = 0.0,
                 say: Callable[[str], None] | None = None, poll_s: float = 0.2) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self.wait_s = float(wait_s)
        self.poll_s = poll_s
        self._say = say or (lambda _m: None)
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
            return f"pid {info.get('pid')}, started {time.strftime('%H:%M:%S', time.localtime(info.get('since', 0)))}"
        except (OSError, ValueError):
            return "another process"

    def acquire(self) -> OutputLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"results folder {self.path.parent}: cannot create its lock file ({exc.strerror})") from None
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise StoreError(f"results folder {self.path.parent}: cannot lock it ({exc.strerror})") from None
            if time.monotonic() >= deadline:
                holder = self._holder()
                os.close(fd)
                raise StoreError(
                    f"results folder {self.path.parent} is in use by another GradWire run ({holder}); "
                    "wait for it to finish, pass --wait SECONDS to wait for it, or choose another --out")
            if not told:
                self._say(f"results folder {self.path.parent} is in use by another run ({self._holder()}); "
                          f"waiting up to {self.wait_s:g} s for it")
                told = True
            time.sleep(self.poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": time.time()}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
