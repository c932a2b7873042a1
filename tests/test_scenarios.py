"""Scenario schema: built-ins validate, bad scenarios report every problem with its path."""

from __future__ import annotations

import math

import pytest
import yaml

from gradwire.errors import ScenarioError
from gradwire.scenarios.convert import si_key, si_value, to_si
from gradwire.scenarios.loader import expand, list_builtin, load_scenario, point_id

BUILTINS = ["quickstart", "qsgd_paper", "ethernet_vs_infiniband", "fat_tree_oversubscription",
            "nvlink_servers", "scaling_to_1024", "scale_to_16384", "llm_sharded"]


def test_every_builtin_is_listed() -> None:
    assert set(BUILTINS) <= set(list_builtin())


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_validates_and_expands_to_the_product_of_its_axes(name: str) -> None:
    sc = load_scenario(name)
    points = expand(sc)
    expected = math.prod(len(v) for v in sc.sweep.values()) * max(1, len(sc.cases))
    assert len(points) == expected
    assert len({p.point_id for p in points}) == len(points)  # distinct points, distinct ids


def _write(tmp_path, data) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_all_problems_reported_at_once_with_paths(tmp_path) -> None:
    bad = {
        "model": {"name": "mlp", "batch_size": 0},
        "workers": 4,
        "cluster": {
            "topology": "links",
            "gpus": ["a", "b"],
            "links": [
                {"src": "a", "dst": "s", "bandwidth_Gbps": 10},
                {"src": "b", "dst": "s", "bandwidth_Gbps": 10},
                {"src": "s", "dst": "c", "bandwidth_Gbps": 0},
            ],
        },
        "overlapp": True,
        "bucket_MB": -1,
    }
    with pytest.raises(ScenarioError) as exc:
        load_scenario(_write(tmp_path, bad))
    text = str(exc.value)
    paths = {p.path for p in exc.value.problems}
    assert "cluster.links[2].bandwidth_Gbps" in paths
    assert "must be > 0 Gbit/s" in text
    assert "model.batch_size" in paths
    assert "overlapp" in paths and "unknown key" in text
    assert "bucket_MB" in paths
    assert len(exc.value.problems) == 4


def test_semantic_problems_name_valid_choices(tmp_path) -> None:
    bad = {
        "model": {"name": "resnet9000"},
        "workers": 2,
        "codecs": ["fp32", "zipit", "qsgd(bits=0)"],
        "stragglers": [{"rank": 5, "slowdown": 2}],
        "exchange": {"quantized": "carrier_pigeon"},
        "cluster": {"topology": "star", "bandwidth_Gbps": 10, "colour": "red"},
        "sweep": {"nonsense.path": [1, 2]},
    }
    with pytest.raises(ScenarioError) as exc:
        load_scenario(_write(tmp_path, bad))
    by_path = {p.path: p.message for p in exc.value.problems}
    assert "unknown model 'resnet9000'" in by_path["model.name"] and "mlp" in by_path["model.name"]
    assert "codecs[1]" in by_path and "qsgd" in by_path["codecs[1]"]  # lists valid codecs
    assert "codecs[2]" in by_path and "bits" in by_path["codecs[2]"]
    assert "stragglers[0].rank" in by_path
    assert "ring_allgather" in by_path["exchange.quantized"]
    assert "not a parameter of topology 'star'" in by_path["cluster.colour"]
    assert "sweep.nonsense.path" in by_path


def test_not_a_mapping_and_bad_yaml(tmp_path) -> None:
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(str(p))
    p.write_text("model: {name: mlp\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(str(p))
    with pytest.raises(ScenarioError, match=r"built-in: .*quickstart"):
        load_scenario("no_such_scenario")


def test_overrides_apply_and_are_validated() -> None:
    sc = load_scenario("quickstart", ["workers=16", "cluster.bandwidth_Gbps=25", "sweep={}",
                                      "convergence.enabled=false"])
    assert sc.workers == 16 and sc.cluster.model_extra["bandwidth_Gbps"] == 25
    assert len(expand(sc)) == 1
    with pytest.raises(ScenarioError, match="workers"):
        load_scenario("quickstart", ["workers=0"])
    with pytest.raises(ScenarioError, match="path=value"):
        load_scenario("quickstart", ["workers"])


def test_point_id_is_stable_and_tracks_values() -> None:
    a = load_scenario("quickstart", ["sweep={}"])
    b = load_scenario("quickstart", ["sweep={}", "description=changed words"])
    c = load_scenario("quickstart", ["sweep={}", "workers=9"])
    assert point_id(a) == point_id(b)  # descriptions do not change numbers
    assert point_id(a) != point_id(c)
    ids1 = [p.point_id for p in expand(load_scenario("quickstart"))]
    ids2 = [p.point_id for p in expand(load_scenario("quickstart"))]
    assert ids1 == ids2


def test_cases_cross_sweep_axes_and_carry_their_name() -> None:
    sc = load_scenario("qsgd_paper")
    pts = expand(sc)
    # cases are crossed with the sweep axis (two fp32 exchanges): case-major order
    assert [p.values["case"] for p in pts] == ["AlexNet, 16 GPUs"] * 2 + ["LSTM, 2 GPUs"] * 2
    assert [p.values["exchange.summable"] for p in pts[:2]] == ["ring_allgather", "ring_allreduce"]
    assert pts[2].scenario.model.name == "lstm" and pts[2].scenario.workers == 2
    assert pts[0].scenario.exchange.summable == "ring_allgather"


def test_units_are_converted_once_at_the_edge() -> None:
    assert si_key("bandwidth_Gbps") == "bandwidth_Bps"
    assert si_value("bandwidth_Gbps", 8) == pytest.approx(1e9)
    assert si_value("latency_us", 5) == pytest.approx(5e-6)
    assert to_si({"nic_latency_ms": 2, "k": 4}) == {"nic_latency_s": pytest.approx(2e-3), "k": 4}
