"""What every collective shares: the registry, the uniform signature and argument checks.

A collective is a generator function (a SimPy process body) with one signature,
``fn(net, ranks, sizes, **opts)``: ``ranks`` are the participating ranks of ``net``'s
topology in collective order, ``sizes[i]`` the bytes rank ``ranks[i]`` contributes
(allreduce: the buffer, equal on every rank; allgather: each rank's own payload, which may
differ). It yields the network's transfer events (and timeouts for local work) in order,
so the same schedule runs alone, inside a training-iteration timeline, or concurrently
with other collectives on one :class:`~gradwire.simulator.network.Network`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import simpy

from gradwire.errors import ConfigError
from gradwire.registry import Registry
from gradwire.simulator.network import Network

CollectiveProcess = Generator[simpy.Event, Any, None]
CollectiveFn = Callable[..., CollectiveProcess]

COLLECTIVES: Registry[CollectiveProcess] = Registry("collective")

Carries = Literal["sum", "payload", "any", "none"]
Delivers = Literal["reduced", "all", "chunks"]
WorkFn = Callable[[str, float], simpy.Event]
ClosedForm = Callable[..., float]
OptionCheck = Callable[[Mapping[str, Any]], list[tuple[str, str]]]
OptionDescription = Callable[[Mapping[str, Any]], str]
# keyword parameters every collective may take that are not user options
RESERVED_OPTIONS = frozenset({"tag", "work", "hop_encode_s", "hop_decode_s"})


@dataclass(frozen=True)
class CollectiveInfo:
    """What a collective declares about itself, read by the iteration builder and timeline.

    ``carries``: which payloads it can exchange -- ``"sum"`` (summable: it adds them on the
    way), ``"payload"`` (encoded payloads that must be decoded before summing), ``"any"``
    (both: it only moves bytes, e.g. an allgather), ``"none"`` (a building block, not a
    gradient exchange). ``delivers``: what a rank holds at the end -- the reduced buffer
    (``"reduced"``: one decode), every rank's whole payload (``"all"``: p decodes), or
    p-1 received compressed chunks of 1/p of the buffer (``"chunks"``). ``requantizes``:
    it decodes, sums and re-encodes a 1/p chunk at every reduce-scatter hop, asking the
    timeline for that codec work through its ``work`` callback (``hop_decode_s`` then
    ``hop_encode_s`` per hop). ``length_prefix``: payloads of per-rank lengths are gathered
    into equal slots, so the exchange first gathers every rank's length (a small message)
    and pads each payload to the longest.
    """

    name: str
    fn: CollectiveFn
    carries: Carries
    delivers: Delivers = "reduced"
    requantizes: bool = False
    length_prefix: bool = False
    # (topology, ranks, sizes, per_message_overhead_s, efficiency, options) -> seconds on a
    # contention-free network; None with the reason when there is none
    closed_form: ClosedForm | None = None
    no_closed_form_why: str = ""
    # (options) -> [(option, problem)]: checks of option values, run with the names' check
    check_values: OptionCheck | None = None
    # (options) -> what they make the collective do, in words (``run_sim.py --check``)
    describe: OptionDescription | None = None

    def options(self) -> tuple[str, ...]:
        """The keyword options a scenario may set (``exchange.*_options``)."""
        sig = inspect.signature(self.fn)
        return tuple(n for n, prm in sig.parameters.items()
                     if prm.kind is inspect.Parameter.KEYWORD_ONLY and n not in RESERVED_OPTIONS)

    def decodes(self, p: int) -> int:
        """Payloads a rank decodes after this collective, of size 1/p each for ``chunks``."""
        if self.delivers == "all":
            return p
        if self.delivers == "chunks":
            return max(0, p - 1) if p > 1 else 1
        return 1

    def can_carry(self, summable: bool) -> bool:
        if self.carries in ("any",):
            return True
        return self.carries == ("sum" if summable else "payload")


COLLECTIVE_INFO: dict[str, CollectiveInfo] = {}


def collective(name: str, *, carries: Carries, delivers: Delivers = "reduced",
               requantizes: bool = False, length_prefix: bool = False,
               closed_form: ClosedForm | None = None, no_closed_form_why: str = "",
               check_values: OptionCheck | None = None, describe: OptionDescription | None = None
               ) -> Callable[[CollectiveFn], CollectiveFn]:
    """Register a collective under ``name`` with its declaration (see :class:`CollectiveInfo`).

    A collective gives its closed form, or says why it has none."""
    if closed_form is None and not no_closed_form_why:
        raise ValueError(f"collective {name!r}: declare its closed form or why it has none")

    def deco(fn: CollectiveFn) -> CollectiveFn:
        COLLECTIVES.register(name)(fn)
        COLLECTIVE_INFO[name] = CollectiveInfo(name, fn, carries, delivers, requantizes, length_prefix,
                                               closed_form, no_closed_form_why, check_values, describe)
        return fn

    return deco


def collective_info(name: str) -> CollectiveInfo:
    """The declaration of collective ``name`` (an unknown name lists the valid ones)."""
    COLLECTIVES.get(name)  # raises UnknownNameError listing the registered names
    return COLLECTIVE_INFO[name]


def check_options(name: str, opts: Mapping[str, Any], field: str) -> list[str]:
    """Problems with user options ``opts`` for collective ``name``, each naming ``field``."""
    info = collective_info(name)
    allowed = info.options()
    bad = sorted(k for k in opts if k not in allowed)
    if not bad:
        if info.check_values is None:
            return []
        return [f"{field}.{opt}: {msg}" for opt, msg in info.check_values(opts)]
    valid = ", ".join(allowed) if allowed else "none"
    return [f"{field}: {name} takes no option {k!r} (its options: {valid})" for k in bad]


def with_settings(name: str, opts: Mapping[str, Any], field: str, settings: Mapping[str, Any],
                  gpu: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """``opts`` of collective ``name`` (set as ``<field>_options``) with the scenario-level
    settings ``settings`` (``exchange.<key>: value``; ``"auto"`` leaves the option alone)
    merged in as options of the same name, and the scenario's target ``gpu`` as option
    ``gpu`` where the collective takes one; with ``"field: message"`` problems for a
    setting the collective does not take and one that contradicts its option."""
    info = collective_info(name)
    allowed = info.options()
    out = dict(opts)
    problems = []
    for key, value in settings.items():
        if value == "auto":
            continue
        if key not in allowed:
            takers = sorted(n for n, i in COLLECTIVE_INFO.items() if key in i.options())
            problems.append(f"exchange.{key}: {value!r} is set but {field} is {name}, which takes no {key}; "
                            f"choose {' or '.join(takers) or 'another collective'} or leave it auto")
            continue
        given = out.get(key, "auto")
        if given not in ("auto", value):
            problems.append(f"exchange.{key}: {value!r} conflicts with {field}_options.{key}: {given!r}; "
                            f"set only one of them")
            continue
        out[key] = value
    if gpu is not None and "gpu" in allowed and "gpu" not in out:
        out["gpu"] = gpu
    return out, problems


def default_work(env: simpy.Environment) -> WorkFn:
    """Codec work run as plain local time (a collective simulated alone)."""
    return lambda _kind, seconds: env.timeout(seconds)


def check_args(net: Network, ranks: Sequence[int], sizes: Sequence[float] | np.ndarray,
               name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``ranks`` and ``sizes``; return them as int64 and float64 arrays."""
    r = np.asarray(ranks, dtype=np.int64).ravel()
    s = np.asarray(sizes, dtype=float).ravel()
    if len(r) == 0:
        raise ConfigError(f"{name}: ranks is empty; give at least one rank")
    if len(s) != len(r):
        raise ConfigError(f"{name}: sizes has {len(s)} entries but there are {len(r)} ranks; give one size per rank")
    if not np.isfinite(s).all() or (s < 0).any():
        raise ConfigError(f"{name}: sizes must be finite byte counts >= 0")
    p = net.topology.num_ranks
    if r.min() < 0 or r.max() >= p:
        raise ConfigError(f"{name}: ranks must be in 0..{p - 1} (topology {net.topology.name!r})")
    if len(np.unique(r)) != len(r):
        raise ConfigError(f"{name}: ranks must be distinct")
    return r, s


def check_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def ring_steps(net: Network, src: np.ndarray, dst: np.ndarray,
               chunk: Callable[[int], Any] | float | np.ndarray,
               steps: int, tag: str, hop: Sequence[tuple[str, float]] = (),
               work: WorkFn | None = None) -> CollectiveProcess:
    """``steps`` lock-step ring steps: all ``src[i] -> dst[i]`` at once, sizes ``chunk``
    (bytes per transfer, the same every step) or ``chunk(step)``; after each step every
    rank does the local codec work ``hop`` (``(kind, seconds)`` in order, e.g. decode the
    received chunk then re-encode the partial sum) through ``work``. Steps of one size
    with no codec work between them go to the network as one repeated batch."""
    run = work or default_work(net.env)
    # read-only views: the network recognises the pattern by identity after the first step
    src = src.view()
    dst = dst.view()
    src.flags.writeable = False
    dst.flags.writeable = False
    busy_hops = [(kind, seconds) for kind, seconds in hop if seconds > 0]
    if not callable(chunk):
        c = np.asarray(chunk, dtype=float)
        size: Any = float(c.flat[0]) if c.size and (c == c.flat[0]).all() else chunk
        if not busy_hops and np.ndim(size) == 0:
            if steps > 0:
                yield net.transfers(src, dst, size, tag, repeat=steps)
            return
        for step in range(steps):
            yield net.transfers(src, dst, size, f"{tag}{step}")
            for kind, seconds in busy_hops:
                yield run(kind, seconds)
        return
    last: Any = None
    for step in range(steps):
        cs = chunk(step)
        if cs is not last:
            last = cs
            # one size for every rank travels as a scalar (one flow class per route class)
            size = float(cs[0]) if isinstance(cs, np.ndarray) and cs.size and (cs == cs[0]).all() else cs
        yield net.transfers(src, dst, size, f"{tag}{step}")
        for kind, seconds in busy_hops:
            yield run(kind, seconds)
