"""Sweeps over scenario points on a distributed engine (Dask), with a durable results store.

:func:`~gradwire.sweep.engine.run_sweep` evaluates points serially or on Dask (a local
cluster by default, a running one by address) and writes each finished point at once to a
:class:`~gradwire.sweep.store.ResultStore`; :func:`gradwire.run.run_scenario` does that for a whole
scenario (expand, prepare once, evaluate, export, dashboard); :func:`report` rebuilds the
tables and the dashboard of an output folder from its store alone, without re-running.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gradwire.errors import ConfigError
from gradwire.sweep.engine import ENGINES, FailedPoint, SweepReport, available_cores, run_sweep
from gradwire.sweep.store import STORE_FILENAME, ResultStore

__all__ = [
    "ENGINES",
    "STORE_FILENAME",
    "FailedPoint",
    "ResultStore",
    "SweepReport",
    "available_cores",
    "report",
    "run_sweep",
]

def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def report(out_dir: str | Path) -> dict[str, Path]:
    """Rebuild ``results.csv``, ``results.parquet`` and ``dashboard.html`` from the store.

    Nothing is simulated: the rows and traces come from ``out_dir/results.sqlite``, and the
    records a run wrote beside them (``published.json``, ``convergence.json``,
    ``validation.json``) are drawn again when present.
    """
    from gradwire.report.dashboard import write_dashboard

    out = Path(out_dir)
    db = out / STORE_FILENAME
    if not db.is_file():
        raise ConfigError(
            f"report: no results store {db}; pass the --out folder of an earlier run "
            f"(python run_sim.py SCENARIO --out {out} creates it)"
        )
    from gradwire.breakeven import result_columns
    from gradwire.breakeven_report import read_breakeven

    breakeven = read_breakeven(out)
    with ResultStore(db) as store:
        rows = store.rows()
        traces = store.traces()
        info = store.info("scenario", {}) or {}
        files = store.export(out, extra_columns=result_columns(breakeven.records) if breakeven else None)
    name = info.get("name") or (rows[0].scenario if rows else out.name)
    notes = [str(a) for a in info.get("assumptions", [])]  # the dashboard adds the estimate caveat
    extra = {key: _read_json(out / f"{key}.json") for key in ("published", "convergence", "validation")}
    files["dashboard"] = write_dashboard(
        out / "dashboard.html", rows, traces, title=f"GradWire: {name}", notes=notes, breakeven=breakeven,
        **{k: v for k, v in extra.items() if v},
    )
    return files
