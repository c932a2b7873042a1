"""The verdict and its interval: coverage of the simulated truth, determinism, the decision
rule, the cases with nothing to compare, and the terminal and dashboard output.

No profiling: workloads and codec costs are plain numbers (as in test_iteration.py), so
the "truth" of a synthetic scenario is the simulator run on the true inputs, and the
stated inputs are the truth perturbed by the stated error distributions.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import replace

import numpy as np
import pytest
from rich.console import Console

from gradwire.codecs.exchange import CAST, IN_PLACE, PAYLOAD, Exchange
from gradwire.pipeline import (
    CodecProfile,
    ParamCost,
    Prepared,
    WorkloadSummary,
    evaluate_point,
    workload_key,
)
from gradwire.report.browser import check_page, find_chromium
from gradwire.report.dashboard import write_dashboard
from gradwire.report.table import format_summary, print_summary
from gradwire.report.verdict import verdict_panel
from gradwire.scenarios.loader import Point, load_scenario
from gradwire.uncertainty import MEDIAN_ABS_NORMAL, PointUncertainty, TimeError
from gradwire.verdict import COMPRESS, KEEP, NO_VERDICT, UNDECIDED, decide, interval

NUMELS = (400_000, 250_000, 100_000)  # backward order
QSGD = "qsgd(bits=4, bucket=512)"


def scenario(codecs: list[str], *, workers: int = 2, gbps: float = 10.0, draws: int = 19, seed: int = 0,
             eff: tuple[float, float] | None = None, sweep: dict | None = None, verdict_on: bool = True):
    verdict: dict = {"draws": draws, "seed": seed, "enabled": verdict_on}
    if eff is not None:
        verdict["network_efficiency"] = list(eff)
    return load_scenario({
        "name": "synthetic", "workers": workers, "codecs": codecs, "overlap": True,
        "cluster": {"topology": "star", "bandwidth_Gbps": gbps, "latency_us": 2.0},
        "network": {"per_message_overhead_us": 5.0, "efficiency": 1.0 if eff is None else eff[1]},
        # two buckets: the first (1.6 MB) overlaps the rest of backward
        "bucket_MB": 25, "first_bucket_MB": 1, "verdict": verdict, "sweep": sweep or {},
    })


def prepared(sc, *, fwd: float, bwd: float, opt: float, codecs: dict[str, tuple[Exchange, float, float, float]],
             compute_error: float = 0.0, spread: float = 0.0) -> Prepared:
    """``codecs``: spec -> (exchange, bits per element, encode and decode seconds per
    element); compute an estimate with ``compute_error``, codec times measured with
    ``spread``."""
    total = sum(NUMELS)
    ready = tuple(bwd * x / total for x in np.cumsum(NUMELS))
    wl = WorkloadSummary("synthetic", 1, "cpu", fwd, bwd, opt, NUMELS, ready, ("a", "b", "c"), False, "synthetic",
                         compute_source="estimate (synthetic)", compute_error=compute_error)
    key = workload_key(sc)
    prep = Prepared(workloads={key: wl}, sum_s={key: tuple(2e-10 * n for n in NUMELS)})
    for spec, (ex, bpe, enc, dec) in codecs.items():
        params = tuple(ParamCost(n, (int(n * bpe),) * 2, enc * n, dec * n) for n in NUMELS)
        source = "declared: no codec work" if ex.in_place else "measured here (synthetic)"
        prep.codecs[(key, spec)] = CodecProfile(spec, spec.split("(")[0], ex.summable, params, exchange=ex,
                                                codec_source=source, encode_spread=spread, decode_spread=spread)
    return prep


def point_rows(sc, prep):
    rows, _ = evaluate_point(Point(0, "p0", {}, sc), prep)
    return {r.codec: r for r in rows}


# ---------------------------------------------------------------------------- coverage


def coverage(trials: int, draws: int, seed: int = 20261129) -> float:
    """The share of ``trials`` synthetic scenarios whose 90% interval (``draws`` draws)
    covers the true speedup of 4-bit QSGD over fp32. Per trial: true inputs drawn at
    random (bandwidth, workers, compute and codec times, network efficiency); the stated
    inputs are the truth times draws of the stated errors (compute estimate ±15% median,
    codec times measured with a 40% spread, network efficiency anywhere in 0.75-0.95);
    the truth is the simulator on the true inputs. (benchmarks/verdict.py runs more.)"""
    rng = np.random.default_rng(seed)
    m, spread, eff = 0.15, 0.40, (0.75, 0.95)
    compute_err = TimeError.stated_median(m, "compute")
    codec_err = TimeError.spread(spread, "codec")
    covered = 0
    for t in range(trials):
        gbps = float(np.exp(rng.uniform(np.log(0.3), np.log(30))))
        workers = int(rng.choice([2, 4]))
        fwd, bwd, opt = rng.uniform(0.5e-3, 2e-3), rng.uniform(1e-3, 5e-3), rng.uniform(0.1e-3, 0.5e-3)
        enc, dec = rng.uniform(0.5e-9, 4e-9), rng.uniform(0.5e-9, 4e-9)  # seconds per element
        sc = scenario(["fp32", QSGD], workers=workers, gbps=gbps, seed=t, eff=eff, draws=draws)
        true_eff = rng.uniform(*eff)
        truth_sc = scenario(["fp32", QSGD], workers=workers, gbps=gbps, eff=(true_eff, true_eff), verdict_on=False)
        truth = point_rows(truth_sc, prepared(truth_sc, fwd=fwd, bwd=bwd, opt=opt, codecs={
            "fp32": (IN_PLACE, 32, 0, 0), QSGD: (PAYLOAD, 4.06, enc, dec)}))
        true_speedup = truth["fp32"].iteration_s / truth[QSGD].iteration_s
        # what GradWire is told: each time off by a draw of its stated error
        z, u = rng.standard_normal(1), rng.random(2)
        c = float(compute_err.factors(z, u[:1])[0])
        fe, fd = (float(x) for x in codec_err.factors(np.zeros(2), u))
        stated = point_rows(sc, prepared(sc, fwd=fwd * c, bwd=bwd * c, opt=opt * c, compute_error=m, spread=spread,
                                         codecs={"fp32": (IN_PLACE, 32, 0, 0), QSGD: (PAYLOAD, 4.06, enc * fe, dec * fd)}))
        r = stated[QSGD]
        covered += r.speedup_low <= true_speedup <= r.speedup_high
    return covered / trials


@pytest.mark.slow
def test_interval_covers_the_simulated_truth_90_percent_of_the_time() -> None:
    """Over 300 synthetic scenarios (see :func:`coverage`) the 90% interval of 19 draws
    covers the simulated truth in 85-95% of them: a binomial standard error of 1.7%, so
    the band is about +-3 standard errors around 90%."""
    share = coverage(300, 19)
    assert 0.85 <= share <= 0.95, share


def test_exact_inputs_give_the_nominal_speedup_as_the_interval() -> None:
    """No stated error anywhere (compute exact, codec spread 0, a one-value efficiency
    range): every draw re-simulates the nominal inputs, so the interval is the nominal
    speedup exactly -- the draws run the same path as the nominal run."""
    sc = scenario(["fp32", QSGD], workers=4, gbps=1.0, eff=(0.9, 0.9))
    rows = point_rows(sc, prepared(sc, fwd=1e-3, bwd=3e-3, opt=2e-4, codecs={
        "fp32": (IN_PLACE, 32, 0, 0), QSGD: (PAYLOAD, 4.06, 2e-9, 1e-9)}))
    r = rows[QSGD]
    assert r.speedup_low == r.speedup_high == r.speedup_vs_best_baseline == rows["fp32"].iteration_s / r.iteration_s


def test_draws_follow_the_stated_errors() -> None:
    """A stated median error m gives draws whose |log factor| has median m; a spread s
    keeps every factor within 1 -+ s/2 (in the log) and fills it."""
    n = 200_000
    rng = np.random.default_rng(1)
    z, u = rng.standard_normal(n), rng.random(n)
    f = TimeError.stated_median(0.12, "x").factors(z, u)
    assert np.median(np.abs(np.log(f))) == pytest.approx(0.12, rel=0.01)
    assert TimeError.stated_median(0.12, "x").scale == pytest.approx(0.12 / MEDIAN_ABS_NORMAL)
    g = np.log(TimeError.spread(0.3, "x").factors(z, u))
    h = math.log1p(0.15)
    assert g.min() >= -h and g.max() <= h and g.min() < -0.99 * h and g.max() > 0.99 * h
    assert TimeError.stated_median(float("nan"), "x").kind == "unstated"


def test_each_source_gets_its_stated_error() -> None:
    """Compute: an estimate's stated median, a measurement's spread, a given time unstated;
    codecs: a calibration file's held-out error per direction (its own for a spec it
    calibrated, else the file's median), datasheet constants unstated, fp32 exact."""
    from gradwire.codecs.calibrate import Calibration
    from gradwire.codecs.cost import gpu_defaults
    from gradwire.uncertainty import codec_errors, compute_error

    wl = WorkloadSummary("m", 1, "cpu", 1, 1, 1, (1,), (1,), ("a",), True, "x",
                         compute_source="estimate (±12% median ...)", compute_error=0.12)
    assert compute_error(wl) == TimeError.stated_median(0.12, "compute estimate")
    assert compute_error(replace(wl, compute_source="measured here (cpu)", compute_spread=0.3)).kind == "uniform"
    assert compute_error(replace(wl, compute_source="given in the scenario (model.measured)")).kind == "unstated"
    cal = Calibration("f.json", "cuda", "H200", "H200", {}, "2026-11-29", gpu_defaults("H200"), 0.12, {},
                      {QSGD: {"encode": 0.05, "decode": 0.2}})
    assert (cal.error(QSGD, "encode"), cal.error(QSGD, "decode"), cal.error("onebit", "encode")) == (0.05, 0.2, 0.12)
    prof = CodecProfile(QSGD, "qsgd", False, (), exchange=PAYLOAD, codec_source="measured file f.json",
                        encode_error=0.05, decode_error=0.2)
    enc, dec = codec_errors(prof)
    assert (enc.kind, dec.kind) == ("normal", "normal")
    assert (enc.scale, dec.scale) == pytest.approx((0.05 / MEDIAN_ABS_NORMAL, 0.2 / MEDIAN_ABS_NORMAL))
    sheet = replace(prof, codec_source="model (H200 datasheet constants)", encode_error=math.nan, decode_error=math.nan)
    assert [e.kind for e in codec_errors(sheet)] == ["unstated", "unstated"]
    fp32 = CodecProfile("fp32", "fp32", True, (), exchange=IN_PLACE, codec_source="declared: no codec work")
    assert [e.kind for e in codec_errors(fp32)] == ["exact", "exact"]


def test_every_estimate_path_carries_its_stated_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder estimated on the meta device (never run here) draws its compute from the
    estimate's stated error, like a zoo model's estimate."""
    from gradwire.pipeline import prepare
    from gradwire.scenarios.loader import expand

    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))
    llm = {"layers": 2, "hidden": 128, "intermediate": 256, "heads": 4, "kv_heads": 2, "vocab": 500, "seq_len": 32}
    sc = load_scenario({"name": "llm", "workers": 4, "cluster": {"topology": "star", "bandwidth_Gbps": 100},
                        "model": {"name": "mine", "llm": llm, "batch_size": 2, "seq_len": 16, "target_device": "H100",
                                  "precision": "amp_bf16"},
                        "codecs": ["fp32", QSGD], "measure": {"repeats": 1}, "verdict": {"draws": 19}})
    pts = expand(sc)
    prep = prepare(sc, points=pts, progress=False)
    (wl,) = prep.workloads.values()
    assert wl.compute_source.startswith("estimate") and 0 < wl.compute_error < 1
    rows, _ = evaluate_point(pts[0], prep)
    assert f"compute estimate ±{wl.compute_error:.0%} median (stated)" in rows[0].interval_basis


def test_common_random_numbers_and_independent_codec_streams() -> None:
    """Compute and network draws do not depend on the codecs; adding a codec leaves the
    other codecs' draws as they were."""
    err = TimeError.spread(0.2, "c")
    one = PointUncertainty(TimeError.stated_median(0.1, "compute"), {"a": err}, {"a": err}, (0.8, 0.9))
    two = PointUncertainty(one.compute, {"a": err, "b": err}, {"a": err, "b": err}, (0.8, 0.9))
    d1, d2 = one.draw(50, 3), two.draw(50, 3)
    assert np.array_equal(d1.compute, d2.compute) and np.array_equal(d1.efficiency, d2.efficiency)
    assert np.array_equal(d1.encode["a"], d2.encode["a"]) and np.array_equal(d1.decode["a"], d2.decode["a"])
    assert not np.array_equal(d2.encode["a"], d2.encode["b"])
    assert d1.efficiency.min() >= 0.8 and d1.efficiency.max() <= 0.9


# ------------------------------------------------------------------------ determinism


def test_same_seed_same_interval_bytes_and_another_seed_another() -> None:
    codecs = {"fp32": (IN_PLACE, 32, 0, 0), QSGD: (PAYLOAD, 4.06, 2e-9, 1e-9)}

    def run(seed: int) -> tuple[str, str]:
        sc = scenario(["fp32", QSGD], gbps=1.0, seed=seed, draws=40, eff=(0.8, 0.95))
        r = point_rows(sc, prepared(sc, fwd=1e-3, bwd=3e-3, opt=2e-4, codecs=codecs, compute_error=0.1,
                                    spread=0.3))[QSGD]
        return f"{r.speedup_low!r} {r.speedup_high!r}", r.verdict_line

    a, b, c = run(0), run(0), run(1)
    assert a == b
    assert a[0] != c[0]


# ------------------------------------------------------------------------ the decision


def _samples(ratios: list[float]) -> dict[str, np.ndarray]:
    """Draws in which fp32 takes 1 s and the codec 1/ratio s."""
    r = np.array(ratios)
    return {"fp32": np.ones_like(r), QSGD: 1.0 / r}


@pytest.mark.parametrize(("ratios", "decision"), [
    (list(np.linspace(1.02, 1.4, 19)), COMPRESS),
    (list(np.linspace(0.6, 0.98, 19)), KEEP),
    (list(np.linspace(0.9, 1.1, 19)), UNDECIDED),
])
def test_decision_from_where_the_interval_lies(ratios: list[float], decision: str) -> None:
    """With 19 draws the p(n+1) rule puts the 5% and 95% points at the smallest and the
    largest draw; the decision is whether that interval lies above 1x, below, or across."""
    v = decide({"fp32": 1.0, QSGD: 1.0 / float(np.median(ratios))}, _samples(ratios), ["fp32"],
               {"fp32": "ring_allreduce", QSGD: "ring_allgather"})
    assert (v.low, v.high) == pytest.approx((min(ratios), max(ratios)), rel=1e-12)
    assert v.decision == decision
    assert v.option == QSGD and v.collective == "ring_allgather" and v.baseline == "fp32"
    if decision == UNDECIDED:
        assert v.line.startswith("not decided") and "straddles 1×" in v.line
    if decision == COMPRESS:
        assert v.line.startswith(f"compress: {QSGD} by ring_allgather")


def test_interval_rule_covers_a_new_draw_90_percent() -> None:
    """The p(n+1) rule: a new draw of the same distribution falls inside with probability
    (m - k)/(n + 1) = 0.9 for n = 19 (k = 1, m = 19)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20_000, 20))
    lo, hi = np.quantile(x[:, :19], (0.05, 0.95), axis=1, method="weibull")
    assert np.array_equal(lo, x[:, :19].min(axis=1)) and np.array_equal(hi, x[:, :19].max(axis=1))
    inside = np.mean((x[:, 19] >= lo) & (x[:, 19] <= hi))
    assert inside == pytest.approx(0.9, abs=0.01)
    assert interval(np.arange(1.0, 20.0)) == (1.0, 19.0)


def test_best_baseline_is_the_fastest_of_fp32_and_casts_per_draw() -> None:
    """fp16 beats fp32 in half the draws: each draw's baseline is the faster of the two."""
    fp32 = np.array([1.0, 1.0, 1.0, 1.0])
    fp16 = np.array([0.8, 1.2, 0.8, 1.2])
    q = np.array([0.5, 0.5, 0.5, 0.5])
    v = decide({"fp32": 1.0, "fp16": 0.9, QSGD: 0.5}, {"fp32": fp32, "fp16": fp16, QSGD: q},
               ["fp32", "fp16"], {})
    assert v.baseline == "fp16"
    assert v.speedup == pytest.approx(0.9 / 0.5)
    assert v.per_codec[QSGD][1:] == pytest.approx(interval(np.minimum(fp32, fp16) / q))


# ---------------------------------------------------------------- nothing to compare


def test_only_baselines_give_a_clear_line_and_no_empty_panel() -> None:
    sc = scenario(["fp32", "fp16"], gbps=1.0)
    rows = point_rows(sc, prepared(sc, fwd=1e-3, bwd=3e-3, opt=2e-4, codecs={
        "fp32": (IN_PLACE, 32, 0, 0), "fp16": (CAST, 16, 1e-9, 1e-9)}))
    r = rows["fp16"]
    assert r.verdict == NO_VERDICT and r.best_baseline == "fp16"  # fp16 halves the bytes at 1 Gbit/s
    assert "add a compressed codec to `codecs`" in r.verdict_line
    panel = verdict_panel(list(rows.values()))
    assert panel.figure is None and panel.note == r.verdict_line and r.verdict_line in panel.table_html
    out = _printed(list(rows.values()))
    assert "no verdict: only uncompressed baselines ran (fp32, fp16)" in out


def test_no_baseline_says_what_to_add() -> None:
    sc = scenario([QSGD], gbps=1.0)
    r = point_rows(sc, prepared(sc, fwd=1e-3, bwd=3e-3, opt=2e-4, codecs={QSGD: (PAYLOAD, 4.06, 1e-9, 1e-9)}))[QSGD]
    assert r.verdict == NO_VERDICT and "add fp32 (or fp16/bf16)" in r.verdict_line
    assert math.isnan(r.speedup_vs_best_baseline)


def test_one_point_scenario_gets_its_line_and_a_drawn_panel() -> None:
    sc = scenario(["fp32", QSGD, "onebit"], gbps=0.5, eff=(0.85, 0.95))
    codecs = {"fp32": (IN_PLACE, 32, 0, 0), QSGD: (PAYLOAD, 4.06, 2e-9, 1e-9), "onebit": (PAYLOAD, 1.1, 3e-9, 2e-9)}
    rows = list(point_rows(sc, prepared(sc, fwd=1e-3, bwd=3e-3, opt=2e-4, codecs=codecs, spread=0.2)).values())
    v = rows[0]
    assert all(r.verdict == v.verdict and r.verdict_line == v.verdict_line for r in rows)
    best = max((r for r in rows if r.codec != "fp32"), key=lambda r: r.speedup_vs_best_baseline)
    assert v.verdict_option == f"{best.codec} by ring_allgather"
    for r in rows:  # nominal speedup is the rows' own ratio
        assert r.speedup_vs_best_baseline == pytest.approx(rows[0].iteration_s / r.iteration_s)
    panel = verdict_panel(rows)
    assert panel.figure is not None
    drawn = {t.name: t for t in panel.figure.data}
    assert set(drawn) == {QSGD, "onebit"}
    assert list(drawn[QSGD].x) == [next(r for r in rows if r.codec == QSGD).speedup_vs_best_baseline]
    out = _printed(rows)
    assert v.verdict_line in out and "interval: 19 draws (seed 0)" in out
    assert v.verdict_line in format_summary(rows, "markdown")


def _printed(rows) -> str:
    buf = io.StringIO()
    print_summary(rows, Console(file=buf, width=10_000, color_system=None))
    return buf.getvalue()


def test_settings_errors_name_the_field_and_the_fix() -> None:
    from gradwire.errors import ScenarioError

    with pytest.raises(ScenarioError, match=r"verdict\.network_efficiency: \[0\.5, 0\.9\] must contain "
                                            r"network\.efficiency \(1\.0\).*widen the range"):
        load_scenario({"verdict": {"network_efficiency": [0.5, 0.9]}})
    with pytest.raises(ScenarioError, match=r"verdict\.draws: must be >= 19"):
        load_scenario({"verdict": {"draws": 5}})
    with pytest.raises(ScenarioError, match=r"low <= high"):
        load_scenario({"verdict": {"network_efficiency": [0.9, 0.8]}})


def test_draws_tick_a_line_under_the_sweep_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each draw of each codec advances a line under the sweep's bar, removed when the
    point is done; without a bar (progress off, a Dask worker) it is a no-op."""
    from contextlib import contextmanager

    from gradwire.sweep import engine

    with engine.subtask("nothing showing", 3) as tick:
        tick()
    bar = engine._Progress(True, 1, "sweep")
    try:
        with engine.subtask("draws", 2) as tick:
            (task,) = [t for t in bar._bar.tasks if t.description == "draws"]
            tick()
            tick()
            assert task.completed == 2
        assert [t.description for t in bar._bar.tasks] == ["sweep"]
    finally:
        bar.stop()
    assert not engine._ACTIVE
    seen: list[tuple[int, int]] = []

    @contextmanager
    def recording(label: str, total: int):  # type: ignore[no-untyped-def]
        count = [0]
        yield lambda: count.__setitem__(0, count[0] + 1)
        seen.append((total, count[0]))

    monkeypatch.setattr(engine, "subtask", recording)
    sc = scenario(["fp32", QSGD], draws=23, eff=(0.85, 0.95))
    point_rows(sc, prepared(sc, fwd=1e-3, bwd=3e-3, opt=2e-4, codecs={
        "fp32": (IN_PLACE, 32, 0, 0), QSGD: (PAYLOAD, 4.06, 2e-9, 1e-9)}))
    assert seen == [(2 * 23, 2 * 23)]


# ------------------------------------------------------------------------ the browser

CHROMIUM = find_chromium()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_verdict_panel_renders_in_headless_chromium(tmp_path) -> None:
    """Two points (a winning and a losing bandwidth): the panel's plot renders with the
    rest; a scenario of baselines only shows its line and no plot container."""
    codecs = {"fp32": (IN_PLACE, 32, 0, 0), QSGD: (PAYLOAD, 4.06, 2e-9, 1e-9)}
    rows = []
    for i, gbps in enumerate((0.3, 100.0)):
        sc = scenario(["fp32", QSGD], gbps=gbps, eff=(0.85, 0.95), sweep={"cluster.bandwidth_Gbps": [0.3, 100.0]})
        prep = prepared(sc, fwd=1e-3, bwd=3e-3, opt=2e-4, codecs=codecs, spread=0.2)
        pt_rows, _ = evaluate_point(Point(i, f"p{i}", {"cluster.bandwidth_Gbps": gbps}, sc), prep)
        rows += [replace(r, params={"cluster.bandwidth_Gbps": gbps}) for r in pt_rows]
    assert {r.verdict for r in rows} == {COMPRESS, KEEP}
    page = write_dashboard(tmp_path / "d.html", rows)
    text = page.read_text(encoding="utf-8")
    section = re.search(r"<section[^>]*id='panel-verdict'.*?</section>", text, re.S)
    assert section is not None and "data-gw-figure" in section.group(0)
    check = check_page(page)
    assert check.ok, (check.state, check.errors)
    assert check.rendered == check.expected == len(re.findall(r"data-gw-figure=", text))

    sc = scenario(["fp32", "fp16"])
    only = list(point_rows(sc, prepared(sc, fwd=1e-3, bwd=3e-3, opt=2e-4, codecs={
        "fp32": (IN_PLACE, 32, 0, 0), "fp16": (CAST, 16, 1e-9, 1e-9)})).values())
    page2 = write_dashboard(tmp_path / "only.html", only)
    text2 = page2.read_text(encoding="utf-8")
    section2 = re.search(r"<section[^>]*id='panel-verdict'.*?</section>", text2, re.S)
    assert section2 is not None and "data-gw-figure" not in section2.group(0)
    assert "no verdict: only uncompressed baselines ran" in section2.group(0)
    assert check_page(page2).ok
