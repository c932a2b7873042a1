"""Two dashboard panels on where compression pays: the break-even points and the regime map.

* :func:`breakeven_panel`: per scenario point (a menu), each compressed option's paying
  stretch along bandwidth and along worker count, as found by
  :func:`gradwire.breakeven.find_breakevens`, with the point's own value marked; the table
  above it lists every record.
* :func:`regime_map`: the swept bandwidth x workers plane (or the two swept axes the
  scenario has) with each point coloured by its winning option (fastest of all codecs,
  baselines included), and the break-even contour of every compressed option drawn from
  the searches: along bandwidth (a line through each worker count's crossing) and along
  workers (markers between the last paying and the first losing count).

Both are pure functions of result rows and break-even records; a scenario of one point, or
one without a compressed codec, gets a panel that says so rather than an empty plot.
"""

from __future__ import annotations

import html
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from gradwire.breakeven import BANDWIDTH, WORKERS, BreakevenResult, is_baseline
from gradwire.report.panels import (
    MAX_MENU_OPTIONS,
    MS_PER_S,
    Panel,
    _base_layout,
    _cap,
    _trace,
    _with_selector,
    codec_colours,
    codec_order,
    heatmap_axes,
    menu_axes,
)
from gradwire.report.points import (
    fmt_value,
    hashable,
    point_labels,
    point_values,
    sort_key,
    swept_axes,
)
from gradwire.results import Row

MAX_TABLE_RECORDS = 300
BASELINE_COLOUR = "#9e9e9e"


def _best(rows: Sequence[Row], baseline: bool) -> Row | None:
    pick = [r for r in rows if is_baseline(r.codec_name) == baseline]
    return min(pick, key=lambda r: r.iteration_s) if pick else None


def _by_point(rows: Sequence[Row]) -> dict[int, list[Row]]:
    out: dict[int, list[Row]] = {}
    for r in rows:
        out.setdefault(r.point, []).append(r)
    return out


def _no_compressed(rows: Sequence[Row]) -> str:
    bases = ", ".join(codec_order(rows)) or "none"
    return (f"No compressed codec in this scenario (codecs: {bases}): every point is won by an "
            "uncompressed baseline, so there is no regime or break-even to show. Add a codec such "
            "as 'qsgd(bits=4, bucket=512)' or 'onebit' to the scenario's codecs.")


def _records_table(result: BreakevenResult, rows: Sequence[Row]) -> str:
    """One line per point and option, as the terminal prints it."""
    from gradwire.breakeven_report import by_option

    labels = point_labels(rows)
    lines = list(by_option(result.records).items())
    shown = lines[:MAX_TABLE_RECORDS]
    head = ("<tr><th>point</th><th>codec</th><th>exchange</th><th>here</th><th>along bandwidth</th>"
            "<th>along workers</th></tr>")
    body = []
    for (point, codec), axes in shown:
        first = next(iter(axes.values()))
        cells = [labels.get(point, str(point)), codec, str(first["collective"]),
                 "pays" if first["pays_at_own"] else "loses",
                 str(axes[BANDWIDTH]["text"]) if BANDWIDTH in axes else "-",
                 str(axes[WORKERS]["text"]) if WORKERS in axes else "-"]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    more = (f"<p class='note'>Showing {len(shown)} of {len(lines)} lines; all are in breakeven.csv.</p>"
            if len(lines) > len(shown) else "")
    return f"<div class='wrap'><table class='records'>{head}{''.join(body)}</table></div>{more}"


def breakeven_panel(rows: Sequence[Row], result: BreakevenResult | None) -> Panel:
    """Where each compressed option pays along bandwidth and workers, one menu choice per point."""
    key, title = "breakeven", "Break-even points"
    desc = ("For each compressed option (codec and the collective that carries it) at the chosen point: "
            "the bandwidths and worker counts at which it beats the best uncompressed baseline (thick "
            "bars), found by bisection with the simulator; the dashed line is the point's own value.")
    if not rows:
        return Panel(key, title, desc, None, "Skipped: no rows.")
    if not any(not is_baseline(r.codec_name) for r in rows):
        return Panel(key, title, desc, None, _no_compressed(rows))
    if result is None or not result.records:
        why = " ".join((result.notes if result else []) or ["the break-even search was not run"])
        return Panel(key, title, desc, None, f"No break-even points: {why}")
    from plotly.subplots import make_subplots

    labels = point_labels(rows)
    colours = codec_colours(rows)
    recs_by_point: dict[int, list[Mapping[str, Any]]] = {}
    for rec in result.records:
        recs_by_point.setdefault(int(rec["point"]), []).append(rec)
    points, cap_note = _cap(sorted(recs_by_point), MAX_MENU_OPTIONS)
    axes_present = [a for a in (BANDWIDTH, WORKERS) if any(r["axis"] == a for r in result.records)]
    fig = make_subplots(rows=1, cols=len(axes_present),
                        subplot_titles=[f"along {'bandwidth (Gbit/s)' if a == BANDWIDTH else 'workers'}"
                                        for a in axes_present])
    groups = []
    for p in points:
        traces: list[dict[str, Any]] = []
        for col, axis in enumerate(axes_present, start=1):
            recs = [r for r in recs_by_point[p] if r["axis"] == axis]
            for r in recs:
                codec = str(r["codec"])
                xs: list[float | None] = []
                for a, b in _stretches(r):
                    xs += [a, b, None]
                ylab = _option_label(r, recs_by_point[p])
                traces.append(_trace("scatter", x=xs, y=[ylab if x is not None else None for x in xs],
                                     mode="lines", line={"color": colours.get(codec, "#333"), "width": 9},
                                     name=codec, legendgroup=codec, showlegend=col == 1, subplot=col,
                                     hovertemplate=f"{html.escape(str(r['text']))}<extra>{html.escape(codec)}"
                                                   "</extra>"))
                cx = [c["value"] for c in r["crossings"]]
                if cx:
                    traces.append(_trace("scatter", x=cx, y=[ylab] * len(cx), mode="markers",
                                         marker={"symbol": "line-ns-open", "size": 18, "color": "#000"},
                                         showlegend=False, subplot=col,
                                         hovertemplate=f"break-even %{{x:.4g}}<extra>{html.escape(codec)}</extra>"))
            if recs:
                own = float(recs[0]["own_value"])
                ys = [_option_label(r, recs_by_point[p]) for r in recs]
                traces.append(_trace("scatter", x=[own, own], y=[ys[0], ys[-1]], mode="lines",
                                     line={"dash": "dash", "color": "#444", "width": 1.5}, showlegend=False,
                                     subplot=col, hovertemplate=f"this point: {own:g}<extra></extra>"))
        groups.append((labels.get(p, str(p)), traces))
    fig = _with_selector(groups, fig, label="point: ")
    fig.update_layout(**_base_layout("bars: where it pays; ticks: break-even; dashed: this point",
                                     margin={"l": 190, "r": 30, "t": 96, "b": 120}))
    for col, axis in enumerate(axes_present, start=1):
        n = "" if col == 1 else str(col)
        one = next(r for r in result.records if r["axis"] == axis)
        lo, hi = float(one["range_low"]), float(one["range_high"])
        fig.update_layout({f"xaxis{n}": {"type": "log", "range": [math.log10(lo) - 0.05, math.log10(hi) + 0.05],
                                         "title": {"text": "bandwidth (Gbit/s)" if axis == BANDWIDTH else "workers"}},
                           f"yaxis{n}": {"type": "category", "showticklabels": col == 1, "automargin": True}})
    notes = " ".join(result.notes)
    return Panel(key, title, desc, fig, " ".join(x for x in (cap_note, notes) if x), wide=True,
                 table_html=_records_table(result, rows))


def _option_label(rec: Mapping[str, Any], same_point: Sequence[Mapping[str, Any]]) -> str:
    """The codec, with its collective when the point's options travel by several."""
    if len({str(r["collective"]) for r in same_point}) > 1:
        return f"{rec['codec']} · {rec['collective']}"
    return str(rec["codec"])


def _stretches(rec: Mapping[str, Any]) -> list[tuple[float, float]]:
    """The paying stretches of one record, in the searched range."""
    lo, hi = float(rec["range_low"]), float(rec["range_high"])
    crossings = rec["crossings"]
    if not crossings:
        return [(lo, hi)] if rec["status"] == "always" else []
    out = []
    start = lo if crossings[0]["pays_below"] else None
    for c in crossings:
        if c["pays_below"]:
            out.append((lo if start is None else start, float(c["value"])))
            start = None
        else:
            start = float(c["value"])
    if start is not None:
        out.append((start, hi))
    return out


# ------------------------------------------------------------------------ regime map
def _bandwidth_axis(rows: Sequence[Row], result: BreakevenResult | None) -> str | None:
    """The swept axis that is the searched bandwidth setting (or any swept *bandwidth_Gbps)."""
    axes = swept_axes(rows)
    settings = {str(r["setting"]) for r in (result.records if result else []) if r["axis"] == BANDWIDTH}
    for a in axes:
        if a in settings:
            return a
    return next((a for a in axes if a.endswith("bandwidth_Gbps")), None)


def map_axes(rows: Sequence[Row], result: BreakevenResult | None) -> tuple[str, str | None] | None:
    """``(x, y)`` of the regime map: bandwidth x workers when both are swept, else the two
    axes the dashboard's heatmap picks, else the one swept axis (``y`` None); None for a
    scenario of one point."""
    axes = swept_axes(rows)
    bw = _bandwidth_axis(rows, result)
    if bw is not None and "workers" in axes:
        return bw, "workers"
    pair = heatmap_axes(rows)
    if pair is not None:
        return pair
    if axes:
        return (bw or next(iter(axes))), None
    return None


def _one_point_note(rows: Sequence[Row], result: BreakevenResult | None) -> str:
    best = min(rows, key=lambda r: r.iteration_s)
    base = _best(rows, True)
    text = "One scenario point: there is no plane of swept values to map. Here the fastest option is " + best.codec
    if base is not None and best is not base:
        text += f" ({base.iteration_s / best.iteration_s:.2f}× {base.codec})"
    text += "."
    for rec in (result.records if result else []):
        text += f" {rec['codec']} along {rec['axis']}: {rec['text']}."
    return text + " Sweep two axes (e.g. sweep: {workers: [...], cluster.bandwidth_Gbps: [...]}) to draw the map."


def regime_map(rows: Sequence[Row], result: BreakevenResult | None) -> Panel:
    """The winning option over two swept axes, with the break-even contours."""
    key, title = "regime", "Regime map: which option wins where"
    desc = ("Each scenario point coloured by its fastest option (baselines in grey); lines: where each "
            "compressed option ties the best baseline along bandwidth, open diamonds: the same along "
            "workers (between the last worker count that pays and the first that does not).")
    if not rows:
        return Panel(key, title, desc, None, "Skipped: no rows.")
    if not any(not is_baseline(r.codec_name) for r in rows):
        return Panel(key, title, desc, None, _no_compressed(rows))
    axes = map_axes(rows, result)
    if axes is None:
        return Panel(key, title, desc, None, _one_point_note(rows, result))
    ax_x, ax_y = axes
    all_axes = swept_axes(rows)
    others = menu_axes(rows, axes)
    colours = codec_colours(rows)
    bw_axis = _bandwidth_axis(rows, result)
    pts = _by_point(rows)
    vals = {p: point_values(rs[0]) for p, rs in pts.items()}
    combos: dict[tuple[Hashable, ...], list[int]] = {}
    for p in pts:
        combos.setdefault(tuple(hashable(vals[p].get(k)) for k in others), []).append(p)
    combo_keys, cap_note = _cap(sorted(combos, key=lambda t: [sort_key(v) for v in t]), MAX_MENU_OPTIONS)
    records = list(result.records) if result else []
    numeric = {a: all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in all_axes[a])
               for a in axes if a is not None}
    groups = []
    for ck in combo_keys:
        members = combos[ck]
        traces: list[dict[str, Any]] = []
        winners: dict[str, list[int]] = {}
        for p in members:
            winners.setdefault(min(pts[p], key=lambda r: r.iteration_s).codec, []).append(p)
        for codec in codec_order(rows):
            if codec not in winners:
                continue
            ps = sorted(winners[codec], key=lambda p: [sort_key(vals[p].get(a)) for a in axes if a])
            hover = []
            for p in ps:
                win = min(pts[p], key=lambda r: r.iteration_s)
                base = _best(pts[p], True)
                vs = f"{base.iteration_s / win.iteration_s:.2f}× {base.codec}" if base is not None else "no baseline"
                hover.append(f"{win.codec} via {win.collective}: {win.iteration_s * MS_PER_S:.3g} ms ({vs})")
            first = next(r for r in rows if r.codec == codec)
            traces.append(_trace(
                "scatter", x=[_axis_value(vals[p].get(ax_x), numeric[ax_x]) for p in ps],
                y=[_axis_value(vals[p].get(ax_y), numeric[ax_y]) if ax_y else "all" for p in ps],
                mode="markers", name=f"wins: {codec}", legendgroup=codec, hovertext=hover,
                hovertemplate="%{hovertext}<extra></extra>",
                marker={"symbol": "square", "size": 34, "line": {"width": 1, "color": "#fff"},
                        "color": BASELINE_COLOUR if is_baseline(first.codec_name) else colours[codec]}))
        traces += _contours(records, members, vals, ax_x, ax_y, bw_axis, numeric, colours)
        name = ", ".join(f"{k}={fmt_value(v)}" for k, v in zip(others, ck, strict=True)) or "all"
        groups.append((name, traces))
    fig = _with_selector(groups, label="other axes: " if others else "")
    fig.update_xaxes(title_text=ax_x, type="log" if numeric[ax_x] else "category")
    if ax_y:
        fig.update_yaxes(title_text=ax_y, type="log" if numeric[ax_y] else "category")
    else:
        fig.update_yaxes(type="category", showticklabels=False)
    sub = f"{ax_x} × {ax_y}" if ax_y else f"one swept axis: {ax_x}"
    fig.update_layout(**_base_layout(sub, height=560, margin={"l": 70, "r": 30, "t": 96, "b": 70},
                                     legend={"orientation": "v", "x": 1.02, "y": 1.0, "xref": "paper",
                                             "yref": "paper", "xanchor": "left", "yanchor": "top"}))
    note = cap_note
    if ax_y is None:
        note = " ".join(x for x in (note, f"Only one axis ({ax_x}) is swept: the map is one strip.") if x)
    if not records:
        why = " ".join(result.notes) if result and result.notes else "the break-even search was not run"
        note = " ".join(x for x in (note, f"No break-even contour: {why}.") if x)
    return Panel(key, title, desc, fig, note, wide=True)


def _axis_value(v: Any, numeric: bool) -> Any:
    return float(v) if numeric else fmt_value(v)


def _contours(records: Sequence[Mapping[str, Any]], members: Sequence[int], vals: Mapping[int, Mapping[str, Any]],
              ax_x: str, ax_y: str | None, bw_axis: str | None, numeric: Mapping[str, bool],
              colours: Mapping[str, str]) -> list[dict[str, Any]]:
    """Break-even lines (bandwidth searches: one crossing per value of the other axis) and
    markers (worker searches), on a map whose axes include bandwidth or workers."""
    out: list[dict[str, Any]] = []
    mine = [r for r in records if int(r["point"]) in set(members)]
    codecs = list(dict.fromkeys(str(r["codec"]) for r in mine))
    for codec in codecs:
        for axis, axis_name in ((BANDWIDTH, bw_axis), (WORKERS, "workers")):
            if axis_name is None or axis_name not in (ax_x, ax_y):
                continue
            other = ax_y if axis_name == ax_x else ax_x
            seen: dict[Hashable, list[float]] = {}
            for r in mine:
                if r["codec"] != codec or r["axis"] != axis or not r["crossings"]:
                    continue
                o = hashable(vals[int(r["point"])].get(other)) if other else "all"
                seen.setdefault(o, [float(c["value"]) if axis == BANDWIDTH else
                                    math.sqrt(float(c["low"]) * float(c["high"])) for c in r["crossings"]])
            if not seen:
                continue
            order = sorted(seen, key=sort_key)
            xs: list[Any] = []
            ys: list[Any] = []
            for o in order:
                ov = _axis_value(o, numeric.get(other or "", False)) if other else "all"
                for v in seen[o]:
                    if axis_name == ax_x:
                        xs.append(v)
                        ys.append(ov)
                    else:
                        xs.append(ov)
                        ys.append(v)
            # a line joins the crossings over the other axis's values only when they are
            # ordered numbers; across categories (two models) each crossing is a marker
            line = axis == BANDWIDTH and (other is None or numeric.get(other, False))
            out.append(_trace(
                "scatter", x=xs, y=ys, mode="lines+markers" if line else "markers",
                name=f"break-even: {codec} ({axis})", legendgroup=codec,
                line={"color": colours.get(codec, "#333"), "dash": "dash", "width": 2.5},
                marker={"symbol": "circle" if line else "diamond-open", "size": 8 if line else 12,
                        "color": colours.get(codec, "#333"), "line": {"width": 2, "color": colours.get(codec, "#333")}},
                hovertemplate=f"{codec}: break-even at %{{x:.4g}}, %{{y}}<extra>{axis}</extra>"))
    return out


__all__ = ["breakeven_panel", "map_axes", "regime_map"]
