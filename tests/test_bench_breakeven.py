"""The bench runs no break-even searches unless a case asks for one: no claim reads them."""

from __future__ import annotations

from pathlib import Path

import yaml

from gradwire.bench import BENCH_DIR, NO_BREAKEVEN, list_cases, load_case
from gradwire.scenarios.loader import load_scenario


def test_every_case_runs_without_break_even_searches() -> None:
    for cid in list_cases():
        sc = load_scenario(load_case(cid).scenario_dict())
        assert (sc.breakeven.bandwidth, sc.breakeven.workers) == (False, False), cid


def test_a_case_may_ask_for_break_even_searches(tmp_path: Path) -> None:
    data = yaml.safe_load((BENCH_DIR / "allgather_ratio_vs_workers.yaml").read_text())
    data["scenario"]["breakeven"] = {"workers": False}
    (tmp_path / "with_search.yaml").write_text(yaml.safe_dump(data))
    sc = load_scenario(load_case("with_search", tmp_path).scenario_dict())
    assert sc.breakeven.bandwidth and not sc.breakeven.workers
    assert NO_BREAKEVEN == {"bandwidth": False, "workers": False}
