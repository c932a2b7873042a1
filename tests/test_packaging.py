"""The folders the design card fixes install under one import name, and none is forgotten."""

from __future__ import annotations

import codecs as std_codecs
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed() -> None:
    cfg = _config()
    mapped = {Path(v).as_posix() for v in cfg["package-dir"].values()}
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        rel = init.parent.relative_to(ROOT).as_posix()
        if rel.startswith((".venv", "build", "tests", "benchmarks")):
            continue
        found.add(rel)
    assert found == mapped, f"package folders not mapped in pyproject: {found ^ mapped}"
    assert set(cfg["packages"]) == set(cfg["package-dir"])


def test_standard_codecs_module_is_not_shadowed() -> None:
    import gradwire.codecs

    assert Path(std_codecs.__file__).name == "codecs.py"
    assert Path(gradwire.codecs.__file__).parent == ROOT / "codecs"
    assert std_codecs.lookup("utf-8").name == "utf-8"
