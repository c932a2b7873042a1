"""The convergence study inside a run: curves stored and reused, and the join with the
simulated clock names its point and says when it is a proxy."""

from __future__ import annotations

import pytest

from gradwire import run as runmod
from gradwire.convergence.runner import Curve
from gradwire.results import Row
from gradwire.scenarios.loader import load_scenario
from gradwire.sweep.store import ResultStore


def _row(point: int, codec: str, workers: int, t: float) -> Row:
    return Row(scenario="s", point=point, point_id=str(point), codec=codec, codec_name=codec, model="mlp",
               batch_size=16, workers=workers, topology="star", collective="c", device="cpu", seed=0,
               overlap=True, iteration_s=t, compute_s=t / 2, forward_s=0, backward_s=0, optimizer_s=0,
               encode_s=0, decode_s=0, comm_s=t / 2, exposed_comm_s=t / 2, hidden_comm_s=0,
               bytes_per_rank=1, bits_per_element=1, compression_ratio=32, params={"workers": workers})


STAR = {"topology": "star", "bandwidth_Gbps": 10}
CURVES = [Curve("fp32", [0, 10], [2.0, 0.5], [0.1, 0.9]), Curve("onebit", [0, 10], [2.0, 0.6], [0.1, 0.9])]


def test_curves_are_stored_and_reused_and_the_join_names_its_point(tmp_path, monkeypatch) -> None:
    sc = load_scenario({"codecs": ["fp32", "onebit"], "model": {"batch_size": 16}, "cluster": STAR,
                        "convergence": {"enabled": True, "workers": 8, "batch_per_worker": 16, "steps": 10}})
    rows = [_row(0, "fp32", 4, 1.0), _row(0, "onebit", 4, 0.5), _row(1, "fp32", 8, 2.0), _row(1, "onebit", 8, 0.5)]
    calls = []
    monkeypatch.setattr("gradwire.convergence.run_convergence",
                        lambda **kw: calls.append(kw) or [Curve(c.codec, c.steps, c.train_loss, c.test_acc) for c in CURVES])
    with ResultStore(tmp_path / "results.sqlite") as store:
        _, ttt = runmod.run_convergence_study(sc, rows, progress=False, store=store)
        _, again = runmod.run_convergence_study(sc, rows, progress=False, store=store)
    assert len(calls) == 1  # the second study reused the stored curves
    assert ttt == again
    rec = {r["codec"]: r for r in ttt}
    # joined with the point of 8 workers (the study's), same model and batch: not a proxy
    assert rec["fp32"]["joined_point"] == "workers=8" and rec["fp32"]["proxy"] is False
    assert rec["onebit"]["time_to_target_s"] == pytest.approx(10 * 0.5)
    # no point with the study's 16 workers: the first point, labelled a proxy
    sc16 = load_scenario({"codecs": ["fp32", "onebit"], "model": {"batch_size": 16}, "cluster": STAR,
                          "convergence": {"enabled": True, "workers": 16, "batch_per_worker": 16, "steps": 10}})
    assert runmod._join_point(sc16, rows) == (0, True)
