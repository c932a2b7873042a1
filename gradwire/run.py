"""Running a scenario end to end: points -> rows in a durable store -> tables and dashboard.

:func:`run_scenario` expands the sweep, prepares workloads and codec measurements once,
evaluates every point on the chosen engine (serial, or Dask) writing each finished point
to the results store at once, then (if asked) runs the convergence study and joins it with
the simulated iteration times, compares with any published figures the scenario names,
and writes ``results.csv``, ``results.parquet`` and ``dashboard.html`` into the output
folder. Everything written is derived from the stored rows.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradwire.pipeline import Prepared, evaluate_point, prepare
from gradwire.results import Row, Trace
from gradwire.scenarios.limits import DEFAULT_MAX_POINTS
from gradwire.scenarios.loader import Point, expand
from gradwire.scenarios.schema import PublishedFigure, Scenario
from gradwire.sweep.provenance import (
    DEFAULT_COST_SOURCE,
    OutputLock,
    explain_stale,
    inputs_digest,
    open_out_dir,
    point_provenance,
)


@dataclass
class RunOutcome:
    scenario: Scenario
    out_dir: Path
    rows: list[Row]
    traces: list[Trace]
    files: dict[str, Path]
    failed: list[dict[str, Any]] = field(default_factory=list)
    convergence: list[dict[str, Any]] = field(default_factory=list)
    time_to_target: list[dict[str, Any]] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)
    breakeven: Any = None  # gradwire.breakeven.BreakevenResult, when searched
    skipped: int = 0
    elapsed_s: float = 0.0


def convergence_exchange(quantized: str) -> str:
    """How the convergence runner combines quantized payloads, from the collective's
    declaration: re-quantized at every hop, or every worker's payload decoded."""
    from gradwire.simulator.collectives.base import collective_info

    return "compressed_allreduce" if collective_info(quantized).requantizes else "allgather"


def _matches(row: Row, point: dict[str, Any]) -> bool:
    for k, v in point.items():
        have = row.params.get(k, getattr(row, k, None))
        if have != v:
            return False
    return True


def compare_published(rows: Sequence[Row], figures: Sequence[PublishedFigure]) -> list[dict[str, Any]]:
    """Each published figure beside GradWire's prediction of the same quantity.

    ``speedup_vs_fp32``: iteration time of fp32 over the codec's. ``comm_fraction_fp32``:
    the share of fp32's iteration that is not compute. ``comm_reduction``: fp32's
    communication time over the codec's, with codec (encode + decode) time counted inside
    communication time as the QSGD paper does.
    """
    out = []
    for fig in figures:
        cand = [r for r in rows if _matches(r, fig.point)]
        fp32 = next((r for r in cand if r.codec_name == "fp32"), None)
        row = next((r for r in cand if r.codec == fig.codec), None)
        pred = math.nan
        if fp32 is not None:
            if fig.quantity == "comm_fraction_fp32":
                pred = 1 - fp32.compute_s / fp32.iteration_s
            elif row is not None and fig.quantity == "speedup_vs_fp32":
                pred = fp32.iteration_s / row.iteration_s
            elif row is not None and fig.quantity == "comm_reduction":
                mine = row.iteration_s - row.compute_s
                pred = (fp32.iteration_s - fp32.compute_s) / mine if mine > 0 else math.inf
        out.append({"figure": fig.figure, "quantity": fig.quantity, "codec": fig.codec,
                    "published": fig.value, "predicted": pred,
                    "error": (pred - fig.value) / fig.value if fig.value else math.nan})
    return out


def _convergence_key(sc: Scenario) -> str:
    """What the convergence curves depend on (and nothing else): a re-run with the same
    settings reuses the stored curves instead of training again."""
    import hashlib

    cfg = sc.convergence
    what = {"convergence": cfg.model_dump(mode="json"), "codecs": list(sc.codecs), "seed": sc.seed,
            "workers": cfg.workers or sc.workers, "exchange": convergence_exchange(sc.exchange.quantized)}
    return "convergence:" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _join_point(sc: Scenario, rows: Sequence[Row]) -> tuple[int, bool]:
    """The point whose simulated iteration times the training curves are joined with: the
    first with the convergence study's worker count; else the first point, a proxy."""
    cfg = sc.convergence
    k = cfg.workers or sc.workers
    same = [r.point for r in rows if r.workers == k]
    if same:
        return min(same), cfg.model != sc.model.name or cfg.batch_per_worker != sc.model.batch_size
    return min(r.point for r in rows), True


def run_convergence_study(sc: Scenario, rows: Sequence[Row], *, progress: bool,
                          store: Any = None, log: Callable[[str], None] | None = None
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Real training with each codec (curves kept in ``store`` and reused by a re-run with
    the same settings), joined with the simulated iteration time of one point: the records
    say which point and whether it is a proxy (another model, batch or worker count than
    the point's)."""
    from dataclasses import asdict

    from gradwire.convergence import accuracy_vs_time, run_convergence, time_to_accuracy
    from gradwire.convergence.runner import Curve
    from gradwire.report.points import point_labels

    say = log or (lambda _m: None)
    cfg = sc.convergence
    key = _convergence_key(sc)
    cached = store.info(key) if store is not None else None
    if cached:
        say("convergence study: reusing the stored curves (same settings)")
        curves = [Curve(**c) for c in cached]
    else:
        say("running the convergence study (real training with each codec)")
        curves = run_convergence(model=cfg.model, task=cfg.task, codecs=list(sc.codecs),
                                 workers=cfg.workers or sc.workers, steps=cfg.steps,
                                 batch_per_worker=cfg.batch_per_worker, lr=cfg.lr, seed=sc.seed,
                                 eval_every=cfg.eval_every, progress=progress,
                                 exchange=convergence_exchange(sc.exchange.quantized))
        if store is not None:
            store.set_info(key, [asdict(c) for c in curves])
    point, proxy = _join_point(sc, rows)
    label = point_labels(rows).get(point, str(point))
    iteration_s = {r.codec: r.iteration_s for r in rows if r.point == point}
    ttt = time_to_accuracy(curves, iteration_s, target=cfg.target, target_fraction=cfg.target_fraction)
    for rec in ttt:
        rec["joined_point"] = label
        rec["proxy"] = proxy
    return accuracy_vs_time(curves, iteration_s), ttt


def _point_inputs(point: Point, prepared: Prepared) -> list[Any]:
    """The prepared inputs a point's simulation reads: of every field of ``prepared``, the
    entries of its workload (keyed by the workload key, or by (workload key, codec spec)
    for one of its codecs), and every plain field but the preparation's own duration."""
    from dataclasses import fields

    from gradwire.pipeline import workload_key

    key = workload_key(point.scenario)
    codecs = set(point.scenario.codecs)
    if point.scenario.parallelism != "ddp" and point.scenario.sharding.param_codec:
        codecs.add(point.scenario.sharding.param_codec)
    out: list[Any] = []
    for f in fields(prepared):
        value = getattr(prepared, f.name)
        if f.name == "prepare_s":
            continue
        if isinstance(value, dict):
            mine = {k: v for k, v in value.items()
                    if k == key or (isinstance(k, tuple) and len(k) == 2 and k[0] == key and k[1] in codecs)}
            out.append([f.name, sorted(mine.items(), key=lambda kv: str(kv[0]))])
        else:
            out.append([f.name, value])
    return out


def _cost_source(point: Point, prepared: Prepared) -> str:
    """Where the point's codec times come from, as a kind that is stable across runs:
    ``measured here``, ``measured file H200.json``, ``model``, ``declared: ...``. (The
    profiles' full descriptions also say "measured now" or "cached", which differ between
    two runs of the same numbers; the numbers themselves are in the inputs digest.)"""
    from gradwire.pipeline import workload_key

    key = workload_key(point.scenario)
    kinds = set()
    for spec in point.scenario.codecs:
        prof = prepared.codecs.get((key, spec))
        text = str(getattr(prof, "codec_source", "") or "")
        if text:
            kinds.add(text.split(" (", 1)[0])
    return "; ".join(sorted(kinds)) or DEFAULT_COST_SOURCE


def run_scenario(
    sc: Scenario,
    out_dir: str | Path,
    *,
    engine: str = "serial",
    scheduler: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    wait_s: float = 0.0,
) -> RunOutcome:
    """Run every point of ``sc``, reusing points stored in ``out_dir`` by an equal run.

    A stored point is reused only when its provenance (GradWire version, device, codec cost
    source, prepared inputs) equals this run's; the others are recomputed and ``log`` says
    how many and why. One run at a time holds ``out_dir``: a second waits up to ``wait_s``
    seconds for it, then is refused with a :class:`~gradwire.errors.StoreError`.
    """
    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    points = expand(sc, max_points=max_points)
    out = open_out_dir(out_dir)
    with OutputLock(out, wait_s=wait_s, say=say):
        return _run_locked(sc, out, points, engine=engine, scheduler=scheduler, progress=progress,
                           say=say, t0=t0)


def _run_locked(sc: Scenario, out: Path, points: list[Point], *, engine: str, scheduler: str | None,
                progress: bool, say: Callable[[str], None], t0: float) -> RunOutcome:
    from gradwire.report.dashboard import write_dashboard
    from gradwire.sweep.engine import run_sweep
    from gradwire.sweep.store import ResultStore

    store = ResultStore(out / "results.sqlite")
    store.set_info("scenario", {"name": sc.name, "assumptions": list(sc.assumptions)})
    # every point's inputs are prepared, stored or not: a stored point is reused only when
    # the inputs it was simulated from are the ones this run has
    prepared = prepare(sc, points=points, progress=progress, log=say) if points else Prepared()
    prov = {p.point_id: point_provenance(inputs_digest(_point_inputs(p, prepared)), _cost_source(p, prepared))
            for p in points}
    done, stored = store.done_ids(), store.provenance()
    stale = explain_stale({pid: stored.get(pid, {}) for pid in done if pid in prov}, prov)
    if stale:
        say(stale)
    # the largest clusters cost most to simulate: start them first so none finishes alone
    label = f"points, each with its verdict's {sc.verdict.draws} draws" if sc.verdict.enabled else "points"
    report = run_sweep(points, evaluate_point, prepared, store, engine=engine, scheduler=scheduler,
                       progress=progress, cost=lambda p: float(p.scenario.workers),
                       provenance=lambda p: prov[p.point_id], label=label)
    ids = {p.point_id: p.index for p in points}
    rows = sorted((r for r in store.rows() if r.point_id in ids), key=lambda r: (r.point, r.codec))
    traces = [t for t in store.traces() if t.point in ids.values()]
    failed = [{"point": f.point_id, "error": f.error} for f in report.failed]
    outcome = RunOutcome(sc, out, rows, traces, {}, failed=failed, skipped=report.skipped)
    if sc.convergence.enabled and rows:
        outcome.convergence, outcome.time_to_target = run_convergence_study(sc, rows, progress=progress,
                                                                            store=store, log=say)
    if sc.published:
        outcome.published = compare_published(rows, sc.published)
        for rec in outcome.published:  # a figure without a prediction is a failure, never a NaN
            if math.isnan(rec["predicted"]) and not failed:
                outcome.failed.append({"point": "published", "error": (
                    f"published figure {rec['figure']!r} ({rec['codec']}): no stored row of the scenario "
                    "matches its point and codec, so nothing was predicted")})
    columns = None
    if rows:
        from gradwire.breakeven import result_columns
        from gradwire.breakeven_report import breakeven_for_run

        outcome.breakeven = breakeven_for_run(sc, points, rows, prepared, prov, store, progress=progress, say=say)
        columns = result_columns(outcome.breakeven.records)
    outcome.files = store.export(out, rows=rows, extra_columns=columns)
    if outcome.breakeven is not None:
        from gradwire.breakeven_report import write_breakeven

        outcome.files.update(write_breakeven(out, outcome.breakeven))
    for name, records in (("time_to_target", outcome.time_to_target), ("published", outcome.published),
                          ("convergence", outcome.convergence)):
        if records:
            path = out / f"{name}.json"
            path.write_text(json.dumps(records, indent=1, default=float))
            outcome.files[name] = path
    outcome.files["dashboard"] = write_dashboard(  # it adds the caveat when rows are estimates
        out / "dashboard.html", rows, traces, title=f"GradWire: {sc.name}",
        published=outcome.published or None, convergence=outcome.convergence or None,
        notes=list(sc.assumptions), breakeven=outcome.breakeven,
    )
    outcome.elapsed_s = time.perf_counter() - t0
    return outcome
