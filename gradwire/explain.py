"""``run_sim.py explain POINT``: why the best option wins or loses at one scenario point.

The fastest uncompressed baseline (fp32, fp16/bf16 casts) and the fastest compressed option
(codec and the collective that carries it) at the point, their iterations side by side as
the additive breakdown the simulator reports (compute, codec time = encode + decode,
exposed communication, other waiting; they sum to the iteration), the difference of each
term, and the term that decides: the largest saving when the option wins, the largest
added cost when it loses. The break-even points of the run are quoted when it has them.

It reads a finished run's folder (``results.sqlite``, ``results.csv``, ``breakeven.json``)
and simulates nothing; only when the folder holds no run yet is the scenario run first.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradwire.breakeven import is_baseline
from gradwire.errors import ConfigError
from gradwire.report.fmt import fmt_time
from gradwire.results import Row

# (label, how the row gives it): the breakdown terms, which sum to the iteration
TERMS: tuple[tuple[str, Any], ...] = (
    ("compute", lambda r: r.compute_s),
    ("codec (encode + decode)", lambda r: r.encode_s + r.decode_s),
    ("exposed communication", lambda r: r.exposed_comm_s),
    ("other (waiting)", lambda r: max(0.0, r.iteration_s - r.compute_s - r.encode_s - r.decode_s
                                      - r.exposed_comm_s)),
)
MAX_LISTED = 40


@dataclass(frozen=True)
class Explanation:
    """One point's baseline against its best compressed option, term by term (seconds)."""

    label: str
    baseline: Row | None
    option: Row | None
    terms: tuple[tuple[str, float, float], ...]  # (term, baseline_s, option_s)
    decides: str  # the deciding term ("" without both rows)
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        return {"point": self.label, "baseline": self.baseline.codec if self.baseline else None,
                "option": self.option.codec if self.option else None,
                "terms": [{"term": t, "baseline_s": b, "option_s": o, "difference_s": o - b} for t, b, o in self.terms],
                "decides": self.decides, "why": self.sentence}


def _name(r: Row) -> str:
    return f"{r.codec} via {r.collective}"


def explain_point(rows: Sequence[Row], label: str) -> Explanation:
    """The explanation of one point from its rows (see the module docstring)."""
    bases = [r for r in rows if is_baseline(r.codec_name)]
    opts = [r for r in rows if not is_baseline(r.codec_name)]
    base = min(bases, key=lambda r: r.iteration_s) if bases else None
    opt = min(opts, key=lambda r: r.iteration_s) if opts else None
    if base is None:
        raise ConfigError(f"point {label}: no uncompressed baseline (fp32, fp16 or bf16) was run, so there is "
                          "nothing to explain the options against; add 'fp32' to the scenario's codecs")
    if opt is None:
        terms = tuple((t, f(base), f(base)) for t, f in TERMS)
        return Explanation(label, base, None, terms, "", (
            f"No compressed codec was run at this point: {_name(base)} is the fastest option "
            f"({fmt_time(base.iteration_s)} per iteration) and there is nothing to weigh against it."))
    terms = tuple((t, f(base), f(opt)) for t, f in TERMS)
    diffs = {t: o - b for t, b, o in terms}
    total = opt.iteration_s - base.iteration_s
    if total < 0:
        decides = min(diffs, key=lambda t: diffs[t])
        added = {t: d for t, d in diffs.items() if d > 0}
        cost = (f", more than the {fmt_time(sum(added.values()))} it adds in "
                f"{' and '.join(added)}" if added else "")
        sentence = (f"{_name(opt)} is {base.iteration_s / opt.iteration_s:.2f}× as fast as {_name(base)}. "
                    f"Deciding term: {decides}, where it saves {fmt_time(-diffs[decides])}{cost}.")
    elif total > 0:
        decides = max(diffs, key=lambda t: diffs[t])
        saved = {t: -d for t, d in diffs.items() if d < 0}
        gain = (f", more than the {fmt_time(sum(saved.values()))} it saves in "
                f"{' and '.join(saved)}" if saved else "")
        sentence = (f"{_name(opt)} is slower than {_name(base)} ({base.iteration_s / opt.iteration_s:.2f}×). "
                    f"Deciding term: {decides}, where it adds {fmt_time(diffs[decides])}{gain}.")
    else:
        decides = ""
        sentence = f"{_name(opt)} and {_name(base)} take the same time: a tie."
    return Explanation(label, base, opt, terms, decides, sentence)


def _signed(x: float) -> str:
    if x == 0:
        return "0"
    return ("+" if x > 0 else "-") + fmt_time(abs(x))


def print_explanation(ex: Explanation, console: Console, breakeven: Sequence[Mapping[str, Any]] = ()) -> None:
    t = Table(title=f"Point {ex.label}", title_justify="left")
    t.add_column("term")
    assert ex.baseline is not None  # internal: explain_point raises without one
    t.add_column(Text(f"{_name(ex.baseline)}\n(best baseline)"), justify="right")
    if ex.option is not None:
        t.add_column(Text(f"{_name(ex.option)}\n(best compressed)"), justify="right")
        t.add_column("difference", justify="right")
    for term, b, o in ex.terms:
        style = "bold" if term == ex.decides else ""
        cells = [Text(term, style=style), Text(fmt_time(b))]
        if ex.option is not None:
            cells += [Text(fmt_time(o)), Text(_signed(o - b), style=style)]
        t.add_row(*cells)
    total = [Text("iteration", style="bold"), Text(fmt_time(ex.baseline.iteration_s), style="bold")]
    if ex.option is not None:
        d = ex.option.iteration_s - ex.baseline.iteration_s
        total += [Text(fmt_time(ex.option.iteration_s), style="bold"), Text(_signed(d), style="bold")]
    t.add_row(*total)
    hidden = [Text("(communication hidden under compute)", style="dim"), Text(fmt_time(ex.baseline.hidden_comm_s))]
    if ex.option is not None:
        hidden += [Text(fmt_time(ex.option.hidden_comm_s)), Text("")]
    t.add_row(*hidden)
    console.print(t)
    console.print(Text(ex.sentence))
    if ex.baseline.verdict_line:  # the point's verdict, with its interval (gradwire.verdict)
        console.print(Text(f"Verdict: {ex.baseline.verdict_line}."))
    if ex.option is not None:
        for rec in breakeven:
            if rec["codec"] == ex.option.codec:
                console.print(Text(f"Break-even of {ex.option.codec} along {rec['axis']}: {rec['text']}."))


# --------------------------------------------------------------------------- the command
def _current_ids(out: Path) -> set[str] | None:
    """Point ids of the folder's latest export (a store may hold an earlier version's too)."""
    path = out / "results.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as fh:
        return {rec["point_id"] for rec in csv.DictReader(fh) if rec.get("point_id")}


def find_point(rows: Sequence[Row], point: str) -> tuple[str, list[Row]]:
    """The rows of ``point``: a point id (or a unique prefix of one), a point number (the
    ``point`` column of results.csv), or its label as the summary prints it."""
    from gradwire.report.points import point_labels

    labels = point_labels(rows)
    by_id: dict[str, list[Row]] = {}
    for r in rows:
        by_id.setdefault(r.point_id, []).append(r)
    want = point.strip()
    norm = want.replace(" ", "")
    hits = [pid for pid in by_id if pid == want]
    if not hits and len(want) >= 4:
        hits = [pid for pid in by_id if pid.startswith(want)]
    if not hits:
        hits = [pid for pid, rs in by_id.items() if str(rs[0].point) == want
                or labels.get(rs[0].point, "").replace(" ", "") == norm]
    if len(hits) == 1:
        rs = by_id[hits[0]]
        return labels.get(rs[0].point, hits[0]), rs
    listed = [f"{rs[0].point} = {pid} = {labels.get(rs[0].point, pid)}" for pid, rs in
              sorted(by_id.items(), key=lambda kv: kv[1][0].point)]
    more = f"; ... and {len(listed) - MAX_LISTED} more" if len(listed) > MAX_LISTED else ""
    why = "matches several points" if hits else "is not a point of this run"
    raise ConfigError(f"explain: {point!r} {why}; valid points (number = id = label): "
                      f"{'; '.join(listed[:MAX_LISTED])}{more}")


def cli_main(argv: Sequence[str], console: Console) -> int:
    p = argparse.ArgumentParser(
        prog="run_sim.py explain",
        description="Why the best option wins or loses at one point: the breakdown of the best baseline's and "
                    "the best compressed option's iterations side by side, and the term that decides. Reads a "
                    "finished run's folder; runs the scenario first only when the folder holds no run.")
    p.add_argument("point", help="a point id (or a unique prefix), a point number, or the label the summary prints")
    p.add_argument("--out", help="the run's output folder (default: results/<scenario>)")
    p.add_argument("--scenario", default="quickstart",
                   help="the scenario, run first when the folder holds no results (default: quickstart)")
    a = p.parse_args(list(argv))
    from gradwire.breakeven_report import read_breakeven
    from gradwire.sweep.store import STORE_FILENAME, ResultStore

    out = Path(a.out) if a.out else None
    if out is None:
        from gradwire.scenarios.loader import load_scenario

        out = Path(os.path.join("results", load_scenario(a.scenario).name))
    if not (out / STORE_FILENAME).is_file():
        from gradwire.run import run_scenario
        from gradwire.scenarios.loader import load_scenario

        console.print(f"no results in {out}: running scenario {a.scenario} first", highlight=False)
        run_scenario(load_scenario(a.scenario), out, progress=False)
    with ResultStore(out / STORE_FILENAME) as store:
        rows = store.rows()
    ids = _current_ids(out)
    if ids is not None:
        rows = [r for r in rows if r.point_id in ids]
    if not rows:
        raise ConfigError(f"explain: {out} holds no result rows; run a scenario into it first")
    label, point_rows = find_point(rows, a.point)
    ex = explain_point(point_rows, label)
    be = read_breakeven(out)
    recs = [r for r in (be.records if be else []) if r["point_id"] == point_rows[0].point_id]
    print_explanation(ex, console, recs)
    return 0


__all__ = ["TERMS", "Explanation", "cli_main", "explain_point", "find_point", "print_explanation"]
