"""Break-even points of every compressed option, found by bisection with the simulator.

For each scenario point and each compressed codec (with the collective that carries it at
that point), up to two searches. Each step re-evaluates the point through the normal path,
:func:`gradwire.pipeline.evaluate_point` on the point's scenario with one setting changed,
reusing the prepared workload and codec profiles (nothing is profiled or measured again):

* **bandwidth**: the link bandwidth (``cluster.bandwidth_Gbps``; ``nic_bandwidth_Gbps`` of
  a ``servers`` cluster; for ``links`` every link scaled, the slowest one reported) below
  which the codec beats the best uncompressed baseline at that same bandwidth. Bisection on
  log-bandwidth (each step first probing either side of the crossing interpolated from the
  bracket's ends, see :func:`_bisect_bandwidth`) until the bracket ``[lo, hi]`` satisfies
  ``hi/lo <= 1 + tolerance``; the reported bandwidth is its geometric middle. An iteration's time falls at most in
  proportion to 1/bandwidth (communication scales as 1/B; compute, codec work and latency
  not at all), so ``ln(T_option/T_baseline)`` moves by at most ``|d ln B|`` and the two
  times at the reported bandwidth agree within ``sqrt(1 + tolerance) - 1``.
* **workers**: the worker count above which it stops paying, by integer bisection over the
  valid cluster sizes (whole servers for a ``servers`` cluster, at most what a cluster of
  fixed size holds), ending on two neighbouring counts: the last that pays and the first
  that does not.

"Pays" means strictly faster than the fastest baseline (fp32, fp16/bf16 casts: codecs whose
exchange declares ``baseline``) at the same setting. Points that differ only in the
searched setting share one search (a *family*): their own rows are samples of it, so no
simulation is repeated and every member reports the same crossing. The range is sampled at
its two ends and at every member's own value; every sign change between neighbouring
samples is bisected, so an option that pays only between two bandwidths is reported so.
Without a sign change the answer says so: "pays at every bandwidth in [a, b]" or "never
pays in [a, b]".
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gradwire.errors import GradWireError, Problem
from gradwire.pipeline import Prepared, evaluate_point
from gradwire.results import Row
from gradwire.scenarios.convert import si_key, si_value
from gradwire.scenarios.loader import Point
from gradwire.scenarios.schema import BreakevenCfg, Scenario

BANDWIDTH = "bandwidth"
WORKERS = "workers"
AXES = (BANDWIDTH, WORKERS)
UNITS = {BANDWIDTH: "Gbit/s", WORKERS: "workers"}
GBPS = 1e9 / 8  # bytes/s per Gbit/s
# size parameters that fix how many GPUs a cluster holds (else it is sized from `workers`)
_SIZE_KEYS = ("num_gpus", "num_servers", "k", "rows", "cols")


def config_problems(cfg: BreakevenCfg) -> list[Problem]:
    """The ranges must ascend (the schema checks each number)."""
    out = []
    for name in ("bandwidth_range_Gbps", "workers_range"):
        lo, hi = getattr(cfg, name)
        if not lo < hi:
            out.append(Problem(f"breakeven.{name}", f"the first value must be below the second, got [{lo}, {hi}]"))
    return out


def is_baseline(codec_name: str) -> bool:
    """An uncompressed exchange practitioners run (fp32 in place, fp16/bf16 casts), by the
    codec's declaration (``Exchange.baseline``)."""
    from gradwire.codecs import CODECS

    if codec_name not in CODECS:
        return False
    ex = getattr(CODECS.get(codec_name), "exchange", None)
    return bool(ex is not None and ex.baseline)


# ------------------------------------------------------------------ the settings searched
@dataclass(frozen=True)
class BandwidthKnob:
    """Which cluster setting is "the link bandwidth" of a scenario, read and set in Gbit/s."""

    key: str | None  # a cluster key (any bandwidth unit); None: every link of cluster.links scaled
    label: str

    def value(self, sc: Scenario) -> float:
        if self.key is None:
            assert sc.cluster.links  # internal: chosen only for a links cluster
            return min(float(link.bandwidth_Gbps) for link in sc.cluster.links)
        extra = dict(sc.cluster.model_extra or {})
        return float(si_value(self.key, extra[self.key])) / GBPS

    def set(self, data: dict[str, Any], gbps: float, current: float) -> None:
        cluster = data["cluster"]
        if self.key is None:
            scale = gbps / current
            cluster["links"] = [{**link, "bandwidth_Gbps": float(link["bandwidth_Gbps"]) * scale}
                                for link in cluster["links"]]
            return
        cluster.pop(self.key, None)
        cluster[si_key(self.key)[: -len("_Bps")] + "_Gbps"] = float(gbps)


def bandwidth_knob(sc: Scenario) -> BandwidthKnob | str:
    """The setting a bandwidth search varies, or the reason there is none."""
    c = sc.cluster
    if c.topology == "links":
        return BandwidthKnob(None, "every link of cluster.links (the slowest one)")
    if c.topology == "graph_file" or c.graph_file is not None:
        return "a graph_file cluster keeps its links' bandwidths in the file"
    extra = dict(c.model_extra or {})
    for wanted in ("nic_bandwidth_Bps", "bandwidth_Bps"):
        for key in extra:
            if si_key(key) == wanted:
                return BandwidthKnob(key, f"cluster.{wanted[: -len('_Bps')]}_Gbps")
    return f"topology {c.topology!r} names no bandwidth_Gbps or nic_bandwidth_Gbps to vary"


def worker_counts(sc: Scenario, lo: int, hi: int) -> tuple[list[int], str]:
    """The valid cluster sizes in ``[lo, hi]`` and how they step (whole servers for a
    ``servers`` cluster; no more GPUs than a cluster of fixed size holds)."""
    c = sc.cluster
    extra = dict(c.model_extra or {})
    step = int(extra.get("gpus_per_server", 1)) if c.topology == "servers" else 1
    cap = hi
    if c.topology in ("links", "graph_file") or c.graph_file is not None or set(extra) & set(_SIZE_KEYS):
        cap = min(hi, _capacity(sc))
    first = max(step, -(-lo // step) * step)
    counts = list(range(first, cap + 1, step))
    how = f"whole servers of {step} GPUs" if step > 1 else "every count"
    return counts, how


def _capacity(sc: Scenario) -> int:
    """GPUs in a cluster of fixed size (its builder's own size, not sized from workers)."""
    from gradwire.scenarios.convert import cluster_params
    from gradwire.simulator.topology import TOPOLOGIES

    c = sc.cluster
    if c.topology == "links":
        return len(c.gpus or [])
    return int(TOPOLOGIES.create(c.topology, **cluster_params(c)).num_ranks)


# ------------------------------------------------------------------------- the search
@dataclass
class _Family:
    """Points that differ only in the searched setting: one search serves them all."""

    axis: str
    template: dict[str, Any]  # the first member's scenario, dumped
    knob: BandwidthKnob | None
    current: float  # the template's own value (bandwidth: for scaling links)
    prepared: Prepared
    baselines: list[str]
    members: list[Point] = field(default_factory=list)
    grid: list[int] = field(default_factory=list)  # workers: the valid counts searched
    cache: dict[float, dict[str, float]] = field(default_factory=dict)
    evaluations: int = 0

    def scenario_at(self, value: float, codecs: Sequence[str]) -> Scenario:
        data = copy.deepcopy(self.template)
        data["codecs"] = list(codecs)
        # the search needs iteration times only: no verdict draws (gradwire.verdict)
        data["verdict"] = {**data.get("verdict", {}), "enabled": False}
        if self.axis == BANDWIDTH:
            assert self.knob is not None
            self.knob.set(data, value, self.current)
        else:
            n = int(value)
            data["workers"] = n
            data["stragglers"] = [s for s in data.get("stragglers", []) if int(s["rank"]) < n]
        return Scenario.model_validate(data)

    def times(self, value: float, codecs: Sequence[str]) -> dict[str, float]:
        """Iteration time of each of ``codecs`` at ``value``, simulated once each."""
        have = self.cache.setdefault(value, {})
        need = [c for c in dict.fromkeys(codecs) if c not in have]
        if need:
            sc = self.scenario_at(value, need)
            rows, _ = evaluate_point(Point(-1, "breakeven", {}, sc), self.prepared, traces=False)
            have.update({r.codec: r.iteration_s for r in rows})
            self.evaluations += 1
        return {c: have[c] for c in codecs}

    def compare(self, value: float, codec: str) -> tuple[bool, float, float, str]:
        """``(pays, option_s, best baseline_s, that baseline)`` at ``value``."""
        t = self.times(value, [*self.baselines, codec])
        base = min(self.baselines, key=lambda b: (t[b], self.baselines.index(b)))
        return t[codec] < t[base], t[codec], t[base], base


@dataclass(frozen=True)
class Crossing:
    """One sign change: the option pays on one side of ``value`` and not on the other.

    Bandwidth: ``low``/``high`` bracket the crossing within the tolerance and ``value`` is
    their geometric middle. Workers: ``low``/``high`` are neighbouring valid counts and
    ``value`` is the one on the paying side. The times are those at ``value``."""

    low: float
    high: float
    value: float
    pays_below: bool
    option_s: float
    baseline_s: float
    baseline: str

    def record(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "value": self.value, "pays_below": self.pays_below,
                "option_s": self.option_s, "baseline_s": self.baseline_s, "baseline": self.baseline}


@dataclass(frozen=True)
class Search:
    """The outcome of one search of one option over one family."""

    axis: str
    codec: str
    setting: str
    low: float  # the searched range
    high: float
    pays_low: bool  # at the range's ends
    pays_high: bool
    crossings: tuple[Crossing, ...]
    how: str = ""  # workers: how the valid counts step


def _interpolated(fam: _Family, codec: str, lo: float, hi: float) -> float | None:
    """The bandwidth where the option's and the best baseline's times cross if each is
    ``A + K/B`` between ``lo`` and ``hi`` (their difference linear in 1/B), from the times
    already simulated at both ends; None when they do not bracket a crossing."""
    d_lo = fam.compare(lo, codec)
    d_hi = fam.compare(hi, codec)
    g_lo, g_hi = d_lo[1] - d_lo[2], d_hi[1] - d_hi[2]
    if g_lo == g_hi or (g_lo > 0) == (g_hi > 0):
        return None
    x_lo, x_hi = 1 / lo, 1 / hi
    x = x_lo + g_lo * (x_hi - x_lo) / (g_lo - g_hi)
    return 1 / x if x > 0 else None


def _bisect_bandwidth(fam: _Family, codec: str, lo: float, hi: float, pays_lo: bool, tol: float) -> Crossing:
    """Shrink the bracket ``[lo, hi]`` (the option pays at one end, not at the other) until
    ``hi/lo <= 1 + tol``. Each round first probes just either side of the interpolated
    crossing (:func:`_interpolated`; exact when both times are ``A + K/B``, which closes
    the bracket in two probes); a round that does not at least halve the bracket (in log B)
    is followed by a plain bisection step, so the search never takes more than about three
    times as many steps as bisection alone, and usually far fewer."""
    width = math.log(1 + tol)
    interpolate = True
    while math.log(hi / lo) > width:
        before = math.log(hi / lo)
        guess = _interpolated(fam, codec, lo, hi) if interpolate else None
        probes = [math.sqrt(lo * hi)] if guess is None else [guess * (1 + tol) ** -0.45, guess * (1 + tol) ** 0.45]
        for x in probes:
            if lo < x < hi:
                if fam.compare(x, codec)[0] == pays_lo:
                    lo = x
                else:
                    hi = x
        interpolate = guess is None or math.log(hi / lo) <= before / 2
    value = math.sqrt(lo * hi)
    _, opt, base, name = fam.compare(value, codec)
    return Crossing(lo, hi, value, pays_lo, opt, base, name)


def _bisect_workers(fam: _Family, codec: str, counts: Sequence[int], i: int, j: int, pays_i: bool) -> Crossing:
    while j - i > 1:
        m = (i + j) // 2
        if fam.compare(counts[m], codec)[0] == pays_i:
            i = m
        else:
            j = m
    paying = counts[i] if pays_i else counts[j]
    _, opt, base, name = fam.compare(paying, codec)
    return Crossing(counts[i], counts[j], paying, pays_i, opt, base, name)


def _search(fam: _Family, codec: str, samples: Sequence[float], tol: float, how: str) -> Search:
    pays = [fam.compare(v, codec)[0] for v in samples]
    crossings = []
    for k in range(len(samples) - 1):
        if pays[k] == pays[k + 1]:
            continue
        if fam.axis == BANDWIDTH:
            crossings.append(_bisect_bandwidth(fam, codec, samples[k], samples[k + 1], pays[k], tol))
        else:
            counts = fam.grid
            i, j = counts.index(int(samples[k])), counts.index(int(samples[k + 1]))
            crossings.append(_bisect_workers(fam, codec, counts, i, j, pays[k]))
    setting = fam.knob.label if fam.knob is not None else "workers"
    return Search(fam.axis, codec, setting, samples[0], samples[-1], pays[0], pays[-1], tuple(crossings), how)


# --------------------------------------------------------------------------- the text
def fmt_gbps(x: float) -> str:
    return f"{x:.3g} Gbit/s"


def describe(s: Search) -> str:
    """One phrase: where the option pays, e.g. "pays below 3.2 Gbit/s" or "pays up to 12
    workers (not at 13)", or that it pays everywhere or nowhere in the searched range
    (which it then names)."""
    bw = s.axis == BANDWIDTH
    if bw:
        rng = f"[{s.low:.4g}, {s.high:.4g}] Gbit/s"
    else:
        rng = f"[{int(s.low)}, {int(s.high)}] workers" + (f", {s.how}" if s.how != "every count" else "")
    if not s.crossings:
        if s.pays_low:
            return f"pays at every {'bandwidth' if bw else 'worker count'} in {rng}"
        return f"never pays in {rng}"
    # the stretches where it pays: (start crossing or the range's start, end crossing or its end)
    stretches: list[tuple[Crossing | None, Crossing | None]] = []
    start: Crossing | None = None
    paying = s.pays_low
    for c in s.crossings:
        if c.pays_below:
            stretches.append((start, c))
        else:
            start = c
        paying = not c.pays_below
    if paying:
        stretches.append((start, None))
    texts = []
    for a, b in stretches:
        if bw:
            if a is None and b is not None:
                texts.append(f"below {fmt_gbps(b.value)}")
            elif a is not None and b is None:
                texts.append(f"above {fmt_gbps(a.value)}")
            elif a is not None and b is not None:
                texts.append(f"between {fmt_gbps(a.value)} and {fmt_gbps(b.value)}")
        elif a is None and b is not None:
            texts.append(f"up to {int(b.low)} workers (not at {int(b.high)})")
        elif a is not None and b is None:
            texts.append(f"from {int(a.high)} workers on (not at {int(a.low)})")
        elif a is not None and b is not None:
            texts.append(f"from {int(a.high)} to {int(b.low)} workers")
    return "pays " + " and ".join(texts)


def nearest(s: Search, own: float) -> Crossing | None:
    """The crossing nearest the point's own value (log distance for bandwidth)."""
    if not s.crossings:
        return None
    if s.axis == BANDWIDTH:
        return min(s.crossings, key=lambda c: abs(math.log(c.value / own)))
    return min(s.crossings, key=lambda c: abs(c.value - own))


# ---------------------------------------------------------------------- the entry point
@dataclass
class BreakevenResult:
    """Flat records (one per point, option and axis) and notes on what was not searched."""

    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    evaluations: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"records": self.records, "notes": self.notes, "evaluations": self.evaluations}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> BreakevenResult:
        if not data:
            return cls()
        return cls(list(data.get("records", [])), list(data.get("notes", [])), int(data.get("evaluations", 0)))


def _family_key(sc: Scenario, axis: str, knob: BandwidthKnob | None) -> str:
    data = sc.model_dump(mode="json", exclude={"name", "description", "sweep", "cases", "published",
                                               "assumptions", "breakeven"})
    if axis == BANDWIDTH:
        assert knob is not None
        knob.set(data, 1.0, knob.value(sc))
    else:
        data["workers"] = 0
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    if not enabled or total == 0:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]break-even searches"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("elapsed"), TimeElapsedColumn(), console=Console(stderr=True))
    bar.start()
    task = bar.add_task("breakeven", total=total)
    try:
        yield lambda: bar.update(task, advance=1)
    finally:
        bar.stop()


def find_breakevens(points: Sequence[Point], rows: Sequence[Row], prepared: Prepared, cfg: BreakevenCfg, *,
                    progress: bool = False) -> BreakevenResult:
    """Break-even records of every compressed option at every point (see the module
    docstring); ``rows`` are the points' rows (their own values are not simulated again)."""
    out = BreakevenResult()
    axes = [a for a, on in ((BANDWIDTH, cfg.bandwidth), (WORKERS, cfg.workers)) if on]
    if not axes:
        out.notes.append("break-even searches are off (breakeven.bandwidth and breakeven.workers are false)")
        return out
    if len(points) > cfg.max_points:
        out.notes.append(f"break-even searches skipped: {len(points):,} points is more than breakeven.max_points "
                         f"({cfg.max_points}); raise it (--set breakeven.max_points=N) to search them")
        return out
    by_point: dict[int, list[Row]] = {}
    for r in rows:
        by_point.setdefault(r.point, []).append(r)
    todo = [p for p in points if p.index in by_point]
    codecs = list(dict.fromkeys(c for p in todo for c in p.scenario.codecs))
    names = {r.codec: r.codec_name for r in rows}
    base_specs = [c for c in codecs if is_baseline(names.get(c, c.split("(")[0]))]
    options = [c for c in codecs if c not in base_specs]
    if not base_specs:
        out.notes.append("no break-even points: no uncompressed baseline (fp32, fp16, bf16) among the codecs; "
                         "add fp32 to codecs")
        return out
    if not options:
        out.notes.append("no break-even points: no compressed codec among the codecs, only baselines "
                         f"({', '.join(base_specs)})")
        return out
    families: dict[tuple[str, str], _Family] = {}
    skipped: dict[str, str] = {}
    for axis in axes:
        for p in todo:
            sc = p.scenario
            knob: BandwidthKnob | None = None
            if axis == BANDWIDTH:
                k = bandwidth_knob(sc)
                if isinstance(k, str):
                    skipped.setdefault(axis, f"bandwidth break-even skipped: {k}")
                    continue
                knob = k
            key = (axis, _family_key(sc, axis, knob))
            if key not in families:
                current = knob.value(sc) if knob is not None else float(sc.workers)
                bases = [c for c in sc.codecs if c in base_specs]
                if not bases:
                    continue
                families[key] = _Family(axis, sc.model_dump(mode="python", exclude={"sweep", "cases"}), knob,
                                        current, prepared, bases)
            families[key].members.append(p)
    out.notes.extend(skipped.values())
    total = sum(len([c for c in f.members[0].scenario.codecs if c in options]) for f in families.values())
    with _progress(progress, total) as tick:
        for fam in families.values():
            out.records.extend(_search_family(fam, by_point, options, cfg, tick, out.notes))
            out.evaluations += fam.evaluations
    out.records.sort(key=lambda r: (r["point"], AXES.index(r["axis"]), codecs.index(r["codec"])))
    return out


def _search_family(fam: _Family, by_point: Mapping[int, Sequence[Row]], options: Sequence[str], cfg: BreakevenCfg,
                   tick: Callable[[], None], notes: list[str]) -> list[dict[str, Any]]:
    own: dict[int, float] = {}
    for p in fam.members:
        v = fam.knob.value(p.scenario) if fam.knob is not None else float(p.scenario.workers)
        own[p.index] = v
        fam.cache.setdefault(v, {}).update({r.codec: r.iteration_s for r in by_point[p.index]})
    how = ""
    if fam.axis == BANDWIDTH:
        lo, hi = (float(x) for x in cfg.bandwidth_range_Gbps)
        samples = sorted({min(lo, *own.values()), max(hi, *own.values()), *own.values()})
    else:
        lo_w, hi_w = (int(x) for x in cfg.workers_range)
        lo_w, hi_w = min(lo_w, *(int(v) for v in own.values())), max(hi_w, *(int(v) for v in own.values()))
        try:
            grid, how = worker_counts(fam.members[0].scenario, lo_w, hi_w)
        except GradWireError as exc:
            notes.append(f"workers break-even skipped for {len(fam.members)} point(s): {exc}")
            return []
        grid = sorted(set(grid) | {int(v) for v in own.values()})
        if len(grid) < 2:
            notes.append(f"workers break-even skipped for {len(fam.members)} point(s): fewer than two valid "
                         f"worker counts in breakeven.workers_range {list(cfg.workers_range)}")
            return []
        fam.grid = grid
        samples = sorted({float(grid[0]), float(grid[-1]), *own.values()})
    records = []
    codecs = [c for c in fam.members[0].scenario.codecs if c in options]
    try:  # the ends of the range for every option at once: one evaluation of all codecs
        for end in (samples[0], samples[-1]):
            fam.times(end, [*fam.baselines, *codecs])
    except GradWireError as exc:
        notes.append(f"{fam.axis} break-even skipped for {len(fam.members)} point(s): {exc}")
        for _ in codecs:
            tick()
        return []
    for codec in codecs:
        try:
            s = _search(fam, codec, samples, cfg.tolerance, how)
        except GradWireError as exc:
            notes.append(f"{fam.axis} break-even of {codec} skipped for {len(fam.members)} point(s): {exc}")
            tick()
            continue
        text = describe(s)
        for p in fam.members:
            row = next(r for r in by_point[p.index] if r.codec == codec)
            near = nearest(s, own[p.index])
            rec: dict[str, Any] = {
                "point": p.index, "point_id": p.point_id, "codec": codec, "collective": row.collective,
                "axis": fam.axis, "setting": s.setting, "unit": UNITS[fam.axis],
                "range_low": s.low, "range_high": s.high, "own_value": own[p.index],
                "pays_at_own": fam.compare(own[p.index], codec)[0],
                "status": "crossing" if s.crossings else ("always" if s.pays_low else "never"),
                "breakeven": near.value if near else math.nan,
                "option_s": near.option_s if near else math.nan,
                "baseline_s": near.baseline_s if near else math.nan,
                "baseline": near.baseline if near else "",
                "crossings": [c.record() for c in s.crossings],
                "text": text, "tolerance": cfg.tolerance if fam.axis == BANDWIDTH else 0.0,
            }
            records.append(rec)
        tick()
    return records


def result_columns(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Columns joined into ``results.csv`` by (point id, codec): the break-even value nearest
    the point and its one-line description, per axis."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        cols = out.setdefault((str(r["point_id"]), str(r["codec"])), {})
        name = "breakeven_bandwidth_Gbps" if r["axis"] == BANDWIDTH else "breakeven_workers"
        cols[name] = r["breakeven"]
        cols[f"{name.rsplit('_', 1)[0] if r['axis'] == BANDWIDTH else name}_text"] = r["text"]
    return out


def cache_key(sc: Scenario, provenance: Mapping[str, Mapping[str, Any]]) -> str:
    """What a run's break-even records depend on: the settings and every point's provenance
    (its inputs digest, GradWire version, device): a re-run of the same reuses them."""
    what = {"cfg": sc.breakeven.model_dump(mode="json"), "points": sorted(
        (pid, json.dumps(dict(prov), sort_keys=True, default=str)) for pid, prov in provenance.items())}
    return "breakeven:" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


__all__ = [
    "AXES",
    "BANDWIDTH",
    "WORKERS",
    "BandwidthKnob",
    "BreakevenResult",
    "Crossing",
    "Search",
    "bandwidth_knob",
    "cache_key",
    "config_problems",
    "describe",
    "find_breakevens",
    "is_baseline",
    "result_columns",
    "worker_counts",
]
