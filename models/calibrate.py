"""Fit the per-class efficiencies of the compute estimate on published throughputs.

``gpu_throughput.csv`` (shipped beside this module; a copy of the project's reference
data, NVIDIA DeepLearningExamples) gives single-GPU training throughputs of five models
on V100 and A100 in FP32, TF32 and AMP. Each usable row (one GPU, batch stated) becomes
a measured step time (batch over throughput, in the row's unit) and a row of seconds at
peak per term (:func:`gradwire.models.estimate.step_terms`) from the meta-device trace
of the matching zoo workload. The unknowns ``1/efficiency`` per class (>= 1) and the
per-operation cost (>= 0) minimise the squared relative error of the step time.

The error is measured on rows the fit did not see: leave-one-model-out cross-validation
fits on four models and predicts every row of the fifth; the held-out errors, per GPU
and precision, are what the estimate states. ``python -m gradwire.models.calibrate``
prints the table and writes ``efficiency.json`` (the fit on all rows plus the held-out
figures).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.optimize import lsq_linear

from gradwire.models.devices import get_device
from gradwire.models.estimate import TERMS, Efficiencies, resolve_precision, step_terms
from gradwire.models.flops import OpTrace, trace_spec
from gradwire.models.spec import get_model
from gradwire.models.zoo import published

# CSV model -> (family for cross-validation, zoo model, tokens counted per sequence)
_MODELS = {
    "ResNet-50 v1.5": ("ResNet-50", "resnet50", 1),
    "BERT-Large pre-training seq128": ("BERT-Large", "bert_large_seq128", 1),
    "BERT-Large pre-training seq512": ("BERT-Large", "bert_large_seq512", 1),
    "BERT-Large fine-tuning SQuAD": ("BERT-Large", "bert_large_squad", 1),
    "GNMT v2 (WMT16 En-De)": ("GNMT v2", "gnmt_v2", 2 * published.GNMT_LEN),  # source + target
    "Transformer-XL Base (WT103)": ("Transformer-XL", "transformer_xl_base", published.TXL_LEN),
}
_TBIG_PREFIX = "Transformer big"
_GPUS = {"A100-80GB": "A100", "A100-40GB": "A100-40GB", "V100-16GB": "V100-16GB",
         "V100-32GB": "V100"}  # fmt: skip
_PRECISIONS = {"FP32": "fp32", "TF32": "tf32", "AMP (mixed)": "amp_fp16"}
# Bytes each example's optimizer moves per parameter element (float32 state), relative to
# the SGD-with-momentum step the estimate prices (3 reads + 2 writes): Adam reads
# parameter, gradient and two moments and writes three (7 accesses); LAMB adds a second
# pass that reads the update and the parameter and writes the parameter (10 accesses).
_OPTIMIZER_ACCESSES = {"ResNet-50": 5, "BERT-Large": 10, "GNMT v2": 7, "Transformer-big": 7,
                       "Transformer-XL": 10}  # fmt: skip
_ACCUMULATION = re.compile(r"accumulation steps (\d+)")


@dataclass(frozen=True)
class RefRow:
    """One published measurement as a step: ``step_s`` seconds for ``batch`` sequences."""

    id: str
    family: str
    model: str
    gpu: str
    device: str
    precision: str
    batch: int
    step_s: float
    optimizer_scale: float = 1.0  # optimizer work per step relative to SGD with momentum


def load_reference(text: str | None = None) -> tuple[list[RefRow], list[str]]:
    """The usable single-GPU rows of the CSV, and a note per row left out (and why)."""
    if text is None:
        text = resources.files("gradwire.models").joinpath("gpu_throughput.csv").read_text()
    rows, skipped = [], []
    for r in csv.DictReader(io.StringIO(text)):
        if int(r["num_gpus"]) != 1:
            continue
        if not r["batch_per_gpu"]:
            skipped.append(f"{r['id']} ({r['model']}, {r['gpu']}): batch per GPU not published")
            continue
        batch, thr = int(r["batch_per_gpu"]), float(r["throughput"])
        if r["model"].startswith(_TBIG_PREFIX):
            # batches are in tokens: that many tokens of TBIG_LEN-token sentences
            family, model, seqs = "Transformer-big", "transformer_big", batch // published.TBIG_LEN
            step = batch / thr
        else:
            family, model, per_seq = _MODELS[r["model"]]
            seqs, step = batch, batch * per_seq / thr
        # With gradient accumulation the optimizer runs once per that many steps.
        acc = _ACCUMULATION.search(r["note"])
        opt = _OPTIMIZER_ACCESSES[family] / 5 / (int(acc.group(1)) if acc else 1)
        rows.append(RefRow(r["id"], family, model, r["gpu"], _GPUS[r["gpu"]],
                           _PRECISIONS[r["precision"]], seqs, step, opt))  # fmt: skip
    return rows, skipped


@lru_cache(maxsize=64)
def _trace(model: str, batch: int) -> OpTrace:
    return trace_spec(get_model(model), batch)


def design(rows: Sequence[RefRow]) -> np.ndarray:
    """``[rows, len(TERMS)]`` seconds at peak per term."""
    out = []
    for r in rows:
        dev = get_device(r.device)
        terms = step_terms(_trace(r.model, r.batch), dev, resolve_precision(dev, r.precision))
        terms[3] *= r.optimizer_scale
        out.append(terms)
    return np.array(out)


def fit(a: np.ndarray, step_s: np.ndarray) -> np.ndarray:
    """Multipliers minimising the squared relative step-time error (``1/e >= 1``,
    ``launch_s >= 0``)."""
    scaled = a / step_s[:, None]
    lower = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    res = lsq_linear(scaled, np.ones(len(step_s)), bounds=(lower, np.full(len(TERMS), np.inf)))
    return np.asarray(res.x)


@dataclass(frozen=True)
class Calibration:
    multipliers: np.ndarray  # fitted on every row
    rows: list[RefRow]
    heldout_error: np.ndarray  # predicted / measured - 1, each row predicted without its model
    fitted_error: np.ndarray  # the same with the all-rows fit (in-sample, for comparison)
    skipped: list[str]

    def table(self) -> list[dict[str, object]]:
        """Held-out |error| per (GPU, precision)."""
        groups: dict[tuple[str, str], list[float]] = {}
        for r, e in zip(self.rows, self.heldout_error, strict=True):
            groups.setdefault((r.gpu, r.precision), []).append(abs(float(e)))
        return [{"gpu": g, "device": _GPUS[g], "precision": p, "rows": len(v),
                 "median_abs_error": statistics.median(v), "max_abs_error": max(v)}
                for (g, p), v in sorted(groups.items())]  # fmt: skip


def calibrate(text: str | None = None) -> Calibration:
    """Leave-one-model-out cross-validation, then the fit on all rows."""
    rows, skipped = load_reference(text)
    a = design(rows)
    step = np.array([r.step_s for r in rows])
    families = sorted({r.family for r in rows})
    heldout = np.zeros(len(rows))
    for fam in families:
        test = np.array([r.family == fam for r in rows])
        x = fit(a[~test], step[~test])
        heldout[test] = a[test] @ x / step[test] - 1.0
    x_all = fit(a, step)
    return Calibration(x_all, rows, heldout, a @ x_all / step - 1.0, skipped)


def to_json(cal: Calibration) -> dict[str, object]:
    x = cal.multipliers
    errs = np.abs(cal.heldout_error)
    return {
        "source": "fitted on published single-GPU throughputs (NVIDIA DeepLearningExamples, "
        "gpu_throughput.csv) by gradwire.models.calibrate",
        "efficiencies": {"gemm": 1 / x[0], "small_gemm": 1 / x[1], "memory": 1 / x[2],
                         "optimizer": 1 / x[3], "launch_s": x[4]},
        "heldout": {
            "method": "leave-one-model-out cross-validation",
            "median_abs_error": float(np.median(errs)),
            "max_abs_error": float(errs.max()),
            "per_gpu_precision": cal.table(),
            "rows": [{"id": r.id, "model": r.model, "gpu": r.gpu, "precision": r.precision,
                      "batch": r.batch, "measured_step_s": r.step_s, "heldout_error": float(e),
                      "fitted_error": float(f)}
                     for r, e, f in zip(cal.rows, cal.heldout_error, cal.fitted_error, strict=True)],
        },
        "skipped": cal.skipped,
    }


def efficiencies_of(cal: Calibration) -> Efficiencies:
    d = to_json(cal)
    e = d["efficiencies"]
    h = d["heldout"]
    assert isinstance(e, dict) and isinstance(h, dict)
    return Efficiencies(e["gemm"], e["small_gemm"], e["memory"], e["optimizer"], e["launch_s"],
                        str(d["source"]), h["median_abs_error"], h["max_abs_error"],
                        _per_device(h["per_gpu_precision"]))  # fmt: skip


def _per_device(table: list[dict[str, object]]) -> tuple[tuple[str, str, float, float, int], ...]:
    from gradwire.models.estimate import per_device_errors

    return per_device_errors(table)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gradwire.models.calibrate",
                                description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--write", metavar="PATH", help="write the fit and held-out errors as JSON")
    a = p.parse_args(argv)
    cal = calibrate()
    eff = efficiencies_of(cal)
    print(f"efficiencies: large GEMM {eff.gemm:.3f}, small GEMM {eff.small_gemm:.3f}, "
          f"memory-bound {eff.memory:.3f}, optimizer {eff.optimizer:.3f}, "
          f"per-operation cost {eff.launch_s * 1e6:.2f} us")  # fmt: skip
    print("held-out (leave-one-model-out) |error| of single-GPU throughput:")
    print(f"  {'GPU':<10} {'precision':<9} {'rows':>4} {'median':>7} {'max':>7}")
    for t in cal.table():
        print(f"  {t['gpu']!s:<10} {t['precision']!s:<9} {t['rows']:>4} "
              f"{100 * float(t['median_abs_error']):>6.1f}% {100 * float(t['max_abs_error']):>6.1f}%")  # type: ignore[arg-type]
    print(f"  all rows: median {100 * eff.error_median:.1f}%, max {100 * eff.error_max:.1f}% "
          f"({len(cal.rows)} rows)")
    for r, e, f in zip(cal.rows, cal.heldout_error, cal.fitted_error, strict=True):
        print(f"  {r.id} {r.model:<20} {r.gpu:<10} {r.precision:<8} batch {r.batch:>4}: "
              f"held-out {100 * e:+6.1f}%  in-sample {100 * f:+6.1f}%")
    for s in cal.skipped:
        print(f"  left out: {s}")
    if a.write:
        Path(a.write).write_text(json.dumps(to_json(cal), indent=1) + "\n")
        print(f"wrote {a.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
