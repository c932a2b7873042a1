"""The product as a user meets it: run_sim.py on a reduced quickstart, files written, errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gradwire.results import Row, add_speedups

ROOT = Path(__file__).resolve().parents[1]

# The quickstart, reduced: two points, two codecs besides fp32, a short convergence run.
REDUCED = [
    "sweep={workers: [2, 4]}",
    "codecs=[fp32, 'qsgd(bits=4, bucket=512)', onebit]",
    "measure.repeats=1",
    "model.profile_iters=1",
    "convergence.steps=20",
    "convergence.eval_every=10",
    "convergence.workers=4",
]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"GRADWIRE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run([sys.executable, str(ROOT / "run_sim.py"), *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=300)


@pytest.mark.slow
def test_reduced_quickstart_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["quickstart", "--out", str(out), "--quiet"]
    for o in REDUCED:
        args += ["--set", o]
    proc = _run(args, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("results.csv", "results.parquet", "dashboard.html"):
        assert (out / name).is_file(), f"{name} missing; stdout:\n{proc.stdout}"
    assert str(out / "dashboard.html") in proc.stdout.replace("\n", "")
    table = pq.read_table(out / "results.parquet").to_pylist()
    assert len(table) == 2 * 3  # two points x three codecs
    for r in table:
        assert r["iteration_s"] > 0 and r["compute_s"] > 0
        parts = r["compute_s"] + r["encode_s"] + r["decode_s"] + r["exposed_comm_s"]
        assert parts == pytest.approx(r["iteration_s"], rel=1e-6)
        if r["codec_name"] == "fp32":
            assert r["speedup_vs_fp32"] == pytest.approx(1.0)
            assert r["bits_per_element"] == pytest.approx(32.0)
        if r["codec_name"] == "qsgd":
            # fixed-width 4-bit: 4 bits per element + a 32-bit scale per 512 (small layers raw)
            assert 4.0 < r["bits_per_element"] < 4.5
    # fp32 is DDP's own allreduce: no codec time
    assert all(r["encode_s"] == 0 and r["decode_s"] == 0 for r in table if r["codec_name"] == "fp32")
    # to a pipe (stdout is not a terminal) the summary is printed whole, speedups included
    assert "vs fp32" in proc.stdout and "exposed comm" in proc.stdout
    # every point's verdict: one line each in the terminal, the same on every row of the point
    for pt in {r["point"] for r in table}:
        mine = [r for r in table if r["point"] == pt]
        assert len({r["verdict_line"] for r in mine}) == 1 and mine[0]["verdict_line"] in proc.stdout
        assert mine[0]["verdict"] in ("compress", "keep baseline", "not decided")
    # the second run reuses a stored point only when it was made from the same inputs: with
    # codec costs measured again in each run they differ, and it says it recomputes them
    from gradwire.sweep.store import ResultStore

    with ResultStore(out) as store:
        sources = {p["codec_cost_source"] for p in store.provenance().values()}
    assert len(sources) == 1
    proc2 = _run(args, tmp_path)
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    if sources == {"measured in this run"}:
        assert "recomputing 2 stored point(s): 2 made with other profiled or measured inputs" in proc2.stdout
    else:
        assert "2 point(s) were already in the store" in proc2.stdout
    # report prints the table it rebuilt from the store, in any format
    rep = _run(["report", str(out), "--format", "csv"], tmp_path)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    lines = [ln for ln in rep.stdout.splitlines() if ln.startswith(("workers=", '"workers='))]
    assert len(lines) == 2 * 3


def test_invalid_scenario_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: 0\ncluster: {topology: star, bandwidth_Gbps: -1}\ncodecs: [zipit]\n")
    proc = _run([str(bad), "--check"], tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "workers: must be > 0" in proc.stdout
    assert "cluster.bandwidth_Gbps: must be > 0 Gbit/s" in proc.stdout
    assert "codecs[0]: unknown codec" in proc.stdout


def test_check_prints_every_point_id_and_dotted_sweep_axes_can_be_set(tmp_path: Path) -> None:
    proc = _run(["nvlink_servers", "--check", "--set", "sweep.cluster.nic_bandwidth_Gbps=[25, 50]",
                 "--set", "sweep.exchange.summable=[ring_allreduce]"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [ln.split("[")[1].split("]")[0] for ln in proc.stdout.splitlines() if ln.strip().startswith("point ")]
    assert len(ids) == 2 and all(len(i) == 16 for i in ids)  # ids starting with a letter kept too
    assert "'cluster.nic_bandwidth_Gbps': 50" in proc.stdout


def test_list_shows_builtins(tmp_path: Path) -> None:
    proc = _run(["--list"], tmp_path)
    assert proc.returncode == 0
    for name in ("quickstart", "qsgd_paper", "scaling_to_1024"):
        assert name in proc.stdout


def _row(point: int, codec: str, t: float) -> Row:
    return Row(scenario="s", point=point, point_id=str(point), codec=codec, codec_name=codec, model="m",
               batch_size=1, workers=2, topology="star", collective="c", device="cpu", seed=0, overlap=True,
               iteration_s=t, compute_s=t / 2, forward_s=0, backward_s=0, optimizer_s=0, encode_s=0,
               decode_s=0, comm_s=t / 2, exposed_comm_s=t / 2, hidden_comm_s=0, bytes_per_rank=1,
               bits_per_element=1, compression_ratio=32)


def test_speedups_are_against_the_same_points_rows() -> None:
    rows = add_speedups([_row(0, "fp32", 2.0), _row(0, "qsgd", 1.0), _row(0, "onebit", 0.5),
                         _row(1, "fp32", 9.0), _row(1, "qsgd", 3.0)])
    by = {(r.point, r.codec): r for r in rows}
    assert by[(0, "qsgd")].speedup_vs_fp32 == 2.0 and by[(0, "qsgd")].speedup_vs_onebit == 0.5
    assert by[(1, "qsgd")].speedup_vs_fp32 == 3.0
    assert math.isnan(by[(1, "qsgd")].speedup_vs_onebit)  # point 1 has no onebit row
