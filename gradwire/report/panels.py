"""The dashboard's panels: one plotly figure each, built from result rows and traces only.

Every builder is a pure function of :class:`~gradwire.results.Row` records (and, for the
timeline and the topology drawing, :class:`~gradwire.results.Trace` records, or plain
dict records for published figures, convergence runs and validation cases). A builder
returns a :class:`Panel` holding either a figure or the visible reason it was skipped (for
example a sweep with a single worker count has no speedup-versus-workers curve). Times are
seconds inside and milliseconds on the axes; rows whose compute times were rescaled to
another device are labelled as estimates wherever they are drawn.
"""

from __future__ import annotations

import html
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.colors import get_colorscale
from plotly.subplots import make_subplots

from gradwire.errors import ConfigError
from gradwire.report.fmt import fmt_time
from gradwire.report.points import (
    fmt_value,
    hashable,
    point_labels,
    point_values,
    sort_key,
    swept_axes,
)
from gradwire.results import MAX_SEGMENTS_PER_LANE, LinkUse, Row, Segment, Trace, segment_ends

MS_PER_S = 1e3

# Colours: a codec keeps its colour across every panel; a segment kind keeps its colour
# across ranks (colour-blind-friendly Okabe-Ito order first).
CODEC_COLOURS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#8c564b",
    "#7f7f7f",
)
KIND_COLOURS = {
    "forward": "#9ecae1",
    "backward": "#3182bd",
    "compute": "#3182bd",
    "encode": "#fd8d3c",
    "comm": "#31a354",
    "decode": "#d62728",
    "optimizer": "#756bb1",
}
KIND_ORDER = ("forward", "backward", "compute", "encode", "comm", "decode", "optimizer")
NODE_STYLE = {
    "gpu": ("square", "#2ca02c", 11),
    "nic": ("diamond", "#1f77b4", 9),
    "switch": ("circle", "#7f7f7f", 16),
}
UTIL_COLOURSCALE = "YlOrRd"
UTIL_BINS = 10  # edges are drawn in this many utilization bins: one line trace per bin
MAX_TIMELINE_RANKS = 16
MAX_MENU_OPTIONS = 60
BEST_CODEC = "best compressed codec"
MAX_LAYOUT_NODES = 300  # larger unplaced graphs are not drawn
# red below break-even, white at 1x, blue above; applied to log10(speedup)
SPEEDUP_COLOURSCALE = [[0.0, "#b2182b"], [0.5, "#f7f7f7"], [1.0, "#2166ac"]]
SPEEDUP_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: a figure, or ``figure is None`` and ``note`` saying why not."""

    key: str
    title: str
    description: str
    figure: go.Figure | None
    note: str = ""
    wide: bool = False
    table_html: str = ""  # an HTML table shown above the figure (already escaped)


# ----------------------------------------------------------------------------- helpers


def codec_order(rows: Sequence[Row]) -> list[str]:
    """Codec specs in order of first appearance."""
    return list(dict.fromkeys(r.codec for r in rows))


def codec_colours(rows: Sequence[Row]) -> dict[str, str]:
    return {c: CODEC_COLOURS[i % len(CODEC_COLOURS)] for i, c in enumerate(codec_order(rows))}


def _estimate_suffix(rows: Iterable[Row]) -> str:
    flags = [r.estimate for r in rows]
    if flags and all(flags):
        return " (estimate)"
    if any(flags):
        return " (partly estimate)"
    return ""


def _determines(rows: Sequence[Row], a: str, b: str) -> bool:
    """Whether axis ``a``'s value fixes axis ``b``'s across the points (b is a function of a)."""
    seen: dict[Hashable, Hashable] = {}
    for r in rows:
        v = point_values(r)
        ka, kb = hashable(v.get(a)), hashable(v.get(b))
        if seen.setdefault(ka, kb) != kb:
            return False
    return True


def menu_axes(rows: Sequence[Row], drawn: Sequence[str | None]) -> list[str]:
    """The swept axes a plane over ``drawn`` needs a menu for: every other swept axis
    except those whose value the drawn axes fix (a ``case`` on x that sets ``model.name``:
    each cell already has one model, and a menu over it would leave the other models'
    cells empty)."""
    fixed = [a for a in drawn if a is not None]
    out = []
    for k in swept_axes(rows):
        if k in fixed:
            continue
        seen: dict[tuple[Hashable, ...], Hashable] = {}
        for r in rows:
            v = point_values(r)
            cell, kv = tuple(hashable(v.get(a)) for a in fixed), hashable(v.get(k))
            if seen.setdefault(cell, kv) != kv:
                out.append(k)
                break
    return out


def heatmap_axes(rows: Sequence[Row]) -> tuple[str, str] | None:
    """Two swept axes to draw against each other: ``(x_axis, y_axis)``, or None.

    Never two axes of which one is a function of the other (a ``case`` that sets
    ``model.name``: their grid would be mostly empty cells). Among the other pairs, the
    two with the most distinct values; ties keep first-appearance order; ``x`` is the axis
    with more values.
    """
    axes = swept_axes(rows)
    ranked = sorted(axes, key=lambda k: -len(axes[k]))  # sorted() is stable
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            if not (_determines(rows, a, b) or _determines(rows, b, a)):
                return a, b
    return None


def _trace(kind: str, **attrs: Any) -> dict[str, Any]:
    """A plotly trace as a plain dict. Panels with a menu hold hundreds of traces with
    thousands of points; building them as validated graph objects costs seconds, so they
    are assembled as dicts and the figure is created once without re-validation."""
    return {"type": kind, **attrs}


def _with_selector(
    groups: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    fig: go.Figure | None = None,
    *,
    group_layouts: Sequence[Mapping[str, Any]] | None = None,
    label: str = "",
) -> go.Figure:
    """A figure with every group's traces; a dropdown shows one group at a time.

    ``fig`` supplies the layout (e.g. of :func:`make_subplots`); a trace with
    ``subplot=c`` goes to column ``c`` of a one-row grid.
    """
    layout: dict[str, Any] = fig.layout.to_plotly_json() if fig is not None else {}
    data: list[dict[str, Any]] = []
    owners: list[int] = []
    for gi, (_, traces) in enumerate(groups):
        for t in traces:
            t = {**t, "visible": gi == 0}
            col = int(t.pop("subplot", 1))
            if col > 1:
                t["xaxis"], t["yaxis"] = f"x{col}", f"y{col}"
            data.append(t)
            owners.append(gi)
    if len(groups) > 1:
        buttons = []
        for gi, (name, _) in enumerate(groups):
            args: list[Any] = [{"visible": [o == gi for o in owners]}]
            args.append(dict(group_layouts[gi]) if group_layouts else {})
            buttons.append({"label": name, "method": "update", "args": args})
        layout["updatemenus"] = [
            {
                "buttons": buttons,
                "direction": "down",
                "x": 0.0,
                "xanchor": "left",
                "y": 1.0,
                "yanchor": "bottom",
                "pad": {"b": 28},  # clears subplot titles
                "showactive": True,
            }
        ]
        if label:
            layout["annotations"] = [
                *layout.get("annotations", []),
                {
                    "text": label,
                    "showarrow": False,
                    "x": 0.0,
                    "xref": "paper",
                    "xanchor": "right",
                    "y": 1.0,
                    "yref": "paper",
                    "yanchor": "bottom",
                },
            ]
    out = go.Figure(data=data, layout=layout, _validate=False)
    if group_layouts:
        out.update_layout(**dict(group_layouts[0]))
    return out


def _cap(items: list[Any], limit: int) -> tuple[list[Any], str]:
    """At most ``limit`` items, evenly spread; the note says how many were left out."""
    if len(items) <= limit:
        return items, ""
    step = len(items) / limit
    kept = [items[int(i * step)] for i in range(limit)]
    return kept, f"showing {limit} of {len(items)} choices in the menu"


def _base_layout(subtitle: str, **kw: Any) -> dict[str, Any]:
    """Common layout; the card above the figure carries the panel's title, so the figure
    only shows a right-aligned subtitle (what the menu currently selects, or a caveat)."""
    layout: dict[str, Any] = {
        "title": {"text": subtitle, "x": 1.0, "xanchor": "right", "font": {"size": 13}},
        "template": "plotly_white",
        "margin": {"l": 70, "r": 30, "t": 96, "b": 120},
        # legend pinned to the bottom edge so it never covers axis titles or tick labels
        "legend": {
            "orientation": "h",
            "x": 0.0,
            "y": 0.0,
            "xref": "container",
            "yref": "container",
            "yanchor": "bottom",
        },
        "height": 480,
    }
    layout.update(kw)
    return layout


# ----------------------------------------------------------------------------- panels


def speedup_vs_workers(rows: Sequence[Row]) -> Panel:
    """Speedup versus fp32 and versus 1-bit SGD, against the number of workers, per codec.

    When other axes are swept too, each combination of their values is a menu choice.
    """
    key, title = "speedup_workers", "Speedup vs number of workers"
    desc = (
        "Iteration-time speedup of each codec over full precision (fp32) and over 1-bit SGD "
        "at the same scenario point; above 1 means faster."
    )
    workers = sorted({r.workers for r in rows})
    if len(workers) < 2:
        shown = ", ".join(str(w) for w in workers) or "none"
        return Panel(
            key, title, desc, None, f"Skipped: only one worker count ({shown}) in these rows."
        )
    other_axes = [k for k in swept_axes(rows) if k != "workers"]
    combos: dict[tuple[Hashable, ...], list[Row]] = {}
    for r in rows:
        vals = point_values(r)
        combos.setdefault(tuple(hashable(vals.get(k)) for k in other_axes), []).append(r)
    combo_keys, cap_note = _cap(
        sorted(combos, key=lambda t: [sort_key(v) for v in t]), MAX_MENU_OPTIONS
    )
    colours = codec_colours(rows)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("vs fp32", "vs 1-bit SGD"))
    groups = []
    for ck in combo_keys:
        crow = combos[ck]
        traces: list[dict[str, Any]] = []
        for codec in codec_order(crow):
            cr = sorted((r for r in crow if r.codec == codec), key=lambda r: r.workers)
            for col, attr in ((1, "speedup_vs_fp32"), (2, "speedup_vs_onebit")):
                traces.append(
                    _trace(
                        "scatter",
                        x=[r.workers for r in cr],
                        y=[getattr(r, attr) for r in cr],
                        mode="lines+markers",
                        name=codec + _estimate_suffix(cr),
                        legendgroup=codec,
                        showlegend=col == 1,
                        line={"color": colours[codec]},
                        customdata=[
                            [r.point_id, "estimate" if r.estimate else "simulated"] for r in cr
                        ],
                        hovertemplate="%{x} workers: %{y:.3f}×<br>%{customdata[0]} (%{customdata[1]})"
                        f"<extra>{codec}</extra>",
                        subplot=col,
                    )
                )
        name = (
            ", ".join(f"{k}={fmt_value(v)}" for k, v in zip(other_axes, ck, strict=True)) or "all"
        )
        groups.append((name, traces))
    fig = _with_selector(groups, fig, label="other axes: " if other_axes else "")
    log_x = workers[-1] / max(workers[0], 1) >= 8
    fig.update_xaxes(
        title_text="workers",
        type="log" if log_x else "linear",
        tickvals=workers,
    )
    fig.update_layout(yaxis_title_text="speedup (×)")
    for ax in ("", "2"):  # break-even line in both subplots
        fig.add_shape(
            type="line",
            xref=f"x{ax} domain",
            x0=0,
            x1=1,
            yref=f"y{ax}",
            y0=1.0,
            y1=1.0,
            line={"dash": "dot", "color": "#888"},
        )
    fig.update_layout(**_base_layout("dotted: break-even (1×)" + _estimate_suffix(rows)))
    return Panel(key, title, desc, fig, cap_note)


def speedup_heatmap(rows: Sequence[Row]) -> Panel:
    """Speedup versus fp32 over the two swept axes with the most distinct values, per codec.

    Each cell is the row at that pair of values (and at the menu's values of any further
    swept axes); cells with no row are empty. fp32 itself is left out (its speedup is 1).
    """
    key, title = "speedup_heatmap", "Speedup heatmap over two swept axes"
    desc = "Speedup over fp32 at the same point across the two most-swept scenario axes."
    axes = heatmap_axes(rows)
    if axes is None:
        varying = ", ".join(swept_axes(rows)) or "none"
        return Panel(
            key, title, desc, None, f"Skipped: needs two swept axes; swept here: {varying}."
        )
    ax_x, ax_y = axes
    all_axes = swept_axes(rows)
    xs, ys = all_axes[ax_x], all_axes[ax_y]
    others = menu_axes(rows, axes)
    cells: dict[tuple[str, tuple[Hashable, ...]], dict[tuple[Hashable, Hashable], Row]] = {}
    for r in rows:
        if r.codec_name == "fp32":
            continue
        v = point_values(r)
        ok = (r.codec, tuple(hashable(v.get(k)) for k in others))
        cells.setdefault(ok, {}).setdefault((hashable(v.get(ax_x)), hashable(v.get(ax_y))), r)
    if not cells:
        return Panel(
            key, title, desc, None, "Skipped: no compressed codec rows to compare with fp32."
        )
    if len({c for c, _ in cells}) > 1:
        # first menu choice: at every cell the compressed codec with the largest speedup
        for (_, rest), grid in list(cells.items()):
            best = cells.setdefault((BEST_CODEC, rest), {})
            for xy, r in grid.items():
                if math.isfinite(r.speedup_vs_fp32) and (
                    xy not in best or r.speedup_vs_fp32 > best[xy].speedup_vs_fp32
                ):
                    best[xy] = r
    order = {c: i for i, c in enumerate([BEST_CODEC, *codec_order(rows)])}
    options, cap_note = _cap(
        sorted(cells, key=lambda o: (order[o[0]], [sort_key(v) for v in o[1]])), MAX_MENU_OPTIONS
    )
    x_text = [fmt_value(x) for x in xs]
    y_text = [fmt_value(y) for y in ys]
    groups = []
    for codec, ok in options:
        grid = cells[(codec, ok)]
        z: list[list[float | None]] = []
        text: list[list[str]] = []
        hover: list[list[str]] = []
        for y in ys:
            zr: list[float | None] = []
            tr: list[str] = []
            hr: list[str] = []
            for x in xs:
                cell = grid.get((hashable(x), hashable(y)))
                sp = math.nan if cell is None else cell.speedup_vs_fp32
                ok_cell = math.isfinite(sp) and sp > 0
                # colour on log10(speedup): 0.5x and 2x are equally far from break-even
                zr.append(math.log10(sp) if ok_cell else None)
                shown = f"{sp:.2f}×" if ok_cell else ""
                if ok_cell and cell is not None and codec == BEST_CODEC:
                    shown += f"<br>{cell.codec}"
                tr.append(shown)
                hr.append(
                    "no row at this point"
                    if cell is None
                    else f"{cell.codec}: speedup {sp:.3f}×<br>"
                    f"iteration {cell.iteration_s * MS_PER_S:.3g} ms"
                    + (" (estimate)" if cell.estimate else "")
                )
            z.append(zr)
            text.append(tr)
            hover.append(hr)
        name = codec + "".join(f", {k}={fmt_value(v)}" for k, v in zip(others, ok, strict=True))
        trace = _trace(
            "heatmap",
            x=x_text,
            y=y_text,
            z=z,
            text=text,
            hovertext=hover,
            colorscale=SPEEDUP_COLOURSCALE,
            zmid=0.0,
            texttemplate="%{text}",
            hovertemplate=f"{ax_x}=%{{x}}<br>{ax_y}=%{{y}}<br>%{{hovertext}}<extra>{codec}</extra>",
            colorbar={
                "title": {"text": "speedup vs fp32 (×)"},
                "tickvals": [math.log10(v) for v in SPEEDUP_TICKS],
                "ticktext": [f"{v:g}×" for v in SPEEDUP_TICKS],
            },
            name=name,
        )
        groups.append((name, [trace]))
    fig = _with_selector(groups, label="codec: ")
    fig.update_xaxes(title_text=ax_x, type="category")
    fig.update_yaxes(title_text=ax_y, type="category")
    fig.update_layout(**_base_layout(f"{ax_x} × {ax_y}" + _estimate_suffix(rows)))
    return Panel(key, title, desc, fig, cap_note)


BREAKDOWN_PARTS = (
    ("compute", "compute_s", "#3182bd"),
    ("encode", "encode_s", "#fd8d3c"),
    ("exposed comm", "exposed_comm_s", "#31a354"),
    ("decode", "decode_s", "#d62728"),
)


def breakdown_parts(row: Row) -> dict[str, float]:
    """Stacked parts of ``row.iteration_s`` in seconds; ``other`` is any remainder
    (waiting on a straggler, for instance), never negative."""
    parts = {name: float(getattr(row, attr)) for name, attr, _ in BREAKDOWN_PARTS}
    parts["other"] = max(0.0, row.iteration_s - sum(parts.values()))
    return parts


def iteration_breakdown(rows: Sequence[Row]) -> Panel:
    """Stacked iteration-time bars per codec (compute, encode, exposed comm, decode, other);
    communication hidden under compute is a separate bar beside each stack. One menu
    choice per scenario point."""
    key, title = "breakdown", "Iteration-time breakdown"
    desc = (
        "Critical-path time per iteration split into compute (forward, backward, optimizer), "
        "encode, communication not hidden by compute, decode; the hatched bar is "
        "communication hidden under compute (not on the critical path)."
    )
    if not rows:
        return Panel(key, title, desc, None, "Skipped: no rows.")
    labels = point_labels(rows)
    points, cap_note = _cap(list(labels), MAX_MENU_OPTIONS)
    groups = []
    for p in points:
        pr = [r for r in rows if r.point == p]
        xs = [r.codec + (" (estimate)" if r.estimate else "") for r in pr]
        parts = [breakdown_parts(r) for r in pr]
        base = [0.0] * len(pr)
        traces: list[dict[str, Any]] = []
        colours = {name: c for name, _, c in BREAKDOWN_PARTS} | {"other": "#bbbbbb"}
        for name in (*(n for n, _, _ in BREAKDOWN_PARTS), "other"):
            ys = [pt[name] * MS_PER_S for pt in parts]
            if name == "other" and not any(y > 0 for y in ys):
                continue
            traces.append(
                _trace(
                    "bar",
                    x=xs,
                    y=ys,
                    base=list(base),
                    name=name,
                    legendgroup=name,
                    offsetgroup="stack",
                    marker={"color": colours[name]},
                    hovertemplate=f"{name}: %{{y:.3g}} ms<extra>%{{x}}</extra>",
                )
            )
            base = [b + y for b, y in zip(base, ys, strict=True)]
        traces.append(
            _trace(
                "bar",
                x=xs,
                y=[r.hidden_comm_s * MS_PER_S for r in pr],
                name="hidden comm",
                legendgroup="hidden comm",
                offsetgroup="hidden",
                marker={"color": "#a1d99b", "pattern": {"shape": "/"}},
                hovertemplate="hidden comm: %{y:.3g} ms<extra>%{x}</extra>",
            )
        )
        groups.append((labels[p], traces))
    fig = _with_selector(groups, label="point: ")
    fig.update_layout(**_base_layout(_estimate_suffix(rows).strip(), barmode="group"))
    fig.update_yaxes(title_text="time per iteration (ms)")
    fig.update_xaxes(title_text="codec")
    return Panel(key, title, desc, fig, cap_note)


def _trace_name(trace: Trace, labels: Mapping[int, str]) -> str:
    return f"{labels.get(trace.point, f'point {trace.point}')} · {trace.codec}"


@dataclass(frozen=True)
class Bar:
    """A drawn timeline interval: the union of touching or overlapping same-kind segments
    of one rank (a ring collective's many steps become one bar), in seconds."""

    rank: int
    kind: str
    start_s: float
    end_s: float
    label: str
    count: int


def merge_segments(segments: Sequence[Segment], *, rel_gap: float = 1e-6) -> list[Bar]:
    """Merge each rank's same-kind segments that overlap or touch into one bar.

    Two segments touch when the gap between them is at most ``rel_gap`` times the span
    of the whole trace (floating-point noise between back-to-back collective steps). The
    bars cover exactly the union of the segments' intervals, so a drawn timeline shows
    the same busy time per rank and kind as the trace.
    """
    if not segments:
        return []
    span = max(s.end_s for s in segments) - min(s.start_s for s in segments)
    eps = rel_gap * span
    bars: list[Bar] = []
    for (rank, kind), group in _group_by(segments, lambda s: (s.rank, s.kind)).items():
        group = sorted(group, key=lambda s: (s.start_s, s.end_s))
        cur = group[0]
        start, end, n, run = cur.start_s, cur.end_s, cur.count, [cur]
        for sg in group[1:]:
            if sg.start_s <= end + eps:
                end = max(end, sg.end_s)
                n += sg.count
                run.append(sg)
                continue
            bars.append(Bar(rank, kind, start, end, _bar_label(run, n), n))
            start, end, n, run = sg.start_s, sg.end_s, sg.count, [sg]
        bars.append(Bar(rank, kind, start, end, _bar_label(run, n), n))
    bars.sort(key=lambda b: (b.rank, b.start_s, b.kind))
    return bars


def _bar_label(run: Sequence[Segment], n: int) -> str:
    """A bar's label: its one segment's, or ``first … last (n segments)`` where ``n``
    counts the simulated segments (a coarsened trace's segment stands for several)."""
    if len(run) == 1:
        return run[0].label
    return f"{segment_ends(run[0].label)[0]} … {segment_ends(run[-1].label)[1]} ({n} segments)"


def _group_by(items: Iterable[Any], key: Any) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for it in items:
        out.setdefault(key(it), []).append(it)
    return out


TIMELINE_LANE_PX = 24  # a lane at least this tall keeps its label (12 px font)
TIMELINE_MARGIN_PX = 216  # the base layout's top and bottom margins


def _lane(rank: int, kind: str) -> str:
    """Communication gets a lane of its own under each rank's compute and codec lane, so
    communication overlapped with backward is seen side by side, not one over the other."""
    return f"rank {rank} comm" if kind == "comm" else f"rank {rank}"


def iteration_timeline(traces: Sequence[Trace], rows: Sequence[Row] = ()) -> Panel:
    """Gantt-like timeline of one iteration: a row per rank, a bar per segment coloured
    by kind (forward, backward, encode, comm, decode, optimizer). One menu choice per
    trace; at most the first 16 ranks are drawn, and touching same-kind segments of a rank
    are drawn as one bar (:func:`merge_segments`)."""
    key, title = "timeline", "Timeline of one iteration"
    desc = (
        "Each rank's forward, backward, encode, communication, decode and optimizer "
        "intervals in one simulated iteration."
    )
    usable = [t for t in traces if t.segments]
    if not usable:
        return Panel(
            key,
            title,
            desc,
            None,
            "Skipped: no iteration trace with segments was given.",
            wide=True,
        )
    labels = point_labels(rows)
    estimates = {(r.point, r.codec) for r in rows if r.estimate}
    workers = {(r.point, r.codec): r.workers for r in rows}
    usable, cap_note = _cap(usable, MAX_MENU_OPTIONS)
    groups = []
    layouts = []
    notes = []
    coarse: list[float] = []
    for t in usable:
        ranks = sorted({s.rank for s in t.segments})
        shown = ranks[:MAX_TIMELINE_RANKS]
        total = max(workers.get((t.point, t.codec), len(ranks)), len(ranks))
        if total > len(shown):
            notes.append(f"{_trace_name(t, labels)}: {len(shown)} of {total} ranks shown")
        if t.resolution_s > 0:
            coarse.append(t.resolution_s)
        keep = set(shown)
        bars = merge_segments([s for s in t.segments if s.rank in keep])
        kinds = [k for k in KIND_ORDER if any(b.kind == k for b in bars)]
        kinds += sorted({b.kind for b in bars} - set(kinds))
        traces_g: list[dict[str, Any]] = []
        for kind in kinds:
            segs = [b for b in bars if b.kind == kind]
            if not segs:
                continue
            traces_g.append(
                _trace(
                    "bar",
                    orientation="h",
                    y=[_lane(s.rank, kind) for s in segs],
                    x=[(s.end_s - s.start_s) * MS_PER_S for s in segs],
                    base=[s.start_s * MS_PER_S for s in segs],
                    name=kind,
                    legendgroup=kind,
                    marker={"color": KIND_COLOURS.get(kind, "#999999"), "line": {"width": 0}},
                    customdata=[[s.label, s.start_s * MS_PER_S, s.end_s * MS_PER_S] for s in segs],
                    hovertemplate="%{customdata[0]}<br>%{customdata[1]:.4g}–%{customdata[2]:.4g} ms"
                    f"<extra>{kind}</extra>",
                )
            )
        est = " (estimate)" if (t.point, t.codec) in estimates else ""
        groups.append((_trace_name(t, labels), traces_g))
        lanes = [lane for r in reversed(shown) for lane in (_lane(r, "comm"), _lane(r, "compute"))]
        layouts.append(
            {
                "title.text": f"{_trace_name(t, labels)}{est}",
                "yaxis.categoryarray": lanes,
                # every lane labelled: plotly drops every other category label when lanes
                # are narrower than the font, which left the compute lanes unnamed
                "yaxis.tickvals": lanes,
                "yaxis.ticktext": lanes,
                "height": max(320, TIMELINE_MARGIN_PX + TIMELINE_LANE_PX * len(lanes)),
            }
        )
    fig = _with_selector(groups, group_layouts=layouts, label="trace: ")
    fig.update_layout(**{**_base_layout(""), "barmode": "overlay"})
    fig.update_layout(**layouts[0])
    fig.update_xaxes(title_text="time since iteration start (ms)")
    fig.update_yaxes(title_text="rank", type="category", categoryorder="array", tickmode="array",
                     automargin=True)
    if coarse:
        notes.insert(0, f"{len(coarse)} trace(s) drawn at most {MAX_SEGMENTS_PER_LANE} bars per lane: "
                        f"gaps up to {fmt_time(max(coarse))} between steps are filled")
    note = "; ".join([n for n in (cap_note, *notes[:3]) if n])
    return Panel(key, title, desc, fig, note, wide=True)


def _merged_links(links: Sequence[LinkUse]) -> dict[tuple[str, str], list[LinkUse]]:
    """Both directions of a cable are drawn as one edge (the busier direction colours it)."""
    merged: dict[tuple[str, str], list[LinkUse]] = {}
    for lu in links:
        a, b = sorted((lu.src, lu.dst))
        merged.setdefault((a, b), []).append(lu)
    return merged


def util_bin(utilization: float) -> int:
    """Index of the colour bin of an edge: utilization in [0, 1] split into UTIL_BINS."""
    u = 0.0 if math.isnan(utilization) else min(max(utilization, 0.0), 1.0)
    return min(int(u * UTIL_BINS), UTIL_BINS - 1)


def _trace_nodes(trace: Trace) -> set[str]:
    nodes = set(trace.positions) | set(trace.node_kinds)
    for lu in trace.links:
        nodes.update((lu.src, lu.dst))
    return nodes


def _layout_positions(trace: Trace) -> dict[str, tuple[float, float]]:
    """The trace's own positions, or a seeded spring layout for nodes it does not place."""
    nodes = _trace_nodes(trace)
    if nodes <= set(trace.positions):
        return dict(trace.positions)
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(sorted(nodes))
    g.add_edges_from((lu.src, lu.dst) for lu in trace.links)
    fixed = [n for n in trace.positions if n in g]
    pos = nx.spring_layout(
        g, pos=dict(trace.positions) or None, fixed=fixed or None, seed=0
    )  # seeded: the same drawing every time
    return {n: (float(p[0]), float(p[1])) for n, p in pos.items()}


def topology_drawing(traces: Sequence[Trace], rows: Sequence[Row] = ()) -> Panel:
    """The topology of a trace: nodes by kind (GPU, NIC, switch), edges coloured and
    thickened by link utilization (busy time / iteration time, busier direction)."""
    key, title = "topology", "Topology and link utilization"
    desc = (
        "Nodes are GPUs, NICs and switches; each cable is coloured and thickened by the "
        "fraction of the iteration its busier direction carried traffic."
    )
    with_topo = [t for t in traces if t.links or t.positions]
    if not with_topo:
        return Panel(key, title, desc, None, "Skipped: no trace carries a topology.", wide=True)
    # a graph the producer did not place and that is too big for a readable drawing is
    # left out rather than laid out here (a spring layout of thousands of nodes is slow
    # and unreadable)
    usable = [t for t in with_topo if t.positions or len(_trace_nodes(t)) <= MAX_LAYOUT_NODES]
    if not usable:
        n = max(len(_trace_nodes(t)) for t in with_topo)
        return Panel(
            key,
            title,
            desc,
            None,
            f"Skipped: the topology ({n} nodes) is too large to draw; its link loads are "
            "in the traces.",
            wide=True,
        )
    labels = point_labels(rows)
    usable, cap_note = _cap(usable, MAX_MENU_OPTIONS)
    colours = _sample_colourscale(UTIL_COLOURSCALE, UTIL_BINS)
    groups = []
    layouts: dict[frozenset[tuple[str, str]], dict[str, tuple[float, float]]] = {}
    for t in usable:
        # codecs at one point share a topology: lay it out once
        topo_key = frozenset((lu.src, lu.dst) for lu in t.links) | frozenset(
            (n, "") for n in t.positions
        )
        if topo_key not in layouts:
            layouts[topo_key] = _layout_positions(t)
        pos = layouts[topo_key]
        merged = _merged_links(t.links)
        by_bin: dict[int, list[tuple[str, str, list[LinkUse]]]] = {}
        for (a, b), uses in merged.items():
            u = max(lu.utilization for lu in uses)
            by_bin.setdefault(util_bin(u), []).append((a, b, uses))
        tr: list[dict[str, Any]] = []
        for bi in sorted(by_bin):
            ex: list[float | None] = []
            ey: list[float | None] = []
            for a, b, _ in by_bin[bi]:
                ex += [pos[a][0], pos[b][0], None]
                ey += [pos[a][1], pos[b][1], None]
            lo, hi = bi / UTIL_BINS, (bi + 1) / UTIL_BINS
            tr.append(
                _trace(
                    "scatter",
                    x=ex,
                    y=ey,
                    mode="lines",
                    line={"color": colours[bi], "width": 1.0 + 7.0 * (bi + 0.5) / UTIL_BINS},
                    hoverinfo="skip",
                    name=f"utilization {lo:.0%}–{hi:.0%}",
                    showlegend=False,
                )
            )
        mids = [(a, b, uses) for bins in by_bin.values() for a, b, uses in bins]
        tr.append(
            _trace(
                "scatter",
                x=[(pos[a][0] + pos[b][0]) / 2 for a, b, _ in mids],
                y=[(pos[a][1] + pos[b][1]) / 2 for a, b, _ in mids],
                mode="markers",
                marker={
                    "size": 6,
                    "color": [max(lu.utilization for lu in u) for _, _, u in mids],
                    "colorscale": get_colorscale(
                        UTIL_COLOURSCALE
                    ),  # explicit: plotly.js orders named scales differently
                    "cmin": 0.0,
                    "cmax": 1.0,
                    "showscale": True,
                    "colorbar": {"title": {"text": "link utilization"}, "tickformat": ".0%"},
                },
                text=[_link_hover(uses) for _, _, uses in mids],
                hovertemplate="%{text}<extra>link</extra>",
                name="links",
                showlegend=False,
            )
        )
        kinds = {n: t.node_kinds.get(n, "node") for n in pos}
        for kind in sorted(set(kinds.values()), key=lambda k: (k not in NODE_STYLE, k)):
            names = [n for n in pos if kinds[n] == kind]
            symbol, colour, size = NODE_STYLE.get(kind, ("circle-open", "#333333", 9))
            tr.append(
                _trace(
                    "scatter",
                    x=[pos[n][0] for n in names],
                    y=[pos[n][1] for n in names],
                    mode="markers",
                    marker={
                        "symbol": symbol,
                        "color": colour,
                        "size": size,
                        "line": {"width": 1, "color": "#222"},
                    },
                    text=names,
                    hovertemplate="%{text}<extra>" + kind + "</extra>",
                    name=kind,
                )
            )
        groups.append((_trace_name(t, labels), tr))
    fig = _with_selector(groups, label="trace: ")
    fig.update_layout(**_base_layout("", height=580))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=1)
    return Panel(key, title, desc, fig, cap_note, wide=True)


def _link_hover(uses: Sequence[LinkUse]) -> str:
    lines = [
        f"{lu.src} → {lu.dst}: {lu.utilization:.1%} busy, {lu.bytes / 1e6:.3g} MB, "
        f"{lu.bandwidth_Bps * 8 / 1e9:.3g} Gbit/s"
        for lu in uses
    ]
    return "<br>".join(lines)


def _sample_colourscale(name: str, n: int) -> list[str]:
    from plotly.colors import sample_colorscale

    return list(sample_colorscale(name, [(i + 0.5) / n for i in range(n)]))


def bits_and_compression(rows: Sequence[Row]) -> Panel:
    """Bits per gradient element and compression ratio per codec, one group of bars per
    model (a codec's payload depends on the model's gradients; different models are never
    pooled). Within a model the points agree (the same gradients); where they differ the
    hover gives the range."""
    key, title = "bits", "Bits per element and compression ratio"
    desc = (
        "Measured length of the real encoded payload per gradient element, and 32 bits "
        "divided by it (the compression ratio against fp32), per model."
    )
    if not rows:
        return Panel(key, title, desc, None, "Skipped: no rows.")
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("bits per element", "compression ratio vs fp32")
    )
    colours = codec_colours(rows)
    models = list(dict.fromkeys(r.model for r in rows))
    for codec in codec_order(rows):
        for col, attr in ((1, "bits_per_element"), (2, "compression_ratio")):
            xs, ys, spans = [], [], []
            for m in models:
                vals = [float(getattr(r, attr)) for r in rows if r.codec == codec and r.model == m]
                if not vals:
                    continue
                xs.append(m)
                ys.append(sum(vals) / len(vals))
                lo, hi = min(vals), max(vals)
                spans.append(f"{lo:.4g}–{hi:.4g} over {len(vals)} points" if hi > lo else f"{len(vals)} point(s)")
            fig.add_trace(
                go.Bar(
                    x=xs,
                    y=ys,
                    customdata=spans,
                    name=codec,
                    legendgroup=codec,
                    showlegend=col == 1,
                    marker={"color": colours[codec]},
                    hovertemplate=f"%{{x}}: {attr.replace('_', ' ')} %{{y:.4g}} (%{{customdata}})<extra>{codec}</extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(title_text="bits / element", row=1, col=1)
    fig.update_yaxes(title_text="compression ratio (×)", row=1, col=2)
    fig.update_xaxes(title_text="model")
    fig.update_layout(**{**_base_layout(""), "barmode": "group"})
    return Panel(key, title, desc, fig)


def _require(records: Sequence[Mapping[str, Any]], what: str, keys: Sequence[str]) -> None:
    for i, rec in enumerate(records):
        missing = [k for k in keys if k not in rec]
        if missing:
            raise ConfigError(
                f"{what}[{i}]: missing {', '.join(missing)}; each {what} record needs "
                f"the keys {', '.join(keys)}"
            )


PUBLISHED_KEYS = ("figure", "quantity", "published", "predicted")
CONVERGENCE_KEYS = ("codec", "step", "time_s", "test_acc")
VALIDATION_KEYS = ("case", "codec", "workers", "rate", "measured_s", "predicted_s", "error")


def published_comparison(records: Sequence[Mapping[str, Any]] | None) -> Panel:
    """Published figures beside GradWire's predictions: a table, and predicted/published
    per quantity (1 is exact agreement). Records: figure, quantity, published, predicted,
    optionally codec and unit."""
    key, title = "published", "Published results beside predictions"
    desc = "Each published number next to what GradWire predicts for the same setting."
    if not records:
        return Panel(
            key, title, desc, None, "Skipped: no published records for this scenario.", wide=True
        )
    _require(records, "published", PUBLISHED_KEYS)
    ratios = [_ratio(rec["predicted"], rec["published"]) for rec in records]
    columns: dict[str, list[str]] = {
        "#": [str(i + 1) for i in range(len(records))],
        "figure": [str(r["figure"]) for r in records],
        "quantity": [str(r["quantity"]) for r in records],
        "codec": [str(r.get("codec", "")) for r in records],
        "published": [_fmt_num(r["published"]) for r in records],
        "predicted": [_fmt_num(r["predicted"]) for r in records],
        "predicted / published": [_fmt_num(x) for x in ratios],
        "unit": [str(r.get("unit", "")) for r in records],
    }
    columns = {k: v for k, v in columns.items() if k not in ("codec", "unit") or any(v)}
    head = "".join(f"<th>{html.escape(k)}</th>" for k in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v[i])}</td>" for v in columns.values()) + "</tr>"
        for i in range(len(records))
    )
    table = f"<div class='wrap'><table class='records'><tr>{head}</tr>{body}</table></div>"
    # published figure names are long sentences: bars are numbered like the table's rows
    full = [
        " · ".join(str(r[k]) for k in ("figure", "quantity", "codec") if r.get(k)) for r in records
    ]
    fig = go.Figure(
        go.Bar(
            y=[f"#{i + 1}" for i in range(len(records))],
            x=ratios,
            orientation="h",
            marker={"color": "#0072B2"},
            customdata=full,
            hovertemplate="%{customdata}<br>predicted / published %{x:.3f}<extra>%{y}</extra>",
            showlegend=False,
        )
    )
    fig.add_vline(x=1.0, line_dash="dot", line_color="#888")
    fig.update_xaxes(title_text="predicted / published (×)")
    fig.update_yaxes(autorange="reversed", title_text="record")
    fig.update_layout(
        **_base_layout("dotted: exact agreement", height=max(300, 180 + 28 * len(records)))
    )
    return Panel(key, title, desc, fig, wide=True, table_html=table)


def _ratio(a: Any, b: Any) -> float:
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return math.nan
    return fa / fb if fb != 0 else math.nan


def _fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def accuracy_vs_time(records: Sequence[Mapping[str, Any]] | None) -> Panel:
    """Test accuracy against predicted wall-clock time, one line per codec. Records:
    codec, step, time_s (simulated iteration time x step), test_acc."""
    key, title = "convergence", "Accuracy vs predicted wall-clock time"
    desc = (
        "Test accuracy of a real training run with each codec, plotted against the "
        "simulated time those steps take on the cluster."
    )
    if not records:
        return Panel(key, title, desc, None, "Skipped: no convergence records.")
    _require(records, "convergence", CONVERGENCE_KEYS)
    codecs = list(dict.fromkeys(str(r["codec"]) for r in records))
    fig = go.Figure()
    for i, codec in enumerate(codecs):
        cr = sorted(
            (r for r in records if str(r["codec"]) == codec), key=lambda r: float(r["time_s"])
        )
        fig.add_trace(
            go.Scatter(
                x=[float(r["time_s"]) for r in cr],
                y=[float(r["test_acc"]) for r in cr],
                customdata=[r["step"] for r in cr],
                mode="lines+markers",
                name=codec,
                line={"color": CODEC_COLOURS[i % len(CODEC_COLOURS)]},
                hovertemplate="step %{customdata}: %{y:.4g} at %{x:.4g} s"
                f"<extra>{codec}</extra>",
            )
        )
    fig.update_layout(**_base_layout(""))
    fig.update_xaxes(title_text="predicted wall-clock time (s)")
    fig.update_yaxes(title_text="test accuracy")
    return Panel(key, title, desc, fig)


def predicted_vs_measured(records: Sequence[Mapping[str, Any]] | None) -> Panel:
    """Predicted against measured iteration time for validation cases, with y = x.
    Records: case, codec, workers, rate, measured_s, predicted_s, error."""
    key, title = "validation", "Predicted vs measured iteration time"
    desc = (
        "Simulator predictions against wall-clock measurements of the same setup on a "
        "real (shaped) network; points on the dotted line are exact."
    )
    if not records:
        return Panel(key, title, desc, None, "Skipped: no validation records.")
    _require(records, "validation", VALIDATION_KEYS)
    codecs = list(dict.fromkeys(str(r["codec"]) for r in records))
    fig = go.Figure()
    vals = [float(r[k]) * MS_PER_S for r in records for k in ("measured_s", "predicted_s")]
    finite = [v for v in vals if math.isfinite(v) and v > 0]
    lo, hi = (min(finite), max(finite)) if finite else (1.0, 10.0)
    fig.add_trace(
        go.Scatter(
            x=[lo * 0.8, hi * 1.25],
            y=[lo * 0.8, hi * 1.25],
            mode="lines",
            line={"dash": "dot", "color": "#888"},
            name="predicted = measured",
            hoverinfo="skip",
        )
    )
    for i, codec in enumerate(codecs):
        cr = [r for r in records if str(r["codec"]) == codec]
        fig.add_trace(
            go.Scatter(
                x=[float(r["measured_s"]) * MS_PER_S for r in cr],
                y=[float(r["predicted_s"]) * MS_PER_S for r in cr],
                mode="markers",
                marker={"size": 9, "color": CODEC_COLOURS[i % len(CODEC_COLOURS)]},
                name=codec,
                customdata=[
                    [str(r["case"]), r["workers"], str(r["rate"]), float(r["error"])] for r in cr
                ],
                hovertemplate="%{customdata[0]}: %{customdata[1]} workers at %{customdata[2]}<br>"
                "measured %{x:.4g} ms, predicted %{y:.4g} ms, error %{customdata[3]:.1%}"
                f"<extra>{codec}</extra>",
            )
        )
    errs = sorted(abs(float(r["error"])) for r in records if math.isfinite(float(r["error"])))
    median = errs[len(errs) // 2] if errs else math.nan
    fig.update_layout(**_base_layout(f"median |error| {median:.1%}"))
    fig.update_xaxes(title_text="measured iteration time (ms)", type="log")
    fig.update_yaxes(title_text="predicted iteration time (ms)", type="log")
    return Panel(key, title, desc, fig)


def all_panels(
    rows: Sequence[Row],
    traces: Sequence[Trace] = (),
    *,
    published: Sequence[Mapping[str, Any]] | None = None,
    convergence: Sequence[Mapping[str, Any]] | None = None,
    validation: Sequence[Mapping[str, Any]] | None = None,
) -> list[Panel]:
    """Every panel of the dashboard in page order (skipped ones included, with notes)."""
    from gradwire.report.verdict import verdict_panel

    return [
        verdict_panel(rows),
        speedup_vs_workers(rows),
        speedup_heatmap(rows),
        iteration_breakdown(rows),
        bits_and_compression(rows),
        iteration_timeline(traces, rows),
        topology_drawing(traces, rows),
        published_comparison(published),
        accuracy_vs_time(convergence),
        predicted_vs_measured(validation),
    ]


__all__ = [
    "Panel",
    "accuracy_vs_time",
    "all_panels",
    "bits_and_compression",
    "breakdown_parts",
    "heatmap_axes",
    "iteration_breakdown",
    "iteration_timeline",
    "predicted_vs_measured",
    "published_comparison",
    "speedup_heatmap",
    "speedup_vs_workers",
    "swept_axes",
    "topology_drawing",
    "util_bin",
]
