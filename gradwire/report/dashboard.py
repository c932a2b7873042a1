"""The speedup dashboard: one self-contained HTML file built from result rows and traces.

:func:`build_dashboard` turns :class:`~gradwire.results.Row` records (and optionally the
:class:`~gradwire.results.Trace` of simulated iterations, published figures, convergence
and validation records) into one HTML document with plotly.js inlined, so it opens offline
from a file, e-mail attachment or CI artifact. Each panel is a plotly figure from
:mod:`gradwire.report.panels`; a panel without data is replaced by a visible note saying
why. The page records its own health for automated checks: after every ``Plotly.newPlot``
promise resolves it sets ``data-state="ok"`` and ``data-rendered=<count>`` on
``#gw-status``, and any script error, unhandled rejection or ``console.error`` /
``console.warn`` is written into ``#gw-errors``. Opened with ``#gw-selftest`` in the
address, the page first applies every menu choice of every plot in turn and records the
number of steps in ``data-menu-steps``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from gradwire.report.panels import Panel, all_panels
from gradwire.report.points import point_labels
from gradwire.report.table import _cells, ordered, shown_columns
from gradwire.results import Row, Trace

MAX_SUMMARY_ROWS = 300
ESTIMATE_NOTE = (
    "Values labelled “estimate” use compute times estimated for the target device and codec "
    "times rescaled to it from the device at hand; the header names each source and the "
    "estimate's stated error. They are estimates, not measurements."
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#1f2a44;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px 0;font-size:24px}
header p{margin:2px 0;color:#d8dce6}
header ul{margin:8px 0 0 0;padding-left:20px;color:#ffe9a8}
#gw-status{font-size:12px;color:#666;padding:4px 28px}
#gw-errors{background:#fee;color:#900;margin:8px 28px;padding:8px;white-space:pre-wrap}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px;padding:16px 28px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:12px 16px;min-width:0}
.card.wide{grid-column:1/-1}
.card h2{font-size:17px;margin:4px 0}
.card p.desc{font-size:13px;color:#555;margin:2px 0 8px 0}
.card p.note{font-size:13px;color:#8a5a00;background:#fff7e0;padding:6px 8px;border-radius:4px}
.card.skipped{opacity:.85}
table.summary{border-collapse:collapse;font-size:12.5px;width:100%}
table.summary th,table.summary td{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:right}
table.summary th:nth-child(-n+2),table.summary td:nth-child(-n+2){text-align:left}
table.summary tr.first td{border-top:2px solid #bbb}
table.summary td.up{color:#1a7f37;font-weight:600}
table.summary td.down{color:#b42318}
table.records{border-collapse:collapse;font-size:12.5px;width:100%;margin-bottom:8px}
table.records th,table.records td{padding:4px 8px;border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:top}
.wrap{overflow:auto;max-height:460px}
table.summary td{white-space:nowrap}
table.summary th{position:sticky;top:0;background:#fff}
"""

# Runs before plotly.js so that errors while loading it are caught as well.
_ERROR_CAPTURE_JS = """
(function(){
  var errs = [];
  function show(msg){
    errs.push(String(msg));
    var el = document.getElementById('gw-errors');
    if (el) { el.textContent = errs.join('\\n'); el.hidden = false; }
  }
  // errors raised before <body> is parsed are written out once it is
  document.addEventListener('DOMContentLoaded', function(){
    if (errs.length) { show(errs.pop()); }
  });
  window.__gwErrors = errs;
  window.__gwShowError = show;
  window.addEventListener('error', function(ev){ show('error: ' + ev.message); });
  window.addEventListener('unhandledrejection', function(ev){
    show('unhandled rejection: ' + (ev.reason && ev.reason.message || ev.reason));
  });
  ['error', 'warn'].forEach(function(level){
    var orig = console[level];
    console[level] = function(){
      show('console.' + level + ': ' + Array.prototype.slice.call(arguments).join(' '));
      return orig.apply(console, arguments);
    };
  });
})();
"""

_RENDER_JS = """
(function(){
  var status = document.getElementById('gw-status');
  var divs = Array.prototype.slice.call(document.querySelectorAll('[data-gw-figure]'));
  var config = {responsive: true, displaylogo: false};
  var pending = divs.map(function(div){
    try {
      var spec = JSON.parse(document.getElementById(div.getAttribute('data-gw-figure')).textContent);
      return Plotly.newPlot(div, spec.data, spec.layout, config);
    } catch (e) { return Promise.reject(e); }
  });
  // With #gw-selftest in the address every menu choice of every plot is applied in turn
  // (then the first again), so a check also covers what the menus switch to.
  function selftest(){
    var jobs = [];
    divs.forEach(function(div){
      ((div.layout && div.layout.updatemenus) || []).forEach(function(menu){
        (menu.buttons || []).forEach(function(b){ jobs.push([div, b]); });
        if (menu.buttons && menu.buttons.length) { jobs.push([div, menu.buttons[0]]); }
      });
    });
    return jobs.reduce(function(prev, job){
      return prev.then(function(){
        var args = job[1].args || [];
        return Plotly.update(job[0], args[0] || {}, args[1] || {});
      });
    }, Promise.resolve()).then(function(){
      status.setAttribute('data-menu-steps', String(jobs.length));
    });
  }
  Promise.all(pending).then(function(){
    return window.location.hash === '#gw-selftest' ? selftest() : null;
  }).then(function(){
    var drawn = divs.filter(function(d){ return d.querySelector('svg.main-svg') !== null; }).length;
    status.setAttribute('data-rendered', String(drawn));
    var ok = drawn === divs.length && window.__gwErrors.length === 0;
    status.setAttribute('data-state', ok ? 'ok' : 'error');
    status.textContent = drawn + ' of ' + divs.length + ' plots rendered';
  }, function(e){
    window.__gwShowError('render failed: ' + (e && e.message || e));
    status.setAttribute('data-state', 'error');
    status.textContent = 'rendering failed';
  });
})();
"""


def _figure_json(fig: go.Figure) -> str:
    """The figure as JSON safe inside a ``<script>`` element: every ``<`` is escaped, so
    no text in the data (a codec name, a note) can close the element."""
    text = pio.to_json(fig, validate=False, pretty=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# the dashboard's headers for the terminal table's speedup columns (the rest keep their names)
SUMMARY_HEADERS = {"vs fp32": "speedup vs fp32", "vs 1-bit": "speedup vs 1-bit",
                   "vs best base": "speedup vs best baseline"}


def _summary_html(rows: Sequence[Row]) -> str:
    """The terminal's full table as HTML: the same columns in the same order (speedups
    first, ``vs 1-bit`` only with 1-bit SGD, the best-baseline column when it is not
    fp32) and the same row order (baselines first within a point)."""
    if not rows:
        return "<p class='note'>No result rows.</p>"
    shown = ordered(rows)[:MAX_SUMMARY_ROWS]
    labels = point_labels(rows)
    cols = shown_columns(rows)
    speedups = {"vs fp32": "speedup_vs_fp32", "vs 1-bit": "speedup_vs_onebit",
                "vs best base": "speedup_vs_best_baseline"}
    head = "<tr>" + "".join(f"<th>{html.escape(SUMMARY_HEADERS.get(c, c))}</th>" for c in cols) + "</tr>"
    body = []
    prev_point: int | None = None
    for r in shown:
        cls = " class='first'" if prev_point is not None and r.point != prev_point else ""
        prev_point = r.point
        cells = _cells(r, labels[r.point])
        if r.estimate:  # the page spells the terminal's '*' out
            for c in ("iteration", "compute"):
                cells[c] = cells[c].removesuffix("*") + " (estimate)"
        tds = []
        for c in cols:
            if c in speedups:
                x = float(getattr(r, speedups[c]))
                klass = "" if math.isnan(x) else " class='up'" if x > 1.0 else " class='down'" if x < 1.0 else ""
                tds.append(f"<td{klass}>{html.escape(cells[c])}</td>")
            else:
                tds.append(f"<td>{html.escape(cells[c])}</td>")
        body.append(f"<tr{cls}>{''.join(tds)}</tr>")
    more = (
        f"<p class='note'>Showing {len(shown)} of {len(rows)} rows; all rows are in the CSV "
        "and Parquet files.</p>"
        if len(rows) > len(shown)
        else ""
    )
    return f"<div class='wrap'><table class='summary'>{head}{''.join(body)}</table></div>{more}"


def _panel_html(panel: Panel, fig_id: str | None) -> str:
    classes = "card" + (" wide" if panel.wide else "") + ("" if fig_id else " skipped")
    parts = [
        f"<section class='{classes}' id='panel-{panel.key}'>",
        f"<h2>{html.escape(panel.title)}</h2>",
        f"<p class='desc'>{html.escape(panel.description)}</p>",
    ]
    if panel.table_html:
        parts.append(panel.table_html)
    if fig_id:
        parts.append(f"<div class='plot' data-gw-figure='{fig_id}'></div>")
    if panel.note:
        parts.append(f"<p class='note'>{html.escape(panel.note)}</p>")
    parts.append("</section>")
    return "".join(parts)


def build_dashboard(
    rows: Sequence[Row],
    traces: Sequence[Trace] = (),
    *,
    title: str = "GradWire",
    published: Sequence[Mapping[str, Any]] | None = None,
    convergence: Sequence[Mapping[str, Any]] | None = None,
    validation: Sequence[Mapping[str, Any]] | None = None,
    notes: Sequence[str] = (),
    breakeven: Any = None,
) -> str:
    """One self-contained HTML document (plotly.js inlined: it opens offline).

    ``rows`` are result rows (speedups already filled by
    :func:`gradwire.results.add_speedups`); ``traces`` the simulated iterations to draw;
    ``published`` records have keys figure, quantity, published, predicted (optionally
    unit); ``convergence`` records codec, step, time_s, test_acc; ``validation`` records
    case, codec, workers, rate, measured_s, predicted_s, error. ``notes`` are shown under
    the title (assumptions a scenario makes, for instance). ``breakeven`` (a
    :class:`~gradwire.breakeven.BreakevenResult`) adds the break-even and regime-map panels.
    """
    rows = list(rows)
    panels = all_panels(
        rows, traces, published=published, convergence=convergence, validation=validation
    )
    if breakeven is not None:
        from gradwire.report.regime import breakeven_panel, regime_map

        panels[2:2] = [regime_map(rows, breakeven), breakeven_panel(rows, breakeven)]
    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    codecs = list(dict.fromkeys(r.codec for r in rows))
    n_points = len({r.point for r in rows})
    meta = (
        f"Scenario {', '.join(scenarios) or '—'} · {n_points} point(s) · "
        f"{len(codecs)} codec(s): {', '.join(codecs) or '—'}"
    )
    all_notes = list(dict.fromkeys(notes))
    # the caveat is added once: not again when a caller's note already explains estimates
    if any(r.estimate for r in rows) and not any("estimate" in n.lower() for n in all_notes):
        all_notes.append(ESTIMATE_NOTE)
    models = sorted({r.model for r in rows})
    devices = sorted({r.device for r in rows})
    if models or devices:
        meta2 = f"Model {', '.join(models)} · measured on {', '.join(devices)}"
        for label, key in (("target", "target_device"), ("precision", "precision"),
                           ("compute", "compute_source"), ("efficiencies", "efficiency_source"),
                           ("codecs", "codec_source"), ("network", "network_source")):
            vals = sorted({str(getattr(r, key)) for r in rows if getattr(r, key)})
            if vals:
                meta2 += f" · {label}: {'; '.join(vals)}"
    else:
        meta2 = ""

    sections = []
    scripts = []
    for i, p in enumerate(panels):
        fig_id = f"gw-fig-{i}" if p.figure is not None else None
        sections.append(_panel_html(p, fig_id))
        if p.figure is not None:
            scripts.append(
                f"<script type='application/json' id='{fig_id}'>{_figure_json(p.figure)}</script>"
            )
    notes_html = (
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in all_notes) + "</ul>"
        if all_notes
        else ""
    )
    doc = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_ERROR_CAPTURE_JS}</script>",
        f"<script>{get_plotlyjs()}</script>",
        "</head><body>",
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(meta)}</p>",
        f"<p>{html.escape(meta2)}</p>" if meta2 else "",
        notes_html,
        "</header>",
        "<div id='gw-status' data-state='pending'>rendering plots…</div>",
        "<pre id='gw-errors' hidden></pre>",
        "<main>",
        *sections,
        "<section class='card wide' id='panel-summary'><h2>Summary table</h2>",
        "<p class='desc'>Per scenario point and codec (baselines first), the terminal's "
        "columns in its order: speedup against fp32 (and against 1-bit SGD where it ran, and "
        "against the best uncompressed baseline where that is not fp32) at the same point, "
        "iteration time and its breakdown, bytes sent per rank, payload bits per gradient "
        "element and compression ratio against fp32.</p>",
        _summary_html(rows),
        "</section>",
        "</main>",
        *scripts,
        f"<script>{_RENDER_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(doc)


def write_dashboard(
    path: str | Path, rows: Sequence[Row], traces: Sequence[Trace] = (), **kw: Any
) -> Path:
    """Write :func:`build_dashboard`'s document to ``path`` (parents created); returns it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_dashboard(rows, traces, **kw), encoding="utf-8")
    return out


__all__ = ["build_dashboard", "write_dashboard"]
