"""Published results as a standing check: ``run_sim.py bench``.

The catalogue (``scenarios/bench/*.yaml``, one file per published setup) pairs a scenario
with the published claims it reproduces. Each case cites its source (a reference file
shipped in ``scenarios/bench/reference/`` and the section in it), quotes each claim
word for word, states every assumption under five headings (hardware, network, batch,
codec, what is approximated and why), and says whether it belongs to the quick subset.
A claim is either a number (``value``: a speedup, a communication share or reduction) or
a sign only (``sign: win | lose``: the qualitative findings). Nothing in a case tunes a
constant: every case runs with the same calibrated compute estimate, codec cost model
and network model as any user scenario, and the test refuses a case that overrides one.

:func:`run_bench` runs each case through :func:`gradwire.run.run_scenario` into
``results/bench/<case>/`` (its store makes a re-run reuse every point), predicts each
claimed quantity with :func:`gradwire.run.compare_published` (the break-even searches are
off: no claim reads them, and they cost far more than the claims), and returns one record per
claim with the relative error and whether the sign (win or lose against fp32) agrees;
:func:`summarize` gives the median and largest absolute error and the sign agreement.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gradwire.errors import GradWireError, Problem, ScenarioError

BENCH_DIR = Path(__file__).resolve().parent.parent / "scenarios" / "bench"
REFERENCE_DIR = BENCH_DIR / "reference"
SIGNED = ("speedup_vs_fp32", "comm_reduction")  # quantities where > 1 is a win for the codec
NO_BREAKEVEN = {"bandwidth": False, "workers": False}
# the calibrated constants of the models every scenario shares: a case may not set them
UNTUNABLE = ("model.efficiency", "model.compute_efficiency", "model.memory_efficiency", "codec.costs",
             "codec.per_tensor_overhead_us")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Source(_Strict):
    file: Literal["published_results.md", "measured_data.md"]
    section: str  # a "## " heading of that file


class Assumptions(_Strict):
    hardware: str = Field(min_length=1)
    network: str = Field(min_length=1)
    batch: str = Field(min_length=1)
    codec: str = Field(min_length=1)
    approximated: str = Field(min_length=1)


class Claim(_Strict):
    quote: str = Field(min_length=1)  # the reference's words, verbatim
    quantity: Literal["speedup_vs_fp32", "comm_fraction_fp32", "comm_reduction"]
    codec: str
    value: float | None = None  # the published number, or
    sign: Literal["win", "lose"] | None = None  # a qualitative claim: the codec wins or loses
    point: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> Claim:
        if (self.value is None) == (self.sign is None):
            raise ValueError("give exactly one of value (a published number) and sign (win or lose)")
        if self.sign is not None and self.quantity not in SIGNED:
            raise ValueError(f"a sign claim needs a quantity where above 1 is a win: {', '.join(SIGNED)}")
        return self


class Case(_Strict):
    title: str
    source: Source
    quick: bool
    assumptions: Assumptions
    claims: list[Claim] = Field(min_length=1)
    scenario: dict[str, Any]


@dataclass(frozen=True)
class BenchCase:
    id: str
    path: Path
    case: Case

    def scenario_dict(self) -> dict[str, Any]:
        """The case's scenario with its assumptions stated and its numeric claims attached
        as published figures (so the run's dashboard shows them too)."""
        data = dict(self.case.scenario)
        a = self.case.assumptions
        data["assumptions"] = [f"Hardware: {a.hardware}", f"Network: {a.network}", f"Batch: {a.batch}",
                               f"Codec: {a.codec}", f"Approximated: {a.approximated}",
                               f"Source: {self.case.source.file}, {self.case.source.section}"]
        data.setdefault("description", self.case.title)
        data["published"] = [_figure(c) for c in self.case.claims if c.value is not None]
        # no claim reads a break-even point, and the workers search simulates up to 1024
        # workers (--check puts one AlexNet iteration on a 1024-rank ring at about 26 s on
        # a 2-core host): off unless the case asks for it
        data.setdefault("breakeven", dict(NO_BREAKEVEN))
        return data


def _figure(c: Claim) -> dict[str, Any]:
    return {"figure": c.quote, "quantity": c.quantity, "codec": c.codec,
            "value": c.value if c.value is not None else 1.0, "point": dict(c.point)}


def list_cases(bench_dir: Path = BENCH_DIR) -> list[str]:
    return sorted(p.stem for p in bench_dir.glob("*.yaml"))


def load_case(case_id: str, bench_dir: Path = BENCH_DIR) -> BenchCase:
    """One catalogue file, validated: its own keys, then its scenario with every claim
    attached (so a claim naming a codec or a point the scenario lacks is refused)."""
    from gradwire.scenarios.loader import load_scenario

    path = bench_dir / f"{case_id}.yaml"
    if not path.is_file():
        raise ScenarioError([Problem("bench", f"no case {case_id!r}; cases: {', '.join(list_cases(bench_dir))}")])
    data = yaml.safe_load(path.read_text())
    try:
        case = Case.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError([Problem(".".join(str(x) for x in e["loc"]), e["msg"]) for e in exc.errors()],
                            str(path)) from None
    tuned = [k for k in UNTUNABLE if _has(case.scenario, k)]
    if tuned:
        raise ScenarioError([Problem(f"scenario.{k}", "a bench case may not set a calibrated constant; "
                                     "every case runs with the shared models") for k in tuned], str(path))
    bc = BenchCase(case_id, path, case)
    check = bc.scenario_dict()
    check["published"] = [_figure(c) for c in case.claims]
    load_scenario(check)
    return bc


def _has(data: dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _sign(x: float) -> str:
    return "win" if x > 1 else "lose"


def claim_records(bc: BenchCase, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """One record per claim: the prediction from the case's rows, its error against a
    published number, and the published and predicted signs."""
    from gradwire.run import compare_published
    from gradwire.scenarios.schema import PublishedFigure

    out = []
    for c in bc.case.claims:
        # the prediction depends on the quantity, codec and point only, never on the value
        pred = compare_published(rows, [PublishedFigure.model_validate(_figure(c))])[0]["predicted"]
        published_sign = c.sign if c.sign is not None else (
            _sign(c.value) if c.quantity in SIGNED and c.value is not None else None)
        predicted_sign = _sign(pred) if c.quantity in SIGNED and not math.isnan(pred) else None
        error = (pred - c.value) / c.value if c.value else math.nan
        where = ", ".join(f"{k}={v}" for k, v in c.point.items())
        out.append({
            "case": bc.id, "claim": c.quote, "quantity": c.quantity, "codec": c.codec, "point": where,
            "source": f"{bc.case.source.file}: {bc.case.source.section}",
            "published": c.value if c.value is not None else c.sign, "predicted": pred,
            "error": error, "published_sign": published_sign, "predicted_sign": predicted_sign,
            "sign_agrees": None if published_sign is None or predicted_sign is None
            else published_sign == predicted_sign,
        })
    return out


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    errors = [abs(r["error"]) for r in records if isinstance(r["error"], float) and not math.isnan(r["error"])]
    signs = [r["sign_agrees"] for r in records if r["sign_agrees"] is not None]
    return {"claims": len(records), "numeric": len(errors),
            "median_abs_error": statistics.median(errors) if errors else math.nan,
            "max_abs_error": max(errors) if errors else math.nan,
            "signs": len(signs), "signs_agree": sum(bool(s) for s in signs)}


@dataclass
class BenchOutcome:
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    elapsed_s: float
    failed: list[str]


def run_bench(cases: Sequence[str], out_root: str | Path, *, progress: bool = False,
              log: Callable[[str], None] | None = None) -> BenchOutcome:
    """Run each case (reusing its stored points) and compare with its claims."""
    from gradwire.run import run_scenario
    from gradwire.scenarios.loader import load_scenario

    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    loaded = [load_case(c) for c in cases]  # every case checked before any runs
    records: list[dict[str, Any]] = []
    failed: list[str] = []
    for bc in loaded:
        say(f"bench case {bc.id}: {bc.case.title}")
        sc = load_scenario(bc.scenario_dict())
        outcome = run_scenario(sc, Path(out_root) / bc.id, progress=progress, log=say)
        failed += [f"{bc.id}: {f['error']}" for f in outcome.failed]
        records += claim_records(bc, outcome.rows)
    out = Path(out_root)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(records)
    (out / "bench.json").write_text(json.dumps({"records": records, "summary": summary}, indent=1, default=str))
    return BenchOutcome(records, summary, time.perf_counter() - t0, failed)


# ---------------------------------------------------------------------------- output

COLUMNS = ("case", "point", "claim", "published", "predicted", "error", "sign", "agrees")


def _cells(r: dict[str, Any]) -> dict[str, str]:
    pub = r["published"]
    pred = r["predicted"]
    return {
        "case": r["case"], "point": r["point"] or "-",
        "claim": f"{r['quantity']} ({r['codec']}): \"{r['claim']}\"",
        "published": f"{pub:.3g}" if isinstance(pub, float) else str(pub),
        "predicted": "n/a" if math.isnan(pred) else f"{pred:.3g}",
        "error": "-" if math.isnan(r["error"]) else f"{r['error']:+.0%}",
        "sign": "-" if r["published_sign"] is None else f"{r['published_sign']} / {r['predicted_sign']}",
        "agrees": {True: "yes", False: "NO", None: "-"}[r["sign_agrees"]],
    }


def summary_line(s: dict[str, Any]) -> str:
    med = "n/a" if math.isnan(s["median_abs_error"]) else f"{s['median_abs_error']:.0%}"
    mx = "n/a" if math.isnan(s["max_abs_error"]) else f"{s['max_abs_error']:.0%}"
    return (f"{s['claims']} published claims: median |error| {med} and largest {mx} over the "
            f"{s['numeric']} numeric ones; sign (win or lose against fp32) agrees on "
            f"{s['signs_agree']} of {s['signs']}")


def format_records(records: Sequence[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(records), indent=1, default=str) + "\n"
    cells = [_cells(r) for r in records]
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(cells)
        return buf.getvalue()
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c[k].replace("|", "\\|") for k in COLUMNS) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def print_records(records: Sequence[dict[str, Any]], console: Any) -> None:
    from rich.table import Table

    t = Table(title="Published results beside GradWire's predictions (error = predicted / published - 1; "
                    "sign = published / predicted)")
    for k in COLUMNS:
        t.add_column(k, overflow="fold")
    for c in (_cells(r) for r in records):
        t.add_row(*[c[k] for k in COLUMNS])
    console.print(t)


def cli_main(argv: Sequence[str], console: Any) -> int:
    p = argparse.ArgumentParser(prog="run_sim.py bench",
                                description="Run the catalogue of published setups (scenarios/bench) and print "
                                "predicted against published, with the error and whether the sign agrees.")
    p.add_argument("cases", nargs="*", help="case ids (default: every case; see --list)")
    p.add_argument("--quick", action="store_true", help="only the quick subset (no large model steps on this host)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--out", default=str(Path("results") / "bench"), help="output folder (default: results/bench)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    a = p.parse_args(list(argv))
    all_cases = list_cases()
    if a.list:
        for cid in all_cases:
            bc = load_case(cid)
            console.print(f"{cid:<28} {'quick' if bc.case.quick else 'full '}  {bc.case.title}",
                          markup=False, highlight=False)
        return 0
    unknown = [c for c in a.cases if c not in all_cases]
    if unknown:
        raise GradWireError(f"bench: unknown case(s) {', '.join(unknown)}; cases: {', '.join(all_cases)}")
    chosen = a.cases or all_cases
    if a.quick:
        chosen = [c for c in chosen if load_case(c).case.quick]
    outcome = run_bench(chosen, a.out, progress=a.progress,
                        log=lambda m: console.print(m, style="dim", markup=False, highlight=False))
    if a.format == "table":
        print_records(outcome.records, console)
    else:
        console.file.write(format_records(outcome.records, a.format))
    console.print(summary_line(outcome.summary), markup=False, highlight=False)
    for f in outcome.failed:
        console.print(f"failed: {f}", markup=False, highlight=False)
    console.print(f"Finished in {outcome.elapsed_s:.1f} s; records in {Path(a.out) / 'bench.json'}",
                  markup=False, highlight=False)
    return 1 if outcome.failed else 0
