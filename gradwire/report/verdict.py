"""The verdict in the reports: one line per point in the terminal, a panel in the dashboard.

Both are pure functions of result rows (the verdict columns :mod:`gradwire.verdict` fills
on every row of a point): :func:`print_verdicts` prints each point's line after the
summary table, coloured by its decision; :func:`verdict_panel` draws, per point, every
compressed codec's speedup over the point's best baseline with its 90% interval against
the 1x line, above a table of the points' verdict lines. A scenario without a compressed
codec, or without a baseline, gets its one clear line instead of an empty plot.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Sequence

import plotly.graph_objects as go
from rich.console import Console
from rich.text import Text

from gradwire.report.fmt import fmt_speedup
from gradwire.report.panels import Panel, _base_layout, codec_colours
from gradwire.report.points import point_labels
from gradwire.results import Row

MAX_LINES = 40  # points printed in the terminal; the rest are counted
MAX_PANEL_POINTS = 60  # points drawn in the panel (evenly spread), all in the CSV
DECISION_STYLE = {"compress": "bold green", "keep baseline": "red", "not decided": "yellow",
                  "no verdict": "dim"}
DECISION_CLASS = {"compress": "up", "keep baseline": "down", "not decided": "", "no verdict": ""}


def _by_point(rows: Sequence[Row]) -> dict[int, list[Row]]:
    out: dict[int, list[Row]] = {}
    for r in rows:
        out.setdefault(r.point, []).append(r)
    return out


def _spread(items: list[int], limit: int) -> list[int]:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def verdict_rows(rows: Sequence[Row]) -> list[tuple[str, Row]]:
    """``(point label, first row of the point)`` for each point with a verdict, in point order."""
    labels = point_labels(rows)
    return [(labels[p], prow[0]) for p, prow in _by_point(rows).items() if prow[0].verdict]


def _basis(vrows: Sequence[tuple[str, Row]]) -> str:
    bases = list(dict.fromkeys(r.interval_basis for _, r in vrows if r.interval_basis))
    if not bases:
        return ""
    return bases[0] if len(bases) == 1 else f"{bases[0]} (and {len(bases) - 1} other input sets: see results.csv)"


def print_verdicts(rows: Sequence[Row], console: Console) -> None:
    """Each point's verdict line (at most :data:`MAX_LINES`, the rest counted) and what
    the intervals drew; nothing when the rows carry no verdict."""
    vrows = verdict_rows(rows)
    if not vrows:
        return
    console.print(Text("Verdict per point: the fastest compressed option against the best "
                       "uncompressed baseline, 90% interval from the inputs' stated errors "
                       "(docs/verdict.md)", style="bold"))
    width = max(len(label) for label, _ in vrows[:MAX_LINES])
    for label, r in vrows[:MAX_LINES]:
        line = Text(f"  {label:<{width}}  ")
        line.append(r.verdict_line, style=DECISION_STYLE.get(r.verdict, ""))
        console.print(line, soft_wrap=True)
    if len(vrows) > MAX_LINES:
        counts = Counter(r.verdict for _, r in vrows[MAX_LINES:])
        console.print(f"  ... and {len(vrows) - MAX_LINES} more point(s): "
                      + ", ".join(f"{k} at {n}" for k, n in counts.most_common())
                      + " (every point's verdict is in results.csv)", soft_wrap=True)
    basis = _basis(vrows)
    if basis:
        console.print(Text(f"  interval: {basis}", style="dim"), soft_wrap=True)


def verdict_markdown(rows: Sequence[Row]) -> str:
    """The verdict lines as a markdown list ("" when the rows carry none)."""
    vrows = verdict_rows(rows)
    if not vrows:
        return ""
    lines = ["", "**Verdict per point** (90% interval from the inputs' stated errors):", ""]
    lines += [f"- {label}: {r.verdict_line}" for label, r in vrows]
    basis = _basis(vrows)
    return "\n".join(lines + (["", f"Interval: {basis}"] if basis else [])) + "\n"


def _table_html(vrows: Sequence[tuple[str, Row]]) -> str:
    body = []
    for label, r in vrows[:300]:
        cls = DECISION_CLASS.get(r.verdict, "")
        body.append(f"<tr><td>{html.escape(label)}</td><td class='{cls}'>{html.escape(r.verdict)}</td>"
                    f"<td style='text-align:left;white-space:normal'>{html.escape(r.verdict_line)}</td></tr>")
    more = (f"<p class='note'>Showing 300 of {len(vrows)} points; every verdict is in results.csv.</p>"
            if len(vrows) > 300 else "")
    return ("<div class='wrap'><table class='summary verdict'><tr><th>point</th><th>verdict</th>"
            f"<th style='text-align:left'>why</th></tr>{''.join(body)}</table></div>{more}")


def verdict_panel(rows: Sequence[Row]) -> Panel:
    """Every compressed codec's speedup over the point's best baseline, with its 90%
    interval, per point; the verdict lines above it."""
    key, title = "verdict", "Verdict: does compression pay, and how sure is it?"
    vrows = verdict_rows(rows)
    desc = ("Per point, each compressed codec's speedup over the fastest uncompressed baseline "
            "(fp32, fp16/bf16) with its 90% interval from Monte Carlo over the inputs' stated "
            "errors; right of the 1× line compression pays.")
    if not vrows:
        return Panel(key, title, desc, None, note="These rows carry no verdict (verdict.enabled "
                     "is false, or they were stored before verdicts existed): run the scenario again.")
    table = _table_html(vrows)
    basis = _basis(vrows)
    decided = [r for _, r in vrows if r.verdict != "no verdict"]
    if not decided:
        return Panel(key, title, desc, None, note=vrows[0][1].verdict_line, wide=True, table_html=table)
    labels = point_labels(rows)
    by_point = _by_point(rows)
    points = _spread([p for p in by_point if by_point[p][0].verdict not in ("", "no verdict")],
                     MAX_PANEL_POINTS)
    colours = codec_colours(rows)
    fig = go.Figure()
    codecs = list(dict.fromkeys(r.codec for p in points for r in by_point[p]
                                if not math.isnan(r.speedup_vs_best_baseline) and not _is_baseline_row(r)))
    for codec in codecs:
        pts = [r for p in points for r in by_point[p] if r.codec == codec]
        fig.add_trace(go.Scatter(
            x=[r.speedup_vs_best_baseline for r in pts], y=[labels[r.point] for r in pts], mode="markers",
            name=codec, marker={"color": colours.get(codec), "size": 9},
            error_x={"type": "data", "symmetric": False,
                     "array": [max(0.0, r.speedup_high - r.speedup_vs_best_baseline) for r in pts],
                     "arrayminus": [max(0.0, r.speedup_vs_best_baseline - r.speedup_low) for r in pts]},
            customdata=[[r.best_baseline, fmt_speedup(r.speedup_low), fmt_speedup(r.speedup_high), r.verdict]
                        for r in pts],
            hovertemplate=("%{y}<br>" + html.escape(codec) + ": %{x:.2f}× vs %{customdata[0]}"
                           "<br>90%: %{customdata[1]} to %{customdata[2]}<br>point: %{customdata[3]}"
                           "<extra></extra>"),
        ))
    fig.add_vline(x=1.0, line={"color": "#444", "dash": "dash"})
    counts = Counter(r.verdict for _, r in vrows)
    subtitle = " · ".join(f"{k}: {n}" for k, n in counts.most_common())
    fig.update_layout(**_base_layout(subtitle, height=max(320, 140 + 28 * len(points))))
    fig.update_xaxes(title_text="speedup over the best baseline (log)", type="log")
    fig.update_yaxes(title_text="", autorange="reversed", type="category")
    note = f"Interval: {basis}" if basis else ""
    if len(points) < len(decided):
        note += f" Showing {len(points)} of {len(decided)} points."
    return Panel(key, title, desc, fig, note=note.strip(), wide=True, table_html=table)


def _is_baseline_row(r: Row) -> bool:
    from gradwire.report.table import _is_baseline

    return _is_baseline(r.codec_name)


__all__ = ["print_verdicts", "verdict_markdown", "verdict_panel", "verdict_rows"]
