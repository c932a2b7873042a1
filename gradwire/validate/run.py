"""The validation run: measure on a shaped network, predict with the simulator, compare.

For every worker count K, one :class:`~gradwire.validate.netns.ShapedNetwork` of K hosts
is built; for every link rate its ``tbf`` shapers are set, the workers calibrate (a
ping-pong and one bulk transfer), time gloo collectives (K = the collective worker count
only) and train the QSGD paper's MLP with real DDP and each codec's communication hook.
Then the simulator predicts every measured case from the calibration and the measured
compute and codec costs alone, and :class:`ValidationResult` holds measured, predicted and
error per case (``error = predicted / measured - 1``). :func:`write_outputs` writes the
CSV rows, a JSON file with calibrations and records, and a dashboard with the
predicted-vs-measured panel.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gradwire.errors import ConfigError
from gradwire.validate.harness import run_workers
from gradwire.validate.hygiene import remove_leftovers
from gradwire.validate.model import (
    Calibration,
    calibration_from,
    predict_collective,
    predict_iteration,
)
from gradwire.validate.netns import ShapedNetwork, cleanup_stale

MB = 1_000_000
DEFAULT_CODECS = ("fp32", "qsgd(bits=4)", "qsgd(bits=8)", "onebit")
DEFAULT_SIZES_MB = (1, 2, 5, 10, 20, 50)


@dataclass(frozen=True)
class Case:
    """One measured case and its prediction (times in seconds)."""

    case: str  # "allreduce 5 MB", "train fp32", ...
    kind: str  # "collective" or "iteration"
    codec: str
    workers: int
    rate: str  # "100Mbit", "1Gbit"
    rate_bps: float
    size_bytes: float
    measured_s: float  # median over repetitions / timed iterations
    measured_min_s: float
    predicted_s: float
    reps: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0

    def record(self) -> dict[str, Any]:
        """The dashboard's validation record (plus the fields above, flat)."""
        d = {k: v for k, v in asdict(self).items() if k != "extra"}
        d["error"] = self.error
        for k, v in self.extra.items():
            d[k] = v
        return d


@dataclass
class ValidationResult:
    cases: list[Case] = field(default_factory=list)
    calibrations: list[dict[str, Any]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)  # every rank's measurements

    def of_kind(self, kind: str) -> list[Case]:
        return [c for c in self.cases if c.kind == kind]

    def summary(self, kind: str) -> dict[str, float]:
        """Median and max absolute error over the cases run on network-bound links."""
        errs = [abs(c.error) for c in self.of_kind(kind) if c.extra.get("network_bound", True)]
        if not errs:
            return {"n": 0, "median_abs_error": math.nan, "max_abs_error": math.nan}
        return {"n": len(errs), "median_abs_error": statistics.median(errs), "max_abs_error": max(errs)}


def parse_rate(text: str) -> float:
    """``"100Mbit"`` / ``"1Gbit"`` / ``"500kbit"`` / ``"1e8"`` -> bit/s."""
    t = text.strip().lower().removesuffix("/s").removesuffix("ps")
    units = {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1.0}
    for suffix, mult in units.items():
        if t.endswith(suffix):
            try:
                return float(t[: -len(suffix)]) * mult
            except ValueError:
                break
    try:
        return float(t)
    except ValueError:
        raise ConfigError(f"rate {text!r}: expected e.g. 100Mbit, 1Gbit or bits/s as a number") from None


def rate_label(rate_bps: float) -> str:
    if rate_bps >= 1e9 and rate_bps % 1e9 == 0:
        return f"{rate_bps / 1e9:g}Gbit"
    if rate_bps >= 1e6:
        return f"{rate_bps / 1e6:g}Mbit"
    return f"{rate_bps / 1e3:g}kbit"


def _calibrate_task(rate_bps: float) -> dict[str, Any]:
    # Half a second of data at the rate: long enough that the two message latencies and
    # TCP's first round trips are far below a percent of it.
    return {"task": "calibrate", "bulk_bytes": int(rate_bps / 8 * 0.5), "pings": 200, "bulk_reps": 3, "ring_reps": 3}


def run_validation(
    *,
    workers: Sequence[int] = (2, 4),
    rates_bps: Sequence[float] = (1e8, 1e9),
    codecs: Sequence[str] = DEFAULT_CODECS,
    sizes_mb: Sequence[float] = DEFAULT_SIZES_MB,
    collective_workers: int = 4,
    reps: int = 3,
    iterations: int = 5,
    warmup: int = 2,
    batch: int = 64,
    collectives: bool = True,
    training: bool = True,
    nice: int = 0,
    log: Callable[[str], None] = print,
) -> ValidationResult:
    """Measure and predict every case; see the module docstring."""
    for k in workers:
        if k < 2:
            raise ConfigError(f"--workers: each worker count must be >= 2, got {k}")
    if reps < 1 or iterations < 1 or warmup < 0:
        raise ConfigError("reps and iterations must be >= 1 and warmup >= 0")
    result = ValidationResult()
    for line in remove_leftovers():
        log(f"[validate] {line}")
    try:
        for name in cleanup_stale():
            log(f"[validate] removed network namespace {name} left by a killed run")
    except OSError:
        pass  # no `ip` here: ShapedNetwork says so below
    for k in workers:
        with ShapedNetwork(k, rates_bps[0]) as net:
            for rate in rates_bps:
                net.set_rate(rate)
                tasks: list[dict[str, Any]] = [_calibrate_task(rate)]
                do_coll = collectives and k == collective_workers
                if do_coll:
                    tasks.append({"task": "collectives", "reps": reps,
                                  "sizes_bytes": [int(s * MB) for s in sizes_mb]})
                if training:
                    tasks.append({"task": "train", "codecs": list(codecs), "iterations": iterations,
                                  "warmup": warmup, "batch": batch})
                if len(tasks) == 1:
                    continue
                log(f"[validate] K={k} at {rate_label(rate)}: {', '.join(t['task'] for t in tasks)}")
                t0 = time.monotonic()
                res = run_workers(net, {"tasks": tasks}, timeout_s=590.0, nice=nice)
                log(f"[validate]   measured in {time.monotonic() - t0:.0f} s")
                result.raw.append({"workers": k, "rate_bps": rate, "ranks": res})
    return evaluate(result.raw)


def evaluate(raw: Sequence[dict[str, Any]]) -> ValidationResult:
    """Predict every case in ``raw`` (the stored measurements, ``validation_raw.json``).

    Measuring and predicting are separate so a stored run can be predicted again by a
    changed model without measuring again: ``evaluate(json.load(open(path)))``. Only the
    calibration (ping-pong and one bulk transfer per network) feeds the network side; every
    collective and training case is judged, none is fitted.
    """
    result = ValidationResult(raw=list(raw))
    for run in raw:
        k, rate, res = int(run["workers"]), float(run["rate_bps"]), run["ranks"]
        cal = calibration_from(res[0]["calibrate"], rate, res[1]["calibrate"])
        result.calibrations.append({"workers": k, "rate": rate_label(rate), **cal.as_dict()})
        if "collectives" in res[0]:
            result.cases += _collective_cases(res[0]["collectives"], k, rate, cal)
        if "train" in res[0]:
            result.cases += _training_cases(res, k, rate, cal)
    return result


def _collective_cases(meas: dict[str, Any], k: int, rate: float, cal: Calibration) -> list[Case]:
    out = []
    for c in meas["cases"]:
        times = [float(t) for t in c["times_s"]]
        size = float(c["size_bytes"])
        pred = predict_collective(c["op"], size, k, cal)
        codec = "fp32" if c["op"] == "allreduce" else "uint8"
        out.append(Case(f"{c['op']} {size / MB:g} MB", "collective", codec, k, rate_label(rate), rate,
                        size, statistics.median(times), min(times), pred, len(times),
                        {"network_bound": cal.network_bound}))
    return out


def _training_cases(res: list[dict[str, Any]], k: int, rate: float, cal: Calibration) -> list[Case]:
    out = []
    for j, tr in enumerate(res[0]["train"]["train"]):
        ranks = [r["train"]["train"][j] for r in res]
        # Per iteration the slowest rank's period; the median over timed iterations.
        periods = [max(r["periods_s"][i] for r in ranks) for i in range(len(ranks[0]["periods_s"]))]
        sim = predict_iteration(tr, ranks, k, cal)
        extra = {
            "compute_s": sim.compute_s, "comm_s": sim.comm_s, "exposed_comm_s": sim.exposed_comm_s,
            "encode_s": sim.encode_s, "decode_s": sim.decode_s, "bytes_per_rank": sim.bytes_per_rank,
            "final_loss": tr["final_loss"], "network_bound": cal.network_bound,
        }
        out.append(Case(f"train {tr['codec']}", "iteration", tr["codec"], k, rate_label(rate), rate,
                        sim.bytes_per_rank, statistics.median(periods), min(periods),
                        sim.iteration_s, len(periods), extra))
    return out


def format_table(cases: Sequence[Case]) -> str:
    """A fixed-width table: case, K, rate, measured, predicted, error."""
    head = f"{'case':<28} {'K':>2} {'rate':>8} {'measured':>11} {'predicted':>11} {'error':>8}"
    lines = [head, "-" * len(head)]
    for c in cases:
        flag = "" if c.extra.get("network_bound", True) else "  (CPU-bound host: not judged)"
        lines.append(f"{c.case:<28} {c.workers:>2} {c.rate:>8} {c.measured_s * 1e3:>9.2f}ms "
                     f"{c.predicted_s * 1e3:>9.2f}ms {c.error:>+8.1%}{flag}")
    return "\n".join(lines)


def write_outputs(result: ValidationResult, out_dir: str | Path) -> list[Path]:
    """``validation_collectives.csv``, ``validation_training.csv``, ``validation.json``,
    ``validation_dashboard.html``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, name in (("collective", "validation_collectives.csv"), ("iteration", "validation_training.csv")):
        recs = [c.record() for c in result.of_kind(kind)]
        if not recs:
            continue
        keys = list(dict.fromkeys(k for r in recs for k in r))
        path = out / name
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(recs)
        written.append(path)
    path = out / "validation.json"
    path.write_text(json.dumps({
        "calibrations": result.calibrations,
        "summary": {k: result.summary(k) for k in ("collective", "iteration")},
        "records": [c.record() for c in result.cases],
    }, indent=2))
    written.append(path)
    path = out / "validation_raw.json"
    path.write_text(json.dumps(result.raw))
    written.append(path)
    try:
        from gradwire.report.dashboard import build_dashboard
    except ImportError:  # the dashboard is optional for a validation run
        return written
    html = build_dashboard([], title="GradWire validation", validation=dashboard_records(result))
    path = out / "validation_dashboard.html"
    path.write_text(html)
    written.append(path)
    return written


def dashboard_records(result: ValidationResult) -> list[dict[str, Any]]:
    """Records for the predicted-vs-measured panel (case, codec, workers, rate, measured_s,
    predicted_s, error), collectives and training iterations together."""
    keys = ("case", "codec", "workers", "rate", "measured_s", "predicted_s", "error")
    return [{k: c.record()[k] for k in keys} for c in result.cases]
