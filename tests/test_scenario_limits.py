"""Every bound on what a scenario may ask for: one ScenarioError naming the field and the limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradwire.errors import ScenarioError
from gradwire.scenarios.limits import DEFAULT_MAX_POINTS, MAX_DEPTH, MAX_NODES
from gradwire.scenarios.loader import expand, load_scenario

STAR = "cluster: {topology: star, bandwidth_Gbps: 10}\n"


def _problems(tmp_path: Path, text: str | bytes, overrides: tuple[str, ...] = (), *, points: bool = True) -> dict[str, str]:
    f = tmp_path / "s.yaml"
    f.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ScenarioError) as info:
        sc = load_scenario(f, overrides)
        if points:
            expand(sc)
    return {p.path: p.message for p in info.value.problems}


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    got = _problems(tmp_path, b"name: caf\xe9\n")
    assert "not UTF-8" in got["file"] and "offset 9" in got["file"]


def test_deep_nesting_and_alias_bombs(tmp_path: Path) -> None:
    assert "deeper than 32" in _problems(tmp_path, "x: " + "[" * 5000 + "]" * 5000)["file"]
    lines = ["a: &a [" + ",".join(["1"] * 10) + "]"]
    for i in range(1, 9):
        prev = "a" if i == 1 else f"b{i - 1}"
        lines.append(f"b{i}: &b{i} [" + ",".join([f"*{prev}"] * 10) + "]")
    msg = _problems(tmp_path, "\n".join(lines))["file"]
    # counted exactly on the composed graph: the mapping, its 9 keys, and each value expanded
    # (a = 11 nodes, b_i = 1 + 10 b_(i-1)): 1 + 9 + 11 + 111 + ... + 1,111,111,111
    total = 1 + 9 + sum(int("1" * k) for k in range(2, 11))
    assert f"expands to {total:,} values" in msg and f"at most {MAX_NODES:,}" in msg


def test_alias_cycle_is_refused(tmp_path: Path) -> None:
    assert "cycle" in _problems(tmp_path, "a: &a [*a]\n")["file"]


def test_numbers_names_and_strings(tmp_path: Path) -> None:
    got = _problems(tmp_path, STAR + "seed: 18446744073709551616\n", points=False)
    assert "2^53" in got["seed"]
    got = _problems(tmp_path, STAR + "seed: 4294967296\n", points=False)
    assert "0..4,294,967,295" in got["seed"]
    got = _problems(tmp_path, STAR + "model: {batch_size: 1.0e+30}\n", points=False)
    assert "2^53" in got["model.batch_size"]
    got = _problems(tmp_path, STAR + "model: {batch_size: 2000000}\n", points=False)
    assert "1..1,048,576" in got["model.batch_size"]
    for name in ("../../x", "x" * 300, "a/b", ".hidden"):
        assert "results folder" in _problems(tmp_path, STAR + f"name: '{name}'\n", points=False)["name"]
    assert "control character" in _problems(tmp_path, STAR + 'name: "a\\0b"\n', points=False)["name"]
    assert "finite" in _problems(tmp_path, STAR + "jitter: .nan\n", points=False)["jitter"]
    assert "valid integer" in _problems(tmp_path, STAR + "workers: true\n", points=False)["workers"]


def test_codec_spec_literals(tmp_path: Path) -> None:
    got = _problems(tmp_path, STAR + "codecs: [\"qsgd(seed='a')\", 'qsgd(bits={[]: 1})', 'x' ]\n", points=False)
    assert "seed must be an integer" in got["codecs[0]"]
    assert "must be a literal" in got["codecs[1]"]
    assert "unknown codec" in got["codecs[2]"]


def test_long_and_deep_set_values(tmp_path: Path) -> None:
    got = _problems(tmp_path, STAR, ("name=" + "x" * 20_000,), points=False)
    assert "at most 10,000" in got["--set"]
    got = _problems(tmp_path, STAR, ("workers=" + "[" * 500,), points=False)
    assert f"deeper than {MAX_DEPTH}" in got["--set workers"]


@pytest.mark.parametrize("n", [256, 1000])
def test_sweep_size_is_counted_before_any_point_is_built(tmp_path: Path, n: int) -> None:
    axis = ", ".join(str(i) for i in range(1, n + 1))
    text = STAR + f"sweep:\n  workers: [{axis}]\n  cluster.latency_us: [{axis}]\n"
    msg = _problems(tmp_path, text)["sweep"]
    assert f"{n * n:,} points" in msg and f"--max-points {n * n}" in msg and f"{DEFAULT_MAX_POINTS:,}" in msg


def test_topology_sizes_and_convergence_batch(tmp_path: Path) -> None:
    got = _problems(tmp_path, "cluster: {topology: fat_tree, k: 1000, bandwidth_Gbps: 10}\n", points=False)
    assert "0..64" in got["cluster.k"]
    got = _problems(tmp_path, STAR + "convergence: {enabled: true, batch_per_worker: 100000000000}\n",
                    points=False)
    assert "1..65,536" in got["convergence.batch_per_worker"]


def test_check_builds_each_points_topology(tmp_path: Path) -> None:
    """Values given through sweep: or cases: fail at --check, as they would in the run."""
    got = _problems(tmp_path, STAR + "sweep: {cluster.bandwidth_Gbps: [10, -1]}\n")
    assert "must be > 0" in got["sweep point 1 (cluster.bandwidth_Gbps=-1): cluster.bandwidth_Gbps"]
    text = "cluster: {topology: fat_tree, bandwidth_Gbps: 10, k: 4}\ncases:\n  - {case: big, workers: 32}\n"
    got = _problems(tmp_path, text)
    assert "host ports" in got["sweep point 0 (case=big, workers=32): cluster"]


def test_collective_options_and_published_figures(tmp_path: Path) -> None:
    # given through a sweep axis, a bad option fails at --check too
    got = _problems(tmp_path, STAR + "sweep: {exchange.quantized_options: [{}, {bogus: 1}]}\n")
    assert "takes no option 'bogus'" in got["sweep point 1 (exchange.quantized_options={'bogus': 1}): "
                                            "exchange.quantized_options"]
    text = STAR + ("codecs: [fp32, onebit]\nsweep: {workers: [4, 8]}\npublished:\n"
                   "  - {figure: a, quantity: speedup_vs_fp32, codec: 'qsgd(bits=4)', value: 2, point: {workers: 16}}\n"
                   "  - {figure: b, quantity: speedup_vs_fp32, codec: onebit, value: 2, point: {bandwidth: 1}}\n")
    got = _problems(tmp_path, text, points=False)
    assert "not one of the scenario's codecs" in got["published[0].codec"]
    assert "matches no point" in got["published[0].point.workers"]
    assert "not a sweep axis" in got["published[1].point.bandwidth"]


def test_python_dicts_deep_or_cyclic() -> None:
    deep: dict = {}
    cur = deep
    for _ in range(5000):
        cur["x"] = {}
        cur = cur["x"]
    with pytest.raises(ScenarioError, match="deeper than"):
        load_scenario(deep)
    cyc: dict = {"name": "a"}
    cyc["model"] = cyc
    with pytest.raises(ScenarioError, match="cycle"):
        load_scenario(cyc)


def test_builtins_still_load_and_expand() -> None:
    from gradwire.scenarios.loader import list_builtin

    for name in list_builtin():
        assert expand(load_scenario(name))


def test_files_that_cannot_be_scenarios(tmp_path: Path) -> None:
    for source, expect in (("/dev/zero", "not a regular file"), (str(tmp_path), "not a regular file"),
                           ("a\x00b", "not a usable file name"), ("x" * 5000, "not a usable file name"),
                           (str(tmp_path / "missing.yaml"), "no scenario file")):
        with pytest.raises(ScenarioError) as info:
            load_scenario(source)
        assert [p.path for p in info.value.problems] == ["file"] and expect in str(info.value)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * 1_000_001)
    with pytest.raises(ScenarioError, match="1,000,001 bytes"):
        load_scenario(big)
