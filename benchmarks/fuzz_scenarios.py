"""Scenario fuzzer, long run: thousands of hostile scenarios loaded and checked as ``--check`` does.

Usage::

    python benchmarks/fuzz_scenarios.py                  # 5,000 cases, seed 0
    python benchmarks/fuzz_scenarios.py --cases 20000 --seed 3 --limit-s 10

Prints the counts (cases, valid, clean errors with field paths, errors without a path,
tracebacks, hangs over the per-case limit) as one JSON line and the first failures; exits
1 when any case is not valid or a clean error. The cases are those of the suite's fuzzer
(``tests/fuzz_scenarios.py``), drawn by hypothesis from a fixed seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzz_scenarios import CASES, OVERRIDES, Counts, check_case


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-s", type=float, default=10.0, help="time limit of one case (a hang past it)")
    a = p.parse_args()
    counts = Counts()

    @seed(a.seed)
    @settings(max_examples=a.cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(text=CASES, overrides=OVERRIDES)
    def one(text: str | bytes, overrides: list[str]) -> None:
        check_case(text, overrides, counts, limit_s=a.limit_s)

    t0 = time.perf_counter()
    one()
    elapsed = time.perf_counter() - t0
    out = {k: v for k, v in asdict(counts).items() if k != "examples"}
    out["elapsed_s"] = round(elapsed, 1)
    print(json.dumps(out))
    for ex in counts.examples:
        print(ex)
    return 0 if counts.unnamed == counts.traceback == counts.hang == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
