"""Scenario fuzzer: hostile scenario files and ``--set`` values, as an adversarial user writes them.

Cases are built by hypothesis from three sources: mutations of the built-in scenarios (a
value anywhere in the tree replaced by a hostile one, a key removed or misspelt, a sweep
or case added), random YAML structures, and text-level damage (bytes that are not UTF-8,
deep nesting, alias bombs, cut files). Each case is loaded and expanded exactly as
``run_sim.py FILE --check`` does, under a per-case time limit, and classified:

- ``ok``: a valid scenario (every point checked);
- ``clean``: one :class:`~gradwire.errors.ScenarioError` whose every problem names a field path;
- ``unnamed``: a :class:`~gradwire.errors.GradWireError` without a field path;
- ``traceback``: any other exception; ``hang``: over the time limit.

The suite runs a short pass (``tests/test_scenario_fuzz.py``); ``benchmarks/fuzz_scenarios.py``
runs thousands of cases and prints the counts.
"""

from __future__ import annotations

import copy
import signal
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from gradwire.errors import GradWireError, ScenarioError
from gradwire.scenarios.loader import BUILTIN_DIR, expand, list_builtin, load_scenario

BUILTINS = {name: yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text()) for name in list_builtin()}

HOSTILE_NUMBERS = st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**64, 10**30, -(10**30), 1e30, 1e300, -1e-300,
                                   float("inf"), float("-inf"), float("nan"), 0.5, 1000, 65_537, 1 << 20])
HOSTILE_STRINGS = st.one_of(
    st.sampled_from(["", "../../x", "/etc/passwd", "a\x00b", "x" * 300, "x" * 20_000, "qsgd(seed='a')",
                     "qsgd(bits={[]: 1})", "qsgd(bits=4, bucket=0)", "qsgd(" + "(" * 200 + ")" * 200 + ")",
                     "fat_tree", "links", "graph_file", "\u202e\u0000", "ring_allreduce", "true", "1e30",
                     "mlp", "cuda", "é" * 50, "\x1b[31mred"]),
    st.text(max_size=40),
)
SCALARS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
                    st.booleans(), st.none(), HOSTILE_NUMBERS, HOSTILE_STRINGS)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)
PATHS = ["name", "seed", "workers", "model", "model.name", "model.batch_size", "model.device", "model.target_device",
         "cluster", "cluster.topology", "cluster.k", "cluster.bandwidth_Gbps", "cluster.num_servers",
         "cluster.gpus_per_server", "cluster.latency_us", "cluster.links", "cluster.gpus", "codecs", "codecs[0]",
         "exchange.summable", "exchange.quantized", "exchange.quantized_options", "exchange.summable_options", "bucket_MB", "sweep", "sweep.workers",
         "sweep.cluster.k", "sweep.cluster.bandwidth_Gbps", "cases", "convergence", "convergence.enabled",
         "convergence.batch_per_worker", "convergence.steps", "published", "stragglers", "measure.repeats",
         "jitter", "network.efficiency"]


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path (``a.b``, ``codecs[0]``, ``sweep.cluster.k`` as one sweep key)."""
    if path.startswith("sweep.") and path.count(".") >= 1:
        sweep = data.get("sweep") if isinstance(data.get("sweep"), dict) else {}
        sweep[path[len("sweep."):]] = value if isinstance(value, list) else [value]
        data["sweep"] = sweep
        return
    if path.endswith("[0]"):
        head = path[:-3]
        cur = data.get(head)
        data[head] = [value, *(cur[1:] if isinstance(cur, list) else [])]
        return
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


@st.composite
def mutated_builtin(draw: st.DrawFn) -> str:
    base = copy.deepcopy(BUILTINS[draw(st.sampled_from(sorted(BUILTINS)))])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        kind = draw(st.sampled_from(["hostile", "value", "delete", "typo"]))
        if kind == "delete" and "." not in path and path in base:
            del base[path]
        elif kind == "typo":
            base[path.split(".")[0] + "_"] = draw(SCALARS)
        else:
            _set(base, path, draw(HOSTILE_NUMBERS | HOSTILE_STRINGS) if kind == "hostile" else draw(VALUES))
    return yaml.safe_dump(base, allow_unicode=True)


@st.composite
def random_structure(draw: st.DrawFn) -> str:
    data = draw(st.dictionaries(st.sampled_from([p.split(".")[0] for p in PATHS] + ["zzz"]), VALUES, max_size=6))
    return yaml.safe_dump(data, allow_unicode=True)


@st.composite
def damaged_text(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(BUILTINS)))
    text = (BUILTIN_DIR / f"{name}.yaml").read_bytes()
    kind = draw(st.sampled_from(["cut", "bytes", "deep", "bomb", "latin1", "anchors", "tabs"]))
    if kind == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "bytes":
        i = draw(st.integers(0, len(text)))
        return text[:i] + draw(st.binary(min_size=1, max_size=8)) + text[i:]
    if kind == "deep":
        n = draw(st.integers(20, 3000))
        return text + b"\nextra: " + b"[" * n + b"]" * n + b"\n"
    if kind == "bomb":
        width = draw(st.integers(2, 12))
        lines = ["a: &a [" + ",".join(["x"] * width) + "]"]
        for i in range(1, draw(st.integers(2, 12))):
            prev = "a" if i == 1 else f"b{i - 1}"
            lines.append(f"b{i}: &b{i} [" + ",".join([f"*{prev}"] * width) + "]")
        return ("\n".join(lines) + "\n").encode()
    if kind == "latin1":
        return text.replace(b"description:", b"description: caf\xe9 ", 1)
    if kind == "anchors":
        return b"name: &n x\nmodel: &m {name: *n}\ncluster: *m\n"
    return text.replace(b"  ", b"\t", 1)


CASES = st.one_of(mutated_builtin(), random_structure(), damaged_text())
OVERRIDES = st.lists(st.one_of(
    st.builds(lambda p, v: f"{p}={v}", st.sampled_from([*PATHS, "a..b", "", "x" * 300]),
              st.one_of(st.sampled_from(["[" * 500, "x" * 20_000, "*a", "&a [*a]", "{", "1e30", "true", "\x00"]),
                        st.text(max_size=20))),
    st.text(max_size=30)), max_size=3)


class CaseTimeout(BaseException):
    """A case ran past its time limit (a hang)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(_sig: int, _frame: Any) -> None:
        raise CaseTimeout

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Counts:
    cases: int = 0
    ok: int = 0
    clean: int = 0
    unnamed: int = 0
    traceback: int = 0
    hang: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, kind: str, detail: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if kind in ("unnamed", "traceback", "hang") and len(self.examples) < 8:
            self.examples.append(f"{kind}: {detail[-1500:]}")


def check_case(text: str | bytes, overrides: list[str], counts: Counts, *, limit_s: float = 10.0) -> str:
    """Load and expand one case as ``--check`` does; record and return its class."""
    raw = text.encode() if isinstance(text, str) else text
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.yaml"
        path.write_bytes(raw)
        counts.cases += 1
        try:
            with time_limit(limit_s):
                sc = load_scenario(path, overrides)
                expand(sc)
        except CaseTimeout:
            counts.note("hang", f"{raw[:300]!r} {overrides!r}")
            return "hang"
        except ScenarioError as exc:
            if exc.problems and all(p.path for p in exc.problems):
                counts.note("clean", "")
                return "clean"
            counts.note("unnamed", f"{exc} :: {raw[:300]!r} {overrides!r}")
            return "unnamed"
        except GradWireError as exc:
            counts.note("unnamed", f"{type(exc).__name__}: {exc} :: {raw[:300]!r} {overrides!r}")
            return "unnamed"
        except Exception:
            counts.note("traceback", f"{traceback.format_exc()} :: {raw[:300]!r} {overrides!r}")
            return "traceback"
    counts.note("ok", "")
    return "ok"
