"""Loading scenarios: YAML -> validated :class:`Scenario`, ``--set`` overrides, sweep points.

:func:`load_scenario` accepts a path or a built-in name, applies ``path=value`` overrides,
and validates structure and meaning, raising one :class:`~gradwire.errors.ScenarioError`
that lists every problem with its path. :func:`expand` turns the ``sweep`` axes into the
cartesian product of resolved points, each validated again and given a stable id. The
bounds on what is accepted (text, YAML depth and aliases, numbers, names, sweep size) live
in :mod:`gradwire.scenarios.limits`; :func:`expand` also makes, for every point, the
checks a run would make later (topology built, collective options, codec specs).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gradwire.errors import GradWireError, Problem, ScenarioError
from gradwire.scenarios import limits
from gradwire.scenarios.convert import cluster_params, si_key, user_key
from gradwire.scenarios.schema import Scenario

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"

_UNITS = {"Gbps": "Gbit/s", "us": "µs", "ms": "ms", "MB": "MB"}
# Keys that describe a scenario but do not change its numbers: left out of point ids.
_NOT_IN_ID = ("name", "description", "sweep", "cases", "published", "assumptions", "breakeven")


def list_builtin() -> list[str]:
    """Names of the built-in scenarios (files in ``scenarios/builtin``)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def builtin_description(name: str) -> str:
    data = yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text()) or {}
    return str(data.get("description", "")).strip().splitlines()[0] if data else ""


def _path_str(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _unit_of(field: str) -> str:
    for suffix, unit in _UNITS.items():
        if field.endswith("_" + suffix):
            return " " + unit
    return ""


def _message(err: Mapping[str, Any]) -> str:
    """A pydantic error as a short sentence with the bound and unit."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    field = str(err["loc"][-1]) if err["loc"] else ""
    unit = _unit_of(field)
    ops = {
        "greater_than": (">", "gt"),
        "greater_than_equal": (">=", "ge"),
        "less_than": ("<", "lt"),
        "less_than_equal": ("<=", "le"),
    }
    if kind in ops:
        op, key = ops[kind]
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, int | float) else str(bound)
        return f"must be {op} {shown}{unit} (got {err.get('input')!r})"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the scenario reference in docs/scenarios.md)"
    if kind == "missing":
        return "is required"
    if kind == "too_short":
        return "must not be empty"
    return f"{err['msg']} (got {err.get('input')!r})"


def _structure_problems(exc: ValidationError, prefix: str = "") -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        # pydantic adds the union member tried ("int", "str") to the path: drop those
        loc = [p for p in loc if p not in ("int", "str", "float", "list[...]")]
        path = _path_str(loc)
        problems.append(Problem(f"{prefix}{path}", _message(err)))
    return problems


def _semantic_problems(sc: Scenario, prefix: str = "") -> list[Problem]:
    """Registered names, builder parameters and cross-field checks."""
    from gradwire.models import MODELS
    from gradwire.simulator.collectives import COLLECTIVES
    from gradwire.simulator.topology import TOPOLOGIES

    problems: list[Problem] = []

    def add(path: str, msg: str) -> None:
        problems.append(Problem(prefix + path, msg))

    if sc.model.module is None and sc.model.llm is None and sc.model.name not in MODELS:
        add("model.name", f"unknown model {sc.model.name!r}; valid: {', '.join(MODELS.names())}")
    from gradwire.models.sources import model_setting_problems

    for path, msg in model_setting_problems(sc.model):
        add(path, msg)
    from gradwire.baselines import baseline_problems

    for path, msg in baseline_problems(sc):
        add(path, msg)
    from gradwire.sharding import sharding_problems

    for path, msg in sharding_problems(sc):
        add(path, msg)
    if sc.model.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            add("model.device", "'cuda' was asked for but no CUDA device is available; use 'auto' or 'cpu'")
    if sc.model.target_device is not None:
        from gradwire.models.devices import list_devices

        if sc.model.target_device not in list_devices():
            add(
                "model.target_device",
                f"unknown device {sc.model.target_device!r}; valid: {', '.join(list_devices())}",
            )
    problems.extend(Problem(prefix + p.path, p.message) for p in _codec_list_problems(tuple(sc.codecs)))
    for key in ("summable", "quantized"):
        name = getattr(sc.exchange, key)
        if name not in COLLECTIVES:
            add(f"exchange.{key}", f"unknown collective {name!r}; valid: {', '.join(COLLECTIVES.names())}")
        else:
            problems.extend(Problem(prefix + msg.split(": ", 1)[0], msg.split(": ", 1)[1])
                            for msg in _exchange_problems(sc, key))
    for i, s in enumerate(sc.stragglers):
        if s.rank >= sc.workers:
            add(f"stragglers[{i}].rank", f"must be < workers ({sc.workers}), got {s.rank}")
    if sc.convergence.enabled:
        from gradwire.convergence import TASKS

        if sc.convergence.task not in TASKS:
            add("convergence.task", f"unknown task {sc.convergence.task!r}; valid: {', '.join(TASKS.names())}")
        if sc.convergence.model not in MODELS:
            add("convergence.model", f"unknown model {sc.convergence.model!r}")
    problems.extend(Problem(prefix + p.path, p.message) for p in _cluster_problems(sc, TOPOLOGIES))
    from gradwire.breakeven import config_problems

    problems.extend(Problem(prefix + p.path, p.message) for p in config_problems(sc.breakeven))
    if sc.codec.costs is not None:
        problems.extend(Problem(prefix + p.path, p.message) for p in _calibration_problems(sc))
    rng = sc.verdict.network_efficiency
    if sc.verdict.enabled and rng is not None and not rng[0] <= sc.network.efficiency <= rng[1]:
        add("verdict.network_efficiency", f"{rng} must contain network.efficiency ({sc.network.efficiency}), "
            "the value the nominal prediction uses; widen the range or change network.efficiency")
    return problems


def _published_problems(sc: Scenario) -> list[Problem]:
    """A published figure must name a codec that runs and select points that exist."""
    problems: list[Problem] = []
    axes = {path: list(values) for path, values in sc.sweep.items()}
    case_keys: dict[str, list[Any]] = {}
    for case in sc.cases:
        for k, v in case.items():
            case_keys.setdefault(k, []).append(v)
    for i, fig in enumerate(sc.published):
        where = f"published[{i}]"
        if fig.codec not in sc.codecs and fig.quantity != "comm_fraction_fp32":
            problems.append(Problem(f"{where}.codec", f"{fig.codec!r} is not one of the scenario's codecs "
                                                      f"({', '.join(sc.codecs)}); a figure needs its codec run"))
        if "fp32" not in sc.codecs:
            problems.append(Problem(f"{where}.quantity", f"{fig.quantity} is measured against fp32: add 'fp32' "
                                                         "to codecs"))
        for key, value in fig.point.items():
            choices = axes.get(key, case_keys.get(key))
            if choices is None:
                valid = ", ".join([*axes, *case_keys]) or "none (the scenario has one point)"
                problems.append(Problem(f"{where}.point.{key}", f"not a sweep axis or case key; valid: {valid}"))
            elif value not in choices:
                problems.append(Problem(f"{where}.point.{key}", f"{value!r} matches no point; the values "
                                                                f"are {choices}"))
    return problems


def _calibration_problems(sc: Scenario) -> list[Problem]:
    """A codec calibration file must be readable, current, and from the scenario's device."""
    from gradwire.codecs.calibrate import check_device, load_calibration

    try:
        cal = load_calibration(str(sc.codec.costs))
        host = sc.model.device
        if host == "auto":
            import torch

            host = "cuda" if torch.cuda.is_available() else "cpu"
        check_device(cal, target_device=sc.model.target_device, host_device=host)
    except GradWireError as exc:
        return [Problem("codec.costs", str(exc))]
    return []


def _exchange_problems(sc: Scenario, key: str) -> list[str]:
    """The options of ``exchange.<key>`` against the collective's parameters, and whether it
    can carry the codecs that would use it (``"path: message"`` strings), as a run checks."""
    from gradwire.codecs import make_codec
    from gradwire.iteration import ExchangeChoice

    summable = key == "summable"
    users = []
    for spec in sc.codecs:
        try:
            ex = make_codec(spec).exchange
        except GradWireError:
            continue  # reported with the codec
        if ex.summable == summable:
            users.append(spec)
    return ExchangeChoice.of(sc).problems(summable, users)


def _cluster_problems(sc: Scenario, topologies: Any) -> list[Problem]:
    c = sc.cluster
    problems: list[Problem] = []
    if c.topology == "links":
        if not c.links:
            problems.append(Problem("cluster.links", "topology 'links' needs a non-empty list of links"))
        if not c.gpus:
            problems.append(Problem("cluster.gpus", "topology 'links' needs the list of GPU nodes"))
        return problems
    if c.topology not in topologies:
        valid = ", ".join([*topologies.names(), "links"])
        return [Problem("cluster.topology", f"unknown topology {c.topology!r}; valid: {valid}")]
    sig = inspect.signature(topologies.get(c.topology))
    accepted = set(sig.parameters)
    params = cluster_params(c)
    given = dict(c.model_extra or {})
    if c.graph_file is not None:
        given["graph_file"] = c.graph_file
    for key in given:
        si = "path" if key == "graph_file" else si_key(key)
        if si not in accepted:
            allowed = ", ".join(sorted(user_key(p) for p in accepted if p != "num_gpus" and p != "path"))
            problems.append(
                Problem(f"cluster.{key}", f"not a parameter of topology {c.topology!r}; allowed: {allowed}")
            )
    derived = {"num_gpus", "num_servers", "k", "rows", "cols"}  # make_topology fills these from workers
    for name, p in sig.parameters.items():
        if p.default is inspect.Parameter.empty and name not in params and name not in derived:
            problems.append(Problem(f"cluster.{user_key(name)}", f"is required by topology {c.topology!r}"))
    return problems


def _unit_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Values of the cluster's unit-suffixed keys (builder parameters the schema cannot type)."""
    cluster = data.get("cluster")
    problems: list[Problem] = []
    if not isinstance(cluster, Mapping):
        return problems
    for key, value in cluster.items():
        key = str(key)
        positive = key.endswith(("_Gbps", "_Mbps"))
        if not (positive or key.endswith(("_us", "_ms", "_MB"))):
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        op, bad = (">", not number or value <= 0) if positive else (">=", not number or value < 0)
        if bad:
            problems.append(Problem(f"cluster.{key}", f"must be {op} 0{_unit_of(key)} (got {value!r})"))
    return problems


@functools.lru_cache(maxsize=256)
def _codec_list_problems(codecs: tuple[str, ...]) -> tuple[Problem, ...]:
    return tuple(_codec_problems({"codecs": list(codecs)}))


def _codec_problems(data: Mapping[str, Any]) -> list[Problem]:
    from gradwire.codecs import make_codec

    codecs = data.get("codecs")
    problems: list[Problem] = []
    if isinstance(codecs, list):
        for i, spec in enumerate(codecs):
            if isinstance(spec, str):
                try:
                    make_codec(spec)
                except GradWireError as exc:
                    problems.append(Problem(f"codecs[{i}]", str(exc)))
        seen: set[str] = set()
        for i, spec in enumerate(codecs):
            if isinstance(spec, str) and spec in seen:
                problems.append(Problem(f"codecs[{i}]", f"{spec!r} is listed twice"))
            if isinstance(spec, str):
                seen.add(spec)
    return problems


def validate(data: Mapping[str, Any], source: str = "", *, semantic: bool = True) -> Scenario:
    """Validate a scenario dict; raise one ScenarioError listing every problem."""
    if not isinstance(data, Mapping):
        raise ScenarioError([Problem(limits.FILE, "a scenario must be a mapping of keys to values")], source)
    bounded = limits.value_problems(data)
    if bounded:  # nothing past this point is asked to read an unbounded value
        raise ScenarioError(bounded, source)
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        # the structure is broken, but still say what is wrong with the parts that parse
        problems = _structure_problems(exc)
        seen = {p.path for p in problems}
        extra = _unit_problems(data) + (_codec_problems(data) if semantic else [])
        raise ScenarioError(problems + [p for p in extra if p.path not in seen], source) from None
    from gradwire.baselines import with_baselines

    sc = with_baselines(sc)  # the uncompressed baselines every point runs
    problems = _sweep_problems(sc) + _unit_problems(data) + limits.field_problems(sc)
    if semantic:
        problems += _semantic_problems(sc) + _published_problems(sc)
    if problems:
        raise ScenarioError(problems, source)
    return sc


def _sweep_problems(sc: Scenario) -> list[Problem]:
    problems = []
    fields = set(Scenario.model_fields) - {"sweep", "cases", "published", "assumptions", "name", "description",
                                           "breakeven"}
    paths = [(f"sweep.{path}", path) for path in sc.sweep]
    paths += [(f"cases[{i}].{path}", path) for i, case in enumerate(sc.cases) for path in case if path != "case"]
    for where, path in paths:
        head = path.split(".")[0]
        if head not in fields:
            problems.append(
                Problem(where, f"not a sweepable path; top-level keys: {', '.join(sorted(fields))}")
            )
    return problems


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    if parts[0] == "sweep" and len(parts) > 2:
        # a sweep axis is itself a dotted path: sweep.cluster.nic_bandwidth_Gbps
        sweep = data.setdefault("sweep", {})
        if not isinstance(sweep, dict):
            raise ScenarioError([Problem("sweep", f"is not a section; cannot set {path}")])
        sweep[".".join(parts[1:])] = value
        return
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ScenarioError([Problem(path, f"{part!r} is not a section; cannot set {path}")])
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """``path=value`` strings; the value is read as YAML (``10``, ``[1, 2]``, ``true``)."""
    out = []
    problems = []
    for text in overrides:
        if "=" not in text:
            problems.append(Problem("--set", f"{text!r}: expected path=value, e.g. workers=16"))
            continue
        path, raw = text.split("=", 1)
        path = path.strip()
        limits.check_set_value(path, raw)
        try:
            value = limits.safe_load(raw, where=f"--set {path}")
        except ScenarioError as exc:
            if "not valid YAML" not in str(exc):
                raise
            value = raw
        out.append((path, value))
    if problems:
        raise ScenarioError(problems)
    return out


def read_yaml(source: str | Path) -> tuple[dict[str, Any], str]:
    """The raw dict of a scenario file or built-in name, and a label for messages."""
    text = str(source)
    if "\x00" in text or len(text) > 4096:
        raise ScenarioError([Problem(limits.FILE, f"{text[:60]!r} is not a usable file name")])
    path = Path(source)
    try:
        exists = path.exists()
    except OSError as exc:
        raise ScenarioError([Problem(limits.FILE, f"{text[:60]!r}: {exc.strerror}")]) from None
    if not exists and text in list_builtin():
        path = BUILTIN_DIR / f"{source}.yaml"
    elif not exists:
        raise ScenarioError(
            [Problem(limits.FILE, f"no scenario file {str(source)!r} and no built-in scenario of that name; "
                         f"built-in: {', '.join(list_builtin())}")]
        )
    try:
        if not path.is_file():  # a folder, a FIFO or a device such as /dev/zero: never read
            raise ScenarioError([Problem(limits.FILE, "is not a regular file")], str(path))
        if path.stat().st_size > limits.MAX_FILE_BYTES:
            raise ScenarioError([Problem(limits.FILE, f"is {path.stat().st_size:,} bytes; a scenario file may "
                                                      f"have at most {limits.MAX_FILE_BYTES:,}")], str(path))
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError([Problem(limits.FILE, f"cannot be read ({exc.strerror})")], str(path)) from None
    data = limits.safe_load(limits.decode_text(raw, str(path)), source=str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError([Problem(limits.FILE, "a scenario must be a mapping of keys to values")], str(path))
    # a file's name becomes the scenario's (and its results folder's) unless it names itself
    data.setdefault("name", re.sub(r"[^A-Za-z0-9._-]", "_", path.stem).lstrip(".-_")[: limits.MAX_NAME] or "scenario")
    return data, str(path)


def load_scenario(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> Scenario:
    """Load and validate a scenario from a path, a built-in name, or a dict."""
    if isinstance(source, Mapping):
        bounded = limits.value_problems(source)  # before deepcopy recurses into it
        if bounded:
            raise ScenarioError(bounded, "<dict>")
        data, label = copy.deepcopy(dict(source)), "<dict>"
    else:
        data, label = read_yaml(source)
    for path, value in parse_overrides(overrides):
        _set_path(data, path, value)
    return validate(data, label)


@dataclass(frozen=True)
class Point:
    """One resolved scenario point of a sweep."""

    index: int
    point_id: str
    values: dict[str, Any]  # swept path -> value at this point
    scenario: Scenario


def point_id(sc: Scenario) -> str:
    """A stable hash of everything that changes the numbers of a point."""
    data = sc.model_dump(mode="json", exclude=set(_NOT_IN_ID))
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


MAX_REPORTED = 50  # problems listed from a sweep's points (the rest are counted)


class _PointChecks:
    """The checks a run makes of each point, made at expansion (``--check``) and cached:
    structure, names and parameters, value ranges, unit values, the topology actually built
    (so a ``sweep:`` or ``cases:`` value a builder refuses fails here, not mid-run)."""

    def __init__(self) -> None:
        self._topologies: dict[str, str | None] = {}
        self._semantic: dict[str, list[Problem]] = {}

    def problems(self, resolved: Scenario, data: Mapping[str, Any]) -> list[Problem]:
        key = json.dumps(resolved.model_dump(mode="json", exclude={"name", "description", "seed"}),
                         sort_keys=True, default=str)
        if key not in self._semantic:
            found = _unit_problems(data) + _semantic_problems(resolved)
            if not found:
                found = self._topology(resolved)
            self._semantic[key] = found
        return limits.field_problems(resolved) + self._semantic[key]

    def _topology(self, sc: Scenario) -> list[Problem]:
        from gradwire.pipeline import build_topology

        # A builder that sizes itself from the workers (star, ring, a fat-tree without k, ...)
        # accepts any worker count within the limits once its parameters are valid: one build
        # per cluster. Explicit sizes (k, rows, num_servers, a graph) are checked per count.
        extra = set(sc.cluster.model_extra or {})
        sized = bool(extra & {"num_gpus", "k", "rows", "cols", "num_servers"}) or sc.cluster.topology in (
            "links", "graph_file") or sc.cluster.graph_file is not None
        key = sc.cluster.model_dump_json() + (f"|{sc.workers}" if sized else "")
        if key not in self._topologies:
            try:
                build_topology(sc)
                self._topologies[key] = None
            except GradWireError as exc:
                self._topologies[key] = str(exc)
            except (TypeError, ValueError, ArithmeticError) as exc:
                # a parameter of a kind the builder did not expect (a list for a count)
                self._topologies[key] = f"a parameter has the wrong kind or value ({type(exc).__name__}: {exc})"
        err = self._topologies[key]
        return [] if err is None else [Problem("cluster", f"the topology cannot be built: {err}")]


def expand(sc: Scenario, *, max_points: int = limits.DEFAULT_MAX_POINTS) -> list[Point]:
    """The cartesian product of the sweep axes, each point validated; all problems at once.

    Refuses (before building any point) a sweep of more than ``max_points`` points.
    """
    from gradwire.baselines import with_baselines

    limits.check_sweep_size(sc, max_points)
    base = sc.model_dump(mode="python", exclude={"sweep", "cases"})
    axes = list(sc.sweep.items())
    cases: list[dict[str, Any]] = list(sc.cases) or [{}]
    points: list[Point] = []
    problems: list[Problem] = []
    failed = 0
    checks = _PointChecks()
    grid = itertools.product(cases, itertools.product(*[vals for _, vals in axes]) if axes else [()])
    for i, (case, combo) in enumerate(grid):
        data = copy.deepcopy(base)
        values = dict(case)
        values.update({path: v for (path, _), v in zip(axes, combo, strict=True)})
        label = ", ".join(f"{k}={v}" for k, v in values.items())
        prefix = f"sweep point {i} ({label[:200]}): " if values else ""
        found: list[Problem] = []
        try:
            for path, v in values.items():
                if path != "case":  # a case's name: kept in the point's values, not a setting
                    _set_path(data, path, v)
            resolved = Scenario.model_validate(data)
        except ScenarioError as exc:
            found = exc.problems
        except ValidationError as exc:
            found = _structure_problems(exc)
        else:
            found = checks.problems(resolved, data)
        if found:
            failed += 1
            problems += [Problem(prefix + p.path, p.message) for p in found][: max(0, MAX_REPORTED - len(problems))]
            continue
        resolved = with_baselines(resolved)
        points.append(Point(i, point_id(resolved), values, resolved))
    if problems:
        if failed > 1 and len(problems) >= MAX_REPORTED:
            problems.append(Problem("sweep", f"{failed:,} points in all have problems; the first are listed"))
        raise ScenarioError(problems, sc.name)
    return points
