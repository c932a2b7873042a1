"""The ``run_sim.py`` / ``gradwire`` command line.

``run_sim.py [SCENARIO] [--set path=value ...] [--out DIR] [--engine serial|dask]
[--scheduler ADDRESS]`` runs a scenario (a YAML path or a built-in name; ``quickstart`` by
default); ``--list`` lists the built-in scenarios; ``run_sim.py report DIR`` rebuilds the
tables and dashboard from a finished run's store; ``run_sim.py validate ...`` compares
predictions with a real shaped network; ``run_sim.py profile MODEL --out FILE`` writes a
workload file measured on this machine's GPU; ``run_sim.py explain POINT`` says why the
best option wins or loses at one point of a finished run. User errors print as one message and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.console import Console

from gradwire.errors import GradWireError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_sim.py",
        description="Predict whether gradient compression makes data-parallel training faster.",
        epilog="Other commands: `run_sim.py report DIR` (rebuild tables and dashboard from a run's "
        "store), `run_sim.py validate --help` (check predictions against a real shaped network), "
        "`run_sim.py profile --help` (measure a model on this GPU for model.profile), "
        "`run_sim.py bench --help` (predictions against published results), "
        "`run_sim.py explain POINT` (why the best option wins or loses at one point), "
        "`run_sim.py calibrate-codecs --help` (fit the codec cost model on this device).",
    )
    p.add_argument("scenario", nargs="?", default="quickstart",
                   help="scenario YAML file or built-in name (default: quickstart)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario value, e.g. --set workers=16 --set cluster.bandwidth_Gbps=10 "
                   "--set 'sweep.workers=[4, 8]'")
    p.add_argument("--out", help="output folder (default: results/<scenario name>)")
    p.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")
    p.add_argument("--engine", choices=["serial", "dask"], default=None,
                   help="where sweep points run (default: serial; dask when --scheduler or "
                   "DASK_SCHEDULER_ADDRESS is given)")
    p.add_argument("--scheduler", default=None,
                   help="address of a running Dask scheduler (default: $DASK_SCHEDULER_ADDRESS; "
                   "with --engine dask and no address, a local cluster on this machine's cores)")
    p.add_argument("--check", action="store_true", help="validate the scenario, print its points, and exit")
    p.add_argument("--max-points", type=int, default=None, metavar="N",
                   help="run a sweep of more than the default 10,000 points (at most N)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="when another run holds the output folder, wait this long for it (default: refuse)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table",
                   help="how the summary is printed (default: a table; to a file or a pipe at full width)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _list(console: Console) -> int:
    from rich.table import Table

    from gradwire.scenarios.loader import builtin_description, list_builtin

    t = Table(title="Built-in scenarios (python run_sim.py NAME)")
    t.add_column("name")
    t.add_column("what it asks")
    for name in list_builtin():
        t.add_row(name, builtin_description(name))
    console.print(t)
    return 0


def _run(args: argparse.Namespace, console: Console) -> int:
    from gradwire.report.table import print_summary
    from gradwire.run import run_scenario
    from gradwire.scenarios.limits import DEFAULT_MAX_POINTS
    from gradwire.scenarios.loader import expand, load_scenario

    sc = load_scenario(args.scenario, args.overrides)
    max_points = DEFAULT_MAX_POINTS if args.max_points is None else args.max_points
    if max_points < 1:
        raise GradWireError(f"--max-points must be >= 1, got {max_points}")
    points = expand(sc, max_points=max_points)
    axes = ", ".join(f"{k} ({len(v)})" for k, v in sc.sweep.items()) or "none"
    console.print(f"[bold]{sc.name}[/bold]: {len(points)} point(s), sweep axes: {axes}; "
                  f"codecs: {', '.join(sc.codecs)}")
    if args.check:
        from gradwire.iteration import ExchangeChoice

        for line in ExchangeChoice.of(sc).describe():
            console.print(f"  {line}", markup=False, highlight=False)
        shown = 200  # every point was checked; listing 10^5 of them helps no one
        for pt in points[:shown]:
            console.print(f"  point {pt.index} [{pt.point_id}] {pt.values}", markup=False, highlight=False)
        if len(points) > shown:
            console.print(f"  ... and {len(points) - shown:,} more point(s), all checked")
        _print_cost(points, console)
        return 0
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    engine = args.engine or ("dask" if scheduler else "serial")
    out = args.out or os.path.join("results", sc.name)
    outcome = run_scenario(sc, out, engine=engine, scheduler=scheduler, progress=not args.quiet,
                           log=lambda m: console.print(f"[dim]{m}[/dim]"), max_points=max_points,
                           wait_s=args.wait)
    print_summary(outcome.rows, console, args.format)
    from gradwire.breakeven_report import print_breakeven

    print_breakeven(outcome.breakeven, outcome.rows, console, args.format)
    if outcome.time_to_target:
        first = outcome.time_to_target[0]
        how = "a proxy: another model, batch or worker count than the point" if first.get("proxy") else "the same workers"
        _print_records(console, f"Time to target accuracy (real training x simulated clock of point "
                                f"{first.get('joined_point')}; {how})", outcome.time_to_target,
                       ["codec", "target", "reached", "steps_to_target", "time_to_target_s",
                        "speedup_to_target_vs_fp32", "speedup_to_target_vs_onebit"])
    if outcome.published:
        _print_records(console, "Published figures beside GradWire's predictions", outcome.published,
                       ["figure", "codec", "published", "predicted", "error"])
    if outcome.failed:
        console.print(f"[red]{len(outcome.failed)} point(s) failed:[/red]")
        for f in outcome.failed:
            console.print(f"  {f}")
    if outcome.skipped:
        console.print(f"{outcome.skipped} point(s) were already in the store and were not re-run.")
    console.print(f"Finished in {outcome.elapsed_s:.1f} s. Wrote:")
    for name, path in outcome.files.items():
        console.print(f"  {name:>16}: {path}")
    return 1 if outcome.failed else 0


def _print_cost(points: Sequence[object], console: Console) -> None:
    """What the run would cost here (an estimate from the meta-device trace; runs no model)."""
    from gradwire.cost_estimate import estimate_cost, format_cost

    try:
        lines = format_cost(estimate_cost(points))
    except (GradWireError, RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        # a model the meta device cannot trace still runs; only its estimate is missing
        lines = [f"cost estimate unavailable: {type(exc).__name__}: {exc}"]
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _print_records(console: Console, title: str, records: Sequence[dict], keys: Sequence[str]) -> None:
    from rich.table import Table

    t = Table(title=title)
    for k in keys:
        t.add_column(k.replace("_", " "), overflow="fold")
    for r in records:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in (r.get(k) for k in keys)])
    console.print(t)


def _report(argv: Sequence[str], console: Console) -> int:
    from gradwire.sweep import report

    p = argparse.ArgumentParser(prog="run_sim.py report",
                                description="Rebuild CSV, Parquet and dashboard.html from a run's results store.")
    p.add_argument("dir", help="output folder of an earlier run")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table",
                   help="how the summary is printed (default: a table)")
    a = p.parse_args(list(argv))
    files = report(a.dir)
    from pathlib import Path

    from gradwire.breakeven_report import print_breakeven, read_breakeven
    from gradwire.report.table import print_summary
    from gradwire.sweep.store import STORE_FILENAME, ResultStore

    with ResultStore(Path(a.dir) / STORE_FILENAME) as store:
        rows = store.rows()
    print_summary(rows, console, a.format)
    print_breakeven(read_breakeven(a.dir), rows, console, a.format)
    console.print("Wrote:")
    for name, path in files.items():
        console.print(f"  {name:>16}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # output to a file or a pipe: wide enough that no column is cut
    console = Console() if sys.stdout.isatty() else Console(width=10_000)
    try:
        if argv and argv[0] == "validate":
            from gradwire.validate import cli_main

            return cli_main(argv[1:])
        if argv and argv[0] == "report":
            return _report(argv[1:], console)
        if argv and argv[0] == "bench":
            from gradwire.bench import cli_main as bench_main

            return bench_main(argv[1:], console)
        if argv and argv[0] == "explain":
            from gradwire.explain import cli_main as explain_main

            return explain_main(argv[1:], console)
        if argv and argv[0] == "profile":
            from gradwire.models.profile_cli import main as profile_main

            return profile_main(argv[1:])
        if argv and argv[0] == "calibrate-codecs":
            from gradwire.codecs.calibrate import cli_main as calibrate_main

            return calibrate_main(argv[1:])
        args = _parser().parse_args(argv)
        if args.list:
            return _list(console)
        return _run(args, console)
    except GradWireError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: finished points are kept in the results store; run again to resume")
        return 130
