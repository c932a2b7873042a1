"""The dashboard on a user's two-model, two-bandwidth scenario (``cases`` that set
``model.name``, crossed with a bandwidth sweep): every headline panel shows every point
at once, the timeline labels every lane, and the page's summary table has the terminal's
columns in the terminal's order."""

from __future__ import annotations

import re

from gradwire.report.dashboard import SUMMARY_HEADERS, build_dashboard
from gradwire.report.panels import (
    BEST_CODEC,
    TIMELINE_LANE_PX,
    TIMELINE_MARGIN_PX,
    heatmap_axes,
    iteration_timeline,
    menu_axes,
    speedup_heatmap,
)
from gradwire.report.regime import regime_map
from gradwire.report.table import ordered, shown_columns
from gradwire.results import Row, Segment, Trace, add_speedups

# (case, model, gradient elements); codec (name, bits per element)
MODELS = (("MLP", "mlp", 3_300_000), ("CNN", "small_cnn", 29_000))
CODECS = (("fp32", "fp32", 32.0), ("qsgd(bits=4, bucket=512)", "qsgd", 4.1), ("onebit", "onebit", 1.14))
BANDWIDTHS = (1.0, 10.0)


def _row(point: int, case: str, model: str, elements: int, gbps: float, codec: str, name: str,
         bits: float) -> Row:
    compute = 0.25
    comm = 2 * 3 / 4 * elements * bits / 8 / (gbps * 1e9 / 8)
    codec_s = 0.0 if name == "fp32" else 2e-8 * elements
    it = compute + codec_s + comm
    return Row(
        scenario="two_models", point=point, point_id=f"{case}-{gbps:g}", codec=codec, codec_name=name,
        model=model, batch_size=32, workers=4, topology="star", collective="ring", device="cpu",
        seed=0, overlap=True, iteration_s=it, compute_s=compute, forward_s=0.08, backward_s=0.16,
        optimizer_s=0.01, encode_s=codec_s / 2, decode_s=codec_s / 2, comm_s=comm, exposed_comm_s=comm,
        hidden_comm_s=0.0, bytes_per_rank=elements * bits / 8, bits_per_element=bits,
        compression_ratio=32.0 / bits, estimate=False,
        params={"case": case, "model.name": model, "cluster.bandwidth_Gbps": gbps},
    )


def two_model_rows(codecs=CODECS) -> list[Row]:
    rows = []
    point = 0
    for case, model, elements in MODELS:
        for gbps in BANDWIDTHS:
            rows += [_row(point, case, model, elements, gbps, c, n, b) for c, n, b in codecs]
            point += 1
    return add_speedups(rows)


def test_axes_the_drawn_axes_fix_get_no_menu():
    rows = two_model_rows()
    axes = heatmap_axes(rows)
    assert axes == ("case", "cluster.bandwidth_Gbps")
    assert menu_axes(rows, axes) == []  # model.name follows from the case
    assert menu_axes(rows, ("model.name", "cluster.bandwidth_Gbps")) == []
    # an axis the drawn ones do not fix keeps its menu
    assert menu_axes(rows, ("cluster.bandwidth_Gbps",)) == ["case", "model.name"]


def test_heatmap_shows_both_models_in_one_choice():
    rows = two_model_rows()
    fig = speedup_heatmap(rows).figure
    assert fig is not None
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    # one choice per compressed codec (and the best of them), none per model
    assert labels == [BEST_CODEC, "qsgd(bits=4, bucket=512)", "onebit"]
    for gi in range(len(labels)):
        visible = fig.layout.updatemenus[0].buttons[gi].args[0]["visible"]
        (hm,) = [t for t, v in zip(fig.data, visible, strict=True) if v]
        assert list(hm.x) == ["CNN", "MLP"] and all(z is not None for zr in hm.z for z in zr)
        for yi, g in enumerate(hm.y):
            for xi, case in enumerate(hm.x):
                cands = [r for r in rows if r.codec_name != "fp32" and r.params["case"] == case
                         and r.params["cluster.bandwidth_Gbps"] == float(g)
                         and (labels[gi] == BEST_CODEC or r.codec == labels[gi])]
                assert 10 ** hm.z[yi][xi] == max(r.speedup_vs_fp32 for r in cands)


def test_regime_map_shows_every_point_in_one_choice():
    rows = two_model_rows()
    panel = regime_map(rows, None)
    fig = panel.figure
    assert fig is not None and not fig.layout.updatemenus  # nothing left to choose
    drawn = {(x, y) for t in fig.data if t.name.startswith("wins: ") for x, y in zip(t.x, t.y, strict=True)}
    assert drawn == {(case, gbps) for case, _, _ in MODELS for gbps in BANDWIDTHS}
    for t in fig.data:
        if t.name.startswith("wins: "):
            codec = t.name.removeprefix("wins: ")
            for case, gbps in zip(t.x, t.y, strict=True):
                pts = [r for r in rows if r.params["case"] == case and r.params["cluster.bandwidth_Gbps"] == gbps]
                assert min(pts, key=lambda r: r.iteration_s).codec == codec


def test_timeline_labels_every_lane():
    segs = []
    for rank in range(4):
        segs += [Segment(rank, "forward", 0.0, 0.08, "forward"), Segment(rank, "backward", 0.08, 0.24, "backward"),
                 Segment(rank, "comm", 0.12, 0.30, "comm b0"), Segment(rank, "optimizer", 0.30, 0.31, "optimizer")]
    fig = iteration_timeline([Trace(point=0, codec="fp32", segments=segs)]).figure
    assert fig is not None
    lanes = [f"rank {r}{s}" for r in reversed(range(4)) for s in (" comm", "")]
    assert list(fig.layout.yaxis.categoryarray) == lanes
    assert list(fig.layout.yaxis.tickvals) == lanes and fig.layout.yaxis.tickmode == "array"
    assert fig.layout.height >= TIMELINE_MARGIN_PX + TIMELINE_LANE_PX * len(lanes)


def _summary_table(page: str) -> tuple[list[str], list[list[str]]]:
    table = page[page.index("id='panel-summary'"):]
    table = table[table.index("<table"):table.index("</table>")]
    head = re.findall(r"<th>(.*?)</th>", table)
    body = [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table)[1:]]
    return head, body


def test_dashboard_summary_has_the_terminal_columns_and_order():
    rows = two_model_rows()
    # rows given codec-first: the page still lists each point's baseline first
    shuffled = sorted(rows, key=lambda r: (r.codec_name == "fp32", r.point))
    head, body = _summary_table(build_dashboard(shuffled, []))
    assert head == [SUMMARY_HEADERS.get(c, c) for c in shown_columns(rows)]
    assert head[2:4] == ["speedup vs fp32", "speedup vs 1-bit"]  # speedups first, as in the terminal
    want = ordered(shuffled)
    assert [cells[1] for cells in body] == [r.codec for r in want]
    assert all(cells[1] == "fp32" for cells in body[::3])
    # without 1-bit SGD there is no column against it
    head2, _ = _summary_table(build_dashboard(two_model_rows(CODECS[:2]), []))
    assert "speedup vs 1-bit" not in head2 and head2[2] == "speedup vs fp32"


def test_regime_map_draws_no_line_across_models():
    # a bandwidth break-even per model: the crossings of two models are not points of one
    # curve, so across the categorical axis they are markers, never a joining line
    from gradwire.breakeven import BANDWIDTH, BreakevenResult

    rows = two_model_rows()
    compressed = next(r.codec for r in rows if not r.uncompressed)
    firsts = {}
    for r in rows:
        firsts.setdefault(r.params["case"], r.point)
    records = [{"point": p, "codec": compressed, "axis": BANDWIDTH, "setting": "cluster.bandwidth_Gbps",
                "crossings": [{"value": 3.0 + i}]}
               for i, p in enumerate(firsts.values())]
    fig = regime_map(rows, BreakevenResult(records)).figure
    (trace,) = [t for t in fig.data if t.name == f"break-even: {compressed} (bandwidth)"]
    assert trace.mode == "markers" and sorted(trace.y) == [3.0, 4.0]
