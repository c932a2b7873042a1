"""The bench catalogue against its reference files, and one small case end to end.

Every case cites a shipped reference file and a section of it, quotes each claim word for
word as that section words it, and carries the published number as the quote writes it;
the shipped references are the project's shared reference files, unchanged. A case that
sets a calibrated constant is refused. The small case (the allgather-against-ring
finding) runs end to end, and its predictions are checked against the stored rows and
against the closed form of the bytes each exchange moves.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from gradwire.bench import BENCH_DIR, REFERENCE_DIR, list_cases, load_case, run_bench, summarize
from gradwire.errors import ScenarioError

SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _section(file: str, heading: str) -> str:
    text = (REFERENCE_DIR / file).read_text()
    parts = re.split(r"^## ", text, flags=re.M)
    found = [p for p in parts if p.splitlines()[0].strip() == heading]
    assert found, f"{file} has no section '## {heading}'"
    return _flat(found[0])


def test_catalogue_has_quick_and_full_cases() -> None:
    cases = [load_case(c) for c in list_cases()]
    assert len(cases) >= 5
    assert any(c.case.quick for c in cases) and any(not c.case.quick for c in cases)


@pytest.mark.parametrize("case_id", list_cases())
def test_every_claim_quotes_its_cited_source(case_id: str) -> None:
    bc = load_case(case_id)
    section = _section(bc.case.source.file, bc.case.source.section)
    for claim in bc.case.claims:
        assert _flat(claim.quote) in section, f"{case_id}: not a verbatim quote: {claim.quote!r}"
        if claim.value is not None:  # the number is the one the quote prints (2.5x, 80%)
            v = claim.value
            assert f"{v:g}" in claim.quote or f"{v * 100:g}%" in claim.quote, (case_id, v, claim.quote)
    text = "\n".join(bc.scenario_dict()["assumptions"])
    for heading in ("Hardware:", "Network:", "Batch:", "Codec:", "Approximated:", "Source:"):
        assert heading in text


def test_shipped_references_are_the_shared_ones() -> None:
    if not SHARED_REFERENCE.is_dir():
        pytest.skip("the shared reference folder is not beside this checkout")
    for name in ("published_results.md", "measured_data.md"):
        assert (REFERENCE_DIR / name).read_text() == (SHARED_REFERENCE / name).read_text()


def _write_case(tmp: Path, **changes: object) -> Path:
    data = yaml.safe_load((BENCH_DIR / "allgather_ratio_vs_workers.yaml").read_text())
    for path, value in changes.items():
        node = data
        parts = path.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    (tmp / "case.yaml").write_text(yaml.safe_dump(data))
    return tmp


def test_a_case_may_not_tune_a_calibrated_constant(tmp_path: Path) -> None:
    d = _write_case(tmp_path, scenario__model__compute_efficiency=0.9)
    with pytest.raises(ScenarioError, match=r"scenario\.model\.compute_efficiency.*calibrated constant"):
        load_case("case", d)


def test_a_claim_is_a_number_or_a_sign_and_names_a_real_point(tmp_path: Path) -> None:
    data = yaml.safe_load((BENCH_DIR / "allgather_ratio_vs_workers.yaml").read_text())
    data["claims"][0]["value"] = 2.0  # both a value and a sign
    data["claims"][1]["point"] = {"workers": 64}  # not a swept value
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match="exactly one of value"):
        load_case("bad", tmp_path)
    data["claims"][0].pop("value")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match=r"published\[1\]\.point\.workers"):
        load_case("bad", tmp_path)


def test_small_case_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradwire.sweep.store import ResultStore

    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path / "cache"))
    outcome = run_bench(["allgather_ratio_vs_workers"], tmp_path / "out")
    assert not outcome.failed
    with ResultStore(tmp_path / "out" / "allgather_ratio_vs_workers" / "results.sqlite") as store:
        rows = store.rows()
    by = {(r.workers, r.codec_name): r for r in rows}
    assert [r["point"] for r in outcome.records] == ["workers=4", "workers=32"]
    for rec, p in zip(outcome.records, (4, 32), strict=True):
        fp32, q = by[(p, "fp32")], by[(p, "qsgd")]
        assert rec["predicted"] == pytest.approx(fp32.iteration_s / q.iteration_s, rel=1e-12)
        assert rec["predicted_sign"] == ("win" if rec["predicted"] > 1 else "lose")
        assert math.isnan(rec["error"])  # a sign claim has no numeric error
        # the closed form behind the finding: allgather moves (p-1)/ratio gradients per
        # rank, a ring 2(p-1)/p; fewer bytes exactly when the ratio exceeds p/2
        ratio = q.compression_ratio
        assert (q.bytes_per_rank < fp32.bytes_per_rank) == (ratio > p / 2)
    s = outcome.summary
    assert s == summarize(outcome.records)
    assert (s["claims"], s["numeric"], s["signs"]) == (2, 0, 2)
    assert s["signs_agree"] == sum(r["sign_agrees"] for r in outcome.records)
    assert (tmp_path / "out" / "bench.json").is_file()
