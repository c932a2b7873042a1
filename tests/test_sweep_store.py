"""The results store: exact round trips, atomic points, re-opening, export, crash consistency."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradwire.errors import ConfigError
from gradwire.results import LinkUse, Row, Segment, Trace
from gradwire.sweep.store import ResultStore, row_to_dict

FLOAT_FIELDS = [
    "iteration_s", "compute_s", "forward_s", "backward_s", "optimizer_s", "encode_s", "decode_s",
    "comm_s", "exposed_comm_s", "hidden_comm_s", "bytes_per_rank", "bits_per_element",
    "compression_ratio", "speedup_vs_fp32", "speedup_vs_onebit",
]

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
text = st.text(min_size=0, max_size=12)
json_scalar = st.one_of(st.integers(-(2**53), 2**53), finite, text, st.booleans(), st.none())
param_value = st.one_of(json_scalar, st.lists(json_scalar, max_size=4))


@st.composite
def rows(draw: st.DrawFn, point: int | None = None, point_id: str | None = None) -> Row:
    floats = {f: draw(any_float) for f in FLOAT_FIELDS}
    return Row(
        scenario=draw(text), point=point if point is not None else draw(st.integers(0, 10**6)),
        point_id=point_id if point_id is not None else draw(text), codec=draw(text),
        codec_name=draw(text), model=draw(text), batch_size=draw(st.integers(1, 4096)),
        workers=draw(st.integers(1, 4096)), topology=draw(text), collective=draw(text),
        device=draw(text), seed=draw(st.integers(0, 2**31)), overlap=draw(st.booleans()),
        estimate=draw(st.booleans()),
        params=draw(st.dictionaries(text, param_value, max_size=4)), **floats,
    )


def same_row(a: Row, b: Row) -> bool:
    """Field-by-field equality where NaN equals NaN (the store must keep NaN speedups)."""
    da, db = asdict(a), asdict(b)
    if da.keys() != db.keys():
        return False
    for k in da:
        x, y = da[k], db[k]
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if type(x) is not type(y) or x != y:
            return False
    return True


def sample_trace(point: int) -> Trace:
    return Trace(
        point=point, codec="qsgd(bits=4, bucket=512)",
        segments=[Segment(0, "forward", 0.0, 0.01, ""), Segment(1, "comm", 0.01, 0.25, "bucket 0 step 1"),
                  Segment(1, "comm", 0.3, 0.5, "step 2 … step 9 (8 segments)", 8)],
        links=[LinkUse("gpu0", "sw0", 1.25e9, 0.2, 2.5e8, 0.8)],
        positions={"gpu0": (0.5, -1.0), "sw0": (0.0, 0.0)},
        node_kinds={"gpu0": "gpu", "sw0": "switch"},
        resolution_s=2.5e-6,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(rows(), min_size=1, max_size=4))
def test_rows_round_trip_exactly(tmp_path: Path, batch: list[Row]) -> None:
    with ResultStore(tmp_path / f"s{os.getpid()}_{time.perf_counter_ns()}") as store:
        store.put("p", batch)
        back = store.rows()
    # rows() orders by point index; within a point the order of put is kept
    expected = sorted(batch, key=lambda r: r.point)
    assert len(back) == len(expected)
    assert all(same_row(a, b) for a, b in zip(expected, back, strict=True))


def test_traces_round_trip_exactly(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        traces = [sample_trace(3), sample_trace(1)]
        store.put("a", [], traces[:1])
        store.put("b", [], traces[1:])
        assert store.traces() == [traces[1], traces[0]]


def test_store_persists_and_reopens(tmp_path: Path) -> None:
    row = Row(**{**asdict(_a_row()), "point": 0})
    with ResultStore(tmp_path / "dir") as store:
        store.put("id0", [row], [sample_trace(0)], meta={"index": 0, "values": {"workers": 8}})
        store.set_info("scenario", {"name": "demo"})
    assert (tmp_path / "dir" / "results.sqlite").exists()
    with ResultStore(tmp_path / "dir") as again:
        assert again.done_ids() == {"id0"}
        assert len(again) == 1
        assert same_row(again.rows()[0], row)
        assert again.info("scenario") == {"name": "demo"}
        assert again.info("missing", 5) == 5


def test_error_then_success_replaces_the_error(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.put_error("x", "ValueError: bad", traceback="Traceback ...", meta={"index": 4})
        assert store.done_ids() == set()
        assert store.failed_ids() == {"x"}
        (err,) = store.errors()
        assert err["point_id"] == "x" and err["error"] == "ValueError: bad"
        assert err["meta"] == {"index": 4} and err["traceback"] == "Traceback ..."
        store.put("x", [_a_row()])
        assert store.done_ids() == {"x"} and store.errors() == []
        # storing a point again replaces its rows, never duplicates them
        store.put("x", [_a_row(), _a_row()])
        assert len(store.rows()) == 2


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    """A write that fails half-way (here: a trace row violating the table) rolls back whole."""
    with ResultStore(tmp_path) as store:
        store.put("keep", [_a_row()])
        store._conn.execute("CREATE TRIGGER boom BEFORE INSERT ON traces BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with pytest.raises(sqlite3.IntegrityError):
            store.put("half", [_a_row(), _a_row()], [sample_trace(0)])
        assert store.done_ids() == {"keep"}
        assert store._conn.execute("SELECT COUNT(*) FROM rows WHERE point_id = 'half'").fetchone()[0] == 0


def test_export_csv_and_parquet_match_rows(tmp_path: Path) -> None:
    rs = [Row(**{**asdict(_a_row()), "point": i, "point_id": f"p{i}", "iteration_s": 0.1 * (i + 1),
                 "params": {"workers": 2**i, "stragglers": [{"rank": 0, "slowdown": 1.5}]}})
          for i in range(5)]
    with ResultStore(tmp_path) as store:
        for r in rs:
            store.put(r.point_id, [r])
        paths = store.export(tmp_path / "out")
    table = pq.read_table(paths["parquet"]).to_pylist()
    csv = pacsv.read_csv(paths["csv"]).to_pylist()
    assert len(table) == len(csv) == 5
    for r, t, c in zip(rs, table, csv, strict=True):
        assert t["point_id"] == c["point_id"] == r.point_id
        assert t["iteration_s"] == pytest.approx(r.iteration_s, rel=0, abs=0)
        assert c["iteration_s"] == pytest.approx(r.iteration_s, rel=1e-15)
        assert t["param.workers"] == r.params["workers"]
        assert json.loads(t["param.stragglers"]) == r.params["stragglers"]
        assert t["speedup_vs_onebit"] is None and t["speedup_vs_fp32"] == 1.7  # NaN -> missing


def test_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "results.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a GradWire results database"):
        ResultStore(bad)


WRITER = textwrap.dedent("""
    import json, sys
    from dataclasses import replace
    from gradwire.results import Segment, Trace
    from gradwire.sweep.store import ResultStore, row_from_dict
    store = ResultStore(sys.argv[1])
    base = row_from_dict(json.loads(open(sys.argv[2]).read()))
    i = 0
    while True:
        rows = [replace(base, point=i, codec=f"c{j}") for j in range(7)]
        traces = [Trace(i, f"c{j}", [Segment(r, "comm", 0.0, 1.0, "x" * 50) for r in range(300)])
                  for j in range(7)]
        store.put(f"p{i}", rows, traces)
        print(i, flush=True)
        i += 1
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_writer_leaves_only_whole_points(tmp_path: Path, sig: signal.Signals) -> None:
    """Kill a process in the middle of storing points: every stored point is complete."""
    row_file = tmp_path / "row.json"
    row_file.write_text(json.dumps(row_to_dict(_a_row())))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "db"), str(row_file)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(15):  # let it commit a few points, then kill it at an arbitrary moment
        proc.stdout.readline()
    proc.send_signal(sig)
    proc.wait(timeout=30)
    with ResultStore(tmp_path / "db") as store:
        done = store.done_ids()
        assert len(done) >= 15
        per_point = dict(store._conn.execute("SELECT point_id, COUNT(*) FROM rows GROUP BY point_id").fetchall())
        per_trace = dict(store._conn.execute("SELECT point_id, COUNT(*) FROM traces GROUP BY point_id").fetchall())
        assert set(per_point) == set(per_trace) == done
        assert set(per_point.values()) == {7} and set(per_trace.values()) == {7}
        assert all(len(t.segments) == 300 for t in store.traces())


def _a_row() -> Row:
    return Row(
        scenario="demo", point=0, point_id="id0", codec="qsgd(bits=4, bucket=512)", codec_name="qsgd",
        model="resnet18", batch_size=32, workers=8, topology="fat_tree", collective="allgather",
        device="cpu", seed=0, overlap=True, iteration_s=0.25, compute_s=0.2, forward_s=0.07,
        backward_s=0.12, optimizer_s=0.01, encode_s=0.004, decode_s=0.006, comm_s=0.1,
        exposed_comm_s=0.04, hidden_comm_s=0.06, bytes_per_rank=1.5e6, bits_per_element=2.8,
        compression_ratio=11.4, speedup_vs_fp32=1.7, params={"workers": 8, "cluster.bandwidth_Gbps": 10.0},
    )
