"""``run_sim.py explain``: the two iterations side by side, the deciding term, point lookup.

Rows are written by hand with known breakdowns (the terms sum to the iteration), so the
deciding term and the differences are known in advance; the command reads them back from
a results folder without simulating anything.
"""

from __future__ import annotations

import math

import pytest

from gradwire.cli import main
from gradwire.errors import ConfigError
from gradwire.explain import TERMS, explain_point, find_point
from gradwire.results import Row, add_speedups
from gradwire.sweep.store import ResultStore


def row(point: int, codec: str, name: str, *, compute: float, encode: float, comm: float, decode: float,
        wait: float = 0.0, workers: int = 8, gbps: float = 1.0) -> Row:
    collective = "ring_allreduce" if name in ("fp32", "fp16", "bf16") else "ring_allgather"
    return Row(
        scenario="hand", point=point, point_id=f"{point:04d}beef{int(gbps):04d}", codec=codec, codec_name=name,
        model="mlp", batch_size=32, workers=workers, topology="star", collective=collective, device="cpu",
        seed=0, overlap=True, iteration_s=compute + encode + comm + decode + wait, compute_s=compute,
        forward_s=compute / 3, backward_s=2 * compute / 3, optimizer_s=0.0, encode_s=encode, decode_s=decode,
        comm_s=comm, exposed_comm_s=comm, hidden_comm_s=0.0, bytes_per_rank=1e6, bits_per_element=4.0,
        compression_ratio=8.0, params={"workers": workers, "cluster.bandwidth_Gbps": gbps},
    )


def slow_network(point: int = 0, gbps: float = 1.0) -> list[Row]:
    """fp32 pays 194 ms of exposed communication; 1-bit SGD 27.9 ms plus 87.2 ms of codec
    time; bf16 (slowed by its casts and a slower allreduce here) sits between them."""
    return add_speedups([
        row(point, "fp32", "fp32", compute=5.54e-3, encode=0, comm=0.194, decode=0, gbps=gbps),
        row(point, "bf16", "bf16", compute=5.54e-3, encode=2e-3, comm=0.150, decode=2e-3, gbps=gbps),
        row(point, "onebit", "onebit", compute=5.54e-3, encode=17.3e-3, comm=27.9e-3, decode=69.9e-3, gbps=gbps),
        row(point, "qsgd(bits=4, bucket=512)", "qsgd", compute=5.54e-3, encode=5.9e-3, comm=0.0998,
            decode=35.9e-3, gbps=gbps),
    ])


def test_terms_add_up_and_the_largest_saving_decides_a_win() -> None:
    rows = slow_network()
    ex = explain_point(rows, "p")
    assert ex.baseline is not None and ex.baseline.codec == "bf16"  # the fastest baseline
    assert ex.option is not None and ex.option.codec == "onebit"  # the fastest compressed option
    for r, col in ((ex.baseline, 1), (ex.option, 2)):
        assert math.fsum(t[col] for t in ex.terms) == pytest.approx(r.iteration_s, rel=1e-12)
    diffs = {t: o - b for t, b, o in ex.terms}
    assert diffs["exposed communication"] == pytest.approx(27.9e-3 - 0.150)
    assert diffs["codec (encode + decode)"] == pytest.approx(17.3e-3 + 69.9e-3 - 4e-3)
    assert ex.decides == "exposed communication"
    assert ex.sentence.startswith("onebit via ring_allgather is ") and "saves 122 ms" in ex.sentence


def test_the_largest_added_cost_decides_a_loss() -> None:
    rows = add_speedups([
        row(0, "fp32", "fp32", compute=5.54e-3, encode=0, comm=19.8e-3, decode=0, gbps=10),
        row(0, "onebit", "onebit", compute=5.54e-3, encode=17.3e-3, comm=3.17e-3, decode=69.8e-3, gbps=10),
    ])
    ex = explain_point(rows, "p")
    assert ex.decides == "codec (encode + decode)"
    assert "is slower than fp32 via ring_allreduce" in ex.sentence and "adds 87.1 ms" in ex.sentence
    assert "more than the 16.6 ms it saves in exposed communication" in ex.sentence


def test_waiting_on_a_straggler_is_its_own_term() -> None:
    rows = add_speedups([
        row(0, "fp32", "fp32", compute=0.01, encode=0, comm=0.01, decode=0),
        row(0, "onebit", "onebit", compute=0.01, encode=1e-3, comm=1e-3, decode=1e-3, wait=0.05),
    ])
    ex = explain_point(rows, "p")
    assert [t for t, _, _ in ex.terms] == [t for t, _ in TERMS] and ex.decides == "other (waiting)"


def test_without_a_compressed_codec_or_a_baseline() -> None:
    only_base = [r for r in slow_network() if r.codec_name in ("fp32", "bf16")]
    ex = explain_point(only_base, "p")
    assert ex.option is None and ex.decides == "" and "No compressed codec" in ex.sentence
    with pytest.raises(ConfigError, match="no uncompressed baseline"):
        explain_point([r for r in slow_network() if r.codec_name == "onebit"], "p")


def test_points_are_found_by_id_prefix_number_or_label() -> None:
    rows = slow_network(0, 1.0) + slow_network(1, 10.0)
    pid = rows[4].point_id
    for key in (pid, pid[:6], "1", "bandwidth_Gbps=10", " bandwidth_Gbps = 10 "):
        label, rs = find_point(rows, key)
        assert label == "bandwidth_Gbps=10" and {r.point for r in rs} == {1}
    with pytest.raises(ConfigError) as err:
        find_point(rows, "nope")
    assert "0 = 0000beef0001 = bandwidth_Gbps=1" in str(err.value) and "1 = 0001beef0010" in str(err.value)


def test_the_command_reads_a_results_folder(tmp_path, capsys) -> None:
    rows = slow_network(0, 1.0) + slow_network(1, 10.0)
    with ResultStore(tmp_path / "results.sqlite") as store:
        for p in (0, 1):
            store.put(rows[4 * p].point_id, [r for r in rows if r.point == p])
        store.export(tmp_path)
    assert main(["explain", "bandwidth_Gbps=1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bf16 via ring_allreduce" in out and "onebit via ring_allgather" in out and "(best compressed)" in out
    assert "Deciding term: exposed communication" in out and "-122 ms" in out
    assert main(["explain", "zz", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().out
    assert "'zz' is not a point of this run" in err and "0001beef0010" in err  # ids survive the markup
