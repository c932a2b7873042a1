"""What a scenario may ask for: bounds on the text, the YAML, every value and the sweep.

A scenario file comes from a user, and ``--set`` values from a command line, so nothing in
them is trusted before it is measured: the file must be UTF-8 and at most
:data:`MAX_FILE_BYTES`; the YAML may nest at most :data:`MAX_DEPTH` levels and expand (its
aliases followed) to at most :data:`MAX_NODES` values, which is checked on the composed
node graph before any Python object is built, so an alias bomb costs nothing; every
string is at most :data:`MAX_STRING` characters without control characters, every
number finite and every integer within :data:`MAX_INT`; the scenario's name is a plain
folder name (it names ``results/<name>``); seeds, batch sizes, step counts and topology
sizes have ranges a run can honour; a sweep expands to at most ``max_points`` points
(:data:`DEFAULT_MAX_POINTS` unless raised with ``--max-points``), counted before any point
is built. Each refusal is a :class:`~gradwire.errors.Problem` naming the field and the limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from gradwire.errors import Problem, ScenarioError

MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 32  # nested mappings and lists
MAX_NODES = 100_000  # values in the document once aliases are followed
MAX_STRING = 10_000  # characters in one string (a description, an assumption)
MAX_NAME = 100  # characters in a scenario name
MAX_SET_VALUE = 10_000  # characters of one --set value
MAX_INT = 2**53  # integers beyond this are not exact in the float64 columns of the results
MAX_SEED = 2**32 - 1
MAX_BATCH = 2**20  # per worker
MAX_CONVERGENCE_BATCH = 65_536  # per virtual worker, trained for real on this machine
MAX_CONVERGENCE_STEPS = 100_000
MAX_TOPOLOGY_GPUS = 65_536  # the most workers a scenario may have
MAX_FAT_TREE_K = 64  # k^3/4 = 65,536 host ports
MAX_GPUS_PER_SERVER = 1_024
MAX_SWITCH_PARAM = 65_536  # servers, spines, NICs per server: any count in a cluster section
DEFAULT_MAX_POINTS = 10_000
FILE = "file"  # the path of problems about the whole file

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _fail(path: str, message: str, source: str = "") -> ScenarioError:
    return ScenarioError([Problem(path, message)], source)


def decode_text(raw: bytes, source: str) -> str:
    """The file's text: at most :data:`MAX_FILE_BYTES` of UTF-8."""
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(FILE, f"is {len(raw):,} bytes; a scenario file may have at most {MAX_FILE_BYTES:,}", source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(FILE, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          "save it as UTF-8", source) from None


def _scan_events(text: str, where: str, source: str) -> None:
    """Nesting depth from the parser's events (the parser is iterative: no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _fail(where, f"nests deeper than {MAX_DEPTH} levels of mappings and lists", source)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
        elif isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_STRING:
            raise _fail(where, f"holds a value of {len(event.value):,} characters; at most {MAX_STRING:,}",
                        source)


def _expanded_size(node: yaml.Node, where: str, source: str) -> int:
    """Values in the document with every alias followed (memoized: an alias is one node)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _fail(where, "an alias refers to the mapping or list that contains it (a cycle)", source)
        active.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(c) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        active.discard(key)
        sizes[key] = total
        return total

    return size(node)


def safe_load(text: str, where: str = FILE, source: str = "") -> Any:
    """YAML text -> Python values, within the depth, size and alias-expansion limits."""
    try:
        _scan_events(text, where, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _fail(where, f"not valid YAML: {exc}", source) from None
    if node is None:
        return None
    total = _expanded_size(node, where, source)
    if total > MAX_NODES:
        raise _fail(where, f"expands to {total:,} values once its aliases are followed; at most "
                           f"{MAX_NODES:,} (an alias bomb?)", source)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise _fail(where, f"a value cannot be read: {str(exc).splitlines()[0]}", source) from None
    finally:
        loader.dispose()


def _key_path(prefix: str, key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def value_problems(data: Any, prefix: str = "") -> list[Problem]:
    """Every string, number and key of a scenario's raw values, with its path."""
    problems: list[Problem] = []
    active: set[int] = set()
    count = 0

    def walk(v: Any, path: str, depth: int) -> None:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            return
        if depth > MAX_DEPTH:
            problems.append(Problem(path, f"nests deeper than {MAX_DEPTH} levels of mappings and lists"))
            return
        if isinstance(v, Mapping | list | tuple):
            if id(v) in active:
                problems.append(Problem(path or FILE, "refers to itself (a cycle)"))
                return
            active.add(id(v))
            if isinstance(v, Mapping):
                for k, child in v.items():
                    if not isinstance(k, str):
                        problems.append(Problem(_key_path(path, k), f"keys must be text, got {k!r:.40}"))
                        continue
                    if len(k) > 200 or _CONTROL.search(k):
                        problems.append(Problem(f"{path}.{k[:40]!r}" if path else repr(k[:40]),
                                                "a key must be at most 200 characters without control characters"))
                        continue
                    walk(child, _key_path(path, k), depth + 1)
            else:
                for i, child in enumerate(v):
                    walk(child, f"{path}[{i}]", depth + 1)
            active.discard(id(v))
        elif isinstance(v, str):
            if len(v) > MAX_STRING:
                problems.append(Problem(path, f"is {len(v):,} characters long; at most {MAX_STRING:,}"))
            elif _CONTROL.search(v):
                problems.append(Problem(path, "holds a control character (NUL, escape, ...); remove it"))
        elif isinstance(v, bool) or v is None:
            pass
        elif isinstance(v, int):
            if abs(v) > MAX_INT:
                problems.append(Problem(path, f"{v:.3g} is beyond the largest integer a scenario may hold (2^53)"))
        elif isinstance(v, float):
            if not math.isfinite(v):
                problems.append(Problem(path, f"must be a finite number (got {v})"))
            elif abs(v) > MAX_INT:
                problems.append(Problem(path, f"{v:.3g} is beyond the largest number a scenario may hold (2^53)"))
        else:
            problems.append(Problem(path, f"a {type(v).__name__} is not a scenario value"))

    walk(data, prefix, 0)
    if count > MAX_NODES:
        problems.append(Problem(prefix or FILE, f"holds more than {MAX_NODES:,} values"))
    return problems


def _bounded_int(problems: list[Problem], path: str, value: Any, low: int, high: int, why: str) -> None:
    if isinstance(value, bool):
        problems.append(Problem(path, f"must be an integer, got {value!r}"))
    elif isinstance(value, int) and not low <= value <= high:
        problems.append(Problem(path, f"must be in {low}..{high:,} ({why}); got {value:,}"))


def _cluster_size_problems(cluster: Any, problems: list[Problem]) -> None:
    extra = dict(getattr(cluster, "model_extra", None) or {})
    topology = getattr(cluster, "topology", "")
    for key, value in extra.items():
        if isinstance(value, bool):
            if key not in ("fabric", "intra"):
                problems.append(Problem(f"cluster.{key}", f"must be a number or a name, got {value!r}"))
            continue
        if isinstance(value, int) and not key.endswith(("_Gbps", "_Mbps", "_us", "_ms", "_MB")):
            high = MAX_FAT_TREE_K if key == "k" else (
                MAX_GPUS_PER_SERVER if key == "gpus_per_server" else MAX_SWITCH_PARAM)
            _bounded_int(problems, f"cluster.{key}", value, 0, high, "the largest cluster GradWire simulates")
    if topology == "torus2d":
        rows, cols = extra.get("rows"), extra.get("cols")
        if isinstance(rows, int) and isinstance(cols, int) and rows * cols > MAX_TOPOLOGY_GPUS:
            problems.append(Problem("cluster.rows", f"rows x cols = {rows * cols:,} GPUs; at most {MAX_TOPOLOGY_GPUS:,}"))
    if topology == "servers":
        n, g = extra.get("num_servers"), extra.get("gpus_per_server")
        if isinstance(n, int) and isinstance(g, int) and n * g > MAX_TOPOLOGY_GPUS:
            problems.append(Problem("cluster.num_servers",
                                    f"num_servers x gpus_per_server = {n * g:,} GPUs; at most {MAX_TOPOLOGY_GPUS:,}"))
        if extra.get("intra") == "mesh" and isinstance(g, int) and g > 64:
            problems.append(Problem("cluster.gpus_per_server",
                                    f"intra: mesh links every pair of a server's GPUs; at most 64 GPUs per server, got {g}"))


def field_problems(sc: Any) -> list[Problem]:
    """Ranges of the validated scenario's fields that a run can honour."""
    problems: list[Problem] = []
    name = sc.name
    if len(name) > MAX_NAME or not _NAME.fullmatch(name) or name in (".", ".."):
        problems.append(Problem("name", f"{name[:60]!r} cannot name the results folder results/<name>: use 1.."
                                        f"{MAX_NAME} letters, digits, '.', '_' or '-', starting with a letter "
                                        "or digit"))
    _bounded_int(problems, "seed", sc.seed, 0, MAX_SEED, "a 32-bit seed")
    _bounded_int(problems, "model.batch_size", sc.model.batch_size, 1, MAX_BATCH, "per worker")
    conv = sc.convergence
    _bounded_int(problems, "convergence.batch_per_worker", conv.batch_per_worker, 1, MAX_CONVERGENCE_BATCH,
                 "trained for real on this machine")
    _bounded_int(problems, "convergence.steps", conv.steps, 1, MAX_CONVERGENCE_STEPS, "trained for real")
    _bounded_int(problems, "convergence.eval_every", conv.eval_every, 1, MAX_CONVERGENCE_STEPS, "steps")
    _cluster_size_problems(sc.cluster, problems)
    return problems


def sweep_size(sc: Any) -> int:
    """Points the sweep expands to (axes crossed, times the cases), without building any."""
    n = max(1, len(sc.cases))
    for values in sc.sweep.values():
        n *= len(values)
    return n


def check_sweep_size(sc: Any, max_points: int) -> None:
    n = sweep_size(sc)
    if n > max_points:
        axes = " x ".join(f"{k} ({len(v)})" for k, v in sc.sweep.items()) or "none"
        cases = f" x {len(sc.cases)} cases" if sc.cases else ""
        raise ScenarioError([Problem("sweep", f"expands to {n:,} points ({axes}{cases}); the limit is "
                                              f"{max_points:,}: pass --max-points {n} to run it anyway")],
                            sc.name)


def check_set_value(path: str, raw: str) -> None:
    if len(raw) > MAX_SET_VALUE:
        raise _fail("--set", f"{path}: the value is {len(raw):,} characters; at most {MAX_SET_VALUE:,} "
                             "(put large values in the scenario file)")
    if len(path) > 200 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", path):
        raise _fail("--set", f"{path[:60]!r} is not a dotted path of keys (e.g. cluster.bandwidth_Gbps)")
