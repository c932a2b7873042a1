"""Host measurements of codec times that repeat: cached on disk with their spread.

When a scenario asks about the device at hand (no target device, no calibration file),
codec times are measured on it. Timings of the same work differ from run to run with the
host's load, so :func:`measure_cached` measures each tensor once per cache key -- codec
spec, tensor shapes and dtypes, device (kind and model name), torch / numba / Python
versions and the number of repeats -- and every later run, including a resumed sweep,
reads the same numbers back. An entry keeps each tensor's median encode and decode time,
their spread (``(max - min) / median`` over the repeats), the load average and core count
while measuring, and the date. A load average above the core count while measuring is
warned about (:class:`HostLoadWarning`): such timings measure the other processes too.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradwire.codecs.base import Codec
from gradwire.codecs.measure import measure_codec

CACHE_FORMAT = 1


class HostLoadWarning(UserWarning):
    """The host was busier than its cores while codec times were measured."""


@dataclass(frozen=True)
class HostTimes:
    """Per tensor: median encode/decode seconds and their spread; where they came from."""

    encode_s: tuple[float, ...]
    decode_s: tuple[float, ...]
    encode_spread: tuple[float, ...]
    decode_spread: tuple[float, ...]
    device: str
    date: str
    load_average: float
    cores: int
    key: str
    cached: bool  # read back from an earlier run

    def source(self) -> str:
        # the same whether this run measured it or read it from the cache: result rows
        # carry it, and the same scenario and seed give byte-identical rows
        return (f"measured here ({self.device}, {self.date[:10]}, key {self.key[:12]}, "
                f"load {self.load_average:.1f} on {self.cores} cores)")


def default_cache_dir() -> Path:
    """``$GRADWIRE_CACHE/codec_times`` or ``~/.cache/gradwire/codec_times``."""
    root = os.environ.get("GRADWIRE_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "gradwire") / "codec_times"


def cache_key(codec: Codec, tensors: Sequence[torch.Tensor], device: str, repeats: int) -> str:
    import platform

    import numba

    from gradwire.codecs.calibrate import device_name

    fields: dict[str, Any] = {
        "format": CACHE_FORMAT, "codec": codec.spec(), "repeats": repeats,
        "shapes": [list(t.shape) for t in tensors], "dtypes": [str(t.dtype) for t in tensors],
        "device": device, "device_name": device_name(device), "torch": str(torch.__version__),
        "numba": str(numba.__version__), "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def host_load() -> tuple[float, int]:
    """This host's one-minute load average and its number of cores: timings taken while the
    load exceeds the cores measure other processes' work too."""
    cores = os.cpu_count() or 1
    return os.getloadavg()[0], cores


def _time_one(codec: Codec, tensor: torch.Tensor, repeats: int, seed: int) -> tuple[float, float, float, float]:
    """Median encode and decode seconds after one unrecorded warm-up, and their spreads."""
    c = measure_codec(codec, tensor, repeats=repeats, warmup=1, seed=seed)
    return c.encode_s, c.decode_s, c.encode_spread, c.decode_spread


def measure_cached(codec: Codec, tensors: Sequence[torch.Tensor], *, device: str, repeats: int = 3,
                   seed: int = 0, cache_dir: str | Path | None = None, cache: bool = True,
                   log: Callable[[str], None] | None = None) -> HostTimes:
    """Each tensor's encode/decode time on ``device``: from the cache, else measured and stored."""
    from gradwire.codecs.calibrate import device_name

    say = log or (lambda _m: None)
    key = cache_key(codec, tensors, device, repeats)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"{codec.name}-{key[:24]}.json"
    if cache and path.exists():
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") == CACHE_FORMAT and doc.get("key") == key:
                return _times(doc, cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a torn or foreign file: measure again and overwrite it
    load0, cores = host_load()
    rows = [_time_one(codec, t, repeats, seed) for t in tensors]
    load = max(load0, host_load()[0])
    if load > cores:
        msg = (f"load average {load:.1f} exceeds this host's {cores} cores while timing "
               f"{codec.spec()}: the cached times include other processes' work; re-run on an "
               f"idle host after deleting {path}")
        warnings.warn(msg, HostLoadWarning, stacklevel=2)
        say(f"warning: {msg}")
    doc = {
        "format": CACHE_FORMAT, "key": key, "codec": codec.spec(), "device": device,
        "device_name": device_name(device), "repeats": repeats,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average": load, "cores": cores,
        "encode_s": [r[0] for r in rows], "decode_s": [r[1] for r in rows],
        "encode_spread": [r[2] for r in rows], "decode_spread": [r[3] for r in rows],
    }
    if cache:
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
    # what was written is what is used, so this run and every later one see the same numbers
    return _times(json.loads(json.dumps(doc)), cached=False)


def _times(doc: dict[str, Any], *, cached: bool) -> HostTimes:
    return HostTimes(
        tuple(float(v) for v in doc["encode_s"]), tuple(float(v) for v in doc["decode_s"]),
        tuple(float(v) for v in doc["encode_spread"]), tuple(float(v) for v in doc["decode_spread"]),
        f"{doc['device']} {doc['device_name']}", str(doc["date"]), float(doc["load_average"]),
        int(doc["cores"]), str(doc["key"]), cached,
    )


def accumulate_cached(tensors: Sequence[torch.Tensor], *, device: str, repeats: int = 3,
                      cache_dir: str | Path | None = None, cache: bool = True,
                      log: Callable[[str], None] | None = None) -> tuple[float, ...]:
    """Per tensor, the seconds to add one decoded gradient into a float32 sum
    (:func:`gradwire.codecs.measure.measure_accumulate`), cached like codec times."""
    import platform

    import numba

    from gradwire.codecs.calibrate import device_name
    from gradwire.codecs.measure import measure_accumulate

    say = log or (lambda _m: None)
    fields: dict[str, Any] = {
        "format": CACHE_FORMAT, "work": "accumulate", "repeats": repeats,
        "shapes": [list(t.shape) for t in tensors], "device": device,
        "device_name": device_name(device), "torch": str(torch.__version__),
        "numba": str(numba.__version__), "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    key = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"accumulate-{key[:24]}.json"
    if cache and path.exists():
        try:
            doc = json.loads(path.read_text())
            if doc.get("key") == key:
                return tuple(float(v) for v in doc["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    load0, cores = host_load()
    seconds = [measure_accumulate(t, repeats=repeats) for t in tensors]
    load = max(load0, host_load()[0])
    if load > cores:
        msg = (f"load average {load:.1f} exceeds this host's {cores} cores while timing the "
               f"gradient sums; re-run on an idle host after deleting {path}")
        warnings.warn(msg, HostLoadWarning, stacklevel=2)
        say(f"warning: {msg}")
    doc = {"format": CACHE_FORMAT, "key": key, "device": device, "load_average": load,
           "cores": cores, "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "seconds": seconds}
    if cache:
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
    return tuple(float(v) for v in json.loads(json.dumps(seconds)))
