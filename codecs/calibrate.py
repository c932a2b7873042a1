"""Calibrating the codec cost model on the device at hand, and calibration files.

:func:`measure_series` times every codec's encode and decode, in steady state (the
error-feedback residual and warm start already set by one earlier call), on tensors of
``10^3 ... max_numel`` elements and on several tensors per call batch. :func:`fit`
finds the :class:`~gradwire.codecs.cost.DeviceConstants` by non-negative least squares on
relative errors, using only the sizes ``10^k`` and holding out the sizes ``3 * 10^k``;
it reports the held-out error per codec and refuses data it cannot explain
(:class:`CalibrationError`) rather than returning a negative or meaningless constant.
:func:`write_calibration` / :func:`load_calibration` store the constants with their
provenance (device, torch / CUDA / numba versions, date, format version) and check them
when read back. ``run_sim.py calibrate-codecs`` is the command line.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradwire.codecs.cost import CONSTANT_NAMES, KINDS, DeviceConstants, Work
from gradwire.errors import GradWireError

FORMAT = "gradwire-codec-costs"
FORMAT_VERSION = 1
# fp32 is the identity and is declared free (DDP sends the gradient itself), so it is not
# timed; every other codec family is, with the settings the built-in scenarios use.
DEFAULT_CODECS = (
    "fp16", "bf16", "qsgd(bits=4, bucket=512)", "qsgd(bits=8, bucket=512)", "qsgdinf(bits=4)",
    "qsgd(bits=4, encoding='elias')", "nuqsgd(bits=4)", "terngrad", "onebit", "signsgd",
    "signsgd(error_feedback=True)", "topk(ratio=0.01)", "powersgd(rank=4)",
)
# 1e8 float32 elements are 400 MB per tensor and several such temporaries per codec: on a
# small CPU host that takes minutes per codec and can exhaust memory, so the host stops at
# 1e7 unless told otherwise. A GPU goes to 1e8.
DEFAULT_MAX_NUMEL = {"cpu": 10**7, "cuda": 10**8}
# Several tensors per timed batch at the small sizes, where per-call and per-launch
# overheads dominate, so the fit sees costs that scale with the number of tensors.
COUNTS = (1, 8)
COUNTS_UP_TO = 10**5
# The fit is refused when its median relative error on the sizes it was fitted to exceeds
# this: a model that cannot reproduce its own training data explains nothing.
MAX_FIT_ERROR = 0.5


class CalibrationError(GradWireError, ValueError):
    """Timings the cost model cannot explain, or an unusable calibration file."""


@dataclass(frozen=True)
class Measurement:
    """One timed batch: ``count`` tensors of ``shape`` through one direction of one codec."""

    codec: str
    direction: str  # "encode" | "decode"
    shape: tuple[int, ...]
    count: int
    seconds: float  # fastest of the repeats, for the whole batch
    spread: float  # (max - min) / min over repeats
    held_out: bool

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def fit_sizes(max_numel: int) -> tuple[list[int], list[int]]:
    """``10^3, 10^4, ... <= max_numel`` (fitted) and ``3 * 10^k`` between them (held out)."""
    if max_numel < 10**4:
        raise CalibrationError(f"max_numel={max_numel}: must be >= 10000 so that at least two "
                               "fitted sizes and one held-out size exist")
    fitted = [10**k for k in range(3, 12) if 10**k <= max_numel]
    held = [3 * n for n in fitted if 3 * n < fitted[-1]]
    return fitted, held


def matrix_shape(n: int) -> tuple[int, int]:
    """A weight-like ``[rows, cols]`` with about ``n`` elements, rows near sqrt(n)."""
    rows = max(1, round(math.sqrt(n)))
    return rows, max(1, n // rows)


def device_name(device: str) -> str:
    """The device's model name: the GPU's name, or the CPU's model from /proc/cpuinfo."""
    if device == "cuda":
        import torch

        return str(torch.cuda.get_device_name())
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_profile(name: str) -> str | None:
    """The ``models/devices.yaml`` entry a device name belongs to (``"NVIDIA H200"`` ->
    ``"H200"``), or None (a CPU, an unlisted GPU)."""
    from gradwire.models.devices import list_devices

    hits = [d for d in list_devices() if d.lower() in name.lower().replace("-", " ").split()
            or f" {d.lower()}" in f" {name.lower()}"]
    return max(hits, key=len) if hits else None


def versions(device: str) -> dict[str, str | None]:
    import numba
    import torch

    return {"torch": str(torch.__version__), "cuda": torch.version.cuda if device == "cuda" else None,
            "numba": str(numba.__version__), "python": platform.python_version()}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def measure_series(codecs: Sequence[str], *, device: str = "cpu", max_numel: int | None = None,
                   repeats: int = 5, seed: int = 0, threads: int | None = 1,
                   log: Callable[[str], None] | None = None) -> list[Measurement]:
    """Time every codec's encode and decode over the fitted and held-out sizes.

    ``threads`` host threads (torch and numba) while timing, restored afterwards; the
    default 1 because on a shared host a parallel region waits for a descheduled thread
    for a whole scheduler slice, which no cost model of the codec can explain.
    """
    import numba
    import torch

    if threads is None:
        return _measure(codecs, device, max_numel, repeats, seed, log)
    if threads < 1:
        raise CalibrationError(f"threads={threads}: must be >= 1")
    before = (torch.get_num_threads(), numba.get_num_threads())
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))))
    try:
        return _measure(codecs, device, max_numel, repeats, seed, log)
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def _measure(codecs: Sequence[str], device: str, max_numel: int | None, repeats: int, seed: int,
             log: Callable[[str], None] | None) -> list[Measurement]:
    import torch

    from gradwire.codecs import make_codec

    say = log or (lambda _m: None)
    if repeats < 1:
        raise CalibrationError(f"repeats={repeats}: must be >= 1")
    top = DEFAULT_MAX_NUMEL.get(device, 10**7) if max_numel is None else int(max_numel)
    fitted, held = fit_sizes(top)
    sizes = sorted([(n, False) for n in fitted] + [(n, True) for n in held])
    gen = torch.Generator().manual_seed(seed)
    out: list[Measurement] = []
    for spec in codecs:
        codec = make_codec(spec, default_seed=seed)
        say(f"timing {codec.spec()}")
        for n, is_held in sizes:
            shape = matrix_shape(n)
            for count in COUNTS if n <= COUNTS_UP_TO else (1,):
                xs = [torch.randn(shape, generator=gen).to(device) for _ in range(count)]
                states = [codec.new_state(device, worker=i) for i in range(count)]
                for x, st in zip(xs, states, strict=True):  # steady state: residual, warm start
                    codec.encode(x, st)
                enc: list[float] = []
                dec: list[float] = []
                for i in range(repeats + 1):
                    _sync(device)
                    t0 = time.perf_counter()
                    payloads = [codec.encode(x, st) for x, st in zip(xs, states, strict=True)]
                    _sync(device)
                    t1 = time.perf_counter()
                    for p in payloads:
                        codec.decode(p)
                    _sync(device)
                    t2 = time.perf_counter()
                    if i:  # the first run is a warm-up
                        enc.append(t1 - t0)
                        dec.append(t2 - t1)
                for direction, ts in (("encode", enc), ("decode", dec)):
                    # other processes only ever add time, so the fastest run is the best
                    # estimate of the codec's own (timeit's practice); the spread is kept
                    best = min(ts)
                    out.append(Measurement(codec.spec(), direction, tuple(shape), count, best,
                                           (max(ts) - best) / best if best > 0 else math.inf,
                                           is_held))
                del xs, states
    return out


def _work_of(m: Measurement) -> Work:
    from gradwire.codecs import make_codec

    w = make_codec(m.codec).work(m.shape)
    return (w.encode if m.direction == "encode" else w.decode).scaled(m.count)


@dataclass
class FitResult:
    """Shared device constants, per-codec refinements, and the errors of both.

    ``refine[codec][direction] = (a, b)`` scales the codec's size-proportional time and
    its fixed (launch and call) time on the shared constants: GradWire's codecs are not
    all equally fused on a given device, and a per-codec pair captures that while the
    declared work still fixes how time scales with shapes and tensor counts.
    """

    constants: DeviceConstants
    fit_error: float  # shared constants: median relative error on the fitted sizes
    shared_held_out: dict[str, float] = field(default_factory=dict)  # codec -> error
    refine: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    held_out: dict[str, dict[str, float]] = field(default_factory=dict)  # refined, codec -> dir -> error

    @property
    def codec_errors(self) -> dict[str, float]:
        """Per codec: the refined model's median held-out relative error, both directions."""
        return {c: d["median"] for c, d in self.held_out.items()}

    @property
    def median_held_out_error(self) -> float:
        errs = list(self.codec_errors.values())
        return statistics.median(errs) if errs else math.nan

    @property
    def median_shared_held_out_error(self) -> float:
        errs = list(self.shared_held_out.values())
        return statistics.median(errs) if errs else math.nan


def split_seconds(constants: DeviceConstants, work: Work) -> tuple[float, float]:
    """``(size-proportional, fixed)`` seconds of ``work``: the fixed part is launches and
    per-call overhead, the rest grows with the data."""
    fixed = Work(launches=work.launches, calls=work.calls)
    return constants.seconds(work) - constants.seconds(fixed), constants.seconds(fixed)


def refined_seconds(constants: DeviceConstants, work: Work, ab: tuple[float, float]) -> float:
    size_s, fixed_s = split_seconds(constants, work)
    return ab[0] * size_s + ab[1] * fixed_s


def _nnls_relative(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Non-negative ``x`` minimising ``sum_i ((a_i . x) / t_i - 1)^2`` (columns rescaled)."""
    from scipy.optimize import nnls

    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    ar = a / scale / t[:, None]
    sol, _ = nnls(ar, np.ones(len(t)), maxiter=50 * ar.shape[1])
    return np.asarray(sol / scale)


def fit(measurements: Sequence[Measurement], *, max_fit_error: float = MAX_FIT_ERROR) -> FitResult:
    """Non-negative least squares of the device constants on relative errors.

    Rows are the fitted (not held-out) measurements: ``sum_j work_j * c_j = seconds``,
    each divided by its ``seconds`` so that a 1 ms and a 1 s call weigh alike. Columns
    no measurement exercises get constant 0. Then, per codec and direction, the pair
    ``(a, b)`` of :class:`FitResult` on the same fitted sizes. Held-out sizes are only
    predicted, never fitted.
    """
    bad = [m for m in measurements if not (math.isfinite(m.seconds) and m.seconds > 0)]
    if bad:
        raise CalibrationError(
            f"{len(bad)} timing(s) are not positive finite seconds (first: {bad[0].codec} "
            f"{bad[0].direction} on {bad[0].shape}: {bad[0].seconds!r}); time the codecs again")
    train = [m for m in measurements if not m.held_out]
    if len(train) < len(KINDS):
        raise CalibrationError(f"{len(train)} fitted timings cannot determine {len(KINDS)} "
                               "constants; time more codecs or sizes")
    works = {id(m): _work_of(m) for m in measurements}
    a = np.stack([np.array(works[id(m)].vector()) for m in train])
    t = np.array([m.seconds for m in train])
    consts = DeviceConstants.from_vector([float(v) for v in _nnls_relative(a, t)])
    rel = np.abs(a @ consts.vector() / t - 1.0)
    fit_err = float(np.median(rel))
    if not fit_err <= max_fit_error:
        free, *_ = np.linalg.lstsq(a / t[:, None], np.ones(len(train)), rcond=None)
        neg = [CONSTANT_NAMES[i] for i in range(len(free)) if free[i] < 0 and a[:, i].any()]
        worst = sorted(zip(rel, train, strict=True), key=lambda p: -p[0])[0][1]
        raise CalibrationError(
            f"the cost model cannot explain these timings: median error {fit_err:.0%} on the "
            f"sizes it was fitted to (limit {max_fit_error:.0%}); worst: {worst.codec} "
            f"{worst.direction} on {worst.shape}"
            + (f"; an unconstrained fit would need negative {', '.join(neg)} (time falling as "
               "work grows)" if neg else "")
            + ". Time again on an idle device, or check the codec's declared work (Codec.work)")
    refine: dict[str, dict[str, tuple[float, float]]] = {}
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for m in train:
        groups.setdefault((m.codec, m.direction), []).append(m)
    for (codec, direction), ms in groups.items():
        cols = np.array([split_seconds(consts, works[id(m)]) for m in ms])
        sol = _nnls_relative(cols, np.array([m.seconds for m in ms]))
        refine.setdefault(codec, {})[direction] = (float(sol[0]), float(sol[1]))
    held: dict[str, dict[str, list[float]]] = {}
    shared: dict[str, list[float]] = {}
    for m in measurements:
        if m.held_out:
            w = works[id(m)]
            ab = refine.get(m.codec, {}).get(m.direction, (1.0, 1.0))
            held.setdefault(m.codec, {}).setdefault(m.direction, []).append(
                abs(refined_seconds(consts, w, ab) / m.seconds - 1))
            shared.setdefault(m.codec, []).append(abs(consts.seconds(w) / m.seconds - 1))
    summary = {
        c: {**{d: float(statistics.median(v)) for d, v in dirs.items()},
            "median": float(statistics.median([e for v in dirs.values() for e in v]))}
        for c, dirs in held.items()
    }
    return FitResult(consts, fit_err, {c: float(statistics.median(v)) for c, v in shared.items()},
                     refine, summary)


# --------------------------------------------------------------------------- files
@dataclass(frozen=True)
class Calibration:
    """A calibration file read back: constants and where they come from."""

    path: str
    kind: str  # "cpu" | "cuda"
    device_name: str
    profile: str | None  # devices.yaml entry, for GPUs
    versions: dict[str, Any]
    date: str
    constants: DeviceConstants
    median_held_out_error: float
    refine: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    # codec spec -> direction -> its own held-out error (the codecs this file calibrated)
    held_out: dict[str, dict[str, float]] = field(default_factory=dict)

    def error(self, spec: str, direction: str) -> float:
        """The stated held-out relative error of ``spec``'s ``direction`` (encode or
        decode): its own when this file calibrated that spec, else the file's median."""
        return self.held_out.get(spec, {}).get(direction, self.median_held_out_error)

    def seconds(self, spec: str, direction: str, work: Work) -> tuple[float, float]:
        """``(per-tensor, per-call)`` seconds of ``work``; the codec's refinement applies
        when this file calibrated that exact spec."""
        a, b = self.refine.get(spec, {}).get(direction, (1.0, 1.0))
        c = self.constants
        size_s, _ = split_seconds(c, work)
        return a * size_s + b * work.launches * c.launch_s, b * work.calls * c.call_s

    def source(self) -> str:
        torch_v = self.versions.get("torch")
        cuda = f", CUDA {self.versions['cuda']}" if self.versions.get("cuda") else ""
        return (f"measured file {Path(self.path).name} ({self.device_name}, torch {torch_v}{cuda}, "
                f"{self.date[:10]}; held-out error {self.median_held_out_error:.0%})")


def calibration_document(result: FitResult, measurements: Sequence[Measurement], *, device: str,
                         max_numel: int, repeats: int, threads: int | None) -> dict[str, Any]:
    name = device_name(device)
    fitted, held = fit_sizes(max_numel)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "device": {"kind": device, "name": name, "profile": device_profile(name)},
        "versions": versions(device),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "constants": dict(zip(CONSTANT_NAMES, result.constants.vector(), strict=True)),
        "fit": {"sizes_fitted": fitted, "sizes_held_out": held, "counts": list(COUNTS),
                "repeats": repeats, "threads": threads, "fit_error": result.fit_error,
                "load_average": os.getloadavg()[0], "cores": os.cpu_count()},
        "refine": {c: {d: list(ab) for d, ab in dirs.items()} for c, dirs in result.refine.items()},
        "held_out_error": result.held_out,
        "median_held_out_error": result.median_held_out_error,
        "shared_held_out_error": result.shared_held_out,
        "median_shared_held_out_error": result.median_shared_held_out_error,
        "measurements": [
            {"codec": m.codec, "direction": m.direction, "shape": list(m.shape), "count": m.count,
             "seconds": m.seconds, "spread": m.spread, "held_out": m.held_out}
            for m in measurements
        ],
    }


def write_calibration(doc: dict[str, Any], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out)
    return out


_REQUIRED = ("format", "format_version", "device", "versions", "date", "constants",
             "median_held_out_error")


def load_calibration(path: str | Path) -> Calibration:
    """Read and check a calibration file; every problem is one :class:`CalibrationError`."""
    p = Path(path)
    where = f"codec calibration file {str(p)!r}"
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{where} does not exist; make one with "
                               "`run_sim.py calibrate-codecs --out FILE`") from None
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{where} is not readable JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CalibrationError(f"{where} is not a GradWire codec calibration (format "
                               f"{FORMAT!r}); make one with `run_sim.py calibrate-codecs`")
    missing = [k for k in _REQUIRED if k not in doc]
    dev = doc.get("device")
    if isinstance(dev, dict):
        missing += [f"device.{k}" for k in ("kind", "name") if k not in dev]
    consts = doc.get("constants")
    if isinstance(consts, dict):
        missing += [f"constants.{k}" for k in CONSTANT_NAMES if k not in consts]
    if missing:
        raise CalibrationError(f"{where} lacks {', '.join(missing)}; calibrate again with "
                               "`run_sim.py calibrate-codecs`")
    if doc["format_version"] != FORMAT_VERSION:
        raise CalibrationError(f"{where} has format_version {doc['format_version']!r} but this "
                               f"GradWire reads version {FORMAT_VERSION}; calibrate again with "
                               "`run_sim.py calibrate-codecs`")
    if not isinstance(dev, dict) or not isinstance(consts, dict):
        raise CalibrationError(f"{where}: device and constants must be mappings")
    try:
        constants = DeviceConstants(**{k: consts[k] for k in CONSTANT_NAMES})
    except (GradWireError, TypeError) as exc:
        raise CalibrationError(f"{where}: {exc}") from None
    refine: dict[str, dict[str, tuple[float, float]]] = {}
    try:
        for spec, dirs in dict(doc.get("refine") or {}).items():
            for direction, ab in dict(dirs).items():
                a, b = (float(v) for v in ab)
                if not (a >= 0 and b >= 0 and math.isfinite(a) and math.isfinite(b)):
                    raise ValueError(f"{spec} {direction}: {ab!r}")
                refine.setdefault(str(spec), {})[str(direction)] = (a, b)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{where}: refine must map codec -> direction -> [a, b] with "
                               f"a, b >= 0 ({exc})") from None
    held_out: dict[str, dict[str, float]] = {}
    for spec, dirs in dict(doc.get("held_out_error") or {}).items():  # optional, for the verdict
        if isinstance(dirs, dict):
            held_out[str(spec)] = {str(d): float(e) for d, e in dirs.items()
                                   if d in ("encode", "decode") and isinstance(e, int | float) and e >= 0}
    return Calibration(str(p), str(dev["kind"]), str(dev["name"]), dev.get("profile"),
                       dict(doc["versions"]), str(doc["date"]), constants,
                       float(doc["median_held_out_error"]), refine, held_out)


def check_device(cal: Calibration, *, target_device: str | None, host_device: str) -> None:
    """Refuse a calibration made on another device than the one the scenario asks about."""
    if target_device is not None:
        if (cal.profile or "").lower() != target_device.lower():
            raise CalibrationError(
                f"codec calibration file {cal.path!r} was measured on {cal.device_name!r} "
                f"(profile {cal.profile!r}) but the scenario's model.target_device is "
                f"{target_device!r}; use a calibration made on a {target_device} or drop "
                "codec.costs")
        return
    here = device_name(host_device)
    if cal.kind != host_device or cal.device_name != here:
        raise CalibrationError(
            f"codec calibration file {cal.path!r} was measured on {cal.kind} {cal.device_name!r} "
            f"but the scenario's codecs run on this {host_device} ({here!r}); set "
            "model.target_device to the calibrated GPU or calibrate this device")




def shipped_calibration(profile: str) -> Path | None:
    """The calibration shipped for GPU ``profile`` (``models/codec_costs/<NAME>.json``)."""
    from importlib import resources

    try:
        root = resources.files("gradwire.models").joinpath("codec_costs")
        cand = root.joinpath(f"{profile.upper()}.json")
        if cand.is_file():
            return Path(str(cand))
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    return None


def cli_main(argv: Sequence[str]) -> int:
    """``run_sim.py calibrate-codecs``: time, fit, print the held-out error, write the file."""
    import argparse

    from rich.console import Console
    from rich.table import Table

    p = argparse.ArgumentParser(
        prog="run_sim.py calibrate-codecs",
        description="Time every codec on the device at hand over tensor sizes and counts, fit the "
        "cost model's device constants, report the error on held-out sizes, write a calibration "
        "file (use it with the scenario key codec.costs).")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", default="codec_costs.json", help="calibration file to write")
    p.add_argument("--max-numel", type=float, default=None,
                   help="largest tensor (default 1e7 on cpu, 1e8 on cuda)")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed runs per size (the fastest is kept: other processes only add time)")
    p.add_argument("--codec", dest="codecs", action="append", default=None, metavar="SPEC",
                   help="codec to time (repeatable; default: every codec family)")
    p.add_argument("--threads", type=int, default=None,
                   help="host threads while timing (default 1 on cpu; unchanged on cuda)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(list(argv))
    console = Console()
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CalibrationError("--device cuda: no CUDA device is available here; use --device cpu")
    threads = a.threads if a.threads is not None else (1 if a.device == "cpu" else None)
    top = int(a.max_numel) if a.max_numel is not None else DEFAULT_MAX_NUMEL[a.device]
    codecs = a.codecs or list(DEFAULT_CODECS)
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores:
        console.print(f"[yellow]warning:[/yellow] load average {load:.1f} exceeds the {cores} cores; "
                      "timings will include other processes' work")
    t0 = time.perf_counter()
    ms = measure_series(codecs, device=a.device, max_numel=top, repeats=a.repeats, seed=a.seed,
                        threads=threads, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    result = fit(ms)
    doc = calibration_document(result, ms, device=a.device, max_numel=top, repeats=a.repeats,
                               threads=threads)
    path = write_calibration(doc, a.out)
    t = Table(title=f"Held-out error on {doc['device']['name']} (fitted on 1e3..{top:.0e}, "
                    "judged on 3e3, 3e4, ...)")
    for col in ("codec", "encode", "decode", "median", "shared constants only"):
        t.add_column(col)
    for codec, errs in result.held_out.items():
        t.add_row(codec, f"{errs.get('encode', math.nan):.1%}", f"{errs.get('decode', math.nan):.1%}",
                  f"{errs['median']:.1%}", f"{result.shared_held_out.get(codec, math.nan):.1%}")
    console.print(t)
    c = result.constants
    console.print(
        f"median over codecs: {result.median_held_out_error:.1%} (shared constants only: "
        f"{result.median_shared_held_out_error:.1%}); fit error {result.fit_error:.1%}\n"
        f"constants: {c.bandwidth_Bps / 1e9:.2f} GB/s, launch {c.launch_s * 1e6:.2f} us, "
        f"call {c.call_s * 1e6:.2f} us, rng {c.rng_s * 1e9:.2f} ns, select {c.select_s * 1e9:.2f} ns, "
        f"pack {c.pack_s * 1e9:.2f} ns, varlen {c.varlen_s * 1e9:.2f} ns, reduce "
        f"{c.reduce_s * 1e9:.2f} ns, flop {c.flop_s * 1e12:.2f} ps\n"
        f"took {time.perf_counter() - t0:.1f} s; wrote {path}")
    return 0
