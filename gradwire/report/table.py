"""The terminal summary: one rich table line per (scenario point, codec) from result rows.

Columns: the point, the codec, workers, iteration time and its breakdown (compute,
encode, exposed and hidden communication, decode), bytes each rank sends, payload bits
per gradient element, compression ratio against fp32, and the speedup against fp32, against
the best uncompressed baseline of the point (``vs best base``, shown when that is not fp32
everywhere) and against 1-bit SGD at the same point. Speedups above 1 are green, below 1
red; rows whose compute times were rescaled to another device carry an ``*`` and the caption says they
are estimates. Built from rows only, never by re-running a simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradwire.report.fmt import fmt_bits, fmt_bytes, fmt_ratio, fmt_speedup, fmt_time
from gradwire.report.points import point_labels
from gradwire.results import Row

COLUMNS = (
    "point",
    "codec",
    "vs fp32",
    "vs 1-bit",
    "iteration",
    "workers",
    "compute",
    "encode",
    "exposed comm",
    "hidden comm",
    "decode",
    "sent/rank",
    "bits/elem",
    "compression",
)
# speedup against the fastest uncompressed exchange of the point, shown when it is not fp32
BEST_BASELINE_COLUMN = "vs best base"
# model states and gathered parameters per GPU, marked when beyond the target GPU's memory
MEMORY_COLUMN = "memory/GPU"
# the breakdown columns are left out when the terminal is narrower than WIDE_COLUMNS
BREAKDOWN_COLUMNS = ("compute", "encode", "exposed comm", "hidden comm", "decode", "sent/rank")
COMPACT_COLUMNS = tuple(c for c in COLUMNS if c not in (*BREAKDOWN_COLUMNS, "point", "workers"))
WIDE_COLUMNS = 150
# shorter headers so that the compact table fits 80 columns
COMPACT_HEADERS = {"bits/elem": "bits", "compression": "compr."}
ESTIMATE_MARK = "*"
ESTIMATE_CAPTION = (
    f"{ESTIMATE_MARK} estimate: compute times rescaled to the target device by a device profile"
)


def _speedup_cell(x: float) -> Text:
    if math.isnan(x) or math.isinf(x):
        return Text(fmt_speedup(x), style="dim")
    style = "bold green" if x > 1.0 else "red" if x < 1.0 else ""
    return Text(fmt_speedup(x), style=style)


def _is_baseline(codec_name: str) -> bool:
    """An uncompressed exchange (fp32 in place, fp16/bf16 casts), by the codec's declaration."""
    from gradwire.codecs import CODECS

    if codec_name not in CODECS:
        return False
    ex = getattr(CODECS.get(codec_name), "exchange", None)
    return bool(ex is not None and ex.baseline)


def ordered(rows: Sequence[Row]) -> list[Row]:
    """Rows by point (first appearance), the baselines first within a point (fp32 first)."""
    order = {p: i for i, p in enumerate(dict.fromkeys(r.point for r in rows))}
    pos = {id(r): i for i, r in enumerate(rows)}
    return sorted(rows, key=lambda r: (order[r.point], r.codec_name != "fp32",
                                       not _is_baseline(r.codec_name), pos[id(r)]))


def shown_columns(rows: Sequence[Row], compact: bool = False) -> tuple[str, ...]:
    """The columns for ``rows``: ``vs 1-bit`` only when 1-bit SGD was run."""
    cols = COMPACT_COLUMNS if compact else COLUMNS
    if not any(r.codec_name == "onebit" for r in rows):
        cols = tuple(c for c in cols if c != "vs 1-bit")
    if any(r.parallelism != "ddp" for r in rows):  # sharded: what each mode holds per GPU
        cols = (*cols, "parallelism", MEMORY_COLUMN)
    if any(r.best_baseline not in ("", "fp32") for r in rows):  # else it is the fp32 column
        at = cols.index("vs fp32") + 1
        cols = (*cols[:at], BEST_BASELINE_COLUMN, *cols[at:])
    return cols


def _cells(r: Row, label: str) -> dict[str, str]:
    mark = ESTIMATE_MARK if r.estimate else ""
    return {
        "point": label,
        "codec": r.codec,
        "workers": str(r.workers),
        "iteration": fmt_time(r.iteration_s) + mark,
        "compute": fmt_time(r.compute_s) + mark,
        "encode": fmt_time(r.encode_s),
        "exposed comm": fmt_time(r.exposed_comm_s),
        "hidden comm": fmt_time(r.hidden_comm_s),
        "decode": fmt_time(r.decode_s),
        "sent/rank": fmt_bytes(r.bytes_per_rank),
        "bits/elem": fmt_bits(r.bits_per_element),
        "compression": fmt_ratio(r.compression_ratio),
        "vs fp32": fmt_speedup(r.speedup_vs_fp32),
        "vs 1-bit": fmt_speedup(r.speedup_vs_onebit),
        BEST_BASELINE_COLUMN: fmt_speedup(r.speedup_vs_best_baseline),
        "parallelism": r.parallelism,
        MEMORY_COLUMN: _memory_cell(r),
    }


def _memory_cell(r: Row) -> str:
    """``fmt_bytes`` of the row's memory per GPU, with ``(> 80 GB)`` when it exceeds the
    target GPU's memory."""
    m = r.memory_bytes
    if math.isnan(m):
        return "—"
    over = not math.isnan(r.device_memory_bytes) and m > r.device_memory_bytes
    return fmt_bytes(m) + (f" (> {fmt_bytes(r.device_memory_bytes)})" if over else "")


FORMATS = ("table", "markdown", "csv", "json")


def format_summary(rows: Sequence[Row], fmt: str) -> str:
    """The summary as ``markdown``, ``csv`` or ``json`` text (every column, one line per
    point and codec; the point's label on every line)."""
    import csv
    import io
    import json

    if fmt not in FORMATS[1:]:
        raise ValueError(f"format must be one of {', '.join(FORMATS[1:])}, got {fmt!r}")
    labels = point_labels(rows)
    cols = shown_columns(rows)
    recs = [_cells(r, labels[r.point]) for r in ordered(rows)]
    if fmt == "json":
        return json.dumps([{c: rec[c] for c in cols} for rec in recs], indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        for rec in recs:
            w.writerow([rec[c] for c in cols])
        return buf.getvalue()
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(rec[c].replace("|", "\\|") for c in cols) + " |" for rec in recs]
    from gradwire.report.verdict import verdict_markdown

    return "\n".join(lines) + "\n" + verdict_markdown(rows)


def summary_table(rows: Sequence[Row], *, compact: bool = False) -> Table:
    """A rich table of ``rows`` grouped by scenario point.

    Times are per iteration (unit chosen per cell); speedups compare with the fp32 and
    1-bit SGD rows of the same point (a dash when that point has no such row). A point
    is labelled by its values on the swept axes. ``compact`` (for terminals narrower
    than 150 columns) leaves out the breakdown, puts each point's label on a line of its
    own above its codecs and drops the vertical rules.
    """
    columns = shown_columns(rows, compact)
    rows = ordered(rows)
    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    estimates = any(r.estimate for r in rows)
    labels = point_labels(rows)
    table = Table(
        title=f"GradWire · {', '.join(scenarios)}" if scenarios else "GradWire",
        caption=ESTIMATE_CAPTION if estimates else None,
        header_style="bold",
        box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
        pad_edge=not compact,
        collapse_padding=compact,
    )
    for name in columns:
        header = COMPACT_HEADERS.get(name, name) if compact else name
        if name == "point":
            table.add_column(name, justify="left", min_width=12, overflow="fold")
        elif name == "codec":
            # in the compact form this column also holds the (wrapping) point labels
            table.add_column(header, justify="left", no_wrap=True)
        else:
            table.add_column(header, justify="right", no_wrap=True, min_width=5)
    order = list(dict.fromkeys(r.point for r in rows))
    by_point: dict[int, list[Row]] = {p: [] for p in order}
    for r in rows:
        by_point[r.point].append(r)
    for pi, p in enumerate(order):
        prow = by_point[p]
        if compact:
            table.add_row(Text(labels[p], style="bold"), *([""] * (len(columns) - 1)))
        for i, r in enumerate(prow):
            cells: dict[str, str | Text] = dict(_cells(r, labels[p] if i == 0 else ""))
            cells["codec"] = ("  " if compact else "") + r.codec
            cells["vs fp32"] = _speedup_cell(r.speedup_vs_fp32)
            cells["vs 1-bit"] = _speedup_cell(r.speedup_vs_onebit)
            cells[BEST_BASELINE_COLUMN] = _speedup_cell(r.speedup_vs_best_baseline)
            table.add_row(
                *(cells[c] for c in columns),
                end_section=not compact and i == len(prow) - 1 and pi < len(order) - 1,
            )
    return table


def print_summary(rows: Sequence[Row], console: Console | None = None, fmt: str = "table") -> None:
    """Print the summary of ``rows`` to ``console`` (stdout by default): ``fmt`` ``table``
    (a console narrower than 150 columns gets the compact table without the breakdown;
    the command line gives output to a file or a pipe a console wide enough for all), or
    ``markdown``, ``csv``, ``json`` (see :func:`format_summary`)."""
    console = console or Console()
    if fmt != "table":
        console.file.write(format_summary(rows, fmt))
        return
    compact = console.width < WIDE_COLUMNS
    console.print(summary_table(rows, compact=compact))
    if compact:
        console.print(
            f"(breakdown columns left out: terminal narrower than {WIDE_COLUMNS} columns; "
            "they are in the CSV and the dashboard)",
            style="dim",
        )
    from gradwire.report.verdict import print_verdicts

    print_verdicts(rows, console)


__all__ = ["COLUMNS", "COMPACT_COLUMNS", "FORMATS", "format_summary", "ordered", "print_summary", "summary_table"]
