"""The dashboard: panels carry exactly the rows' numbers, skip visibly without data, the
HTML is self-contained, and (when Debian's chromium is installed) every plot renders in a
headless browser with no console errors."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from plotly.colors import get_colorscale

from gradwire.errors import ConfigError
from gradwire.report.browser import check_page, find_chromium, screenshot
from gradwire.report.dashboard import ESTIMATE_NOTE, build_dashboard, write_dashboard
from gradwire.report.fmt import fmt_time
from gradwire.report.panels import (
    BEST_CODEC,
    MAX_LAYOUT_NODES,
    MAX_TIMELINE_RANKS,
    UTIL_BINS,
    accuracy_vs_time,
    all_panels,
    bits_and_compression,
    breakdown_parts,
    heatmap_axes,
    iteration_breakdown,
    iteration_timeline,
    merge_segments,
    predicted_vs_measured,
    published_comparison,
    speedup_heatmap,
    speedup_vs_workers,
    swept_axes,
    topology_drawing,
    util_bin,
)
from gradwire.results import (
    MAX_SEGMENTS_PER_LANE,
    LinkUse,
    Row,
    Segment,
    Trace,
    add_speedups,
    coarsen_segments,
)

CODECS = (
    ("fp32", "fp32", 32.0),
    ("onebit", "onebit", 1.0 + 64 / 512),
    ("qsgd(bits=4, bucket=512)", "qsgd", 5.0 + 32 / 512),
    ("qsgd(bits=2, bucket=128)", "qsgd", 3.0 + 32 / 128),
)
ELEMENTS = 25_000_000


def make_row(
    point: int,
    codec: str,
    name: str,
    bits: float,
    workers: int,
    gbps: float,
    *,
    bucket_mb: int = 25,
    estimate: bool = False,
    straggle_s: float = 0.0,
) -> Row:
    """A row with an alpha-beta style iteration time (test input, varied per point/codec)."""
    compute = 0.120
    payload = ELEMENTS * bits / 8
    comm = 2 * (workers - 1) / workers * payload / (gbps * 1e9 / 8) + 5e-6 * workers
    encode = 0.0 if name == "fp32" else 0.004 + 1e-10 * ELEMENTS * bits
    decode = 0.0 if name == "fp32" else 0.002 * workers / 4
    hidden = min(comm, 0.6 * compute)
    exposed = comm - hidden
    it = compute + encode + exposed + decode + straggle_s
    return Row(
        scenario="synthetic",
        point=point,
        point_id=f"workers={workers}, link_Gbps={gbps:g}, bucket_MB={bucket_mb}",
        codec=codec,
        codec_name=name,
        model="mlp4096",
        batch_size=64,
        workers=workers,
        topology="star",
        collective="ring",
        device="cpu",
        seed=0,
        overlap=True,
        iteration_s=it,
        compute_s=compute,
        forward_s=0.04,
        backward_s=0.075,
        optimizer_s=0.005,
        encode_s=encode,
        decode_s=decode,
        comm_s=comm,
        exposed_comm_s=exposed,
        hidden_comm_s=hidden,
        bytes_per_rank=payload,
        bits_per_element=bits,
        compression_ratio=32.0 / bits,
        estimate=estimate,
        params={"workers": workers, "cluster.link_Gbps": gbps, "bucket_MB": bucket_mb},
    )


def sweep_rows(workers=(2, 4, 8, 16), gbps=(1.0, 10.0, 100.0), buckets=(25,)) -> list[Row]:
    rows = []
    point = 0
    for b in buckets:
        for g in gbps:
            for w in workers:
                for codec, name, bits in CODECS:
                    rows.append(make_row(point, codec, name, bits, w, g, bucket_mb=b))
                point += 1
    return add_speedups(rows)


def make_trace(point: int, codec: str, ranks: int = 4) -> Trace:
    segs = []
    for r in range(ranks):
        t = 0.001 * r  # staggered ranks so that every rank's bars differ
        for kind, dur in (
            ("forward", 0.04),
            ("backward", 0.075),
            ("encode", 0.004),
            ("comm", 0.03),
            ("decode", 0.002),
            ("optimizer", 0.005),
        ):
            segs.append(Segment(rank=r, kind=kind, start_s=t, end_s=t + dur, label=f"{kind} b0"))
            t += dur
    positions = {"sw0": (0.0, 0.0)}
    kinds = {"sw0": "switch"}
    links = []
    for r in range(ranks):
        ang = 2 * math.pi * r / ranks
        positions[f"gpu{r}"] = (math.cos(ang), math.sin(ang))
        kinds[f"gpu{r}"] = "gpu"
        up = 0.15 + 0.8 * r / max(ranks - 1, 1)
        links.append(LinkUse(f"gpu{r}", "sw0", 1.25e9, up * 0.15, 1e6 * (r + 1), up))
        links.append(LinkUse("sw0", f"gpu{r}", 1.25e9, 0.05 * 0.15, 1e5, 0.05))
    return Trace(
        point=point, codec=codec, segments=segs, links=links, positions=positions, node_kinds=kinds
    )


def _trace_data(fig, group: int = 0):
    """The traces of one dropdown choice (the first is visible initially)."""
    menus = fig.layout.updatemenus
    if not menus:
        return list(fig.data)
    visible = menus[0].buttons[group].args[0]["visible"]
    return [t for t, v in zip(fig.data, visible, strict=True) if v]


# ------------------------------------------------------------------------------ axes


def test_swept_axes_and_heatmap_pick_the_two_most_varied():
    rows = sweep_rows(workers=(2, 4, 8, 16), gbps=(1.0, 10.0, 100.0), buckets=(25, 50))
    axes = swept_axes(rows)
    assert axes == {
        "workers": [2, 4, 8, 16],
        "cluster.link_Gbps": [1.0, 10.0, 100.0],
        "bucket_MB": [25, 50],
    }
    assert heatmap_axes(rows) == ("workers", "cluster.link_Gbps")
    # more bandwidth values than worker counts: bandwidth becomes x
    rows2 = sweep_rows(workers=(4, 8), gbps=(1.0, 10.0, 25.0, 100.0))
    assert heatmap_axes(rows2) == ("cluster.link_Gbps", "workers")
    assert heatmap_axes(sweep_rows(workers=(4, 8), gbps=(10.0,))) is None


def test_heatmap_never_pairs_an_axis_with_a_function_of_it():
    """A case axis that sets the model is a function of it: the heatmap takes the swept
    bandwidth instead (the two-model, two-bandwidth scenario a user tried)."""
    rows = []
    for case, model in (("small", "mlp"), ("big", "resnet50")):
        for gbps in (10.0, 100.0):
            for r in sweep_rows(workers=(4,), gbps=(gbps,)):
                rows.append(replace(r, model=model, point=len(rows),
                                    params={**r.params, "case": case, "model.name": model}))
    x, y = heatmap_axes(rows)
    assert {x, y} != {"case", "model.name"} and "cluster.link_Gbps" in (x, y)


def test_heatmap_cells_are_the_rows_speedups():
    rows = sweep_rows(buckets=(25, 50))
    panel = speedup_heatmap(rows)
    fig = panel.figure
    assert fig is not None
    # one menu choice per (compressed codec or the best of them, value of the third axis);
    # fp32 is left out
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert len(labels) == 4 * 2 and not any(lab.startswith("fp32") for lab in labels)
    assert labels[0].startswith(BEST_CODEC)
    for gi, label in enumerate(labels):
        (hm,) = _trace_data(fig, gi)
        codec, bucket = label.rsplit(", bucket_MB=", 1)
        for yi, g in enumerate(hm.y):
            for xi, w in enumerate(hm.x):
                cands = [
                    r
                    for r in rows
                    if r.codec_name != "fp32"
                    and (codec == BEST_CODEC or r.codec == codec)
                    and r.workers == int(w)
                    and r.params["cluster.link_Gbps"] == float(g)
                    and r.params["bucket_MB"] == int(bucket)
                ]
                want = max(r.speedup_vs_fp32 for r in cands)
                assert 10 ** hm.z[yi][xi] == pytest.approx(want, rel=1e-12)
                assert hm.text[yi][xi].startswith(f"{want:.2f}×")
    assert fig.layout.xaxis.title.text == "workers"
    assert fig.layout.yaxis.title.text == "cluster.link_Gbps"


def test_heatmap_skips_with_reason_for_one_axis():
    panel = speedup_heatmap(sweep_rows(gbps=(10.0,)))
    assert panel.figure is None and "two swept axes" in panel.note and "workers" in panel.note


# ------------------------------------------------------------------------------ speedups


def test_speedup_vs_workers_follows_rows():
    rows = sweep_rows(gbps=(1.0, 100.0))
    fig = speedup_vs_workers(rows).figure
    assert fig is not None
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["cluster.link_Gbps=1", "cluster.link_Gbps=100"]
    for gi, g in enumerate((1.0, 100.0)):
        for tr in _trace_data(fig, gi):
            codec = tr.legendgroup
            attr = "speedup_vs_fp32" if tr.xaxis in (None, "x") else "speedup_vs_onebit"
            want = sorted(
                (r for r in rows if r.codec == codec and r.params["cluster.link_Gbps"] == g),
                key=lambda r: r.workers,
            )
            assert list(tr.x) == [r.workers for r in want]
            assert list(tr.y) == pytest.approx([getattr(r, attr) for r in want])
    # fp32 is 1x against itself at every point, onebit 1x against itself
    fp = [t for t in _trace_data(fig) if t.legendgroup == "fp32" and t.xaxis in (None, "x")]
    assert all(v == pytest.approx(1.0) for v in fp[0].y)


def test_speedup_vs_workers_skips_single_worker_count():
    panel = speedup_vs_workers(sweep_rows(workers=(8,)))
    assert panel.figure is None
    assert "only one worker count (8)" in panel.note


# ------------------------------------------------------------------------------ breakdown


def test_breakdown_stacks_add_up_to_iteration_time():
    rows = sweep_rows(workers=(4, 8), gbps=(1.0, 10.0))
    rows[5] = replace(rows[5], iteration_s=rows[5].iteration_s + 0.05)  # a straggler wait
    fig = iteration_breakdown(rows).figure
    assert fig is not None
    points = list(dict.fromkeys(r.point for r in rows))
    assert len(fig.layout.updatemenus[0].buttons) == len(points)
    for gi, p in enumerate(points):
        data = _trace_data(fig, gi)
        stack = [t for t in data if t.offsetgroup == "stack"]
        hidden = [t for t in data if t.offsetgroup == "hidden"]
        prow = [r for r in rows if r.point == p]
        for ci, r in enumerate(prow):
            top = max(t.base[ci] + t.y[ci] for t in stack)
            assert top == pytest.approx(r.iteration_s * 1e3, rel=1e-9)
            for lower, upper in itertools.pairwise(stack):
                assert upper.base[ci] == pytest.approx(lower.base[ci] + lower.y[ci])
            assert hidden[0].y[ci] == pytest.approx(r.hidden_comm_s * 1e3)
    assert breakdown_parts(rows[5])["other"] == pytest.approx(0.05)
    assert breakdown_parts(rows[4])["other"] == 0.0


# ------------------------------------------------------------------------------ timeline


def test_timeline_bars_are_the_segments():
    rows = sweep_rows(workers=(4,), gbps=(10.0,))
    trace = make_trace(0, "qsgd(bits=4, bucket=512)")
    fig = iteration_timeline([trace], rows).figure
    assert fig is not None and fig.layout.barmode == "overlay"
    bars = {t.name: t for t in fig.data}
    assert set(bars) == {"forward", "backward", "encode", "comm", "decode", "optimizer"}
    for kind, bar in bars.items():
        segs = [s for s in trace.segments if s.kind == kind]
        assert list(bar.base) == pytest.approx([s.start_s * 1e3 for s in segs])
        assert list(bar.x) == pytest.approx([(s.end_s - s.start_s) * 1e3 for s in segs])
        lane = " comm" if kind == "comm" else ""  # communication has its own lane per rank
        assert list(bar.y) == [f"rank {s.rank}{lane}" for s in segs]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(["comm", "encode"]),
            st.integers(0, 40),
            st.integers(1, 8),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_merged_bars_cover_exactly_the_union_of_segments(specs):
    segs = [
        Segment(rank=r, kind=k, start_s=float(a), end_s=float(a + d), label=f"s{i}")
        for i, (r, k, a, d) in enumerate(specs)
    ]
    bars = merge_segments(segs)
    for rank in range(3):
        for kind in ("comm", "encode"):
            # oracle: unit cells covered by some segment, as maximal runs
            cells = np.zeros(50, dtype=bool)
            for s in segs:
                if s.rank == rank and s.kind == kind:
                    cells[int(s.start_s) : int(s.end_s)] = True
            edges = np.flatnonzero(np.diff(np.concatenate([[0], cells.astype(int), [0]])))
            runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
            got = sorted((b.start_s, b.end_s) for b in bars if b.rank == rank and b.kind == kind)
            assert got == [(float(a), float(b)) for a, b in runs]
    assert sum(b.count for b in bars) == len(segs)


def test_timeline_draws_a_ring_of_steps_as_one_bar():
    steps = [Segment(0, "comm", 0.01 * i, 0.01 * (i + 1), f"step {i}") for i in range(30)]
    fig = iteration_timeline([Trace(point=0, codec="fp32", segments=steps)]).figure
    assert fig is not None
    (bar,) = fig.data
    assert list(bar.base) == [0.0] and list(bar.x) == pytest.approx([300.0])
    assert bar.customdata[0][0] == "step 0 … step 29 (30 segments)"


@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 400), st.integers(1, 6)),
             min_size=1, max_size=120),
    st.integers(1, 20),
)
def test_coarsened_lanes_keep_every_segment_inside_one_and_fill_only_short_gaps(specs, cap):
    segs = [Segment(rank=r, kind="comm", start_s=float(a), end_s=float(a + d), label=f"s{i}")
            for i, (r, a, d) in enumerate(specs)]
    out, filled = coarsen_segments(segs, max_per_lane=cap)
    for rank in (0, 1):
        mine = [s for s in segs if s.rank == rank]
        got = [s for s in out if s.rank == rank]
        if len(mine) <= cap:
            assert sorted(got, key=lambda s: s.label) == sorted(mine, key=lambda s: s.label)
            continue
        assert len(got) <= cap
        assert sum(s.count for s in got) == len(mine)
        # every simulated segment lies inside exactly one drawn one
        for s in mine:
            assert sum(g.start_s <= s.start_s and s.end_s <= g.end_s for g in got) == 1
        # what a drawn segment adds is made of gaps no longer than the stated resolution:
        # oracle on unit cells, the gaps inside each drawn segment
        for g in got:
            cells = np.zeros(420, dtype=bool)
            for s in mine:
                if g.start_s <= s.start_s and s.end_s <= g.end_s:
                    cells[int(s.start_s):int(s.end_s)] = True
            inner = cells[int(g.start_s):int(g.end_s)]
            edges = np.flatnonzero(np.diff(np.concatenate([[1], inner.astype(int), [1]])))
            assert all(b - a <= filled for a, b in zip(edges[::2], edges[1::2], strict=True))
    if all(len([s for s in segs if s.rank == r]) <= cap for r in (0, 1)):
        assert filled == 0.0


def test_a_long_ring_is_drawn_at_the_lane_limit_and_the_note_says_so():
    # 3 x MAX steps of 1 ms, 5 us apart before every third and 1 us apart otherwise: the
    # 1 us gaps are filled, and the drawing keeps MAX bars of three steps each
    steps, t = [], 0.0
    for i in range(3 * MAX_SEGMENTS_PER_LANE):
        t += 5e-6 if i % 3 == 0 else 1e-6
        steps.append(Segment(0, "comm", t, t + 1e-3, f"step {i}"))
        t += 1e-3
    segs, filled = coarsen_segments(steps)
    assert len(segs) == MAX_SEGMENTS_PER_LANE and filled == pytest.approx(1e-6)
    assert segs[0].label == "step 0 … step 2 (3 segments)" and segs[0].count == 3
    panel = iteration_timeline([Trace(point=0, codec="fp32", segments=segs, resolution_s=filled)])
    assert panel.figure is not None
    assert sum(len(tr.x) for tr in panel.figure.data) == MAX_SEGMENTS_PER_LANE
    assert f"at most {MAX_SEGMENTS_PER_LANE} bars per lane" in panel.note
    assert f"gaps up to {fmt_time(1e-6)} between steps are filled" in panel.note
    # merging two coarsened neighbours counts the simulated segments, not the drawn ones
    bars = merge_segments([Segment(0, "comm", 0.0, 1.0, "a … b (3 segments)", 3),
                           Segment(0, "comm", 1.0, 2.0, "c … d (4 segments)", 4)])
    assert [(b.label, b.count) for b in bars] == [("a … d (7 segments)", 7)]


def test_timeline_caps_ranks_and_says_so():
    trace = make_trace(0, "fp32", ranks=MAX_TIMELINE_RANKS + 4)
    panel = iteration_timeline([trace])
    assert panel.figure is not None
    ranks = {y.removesuffix(" comm") for t in panel.figure.data for y in t.y}
    assert ranks == {f"rank {r}" for r in range(MAX_TIMELINE_RANKS)}
    assert f"{MAX_TIMELINE_RANKS} of {MAX_TIMELINE_RANKS + 4} ranks shown" in panel.note


def test_timeline_and_topology_skip_without_traces():
    for panel in (iteration_timeline([]), topology_drawing([])):
        assert panel.figure is None and panel.note.startswith("Skipped")


# ------------------------------------------------------------------------------ topology


def test_topology_merges_directions_and_colours_by_busier_one():
    trace = make_trace(0, "fp32", ranks=5)
    fig = topology_drawing([trace]).figure
    assert fig is not None
    mids = next(t for t in fig.data if t.name == "links")
    # 10 directed links -> 5 drawn cables, each coloured by the busier (upward) direction
    assert len(mids.x) == 5
    ups = sorted(lu.utilization for lu in trace.links if lu.dst == "sw0")
    assert sorted(mids.marker.color) == pytest.approx(ups)
    lines = [t for t in fig.data if t.mode == "lines"]
    drawn = sum(len(t.x) // 3 for t in lines)
    assert drawn == 5
    expected_bins = sorted({util_bin(u) for u in ups})
    widths = sorted(t.line.width for t in lines)
    assert len(lines) == len(expected_bins)
    assert widths == pytest.approx([1.0 + 7.0 * (b + 0.5) / UTIL_BINS for b in expected_bins])
    # the colour bar is the same explicit scale as the edges (plotly.js orders the named
    # "YlOrRd" scale the other way round): low utilization is the light end
    scale = [tuple(c) for c in mids.marker.colorscale]
    assert scale == [tuple(c) for c in get_colorscale("YlOrRd")]
    assert scale[0][1] == "rgb(255,255,204)"
    gpus = next(t for t in fig.data if t.name == "gpu")
    assert sorted(gpus.text) == [f"gpu{r}" for r in range(5)]


@pytest.mark.parametrize(
    ("u", "b"),
    [(0.0, 0), (0.099, 0), (0.1, 1), (0.55, 5), (1.0, 9), (1.7, 9), (-0.2, 0), (math.nan, 0)],
)
def test_util_bin(u, b):
    assert util_bin(u) == b


def test_topology_too_large_to_lay_out_is_skipped_with_reason():
    n = MAX_LAYOUT_NODES + 10
    links = [LinkUse(f"gpu{i}", "sw", 1e9, 0.1, 1e6, 0.5) for i in range(n)]
    panel = topology_drawing([Trace(point=0, codec="fp32", links=links)])
    assert panel.figure is None and f"({n + 1} nodes) is too large" in panel.note


def test_topology_lays_out_nodes_without_positions():
    trace = make_trace(0, "fp32", ranks=3)
    bare = Trace(point=0, codec="fp32", links=trace.links)
    fig = topology_drawing([bare]).figure
    assert fig is not None
    nodes = [t for t in fig.data if t.mode == "markers" and t.name != "links"]
    assert sorted(n for t in nodes for n in t.text) == ["gpu0", "gpu1", "gpu2", "sw0"]
    assert all(math.isfinite(v) for t in nodes for v in (*t.x, *t.y))


# ------------------------------------------------------------------------------ records


def test_bits_panel_means_and_ranges():
    rows = sweep_rows(workers=(4, 8), gbps=(10.0,))
    rows[2] = replace(rows[2], bits_per_element=6.0)  # one qsgd point with another size
    fig = bits_and_compression(rows).figure
    assert fig is not None
    bars = [t for t in fig.data if t.xaxis in (None, "x")]
    q = next(t for t in bars if t.name == "qsgd(bits=4, bucket=512)")
    vals = [6.0, 5.0 + 32 / 512]
    assert q.y[0] == pytest.approx(sum(vals) / 2)
    assert f"{min(vals):.4g}–{max(vals):.4g} over 2 points" in q.customdata[0]  # the range, in the hover
    assert fig.layout.yaxis.title.text == "bits / element"


def test_bits_panel_keeps_models_apart():
    rows = sweep_rows(workers=(4, 8), gbps=(10.0,))
    rows = [replace(r, model="mlp" if r.workers == 4 else "resnet50",
                    bits_per_element=r.bits_per_element + (0 if r.workers == 4 else 1)) for r in rows]
    fig = bits_and_compression(rows).figure
    q = next(t for t in fig.data if t.name == "qsgd(bits=4, bucket=512)" and t.xaxis in (None, "x"))
    assert list(q.x) == ["mlp", "resnet50"]
    by = {r.model: r.bits_per_element for r in rows if r.codec == "qsgd(bits=4, bucket=512)"}
    assert list(q.y) == pytest.approx([by["mlp"], by["resnet50"]])


def test_records_panels_and_missing_keys():
    pub = [
        {
            "figure": "Fig. 3",
            "quantity": "epoch time speedup",
            "published": 1.8,
            "predicted": 1.62,
            "unit": "×",
        }
    ]
    p = published_comparison(pub)
    assert p.figure is not None
    (bar,) = [t for t in p.figure.data if t.type == "bar"]
    assert bar.x[0] == pytest.approx(1.62 / 1.8)
    assert "<th>codec</th>" not in p.table_html  # no record names one
    assert "<td>1.8</td><td>1.62</td><td>0.9</td>" in p.table_html
    two = published_comparison(
        [{**pub[0], "codec": "qsgd(bits=4)"}, {**pub[0], "codec": "qsgd(bits=2)", "predicted": 2.7}]
    ).figure
    assert two is not None
    (bar2,) = [t for t in two.data if t.type == "bar"]
    assert list(bar2.y) == ["#1", "#2"]
    assert list(bar2.customdata) == [
        "Fig. 3 · epoch time speedup · qsgd(bits=4)",
        "Fig. 3 · epoch time speedup · qsgd(bits=2)",
    ]
    assert list(bar2.x) == pytest.approx([1.62 / 1.8, 2.7 / 1.8])
    with pytest.raises(ConfigError, match=r"published\[0\]: missing predicted"):
        published_comparison([{"figure": "F", "quantity": "q", "published": 1}])
    conv = [
        {"codec": c, "step": s, "time_s": s * t, "test_acc": 0.5 + 0.01 * s}
        for c, t in (("fp32", 0.2), ("qsgd", 0.1))
        for s in (3, 1, 2)
    ]
    cf = accuracy_vs_time(conv).figure
    assert cf is not None and [t.name for t in cf.data] == ["fp32", "qsgd"]
    assert list(cf.data[1].x) == pytest.approx([0.1, 0.2, 0.3])  # sorted by time
    with pytest.raises(ConfigError, match="convergence"):
        accuracy_vs_time([{"codec": "fp32"}])
    val = [
        {
            "case": "2x1G",
            "codec": "fp32",
            "workers": 2,
            "rate": "1gbit",
            "measured_s": 0.2,
            "predicted_s": 0.22,
            "error": 0.1,
        },
        {
            "case": "2x1G",
            "codec": "qsgd",
            "workers": 2,
            "rate": "1gbit",
            "measured_s": 0.1,
            "predicted_s": 0.095,
            "error": -0.05,
        },
    ]
    vf = predicted_vs_measured(val).figure
    assert vf is not None
    assert "median |error| 10.0%" in vf.layout.title.text
    for panel in (published_comparison(None), accuracy_vs_time([]), predicted_vs_measured(None)):
        assert panel.figure is None and panel.note.startswith("Skipped")


# ------------------------------------------------------------------------------ HTML


EXTERNAL = re.compile(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=", re.IGNORECASE)


def test_html_is_self_contained_and_escaped(tmp_path):
    rows = sweep_rows()
    evil = "<script>alert(1)</script>"
    rows = [replace(rows[1], codec=evil), *rows[2:]]
    doc = build_dashboard(rows, [make_trace(0, "fp32")], title="T & <b>", notes=[evil])
    assert EXTERNAL.search(doc) is None  # nothing loaded from anywhere: opens offline
    assert "plotly.js v" in doc[:200_000]
    assert doc.count("<script>alert(1)") == 0
    assert "T &amp; &lt;b&gt;" in doc
    ids = re.findall(r"data-gw-figure='(gw-fig-\d+)'", doc)
    assert ids and all(f"id='{i}'" in doc for i in ids)
    out = write_dashboard(tmp_path / "sub" / "dash.html", rows)
    assert out.exists() and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_skipped_panels_show_their_reason_in_the_page():
    rows = sweep_rows(workers=(8,), gbps=(10.0,))
    doc = build_dashboard(rows)
    assert "only one worker count (8)" in doc
    assert "no iteration trace with segments" in doc
    assert "no published records" in doc
    n_fig = len(re.findall(r"data-gw-figure=", doc))
    assert n_fig == sum(p.figure is not None for p in all_panels(rows)) == 2


def test_estimates_are_labelled():
    rows = [replace(r, estimate=True) for r in sweep_rows(workers=(2, 4), gbps=(10.0,))]
    doc = build_dashboard(rows)
    assert ESTIMATE_NOTE.split(" ")[0] in doc and "rescaled" in doc
    fig = speedup_vs_workers(rows).figure
    assert fig is not None
    assert all(t.name.endswith("(estimate)") for t in fig.data if t.showlegend)
    plain = build_dashboard(sweep_rows(workers=(2, 4), gbps=(10.0,)))
    assert "(estimate)" not in plain and "rescaled" not in plain
    # a caller's own estimate caveat is not repeated
    own = build_dashboard(rows, notes=["Times marked estimate were rescaled.", "x", "x"])
    assert ESTIMATE_NOTE not in own and own.count("<li>x</li>") == 1


# ------------------------------------------------------------------------------ browser

CHROMIUM = find_chromium()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_dashboard_renders_in_headless_chromium(tmp_path):
    rows = sweep_rows(workers=(2, 8), gbps=(1.0, 100.0), buckets=(25, 50))
    traces = [make_trace(0, "qsgd(bits=4, bucket=512)", ranks=4), make_trace(1, "fp32", ranks=8)]
    pub = [
        {"figure": "Fig. 3", "quantity": "epoch time speedup", "published": 1.8, "predicted": 1.62}
    ]
    conv = [
        {"codec": c, "step": s, "time_s": s * t, "test_acc": 0.5 + 0.04 * s}
        for c, t in (("fp32", 0.2), ("qsgd", 0.1))
        for s in range(1, 6)
    ]
    val = [
        {
            "case": "2x1G",
            "codec": "fp32",
            "workers": 2,
            "rate": "1gbit",
            "measured_s": 0.2,
            "predicted_s": 0.22,
            "error": 0.1,
        }
    ]
    page = write_dashboard(
        tmp_path / "dashboard.html",
        rows,
        traces,
        published=pub,
        convergence=conv,
        validation=val,
        notes=["synthetic rows"],
    )
    expected = len(re.findall(r"data-gw-figure=", page.read_text(encoding="utf-8")))
    assert expected == 9
    png = tmp_path / "dashboard.png"
    check = check_page(page, selftest=True)
    assert check.state == "ok", check.errors
    panels = all_panels(rows, traces, published=pub, convergence=conv, validation=val)
    buttons = [
        len(p.figure.layout.updatemenus[0].buttons)
        for p in panels
        if p.figure is not None and p.figure.layout.updatemenus
    ]
    assert check.menu_steps == sum(b + 1 for b in buttons) > 0  # every choice, then back
    assert check.expected == expected
    assert check.rendered == expected  # every container holds a drawn plotly SVG
    assert check.errors == []
    assert not [c for c in check.console if "Uncaught" in c or "Error" in c]
    assert check.ok
    screenshot(page, png, width=1400, height=2400)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000  # a blank page compresses far smaller


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_headless_check_catches_a_broken_page(tmp_path):
    rows = sweep_rows(workers=(2, 4), gbps=(10.0,))
    doc = build_dashboard(rows).replace("</head>", "<script>console.error('boom')</script></head>")
    page = tmp_path / "broken.html"
    page.write_text(doc, encoding="utf-8")
    check = check_page(page)
    assert not check.ok
    assert any("boom" in e for e in check.errors)
