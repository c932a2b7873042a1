"""What a run will cost, said before it runs: cached profiles are recognised and labelled.

A cached profile is read, not measured, so the log line of a run that reuses one says
"(cached)"; :func:`gradwire.models.profile.profile_is_cached` answers without running
anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gradwire.models import profile as prof
from gradwire.models.sources import prepare_workload
from gradwire.scenarios.loader import load_scenario


def _scenario(**model: object) -> object:
    return load_scenario({"model": {"name": "mlp", "batch_size": 4, **model}, "workers": 2,
                          "codecs": ["fp32"], "cluster": {"bandwidth_Gbps": 10}})


@pytest.mark.parametrize("model", [{}, {"target_device": "V100"}], ids=["measured here", "estimated"])
def test_cached_profile_says_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    model: dict[str, object]) -> None:
    monkeypatch.setenv("GRADWIRE_CACHE", str(tmp_path))
    sc = _scenario(**model)
    cold: list[str] = []
    prepare_workload(sc, "cpu", say=cold.append)
    warm: list[str] = []
    prepare_workload(sc, "cpu", say=warm.append)
    assert len(cold) == len(warm) == 1
    assert not cold[0].endswith("(cached)")
    assert warm[0] == cold[0] + " (cached)"


def test_profile_is_cached_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {"device": "cpu", "iters": 1, "cache_dir": tmp_path}
    assert not prof.profile_is_cached("small_cnn", 4, **kw)
    prof.profile_model("small_cnn", 4, **kw)

    def no_running(*args: object, **kwargs: object) -> None:
        raise AssertionError("asking whether a profile is cached must not run the model")

    monkeypatch.setattr(prof, "_measure", no_running)
    monkeypatch.setattr(prof, "_meta_costs", no_running)
    assert prof.profile_is_cached("small_cnn", 4, **kw)
    # any setting in the key is another profile
    assert not prof.profile_is_cached("small_cnn", 4, **{**kw, "iters": 2})
    assert not prof.profile_is_cached("small_cnn", 8, **kw)
