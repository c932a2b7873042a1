"""Break-even points in a run: searched once (reused by a re-run of the same points),
written to ``breakeven.csv`` / ``breakeven.json``, and printed under the summary.

:func:`breakeven_for_run` is what :func:`gradwire.run.run_scenario` calls after the sweep;
:func:`write_breakeven` writes the files; :func:`print_breakeven` the terminal table (one
line per point and compressed option: the collective that carries it, whether it pays at
the point, and where it pays along bandwidth and worker count). Everything here is built
from the records of :func:`gradwire.breakeven.find_breakevens`, never by searching again.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradwire.breakeven import BANDWIDTH, WORKERS, BreakevenResult, cache_key, find_breakevens
from gradwire.pipeline import Prepared
from gradwire.results import Row
from gradwire.scenarios.loader import Point
from gradwire.scenarios.schema import Scenario

JSON_FILE = "breakeven.json"
CSV_FILE = "breakeven.csv"
CSV_COLUMNS = ("point", "point_id", "codec", "collective", "axis", "setting", "unit", "own_value", "pays_at_own",
               "status", "breakeven", "text", "option_s", "baseline_s", "baseline", "range_low", "range_high",
               "tolerance", "crossings")


def breakeven_for_run(sc: Scenario, points: Sequence[Point], rows: Sequence[Row], prepared: Prepared,
                      provenance: Mapping[str, Mapping[str, Any]], store: Any, *, progress: bool,
                      say: Callable[[str], None]) -> BreakevenResult:
    """The run's break-even records: stored ones when the same points (same provenance)
    and settings were searched before, else searched now and stored."""
    key = cache_key(sc, {p.point_id: provenance[p.point_id] for p in points if p.point_id in provenance})
    cached = store.info(key) if store is not None else None
    if cached is not None:
        say("break-even points: reusing the stored searches (same points and settings)")
        return BreakevenResult.from_json(cached)
    t0 = time.perf_counter()
    result = find_breakevens(points, rows, prepared, sc.breakeven, progress=progress)
    if result.records:
        say(f"break-even points: {len(result.records)} found with {result.evaluations} more evaluations of "
            f"points in {time.perf_counter() - t0:.1f} s")
    if store is not None:
        store.set_info(key, result.to_json())
    return result


def _plain(value: Any) -> Any:
    """JSON without NaN: a missing number is null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_breakeven(out_dir: str | Path, result: BreakevenResult) -> dict[str, Path]:
    """``breakeven.json`` (records and notes) and ``breakeven.csv`` (one line per point,
    option and axis; the crossings as JSON text)."""
    out = Path(out_dir)
    paths = {"breakeven": out / JSON_FILE, "breakeven_csv": out / CSV_FILE}
    paths["breakeven"].write_text(json.dumps(_plain(result.to_json()), indent=1))
    with paths["breakeven_csv"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in result.records:
            w.writerow([json.dumps(_plain(r[c])) if c == "crossings" else ("" if _plain(r[c]) is None else r[c])
                        for c in CSV_COLUMNS])
    return paths


def read_breakeven(out_dir: str | Path) -> BreakevenResult | None:
    """The records a run wrote into ``out_dir`` (None when it wrote none)."""
    path = Path(out_dir) / JSON_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    for r in data.get("records", []):
        for k in ("breakeven", "option_s", "baseline_s"):
            if r.get(k) is None:
                r[k] = math.nan
    return BreakevenResult.from_json(data)


def by_option(records: Sequence[Mapping[str, Any]]) -> dict[tuple[int, str], dict[str, Mapping[str, Any]]]:
    """Records keyed by (point, codec), then by axis."""
    out: dict[tuple[int, str], dict[str, Mapping[str, Any]]] = {}
    for r in records:
        out.setdefault((int(r["point"]), str(r["codec"])), {})[str(r["axis"])] = r
    return out


def print_breakeven(result: BreakevenResult | None, rows: Sequence[Row], console: Console, fmt: str = "table") -> None:
    """The break-even table under the summary (markdown with ``fmt="markdown"``; nothing
    for csv/json, whose output stays machine-readable: the files hold the records)."""
    from gradwire.report.points import point_labels

    if result is None or fmt in ("csv", "json"):
        return
    for note in result.notes:
        console.print(f"[yellow]{note}[/yellow]", highlight=False)
    if not result.records:
        return
    labels = point_labels(rows)
    recs = result.records
    ranges = []
    for axis in (BANDWIDTH, WORKERS):
        r = next((x for x in recs if x["axis"] == axis), None)
        if r is not None:
            what = f"{r['setting']} in {r['range_low']:g}-{r['range_high']:g} Gbit/s" if axis == BANDWIDTH else \
                f"{r['range_low']:g}-{r['range_high']:g}"
            ranges.append(f"{axis}: {what}")
    title = f"Break-even points against the best uncompressed baseline ({'; '.join(ranges)})"
    head = ["point", "codec", "exchange", "here", "bandwidth", "workers"]
    lines = []
    for (point, codec), axes in by_option(recs).items():
        any_rec = next(iter(axes.values()))
        here = "pays" if any_rec["pays_at_own"] else "loses"
        lines.append([labels.get(point, str(point)), codec, str(any_rec["collective"]), here,
                      str(axes[BANDWIDTH]["text"]) if BANDWIDTH in axes else "-",
                      str(axes[WORKERS]["text"]) if WORKERS in axes else "-"])
    if fmt == "markdown":
        console.print(f"\n**{title}**\n", highlight=False, markup=False)
        console.print("| " + " | ".join(head) + " |", highlight=False, markup=False)
        console.print("|" + "---|" * len(head), highlight=False, markup=False)
        for ln in lines:
            console.print("| " + " | ".join(x.replace("|", "\\|") for x in ln) + " |", highlight=False, markup=False)
        return
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for h in head:
        t.add_column(h, overflow="fold")
    prev = None
    for ln in lines:
        t.add_row(*(Text(x) for x in (ln[0] if ln[0] != prev else "", *ln[1:])))
        prev = ln[0]
    console.print(t)


__all__ = ["breakeven_for_run", "by_option", "print_breakeven", "read_breakeven", "write_breakeven"]
