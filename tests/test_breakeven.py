"""Break-even points against closed forms and against the simulator itself.

A hand-made workload (plain numbers, no profiling) on a contention-free star: the
iteration of fp32 (ring allreduce) and of a 4-bit payload codec (length round, ring
allgather, p decodes each added into the sum) are closed forms of the bandwidth B,
``T = A + K/B``, so their crossing is ``B* = (K_fp32 - K_codec) / (A_codec - A_fp32)``
(simulator/analytic.py). Elsewhere (overlap, servers behind NICs) the oracle is the
simulator at the reported values: the two times agree within what the tolerance
guarantees, and the worker search ends on neighbours that pay and do not.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from gradwire.breakeven import (
    BANDWIDTH,
    GBPS,
    WORKERS,
    BreakevenResult,
    Crossing,
    Search,
    bandwidth_knob,
    describe,
    find_breakevens,
    worker_counts,
)
from gradwire.codecs.exchange import IN_PLACE, PAYLOAD
from gradwire.errors import ScenarioError
from gradwire.iteration import LENGTH_MESSAGE_BYTES
from gradwire.pipeline import (
    CodecProfile,
    ParamCost,
    Prepared,
    WorkloadSummary,
    evaluate_point,
    workload_key,
)
from gradwire.report.regime import breakeven_panel, map_axes, regime_map
from gradwire.scenarios.loader import Point, expand, load_scenario
from gradwire.simulator.analytic import ring_allgather_time, ring_allreduce_time

LAT = 2e-6  # per link: a star route is two links
F, B, O = 0.004, 0.010, 0.002  # noqa: E741
NUMELS = (500_000, 250_000)  # 2 MB and 1 MB of fp32
READY = (0.004, B)
ENC, DEC = (1e-3, 5e-4), (4e-4, 2e-4)
SUM = (3e-4, 1.5e-4)
P = 4
Q4 = "qsgd(bits=4)"
CODECS = {"fp32": (IN_PLACE, 32), Q4: (PAYLOAD, 4), "qsgd(bits=8)": (PAYLOAD, 8)}


def scenario(codecs=("fp32", Q4), **extra):
    data = {
        "name": "oracle", "workers": P, "codecs": list(codecs), "overlap": False,
        "cluster": {"topology": "star", "bandwidth_Gbps": 10.0, "latency_us": LAT * 1e6},
        "bucket_MB": 25, "first_bucket_MB": 25, **extra,
    }
    return load_scenario(data)


def prepared(sc, codecs=CODECS) -> Prepared:
    wl = WorkloadSummary("handmade", 1, "cpu", F, B, O, NUMELS, READY, ("a", "b"), False, "synthetic")
    prep = Prepared(workloads={workload_key(sc): wl}, sum_s={workload_key(sc): SUM})
    for spec, (ex, bpe) in codecs.items():
        params = tuple(ParamCost(n, (n * bpe, n * bpe), e, d) for n, e, d in zip(NUMELS, ENC, DEC, strict=True))
        prep.codecs[(workload_key(sc), spec)] = CodecProfile(spec, spec.split("(")[0], ex.summable, params,
                                                             exchange=ex)
    return prep


def run(sc, codecs=CODECS) -> tuple[list, list, Prepared, BreakevenResult]:
    points = expand(sc)
    prep = prepared(points[0].scenario, codecs)
    rows = [r for p in points for r in evaluate_point(p, prep)[0]]
    return points, rows, prep, find_breakevens(points, rows, prep, sc.breakeven)


def record(res: BreakevenResult, axis: str, codec: str = Q4, point: int = 0) -> dict:
    return next(r for r in res.records if r["axis"] == axis and r["codec"] == codec and r["point"] == point)


def times_at(sc, prep, *, gbps: float | None = None, workers: int | None = None) -> dict[str, float]:
    """Iteration times straight from evaluate_point with one setting changed."""
    data = sc.model_dump(mode="python")
    if gbps is not None:
        knob = bandwidth_knob(sc)
        assert not isinstance(knob, str)
        knob.set(data, gbps, knob.value(sc))
    if workers is not None:
        data["workers"] = workers
    changed = load_scenario(data)
    rows, _ = evaluate_point(Point(0, "check", {}, changed), prep)
    return {r.codec: r.iteration_s for r in rows}


# ----------------------------------------------------------------- bandwidth: closed form
def closed_form_crossing_Bps(p: int, bits: int) -> float:
    """Solve A_fp32 + K_fp32/B = A_codec + K_codec/B for B with the analytic collectives:
    each is linear in 1/B, so K is its value at alpha=0, B=1 and A its value at B -> inf."""
    alpha = 2 * LAT
    m32 = 4.0 * sum(NUMELS)
    mq = sum(n * bits // 8 for n in NUMELS)

    def fp32(a: float, bw: float) -> float:
        return F + B + O + ring_allreduce_time(p, m32, a, bw)

    def codec(a: float, bw: float) -> float:
        return (F + B + O + sum(ENC) + ring_allgather_time([LENGTH_MESSAGE_BYTES] * p, a, bw)
                + ring_allgather_time([mq] * p, a, bw) + p * (sum(DEC) + sum(SUM)))

    k32, kq = fp32(0.0, 1.0) - (F + B + O), codec(0.0, 1.0) - codec(0.0, math.inf)
    a32, aq = fp32(alpha, math.inf), codec(alpha, math.inf)
    return (k32 - kq) / (aq - a32)


@pytest.mark.parametrize("tol", [0.01, 0.001])
def test_bandwidth_breakeven_is_the_closed_form_crossing_on_a_star(tol) -> None:
    sc = scenario(breakeven={"tolerance": tol, "workers": False})
    _, _, prep, res = run(sc)
    rec = record(res, BANDWIDTH)
    exact = closed_form_crossing_Bps(P, 4) / GBPS
    (c,) = rec["crossings"]
    assert c["low"] <= exact <= c["high"] and c["high"] / c["low"] <= 1 + tol
    assert abs(math.log(rec["breakeven"] / exact)) <= 0.5 * math.log(1 + tol)
    assert c["pays_below"] and rec["text"] == f"pays below {rec['breakeven']:.3g} Gbit/s"
    # below the crossing the codec is faster, above it fp32 is (straight from the simulator)
    below, above = times_at(sc, prep, gbps=exact / 1.05), times_at(sc, prep, gbps=exact * 1.05)
    assert below[Q4] < below["fp32"] and above[Q4] > above["fp32"]


def test_times_at_the_reported_bandwidth_agree_within_what_the_tolerance_guarantees() -> None:
    """With overlap, DDP's small first bucket and a 2-server cluster whose NICs are the
    bandwidth searched, no closed form applies: the simulator at the reported bandwidth is
    the oracle. Time falls at most as 1/B, so the bracket hi/lo <= 1 + tol bounds the gap
    by sqrt(1 + tol) - 1."""
    tol = 0.01
    sc = scenario(overlap=True, bucket_MB=1, first_bucket_MB=1, workers=8,
                  cluster={"topology": "servers", "gpus_per_server": 4, "intra_bandwidth_Gbps": 600,
                           "nic_bandwidth_Gbps": 10},
                  breakeven={"tolerance": tol, "workers": False})
    _, _, prep, res = run(sc)
    rec = record(res, BANDWIDTH)
    assert rec["setting"] == "cluster.nic_bandwidth_Gbps" and rec["status"] == "crossing"
    t = times_at(sc, prep, gbps=rec["breakeven"])
    assert t[Q4] == pytest.approx(rec["option_s"], rel=1e-12) and t["fp32"] == pytest.approx(rec["baseline_s"])
    assert abs(t[Q4] / t["fp32"] - 1) <= math.sqrt(1 + tol) - 1


def test_no_crossing_in_the_range_is_said_plainly() -> None:
    exact = closed_form_crossing_Bps(P, 4) / GBPS
    lo = scenario(breakeven={"bandwidth_range_Gbps": [exact / 100, exact / 2], "workers": False},
                  cluster={"topology": "star", "bandwidth_Gbps": exact / 10, "latency_us": LAT * 1e6})
    rec = record(run(lo)[3], BANDWIDTH)
    assert rec["status"] == "always" and math.isnan(rec["breakeven"])
    assert rec["text"] == f"pays at every bandwidth in [{exact / 100:.4g}, {exact / 2:.4g}] Gbit/s"
    hi = scenario(breakeven={"bandwidth_range_Gbps": [exact * 2, exact * 100], "workers": False})
    rec = record(run(hi)[3], BANDWIDTH)
    assert rec["status"] == "never" and rec["text"].startswith("never pays in [")


def test_points_differing_only_in_bandwidth_share_one_search() -> None:
    sc = scenario(sweep={"cluster.bandwidth_Gbps": [1, 10, 100]}, breakeven={"workers": False})
    res = run(sc)[3]
    recs = [r for r in res.records if r["codec"] == Q4]
    assert len(recs) == 3 and len({r["breakeven"] for r in recs}) == 1
    # own values are the points' rows; pays where the point's bandwidth is below the crossing
    for r in recs:
        assert r["pays_at_own"] == (r["own_value"] < r["breakeven"])


# ----------------------------------------------------------------------------- workers
def test_workers_bisection_ends_on_the_last_paying_count() -> None:
    """At 1 Gbit/s the 4-bit codec pays on few workers (its allgather grows with p while the
    ring allreduce does not): the search ends on neighbours, the first paying and the
    next one not, each checked with the simulator."""
    sc = scenario(cluster={"topology": "star", "bandwidth_Gbps": 1.0, "latency_us": LAT * 1e6},
                  breakeven={"bandwidth": False, "workers_range": [2, 64]})
    _, _, prep, res = run(sc)
    rec = record(res, WORKERS)
    (c,) = rec["crossings"]
    last, first_not = int(c["low"]), int(c["high"])
    assert c["pays_below"] and first_not == last + 1 and rec["breakeven"] == last
    at_last, at_next = times_at(sc, prep, workers=last), times_at(sc, prep, workers=first_not)
    assert at_last[Q4] < at_last["fp32"] and at_next[Q4] >= at_next["fp32"]
    assert rec["text"] == f"pays up to {last} workers (not at {first_not})"


def test_workers_of_a_servers_cluster_step_by_whole_servers() -> None:
    sc = scenario(workers=8, cluster={"topology": "servers", "gpus_per_server": 4, "intra_bandwidth_Gbps": 600,
                                      "nic_bandwidth_Gbps": 1},
                  breakeven={"bandwidth": False, "workers_range": [1, 256]})
    counts, how = worker_counts(sc, 1, 256)
    assert counts == list(range(4, 257, 4)) and how == "whole servers of 4 GPUs"
    _, _, prep, res = run(sc)
    rec = record(res, WORKERS)
    for c in rec["crossings"]:
        assert c["high"] - c["low"] == 4
        lo_t, hi_t = times_at(sc, prep, workers=int(c["low"])), times_at(sc, prep, workers=int(c["high"]))
        assert (lo_t[Q4] < lo_t["fp32"]) == c["pays_below"] and (hi_t[Q4] < hi_t["fp32"]) != c["pays_below"]
    fixed = scenario(cluster={"topology": "star", "num_gpus": 6, "bandwidth_Gbps": 1, "latency_us": 2})
    assert worker_counts(fixed, 2, 1024)[0] == [2, 3, 4, 5, 6]


# ----------------------------------------------------------------- what is not searched
def test_without_a_baseline_or_a_compressed_codec_there_is_a_note_and_no_record() -> None:
    only_fp32 = run(scenario(codecs=("fp32",)))[3]
    assert only_fp32.records == [] and "no compressed codec" in only_fp32.notes[0]
    no_base = run(scenario(codecs=(Q4,)))[3]
    assert no_base.records == [] and "add fp32" in no_base.notes[0]
    many = run(scenario(sweep={"workers": [2, 4, 8]}, breakeven={"max_points": 2}))[3]
    assert many.records == [] and "breakeven.max_points" in many.notes[0]


def test_bad_ranges_name_the_field_and_the_switch_leaves_point_ids_alone() -> None:
    with pytest.raises(ScenarioError, match=r"breakeven\.bandwidth_range_Gbps: the first value must be below"):
        scenario(breakeven={"bandwidth_range_Gbps": [10, 1]})
    with pytest.raises(ScenarioError, match=r"breakeven\.tolerance"):
        scenario(breakeven={"tolerance": 0})
    a, b = expand(scenario())[0], expand(scenario(breakeven={"workers": False, "max_points": 0}))[0]
    assert a.point_id == b.point_id


def test_description_of_two_crossings() -> None:
    cross = (Crossing(1.0, 1.01, 1.005, False, 0.1, 0.1, "fp32"), Crossing(40.0, 40.4, 40.2, True, 0.1, 0.1, "fp32"))
    s = Search(BANDWIDTH, Q4, "cluster.bandwidth_Gbps", 0.1, 1000.0, False, False, cross)
    assert describe(s) == "pays between 1 Gbit/s and 40.2 Gbit/s"
    w = Search(WORKERS, Q4, "workers", 2, 64, False, True, (Crossing(7, 8, 8, False, 0.1, 0.1, "fp32"),))
    assert describe(w) == "pays from 8 workers on (not at 7)"


# ------------------------------------------------------------------- dashboard panels
def swept() -> tuple[list, BreakevenResult]:
    sc = scenario(codecs=("fp32", Q4, "qsgd(bits=8)"),
                  sweep={"workers": [2, 4, 8], "cluster.bandwidth_Gbps": [1, 10, 100]},
                  breakeven={"workers_range": [2, 64]})
    _, rows, _, res = run(sc)
    return rows, res


def test_regime_map_colours_each_point_by_its_winner_and_draws_the_contour() -> None:
    rows, res = swept()
    assert map_axes(rows, res) == ("cluster.bandwidth_Gbps", "workers")
    panel = regime_map(rows, res)
    assert panel.figure is not None
    wins = {t.name: list(zip(t.x, t.y, strict=True)) for t in panel.figure.data if t.name.startswith("wins: ")}
    for r in rows:  # every point sits in the trace of its fastest codec
        best = min((x for x in rows if x.point == r.point), key=lambda x: x.iteration_s)
        assert (float(r.params["cluster.bandwidth_Gbps"]), float(r.workers)) in wins[f"wins: {best.codec}"]
    line = next(t for t in panel.figure.data if t.name == f"break-even: {Q4} (bandwidth)")
    for gbps, workers in zip(line.x, line.y, strict=True):
        rec = next(r for r in res.records if r["axis"] == BANDWIDTH and r["codec"] == Q4
                   and r["own_value"] == 1.0 and next(x.workers for x in rows if x.point == r["point"]) == workers)
        assert gbps == rec["breakeven"]


def test_panels_survive_one_point_and_no_compressed_codec() -> None:
    _, rows, _, res = run(scenario())
    one = regime_map(rows, res)
    assert one.figure is None and one.note.startswith("One scenario point") and "pays below" in one.note
    assert breakeven_panel(rows, res).figure is not None  # the one point's stretches still draw
    _, rows, _, res = run(scenario(sweep={"workers": [2, 4, 8]}))
    strip = regime_map(rows, res)
    assert map_axes(rows, res) == ("workers", None) and strip.figure is not None and "one strip" in strip.note
    _, rows, _, res = run(scenario(codecs=("fp32",), sweep={"workers": [2, 4]}))
    for panel in (regime_map(rows, res), breakeven_panel(rows, res)):
        assert panel.figure is None and panel.note.startswith("No compressed codec in this scenario")


@pytest.mark.browser
@pytest.mark.skipif(__import__("gradwire.report.browser", fromlist=["x"]).find_chromium() is None,
                    reason="chromium not installed (apt-get install chromium)")
def test_new_panels_render_in_headless_chromium(tmp_path) -> None:
    from gradwire.report.browser import check_page
    from gradwire.report.dashboard import write_dashboard

    rows, res = swept()
    page = write_dashboard(tmp_path / "dashboard.html", rows, breakeven=res)
    text = page.read_text(encoding="utf-8")
    assert "id='panel-regime'" in text and "id='panel-breakeven'" in text
    check = check_page(page, selftest=True)
    expected = len(re.findall(r"data-gw-figure=", text))
    assert check.ok and check.errors == [] and check.rendered == expected
    for section in ("regime", "breakeven"):  # both panels hold a plot, not a note
        body = text.split(f"id='panel-{section}'", 1)[1].split("</section>", 1)[0]
        assert "data-gw-figure=" in body


# ---------------------------------------------------------------------- through a run
def test_a_run_searches_once_and_report_and_explain_read_the_results(tmp_path, monkeypatch, capsys) -> None:
    """The run path with the hand-made workload in place of profiling: files, results.csv
    columns, the dashboard panels, reuse by a re-run, then `report` and `explain` reading
    the folder."""
    import csv

    from gradwire.cli import main
    from gradwire.run import run_scenario

    sc = scenario(sweep={"workers": [2, 4], "cluster.bandwidth_Gbps": [1, 10]}, breakeven={"workers_range": [2, 32]})
    prep = prepared(expand(sc)[0].scenario)
    monkeypatch.setattr("gradwire.run.prepare", lambda *a, **k: prep)
    said: list[str] = []
    outcome = run_scenario(sc, tmp_path, progress=False, log=said.append)
    recs = outcome.breakeven.records
    assert len(recs) == 4 * 2 and (tmp_path / "breakeven.json").is_file() and (tmp_path / "breakeven.csv").is_file()
    with (tmp_path / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    for r in recs:
        if r["axis"] == BANDWIDTH:
            line = next(x for x in table if x["point_id"] == r["point_id"] and x["codec"] == r["codec"])
            assert float(line["breakeven_bandwidth_Gbps"]) == pytest.approx(r["breakeven"], rel=1e-12)
            assert line["breakeven_bandwidth_text"] == r["text"]
    html = (tmp_path / "dashboard.html").read_text(encoding="utf-8")
    assert "id='panel-regime'" in html and "id='panel-breakeven'" in html
    said.clear()
    again = run_scenario(sc, tmp_path, progress=False, log=said.append)
    assert any("reusing the stored searches" in m for m in said)
    assert json.dumps(again.breakeven.records, sort_keys=True) == json.dumps(recs, sort_keys=True)  # NaN == NaN
    assert main(["report", str(tmp_path)]) == 0
    assert "Break-even points against the best uncompressed baseline" in capsys.readouterr().out
    assert main(["explain", "workers=2, bandwidth_Gbps=1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fp32 via ring_allreduce" in out and "(best baseline)" in out and f"Break-even of {Q4} along bandwidth" in out


def test_a_links_cluster_scales_every_link_and_reports_the_slowest() -> None:
    links = [{"src": f"g{i}", "dst": "sw", "bandwidth_Gbps": 10.0 if i else 40.0, "latency_us": 2} for i in range(P)]
    sc = scenario(cluster={"topology": "links", "links": links, "gpus": [f"g{i}" for i in range(P)]},
                  breakeven={"workers": False})
    knob = bandwidth_knob(sc)
    assert not isinstance(knob, str) and knob.value(sc) == 10.0
    _, _, prep, res = run(sc)
    rec = record(res, BANDWIDTH)
    assert rec["setting"].startswith("every link") and rec["status"] == "crossing"
    data = sc.model_dump(mode="python")
    knob.set(data, rec["breakeven"], 10.0)
    assert [lk["bandwidth_Gbps"] for lk in data["cluster"]["links"]] == pytest.approx(
        [4 * rec["breakeven"]] + [rec["breakeven"]] * (P - 1))
    t = times_at(sc, prep, gbps=rec["breakeven"])
    assert abs(t[Q4] / t["fp32"] - 1) <= math.sqrt(1 + sc.breakeven.tolerance) - 1
    assert isinstance(bandwidth_knob(scenario(cluster={"topology": "star", "latency_us": 1, "num_gpus": 4,
                                                       "bandwidth_Mbps": 100})), type(knob))
