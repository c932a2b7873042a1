"""Hostile scenarios never give a traceback or a hang: one clear error with a field path.

The cases come from :mod:`tests.fuzz_scenarios` (mutated built-ins, random structures,
damaged text, hostile ``--set`` values); ``benchmarks/fuzz_scenarios.py`` runs thousands.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_scenarios import CASES, OVERRIDES, Counts, check_case

COUNTS = Counts()


@settings(max_examples=150, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(text=CASES, overrides=OVERRIDES)
def test_hostile_scenarios_fail_cleanly(text: str | bytes, overrides: list[str]) -> None:
    kind = check_case(text, overrides, COUNTS, limit_s=20.0)
    assert kind in ("ok", "clean"), COUNTS.examples[-1]
