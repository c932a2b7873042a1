"""``run_sim.py validate``: the command line of the shaped-network validation.

:func:`cli_main` parses its own options, checks for root first (one line and exit code 2
without CAP_NET_ADMIN), runs :func:`gradwire.validate.run.run_validation`, prints the
collectives and training tables with their median and maximum absolute errors, and
writes the outputs to ``--out``. Ctrl-C tears the namespaces down and exits 130.
"""

from __future__ import annotations

import argparse
import sys

from gradwire.errors import GradWireError
from gradwire.validate.netns import netns_available
from gradwire.validate.run import (
    DEFAULT_CODECS,
    DEFAULT_SIZES_MB,
    format_table,
    parse_rate,
    run_validation,
    write_outputs,
)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="run_sim.py validate",
        description="Measure real gloo collectives and DDP training over a tbf-shaped network "
        "of Linux namespaces and compare with GradWire's predictions (needs root).",
    )
    ap.add_argument("--workers", default="2,4", help="worker counts K, comma separated (default 2,4)")
    ap.add_argument("--rates", default="100Mbit,1Gbit", help="link rates, comma separated")
    ap.add_argument("--codecs", default=";".join(DEFAULT_CODECS),
                    help="codec specs separated by ';' (default: %(default)s)")
    ap.add_argument("--sizes-mb", default=",".join(str(s) for s in DEFAULT_SIZES_MB),
                    help="collective sizes in MB (allreduce: per rank; allgather: gathered in all)")
    ap.add_argument("--collective-workers", type=int, default=4, help="K for the collectives (default 4)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per collective")
    ap.add_argument("--iterations", type=int, default=5, help="timed training iterations per codec")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up training iterations per codec")
    ap.add_argument("--batch", type=int, default=64, help="per-worker batch size")
    ap.add_argument("--out", default="validation_out", help="output directory")
    ap.add_argument("--nice", type=int, default=0,
                    help="CPU priority of the workers (negative = higher; keeps a shared "
                    "machine's other load from stretching the measurements)")
    ap.add_argument("--collectives-only", action="store_true", help="skip DDP training")
    ap.add_argument("--training-only", action="store_true", help="skip the collectives")
    ap.add_argument("--quick", action="store_true",
                    help="K=2 training only at 100Mbit, fp32 and qsgd(bits=4), 3 iterations")
    return ap


def cli_main(argv: list[str]) -> int:
    """Entry point of ``run_sim.py validate``; returns the process exit code."""
    a = build_parser().parse_args(argv)
    ok, why = netns_available()
    if not ok:
        print(f"validate: {why}", file=sys.stderr)
        return 2
    try:
        workers, rates = _ints(a.workers), [parse_rate(r) for r in a.rates.split(",") if r.strip()]
        codecs = [c.strip() for c in a.codecs.split(";") if c.strip()]
        sizes = _floats(a.sizes_mb)
        collectives, training = not a.training_only, not a.collectives_only
        iterations, warmup = a.iterations, a.warmup
        if a.quick:
            workers, rates, codecs = [2], [1e8], ["fp32", "qsgd(bits=4)"]
            collectives, iterations, warmup = False, 3, 1
        result = run_validation(
            workers=workers, rates_bps=rates, codecs=codecs, sizes_mb=sizes,
            collective_workers=a.collective_workers, reps=a.reps, iterations=iterations,
            warmup=warmup, batch=a.batch, collectives=collectives, training=training,
            nice=a.nice,
        )
    except KeyboardInterrupt:
        print("validate: interrupted; namespaces removed", file=sys.stderr)
        return 130
    except GradWireError as exc:
        print(f"validate: {exc}", file=sys.stderr)
        return 1
    for kind, title in (("collective", "Collectives (gloo, measured vs predicted)"),
                        ("iteration", "Training iterations (DDP, QSGD MLP)")):
        cases = result.of_kind(kind)
        if not cases:
            continue
        s = result.summary(kind)
        print(f"\n{title}\n{format_table(cases)}")
        print(f"median |error| {s['median_abs_error']:.1%}, max |error| {s['max_abs_error']:.1%} "
              f"over {s['n']} network-bound cases")
    for p in write_outputs(result, a.out):
        print(f"wrote {p}")
    return 0
