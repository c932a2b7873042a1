"""The flow-level network engine: transfers as flows sharing links max-min fairly on SimPy.

A transfer of ``nbytes`` from rank a to rank b is a flow along ``Topology.route(a, b)``.
All flows in flight share every link max-min fairly (progressive filling, Bertsekas and
Gallager, *Data Networks*, sec. 6.5.2); rates are recomputed whenever a flow starts or
ends. A transfer completes ``drain + route latency + per_message_overhead_s`` after it is
issued, where drain is the time its bytes take at the rates it is given; with one flow
per link this is the alpha-beta cost ``alpha + n/B``. ``efficiency`` is payload bytes per
wire byte (protocol framing), so a flow's payload drains at ``efficiency`` times the link
rate.

Speed comes from batches, classes and repetition. :meth:`Network.transfers` starts many
flows with one event and fires one event when all are done; the routes of a (sources,
destinations) pattern are looked up once. A batch in flight is kept as classes of flows
that drain alike (same bytes left, same max-min rate), so an event costs O(classes), not
O(flows); the max-min rates of a set of in-flight (partition, alive classes) are solved
once over every flow and reused. A batch repeated lock-step (``repeat``) that ran alone is
not simulated again while the network stays quiet. Every transfer can be listed
(:attr:`Network.records`, rebuilt from the classes on demand) and per-link busy time and
bytes are kept for :meth:`Network.link_usage`. The engine equals the one-row-per-flow
:class:`~gradwire.simulator.network_ungrouped.UngroupedNetwork` (tests/test_network_grouped.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy
from simpy.events import NORMAL

from gradwire.errors import ConfigError, TopologyError
from gradwire.results import LinkUse
from gradwire.simulator.maxmin import max_min_rates
from gradwire.simulator.topology import Topology

# Flows whose predicted drain ends agree to this relative tolerance finish in one event:
# identical flows then complete together instead of a float hair apart.
_SAME_TIME_RTOL = 1e-10
# Rates are memoised by the set of in-flight batches while at most this many are in flight.
_CACHED_GROUPS = 8


class TransferDone(simpy.Event):
    """The event of a transfer (or batch); its value is the completion time in seconds."""

    def _fire(self, delay: float, value: float) -> None:
        # Event.succeed() can only fire "now"; a completion is known a latency ahead.
        self._ok = True
        self._value = value
        self.env.schedule(self, NORMAL, delay)


@dataclass(frozen=True)
class TransferRecords:
    """Every transfer of a run, one entry per flow (numpy arrays of equal length).

    ``start_s`` is when it was issued, ``end_s`` when it completed (bytes drained plus
    route latency plus per-message overhead); ``batch`` numbers the call that issued it and
    ``batch_tags[batch]`` is that call's tag (:attr:`tag` expands it per flow).
    """

    src: np.ndarray
    dst: np.ndarray
    nbytes: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    batch: np.ndarray
    batch_tags: np.ndarray

    def __len__(self) -> int:
        return len(self.src)

    @property
    def tag(self) -> np.ndarray:
        """The tag of every flow (an object array of str)."""
        return self.batch_tags[self.batch]


# The (flow, link) incidence of a (sources, destinations) pattern depends on the topology's
# routes only, so every network on one topology (each iteration a verdict draw or a
# break-even step simulates) shares it; held per topology, at most this many pairs each.
_INCIDENCE_PAIRS = 1 << 25


def _incidence(topo: Topology, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(flow_of, link_of)``: flow f crosses link ``link_of[i]`` where ``flow_of[i] == f``,
    in flow order and route order (read-only arrays, cached per topology)."""
    cache = topo.incidence_cache
    key = (src.tobytes(), dst.tobytes())
    hit = cache.get(key)
    if hit is not None:
        return hit
    routes = [topo.route(a, b) for a, b in zip(src.tolist(), dst.tolist(), strict=True)]
    lens = np.fromiter((len(r) for r in routes), dtype=np.int64, count=len(routes))
    flow_of = np.repeat(np.arange(len(routes), dtype=np.int64), lens)
    link_of = np.fromiter((link for r in routes for link in r), dtype=np.int64, count=int(lens.sum()))
    flow_of.setflags(write=False)
    link_of.setflags(write=False)
    held = sum(len(f) for f, _ in cache.values())
    if held + len(flow_of) <= _INCIDENCE_PAIRS:
        cache[key] = (flow_of, link_of)
    return flow_of, link_of


class _Pattern:
    """Routes of one (sources, destinations) pattern as a flow x link incidence list.

    ``sent`` accumulates the bytes per flow of every uniform batch issued on this pattern,
    so per-link byte totals are one multiply at the end instead of one per batch;
    ``whole`` is the partition of its flows into one class.
    """

    __slots__ = ("counts", "dst", "flow_of", "latency_s", "link_of", "n", "pid", "sent",
                 "src", "ulinks", "whole")

    def __init__(self, pid: int, topo: Topology, src: np.ndarray, dst: np.ndarray,
                 cut: tuple[_Pattern, np.ndarray] | None = None) -> None:
        self.pid = pid
        self.n = len(src)
        self.src = src
        self.dst = dst
        if cut is None:
            self.flow_of, self.link_of = _incidence(topo, src, dst)
        else:
            # flows idx of a known pattern: its (flow, link) pairs, renumbered, in flow order
            base, idx = cut
            new = np.full(base.n, -1, dtype=np.int64)
            new[idx] = np.arange(self.n, dtype=np.int64)
            nf = new[base.flow_of]
            keep = np.flatnonzero(nf >= 0)
            # increasing idx (a step's flows in schedule order) keeps the pairs in flow order
            order = keep if (np.diff(idx) > 0).all() else keep[np.argsort(nf[keep], kind="stable")]
            self.flow_of = nf[order]
            self.link_of = base.link_of[order]
        self.latency_s = np.bincount(
            self.flow_of, weights=topo.latency_s[self.link_of], minlength=self.n
        )
        counts = np.bincount(self.link_of, minlength=topo.num_links)
        self.ulinks = np.flatnonzero(counts)
        self.counts = counts[self.ulinks]
        self.sent = 0.0
        self.whole: _Partition | None = None


class _Partition:
    """A partition of one pattern's flows into classes: ``cls[f]`` is flow f's class.

    Flows of one class of a batch have the same bytes left and the same max-min rate, so
    they drain as one; the engine keeps one row per class. ``count`` flows per class,
    ``lat_max`` the largest route latency in each class (when the batch is done).
    """

    __slots__ = ("cls", "count", "lat_max", "n_cls", "pattern", "pid")

    def __init__(self, pid: int, pattern: _Pattern, cls: np.ndarray, n_cls: int) -> None:
        self.pid = pid
        self.pattern = pattern
        self.cls = cls
        self.n_cls = n_cls
        self.count = np.bincount(cls, minlength=n_cls)
        self.lat_max = np.full(n_cls, -math.inf)
        np.maximum.at(self.lat_max, cls, pattern.latency_s)


class _Group:
    """Flows issued by one call, as classes of the partition ``part``: bytes left,
    rate and aliveness per class; ``ends`` lists ``(partition, classes, drain end)`` of
    the classes that finished (per-flow records are rebuilt from it on demand)."""

    __slots__ = ("alive", "done", "ends", "gid", "max_end", "n_alive", "nbytes", "part",
                 "pattern", "rate", "rem", "rep", "start_s", "tag")

    def __init__(self, gid: int, pattern: _Pattern, part: _Partition, nbytes: float | np.ndarray,
                 rem: np.ndarray, start_s: float, tag: str, done: TransferDone) -> None:
        self.gid = gid
        self.pattern = pattern
        self.part = part
        self.nbytes = nbytes
        self.rem = rem
        self.rate = np.zeros(part.n_cls)
        self.alive = np.ones(part.n_cls, dtype=bool)
        self.n_alive = part.n_cls
        self.start_s = start_s
        self.ends: list[tuple[_Partition, np.ndarray, float]] = []
        self.max_end = start_s
        self.tag = tag
        self.done = done
        self.rep: _Repeat | None = None


@dataclass
class _Phase:
    """One stretch of a step that ran alone: from ``offset_s`` after the step's start, the
    group's classes (``part``) had ``rem`` bytes left and drained at ``rate`` (entry
    ``entry`` held the links busy)."""

    offset_s: float
    part: _Partition
    rem: np.ndarray
    rate: np.ndarray
    alive: np.ndarray
    entry: _ClassEntry


class _Repeat:
    """``steps`` lock-step repetitions of one uniform batch, ``gap_s`` apart (a step starts
    ``gap_s`` after the previous one completed); ``done`` fires after the last.

    ``phases`` logs the current step while it runs alone on the network (None once
    anything else is in flight), so that the next steps, alone too, need not be simulated.
    """

    __slots__ = ("done", "gap_s", "issued", "pattern", "phases", "single", "size", "start_s", "steps",
                 "tag")

    def __init__(self, pattern: _Pattern, size: float, tag: str, steps: int, gap_s: float,
                 done: TransferDone, single: bool = False) -> None:
        self.pattern = pattern
        self.size = size
        self.tag = tag
        self.steps = steps
        self.gap_s = gap_s
        self.done = done
        self.issued = 0
        self.start_s = 0.0
        self.phases: list[_Phase] | None = None
        self.single = single  # one plain batch (its tag as given), replayed from a memo

    def step_tag(self, i: int) -> str:
        return self.tag if self.single else f"{self.tag}{i}"


@dataclass
class _Memo:
    """How a uniform batch ran alone on a quiet network: its phases, when it drained and
    when its last transfer completed (seconds after its start), its classes' drain ends."""

    phases: list[_Phase]
    drain_s: float
    span_s: float
    ends: list[tuple[_Partition, np.ndarray, float]]
    spans: list[tuple[_ClassEntry, float]] | None = None


@dataclass(slots=True)
class _Coast:
    """Steps ``first .. first+count-1`` of a repeat, not simulated: step i starts at
    ``t0_s + (i - first)·step_s`` and drains like the logged reference step (its classes
    finished at the offsets in ``ends``: (partition, classes, seconds after the start))."""

    rep: _Repeat
    first: int
    count: int
    t0_s: float
    step_s: float
    drain_s: float
    phases: list[_Phase]
    ends: list[tuple[_Partition, np.ndarray, float]]
    token: int = 0
    # (rate set, seconds it is busy per step) of every phase; see _spans
    spans: list[tuple[_ClassEntry, float]] | None = None


@dataclass
class _ClassEntry:
    """Max-min solution of one set of in-flight (partition, alive classes): per group in
    flight, the refined partition (``parent[new class]`` = old class, None if unchanged)
    and the rate of every class."""

    slots: list[tuple[_Partition, np.ndarray | None, np.ndarray]]
    ulinks: np.ndarray
    busy_s: float = 0.0


@dataclass
class _RateEntry:
    rates: np.ndarray  # per active flow, in group order
    ulinks: np.ndarray  # links carrying at least one active flow
    busy_s: float = 0.0  # seconds this set of flows has been draining (summed at the end)


def _spans(phases: list[_Phase], drain_s: float) -> list[tuple[_ClassEntry, float]]:
    """Each phase's rate set and how long it lasts in a step (to the next phase, the
    last one to the drain)."""
    edges = [ph.offset_s for ph in phases] + [drain_s]
    return [(ph.entry, b - a) for ph, a, b in zip(phases, edges[:-1], edges[1:], strict=True)]


class LinkReports:
    """What both flow engines report from their state: the transfer trace and per-link
    busy time, bytes and utilization (one implementation, so the reference engine and
    the grouped one are compared on their numbers, not on two copies of the reporting)."""

    topology: Topology
    env: simpy.Environment
    _t_last: float
    _busy_s: np.ndarray
    _bytes: np.ndarray
    _rate_cache: dict[Any, Any]
    _uncached: list[Any]
    _held: dict[int, Any]
    _patterns: dict[Any, Any]

    @property
    def records(self) -> TransferRecords:
        raise NotImplementedError

    def _advance(self, now: float) -> None:
        raise NotImplementedError

    def trace(self) -> list[tuple[int, int, float, float, float, str]]:
        """The event trace as plain tuples ``(src, dst, nbytes, start_s, end_s, tag)``."""
        r = self.records
        return list(zip(r.src.tolist(), r.dst.tolist(), r.nbytes.tolist(),
                        r.start_s.tolist(), r.end_s.tolist(), r.tag.tolist(), strict=True))

    @property
    def link_busy_s(self) -> np.ndarray:
        """Seconds each link (by id) carried at least one draining flow, up to the last event."""
        busy = self._busy_s.copy()
        for e in self._busy_entries():
            if e.busy_s:
                busy[e.ulinks] += e.busy_s
        return busy

    def _busy_entries(self) -> list[Any]:
        """Every rate set that may hold busy time not yet in ``_busy_s``, each once."""
        seen = {id(e): e for e in [*self._rate_cache.values(), *self._uncached, *self._held.values()]}
        return list(seen.values())

    @property
    def link_bytes(self) -> np.ndarray:
        """Payload bytes routed over each link (by id), counted when a transfer is issued."""
        out = self._bytes.copy()
        for pat in self._patterns.values():
            if pat.sent:
                out[pat.ulinks] += pat.counts * pat.sent
        return out

    def link_usage(self, horizon_s: float, *, only_used: bool = True) -> list[LinkUse]:
        """Per directed link: busy seconds, bytes, and utilization = busy_s / horizon_s."""
        if not (horizon_s > 0 and math.isfinite(horizon_s)):
            raise ConfigError(f"link_usage horizon_s must be a finite time > 0, got {horizon_s!r}")
        self._advance(max(self._t_last, float(self.env.now)))
        topo = self.topology
        busy_s = self.link_busy_s
        nbytes = self.link_bytes
        out = []
        for lid in range(topo.num_links):
            if only_used and nbytes[lid] == 0:
                continue
            u, v = topo.link_endpoints(lid)
            busy = float(busy_s[lid])
            out.append(LinkUse(str(u), str(v), float(topo.bandwidth_Bps[lid]), busy,
                               float(nbytes[lid]), busy / horizon_s))
        return out


class Network(LinkReports):
    """Flow-level network on a SimPy environment over a :class:`Topology`.

    ``per_message_overhead_s`` is added to every transfer (the software part of alpha);
    ``efficiency`` in (0, 1] is payload bytes per wire byte (e.g. 1448/1538 for TCP over
    Ethernet). ``record=False`` keeps no per-transfer records (link totals are still kept).

    Flows in flight are kept as *classes*: the flows of one batch that have the same bytes
    left and the same max-min rate drain alike, so each class is one row. A batch starts
    as one class (one per distinct size); whenever rates are recomputed, a class whose
    flows get different rates is split by rate (never merged). On symmetric steps -- a
    ring step on servers of equal GPUs, a tree level -- a batch of p flows has a handful
    of classes, so an event costs O(classes), not O(p). The rates themselves are the
    max-min solution over every flow (:func:`max_min_rates`), computed once per distinct
    set of in-flight (partition, alive classes) and reused, with the class split it
    implies; the result equals the one-row-per-flow engine
    (:class:`~gradwire.simulator.network_ungrouped.UngroupedNetwork`).
    """

    def __init__(self, env: simpy.Environment, topology: Topology, *,
                 per_message_overhead_s: float = 0.0, efficiency: float = 1.0,
                 record: bool = True) -> None:
        if not (isinstance(per_message_overhead_s, (int, float)) and math.isfinite(per_message_overhead_s)
                and per_message_overhead_s >= 0):
            raise ConfigError(
                f"per_message_overhead_s must be a finite number of seconds >= 0, got {per_message_overhead_s!r}"
            )
        if not (isinstance(efficiency, (int, float)) and 0 < efficiency <= 1):
            raise ConfigError(
                f"efficiency (payload bytes per wire byte) must be in (0, 1], got {efficiency!r}"
            )
        self.env = env
        self.topology = topology
        self.per_message_overhead_s = float(per_message_overhead_s)
        self.efficiency = float(efficiency)
        self.record = record
        self._capacity = topology.bandwidth_Bps * self.efficiency
        self._patterns: dict[tuple[bytes, bytes], _Pattern] = {}
        # read-only index arrays seen before, by identity: (srcs, dsts, pattern)
        self._by_id: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, _Pattern]] = {}
        self._n_parts = 0
        self._rate_cache: dict[tuple[Any, ...], _ClassEntry] = {}
        self._active: dict[int, _Group] = {}
        self._groups: list[_Group | _Coast] = []
        self._n_groups = 0
        self.n_transfers = 0
        self._bytes_total = 0.0
        self._t_last = 0.0
        self._gen = 0
        self._dirty = False
        self._cur: _ClassEntry | None = None
        self._uncached: list[_ClassEntry] = []
        self._busy_s = np.zeros(topology.num_links)
        self._bytes = np.zeros(topology.num_links)
        self._records_cache: TransferRecords | None = None
        self._coast: _Coast | None = None
        self._n_coasts = 0
        self._split_parts: dict[tuple[int, bytes], _Partition] = {}
        self._memos: dict[tuple[int, float], _Memo] = {}
        self._held: dict[int, _ClassEntry] = {}
        self._cur_gids: frozenset[int] = frozenset()  # the groups ``_cur`` was solved for
        self.n_solves = 0  # max-min problems solved (the rest came from the cache or were kept)

    def release(self) -> None:
        """Drop the engine's working state (patterns, batches, rate caches) once a run's
        results are read: SimPy's events and callbacks hold the network in reference
        cycles, which keep its arrays (flows x links at 16,384 ranks) alive until the
        cyclic collector runs, a simulation or more later. Reports (records, link usage)
        must be read before; the network takes no transfers after."""
        for pat in self._patterns.values():
            pat.whole = None  # a pattern and its one-class partition refer to each other
        for store in (self._patterns, self._by_id, self._rate_cache, self._active, self._split_parts,
                      self._memos, self._held):
            store.clear()
        self._groups.clear()
        self._uncached.clear()
        self._records_cache = None
        self._cur = None
        self._coast = None

    # ------------------------------------------------------------------ issuing
    def transfer(self, src: int, dst: int, nbytes: float, tag: str = "") -> simpy.Event:
        """Send ``nbytes`` from rank ``src`` to rank ``dst``; the event fires on completion."""
        return self.transfers([src], [dst], nbytes, tag)

    def _pattern(self, srcs: Sequence[int] | np.ndarray, dsts: Sequence[int] | np.ndarray,
                 tag: str) -> _Pattern:
        ro = (isinstance(srcs, np.ndarray) and isinstance(dsts, np.ndarray)
              and not srcs.flags.writeable and not dsts.flags.writeable)
        if ro:
            hit = self._by_id.get((id(srcs), id(dsts)))
            if hit is not None and hit[0] is srcs and hit[1] is dsts:
                return hit[2]
        src = np.ascontiguousarray(srcs, dtype=np.int64)
        dst = np.ascontiguousarray(dsts, dtype=np.int64)
        if src.ndim != 1 or src.shape != dst.shape:
            raise ConfigError(
                f"transfers: srcs and dsts must be 1-D and of equal length, got {src.shape} and {dst.shape}"
            )
        key = (src.tobytes(), dst.tobytes())
        pat = self._patterns.get(key)
        if pat is None:
            p = self.topology.num_ranks
            if len(src) and (src.min() < 0 or dst.min() < 0 or src.max() >= p or dst.max() >= p):
                raise TopologyError(
                    f"transfers: ranks must be in 0..{p - 1} on topology {self.topology.name!r} (tag {tag!r})"
                )
            pat = _Pattern(len(self._patterns), self.topology, src.copy(), dst.copy())
            self._patterns[key] = pat
        if ro:
            if len(self._by_id) > 256:
                self._by_id.clear()
            self._by_id[(id(srcs), id(dsts))] = (srcs, dsts, pat)  # type: ignore[assignment]
        return pat

    def cut_pattern(self, srcs: np.ndarray, dsts: np.ndarray, idx: np.ndarray) -> None:
        """Know the routes of the flows ``(srcs[idx], dsts[idx])`` (distinct ``idx``) from
        those of ``(srcs, dsts)`` without looking them up again: a schedule whose steps are
        subsets of one set of flows (the tree pipeline) pays its route lookups once."""
        base = self._pattern(srcs, dsts, "")
        src = base.src[idx]
        dst = base.dst[idx]
        key = (src.tobytes(), dst.tobytes())
        if key not in self._patterns:
            self._patterns[key] = _Pattern(len(self._patterns), self.topology, src, dst,
                                           cut=(base, np.asarray(idx, dtype=np.int64)))

    def _partition(self, pattern: _Pattern, cls: np.ndarray, n_cls: int) -> _Partition:
        self._n_parts += 1
        return _Partition(self._n_parts, pattern, cls, n_cls)

    def transfers(self, srcs: Sequence[int] | np.ndarray, dsts: Sequence[int] | np.ndarray,
                  nbytes: float | Sequence[float] | np.ndarray, tag: str = "", *,
                  repeat: int = 1, gap_s: float = 0.0) -> simpy.Event:
        """Start a batch of transfers now (``nbytes`` a scalar or one per transfer); the
        event fires when all are complete, with the last completion time as its value.

        ``repeat`` > 1 runs the batch that many times lock-step (tags ``tag`` + step
        index), each repetition ``gap_s`` after the previous one completed, exactly as
        that many calls in a row would; the event fires after the last. Repetitions that
        run alone on the network, after one that ran alone, are not simulated again: they
        take the same time. Index arrays passed read-only (``a.flags.writeable = False``)
        are recognised by identity on later calls."""
        pat = self._pattern(srcs, dsts, tag)
        n = pat.n
        done = TransferDone(self.env)
        now = float(self.env.now)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ConfigError(f"transfers: repeat must be an integer >= 1, got {repeat!r} (tag {tag!r})")
        if not (math.isfinite(gap_s) and gap_s >= 0):
            raise ConfigError(f"transfers: gap_s must be a finite number of seconds >= 0, got {gap_s!r}")
        if n == 0:
            done._fire(0.0, now)
            return done
        if type(nbytes) is float or np.ndim(nbytes) == 0:
            b = float(nbytes)  # type: ignore[arg-type]
            if not (math.isfinite(b) and b >= 0):
                raise ConfigError(f"transfers: nbytes must be finite and >= 0, got {b!r} (tag {tag!r})")
            size: float | np.ndarray = b
        else:
            arr = np.array(nbytes, dtype=float)
            if arr.shape != (n,):
                raise ConfigError(f"transfers: nbytes must be a scalar or have {n} entries (tag {tag!r})")
            lo, hi = float(arr.min()), float(arr.max())
            if not (math.isfinite(hi) and lo >= 0):
                raise ConfigError(f"transfers: nbytes must be finite and >= 0 (tag {tag!r})")
            size = lo if lo == hi else arr
        if repeat == 1 and gap_s == 0:
            if isinstance(size, np.ndarray):
                self._issue(pat, size, tag, done, None)
                return done
            # a uniform batch: logged when it runs alone, replayed when it comes again alone
            single = _Repeat(pat, size, tag, 1, 0.0, done, single=True)
            memo = self._memos.get((pat.pid, size))
            if memo is not None and not self._active and self._coast is None and not self._dirty:
                self._replay(single, memo)
            else:
                self._next_step(single)
            return done
        if isinstance(size, np.ndarray):
            raise ConfigError(f"transfers: a repeated batch needs one size for every transfer (tag {tag!r})")
        rep = _Repeat(pat, size, tag, repeat, float(gap_s), done)
        self._next_step(rep)
        return done

    def _next_step(self, rep: _Repeat) -> None:
        self._issue(rep.pattern, rep.size, rep.step_tag(rep.issued), TransferDone(self.env), rep)

    def _issue(self, pat: _Pattern, size: float | np.ndarray, tag: str, done: TransferDone,
               rep: _Repeat | None) -> None:
        if self._coast is not None:
            self._land()
        n = pat.n
        now = float(self.env.now)
        if not isinstance(size, np.ndarray):
            if pat.whole is None:
                pat.whole = self._partition(pat, np.zeros(n, dtype=np.int64), 1)
            part = pat.whole
            rem = np.array([size])
            pat.sent += size
            self._bytes_total += n * size
        else:
            values, cls = np.unique(size, return_inverse=True)
            cls = cls.astype(np.int64)
            # the same split recurs step after step (a ring allgather of unequal payloads):
            # one partition object per split, so the rates solved for it are reused
            pkey = (pat.pid, cls.tobytes())
            part = self._split_parts.get(pkey)  # type: ignore[assignment]
            if part is None:
                part = self._partition(pat, cls, len(values))
                if len(self._split_parts) > 4096:
                    self._split_parts.clear()
                self._split_parts[pkey] = part
            rem = values.astype(float)
            self._bytes += np.bincount(pat.link_of, weights=size[pat.flow_of],
                                       minlength=self.topology.num_links)
            self._bytes_total += float(size.sum())
        grp = _Group(self._n_groups, pat, part, size, rem, now, tag, done)
        self._n_groups += 1
        self.n_transfers += n
        if self.record:
            self._groups.append(grp)
            self._records_cache = None
        for other in self._active.values():
            if other.rep is not None:
                other.rep.phases = None
        if rep is not None:
            grp.rep = rep
            rep.issued += 1
            rep.start_s = now
            rep.phases = [] if not self._active else None
        self._active[grp.gid] = grp
        if not self._dirty:
            # Coalesce every flow started at this instant into one rate computation.
            self._dirty = True
            ev = self.env.timeout(0)
            ev.callbacks.append(self._on_dirty)

    # ------------------------------------------------------------------ repeats
    def _step_drained(self, g: _Group, now: float) -> None:
        """Step ``g`` of a repeat has drained: start the next one after the tail and gap,
        or, when this step ran alone and nothing else is in flight, coast."""
        rep = g.rep
        assert rep is not None
        if rep.issued == rep.steps:
            rep.done._fire(g.max_end - now, g.max_end)
            return
        t_next = g.max_end + rep.gap_s
        left = rep.steps - rep.issued
        if rep.phases and not self._active and self._coast is None and t_next > rep.start_s:
            step_s = t_next - rep.start_s
            ends = [(part, idx, t - rep.start_s) for part, idx, t in g.ends] if self.record else []
            coast = _Coast(rep, rep.issued, left, t_next, step_s, now - rep.start_s, rep.phases, ends)
            self._n_coasts += 1
            coast.token = self._n_coasts
            self._coast = coast
            final = t_next + left * step_s - rep.gap_s
            ev = self.env.timeout(final - now)
            tok = coast.token
            ev.callbacks.append(lambda _e: self._coast_end(tok, final))
            return
        ev = self.env.timeout(t_next - now)
        ev.callbacks.append(lambda _e: self._next_step(rep))

    def _single_drained(self, g: _Group, now: float) -> None:
        """A plain uniform batch drained: it completes as a plain batch does, and if it
        ran alone from start to end, how it ran is kept for the next one like it."""
        rep = g.rep
        assert rep is not None
        rep.done._fire(g.max_end - now, g.max_end)
        if rep.phases and rep.start_s < g.max_end and len(self._memos) < 4096:
            ends = [(part, idx, t - rep.start_s) for part, idx, t in g.ends] if self.record else []
            self._memos[(rep.pattern.pid, rep.size)] = _Memo(rep.phases, now - rep.start_s,
                                                             g.max_end - rep.start_s, ends)

    def _replay(self, rep: _Repeat, memo: _Memo) -> None:
        """Issue ``rep`` (one uniform batch) on a quiet network as it ran before: it coasts
        to its known completion, or lands where something else arrives (:meth:`_land`)."""
        now = float(self.env.now)
        if memo.spans is None:
            memo.spans = _spans(memo.phases, memo.drain_s)
        coast = _Coast(rep, 0, 1, now, memo.span_s, memo.drain_s, memo.phases, memo.ends, spans=memo.spans)
        self._n_coasts += 1
        coast.token = self._n_coasts
        self._coast = coast
        final = now + memo.span_s
        ev = self.env.timeout(memo.span_s)
        tok = coast.token
        ev.callbacks.append(lambda _e: self._coast_end(tok, final))

    def _coasted(self, c: _Coast, count: int, partial_s: float) -> None:
        """Account ``count`` whole coasted steps and ``partial_s`` of the next one."""
        rep = c.rep
        n = rep.pattern.n
        self.n_transfers += n * count
        rep.pattern.sent += rep.size * count
        self._bytes_total += n * rep.size * count
        rep.issued += count
        if c.spans is None:
            c.spans = _spans(c.phases, c.drain_s)
        held = self._held
        # kept on the rate set (O(1)), not spread over its links (O(links)) every step
        if partial_s == 0.0:
            # phases start at offsets >= 0, so no part of the next step is busy yet
            for entry, span in c.spans:
                entry.busy_s += count * span + 0.0
                held[id(entry)] = entry
        else:
            edges = [ph.offset_s for ph in c.phases] + [c.drain_s]
            for (entry, span), a, b in zip(c.spans, edges[:-1], edges[1:], strict=True):
                entry.busy_s += count * span + max(0.0, min(partial_s, b) - a)
                held[id(entry)] = entry
        if count and self.record:
            # a coast accounted whole is its own record
            self._groups.append(c if count == c.count else
                                _Coast(rep, c.first, count, c.t0_s, c.step_s, c.drain_s, c.phases, c.ends,
                                       spans=c.spans))
            self._records_cache = None

    def _hold_busy(self, entry: _ClassEntry, seconds: float) -> None:
        """Count ``seconds`` of busy time on the links of ``entry``; the entry is held
        until the next flush even if the rate cache has dropped it."""
        entry.busy_s += seconds
        self._held[id(entry)] = entry

    def _coast_end(self, token: int, final: float) -> None:
        c = self._coast
        if c is None or c.token != token:
            return
        self._coast = None
        self._coasted(c, c.count, 0.0)
        c.rep.done._fire(0.0, final)

    def _land(self) -> None:
        """Something new arrives while a repeat coasts: rebuild the coasting step's state
        at this instant from its reference log and simulate from here."""
        c = self._coast
        assert c is not None
        self._coast = None
        now = float(self.env.now)
        rep = c.rep
        if now < c.t0_s:
            # still in the gap before the first coasted step
            ev = self.env.timeout(c.t0_s - now)
            ev.callbacks.append(lambda _e: self._next_step(rep))
            return
        k = min(int((now - c.t0_s) // c.step_s), c.count - 1)
        start = c.t0_s + k * c.step_s
        phi = now - start
        self._coasted(c, k, 0.0)
        if phi >= c.drain_s:
            # the current step has drained: it ends (or the next starts) on schedule
            self._coasted(_Coast(rep, c.first + k, 1, start, c.step_s, c.drain_s, c.phases, c.ends,
                                 spans=c.spans), 1, 0.0)
            if rep.issued == rep.steps:
                rep.done._fire(start + c.step_s - rep.gap_s - now, start + c.step_s - rep.gap_s)
            else:
                ev = self.env.timeout(start + c.step_s - now)
                ev.callbacks.append(lambda _e: self._next_step(rep))
            return
        ph = max((p for p in c.phases if p.offset_s <= phi), key=lambda p: p.offset_s)
        edges = [p.offset_s for p in c.phases] + [c.drain_s]
        for p_, a, b in zip(c.phases, edges[:-1], edges[1:], strict=True):
            self._hold_busy(p_.entry, max(0.0, min(phi, b) - a))
        pat = rep.pattern
        grp = _Group(self._n_groups, pat, ph.part, rep.size, ph.rem - ph.rate * (phi - ph.offset_s),
                     start, rep.step_tag(rep.issued), TransferDone(self.env))
        grp.rem[~ph.alive] = math.inf
        grp.alive = ph.alive.copy()
        grp.rate = ph.rate.copy()
        grp.n_alive = int(grp.alive.sum())
        grp.ends = [(part, idx, start + off) for part, idx, off in c.ends if off <= ph.offset_s]
        grp.max_end = max([start] + [start + off + float(part.lat_max[idx].max()) + self.per_message_overhead_s
                                     for part, idx, off in c.ends if off <= ph.offset_s])
        grp.rep = rep
        self._n_groups += 1
        self.n_transfers += pat.n
        pat.sent += rep.size
        self._bytes_total += pat.n * rep.size
        rep.issued += 1
        rep.start_s = start
        rep.phases = None
        if self.record:
            self._groups.append(grp)
            self._records_cache = None
        self._t_last = now
        self._active[grp.gid] = grp

    # ------------------------------------------------------------------ engine
    def _advance(self, now: float) -> None:
        dt = now - self._t_last
        if dt > 0 and self._active:
            for g in self._active.values():
                g.rem -= g.rate * dt
            if self._cur is not None:
                self._cur.busy_s += dt
        self._t_last = now

    def _on_dirty(self, _ev: simpy.Event) -> None:
        self._dirty = False
        self._advance(float(self.env.now))
        self._reschedule()

    def _on_wake(self, gen: int, finished: list[tuple[_Group, np.ndarray]]) -> None:
        if gen != self._gen:
            return
        now = float(self.env.now)
        self._advance(now)
        tail = self.per_message_overhead_s
        drained: list[_Group] = []
        # the slowest rate among the flows that finish now (see _keeps)
        s_fin = min(float(g.rate[idx].min()) for g, idx in finished) if finished else -math.inf
        for g, idx in finished:
            part = g.part
            g.max_end = max(g.max_end, now + float(part.lat_max[idx].max()) + tail)
            g.alive[idx] = False
            g.rem[idx] = math.inf
            g.rate[idx] = 0.0
            g.n_alive -= len(idx)
            if self.record:
                g.ends.append((part, idx, now))
            if g.n_alive == 0:
                del self._active[g.gid]
                if g.rep is None:
                    g.done._fire(g.max_end - now, g.max_end)
                elif g.rep.single:
                    self._single_drained(g, now)
                else:
                    drained.append(g)
        for g in drained:
            self._step_drained(g, now)
        self._reschedule(s_fin)

    def _solve(self, groups: list[_Group]) -> _ClassEntry:
        """Max-min rates of every alive flow of ``groups``, split into classes."""
        inc_row: list[np.ndarray] = []  # flow of each pair, numbered within its group
        inc_link: list[np.ndarray] = []
        row_off: list[int] = []  # first row of each group's flows
        n_pairs: list[int] = []
        spans: list[tuple[np.ndarray | None, int, int]] = []
        off = 0
        for g in groups:
            pat = g.pattern
            if g.n_alive == g.part.n_cls:
                inc_row.append(pat.flow_of)
                inc_link.append(pat.link_of)
                spans.append((None, off, pat.n))
                row_off.append(off)
                n_pairs.append(len(pat.link_of))
                off += pat.n
                continue
            flow_alive = g.alive[g.part.cls]
            act = np.flatnonzero(flow_alive)
            new_row = np.cumsum(flow_alive) - 1
            keep = flow_alive[pat.flow_of]
            inc_row.append(new_row[pat.flow_of[keep]])
            inc_link.append(pat.link_of[keep])
            spans.append((act, off, len(act)))
            row_off.append(off)
            n_pairs.append(len(inc_link[-1]))
            off += len(act)
        links = np.concatenate(inc_link)
        rows = np.concatenate(inc_row) + np.repeat(np.array(row_off, dtype=np.int64), n_pairs)
        rates = max_min_rates(rows, links, off, self._capacity)
        slots: list[tuple[_Partition, np.ndarray | None, np.ndarray]] = []
        for g, (acts, lo, cnt) in zip(groups, spans, strict=True):
            part = g.part
            if part.pattern.n == 1:
                # one flow (alive, since its group is in flight): its class is whole
                slots.append((part, None, rates[lo:lo + 1].copy()))
                continue
            r = rates[lo:lo + cnt]
            cls = part.cls if acts is None else part.cls[acts]
            crate = np.zeros(part.n_cls)
            crate[cls] = r  # one flow's rate per class; the class is whole if all agree
            if (r == crate[cls]).all():
                slots.append((part, None, crate))
                continue
            flow_rate = np.full(part.pattern.n, -1.0)
            if acts is None:
                flow_rate[:] = r
            else:
                flow_rate[acts] = r
            order = np.lexsort((flow_rate, part.cls))
            c_s, r_s = part.cls[order], flow_rate[order]
            head = np.ones(len(order), dtype=bool)
            head[1:] = (c_s[1:] != c_s[:-1]) | (r_s[1:] != r_s[:-1])
            new_sorted = np.cumsum(head) - 1
            new_cls = np.empty_like(new_sorted)
            new_cls[order] = new_sorted
            parent = c_s[head]
            crate = np.maximum(r_s[head], 0.0)
            slots.append((self._partition(part.pattern, new_cls, int(head.sum())), parent, crate))
        return _ClassEntry(slots, np.flatnonzero(np.bincount(links, minlength=len(self._capacity))))

    def _keeps(self, groups: list[_Group], s_fin: float) -> bool:
        """Whether the flows still in flight keep their rates now that flows of rate
        ``s_fin`` and more have finished (and nothing has started).

        Max-min fairness: a flow of rate r < s has its bottleneck on a link where no flow
        of rate s runs, and progressive filling up to level r never saturates a link of a
        flow of rate s (that flow would then freeze below s). Taking such flows away
        therefore changes neither the levels below s nor the links saturated at them, so
        every flow whose rate is below the slowest finished one keeps its rate. When all
        of them are below it, there is nothing to solve."""
        if self._dirty or self._cur is None or not self._cur_gids.issuperset(g.gid for g in groups):
            return False
        if len(groups) <= _CACHED_GROUPS:
            top = max(float(g.rate[g.alive].max()) for g in groups)
        else:
            rate = np.concatenate([g.rate for g in groups])
            top = float(rate[np.concatenate([g.alive for g in groups])].max())
        return top < s_fin

    def _kept(self, groups: list[_Group]) -> _ClassEntry:
        """The entry of ``groups`` whose alive classes keep their rates (:meth:`_keeps`)."""
        inc_link: list[np.ndarray] = []
        for g in groups:
            pat = g.pattern
            if g.n_alive == g.part.n_cls:
                inc_link.append(pat.ulinks)
            else:
                inc_link.append(pat.link_of[g.alive[g.part.cls][pat.flow_of]])
        links = np.concatenate(inc_link)
        return _ClassEntry([(g.part, None, g.rate.copy()) for g in groups],
                           np.flatnonzero(np.bincount(links, minlength=len(self._capacity))))

    def _rates(self, groups: list[_Group], s_fin: float = -math.inf) -> _ClassEntry:
        key: tuple[Any, ...] | None = None
        if len(groups) <= _CACHED_GROUPS:
            # few batches in flight (lock-step collectives): their rates repeat step after step
            key = tuple(
                (g.part.pid, None if g.n_alive == g.part.n_cls else g.alive.tobytes())
                for g in groups
            )
            entry = self._rate_cache.get(key)
            if entry is not None:
                return entry
        if self._keeps(groups, s_fin):
            entry = self._kept(groups)
        else:
            self.n_solves += 1
            entry = self._solve(groups)
        if key is not None:
            if len(self._rate_cache) > 4096:
                self._flush_busy()
                self._rate_cache.clear()
            self._rate_cache[key] = entry
        else:
            if len(self._uncached) > 256:
                self._flush_busy()
            self._uncached.append(entry)
        return entry

    def _flush_busy(self) -> None:
        """Move busy time kept per rate set into the per-link totals."""
        for e in self._busy_entries():
            if e.busy_s:
                self._busy_s[e.ulinks] += e.busy_s
                e.busy_s = 0.0
        self._uncached = []
        self._held = {}

    def _reschedule(self, s_fin: float = -math.inf) -> None:
        """Rates for the flows in flight and the next wake-up; ``s_fin``: the slowest
        rate among flows that just finished (when nothing started)."""
        self._gen += 1
        if not self._active:
            self._cur = None
            self._cur_gids = frozenset()
            return
        groups = list(self._active.values())
        entry = self._rates(groups, s_fin)
        self._cur = entry
        self._cur_gids = frozenset(g.gid for g in groups)
        now = float(self.env.now)
        t_min = math.inf
        times = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for g, (part, parent, crate) in zip(groups, entry.slots, strict=True):
                if parent is not None:
                    g.rem = g.rem[parent]
                    g.alive = g.alive[parent]
                    g.part = part
                    g.n_alive = int(g.alive.sum())
                g.rate = crate.copy()
                if g.rep is not None and g.rep.phases is not None:
                    if len(groups) == 1:
                        g.rep.phases.append(_Phase(now - g.rep.start_s, g.part, g.rem.copy(), g.rate.copy(),
                                                   g.alive.copy(), entry))
                    else:
                        g.rep.phases = None
                if len(groups) <= _CACHED_GROUPS:
                    # finished classes: inf / 0 = inf; flows on no link have rate inf and drain at once
                    t = g.rem / g.rate
                    times.append(t)
                    t_min = min(t_min, float(t.min()))
            if len(groups) > _CACHED_GROUPS:
                # many batches in flight (independent transfers): their classes in one array
                t_all = np.concatenate([g.rem for g in groups]) / np.concatenate([g.rate for g in groups])
                t_min = float(t_all.min())
        # bytes left a float hair below zero (the clock's rounding) drain now
        t_min = max(t_min, 0.0)
        cut = t_min * (1 + _SAME_TIME_RTOL)
        finished = []
        if len(groups) <= _CACHED_GROUPS:
            for g, t in zip(groups, times, strict=True):
                idx = np.flatnonzero(t <= cut)
                if len(idx):
                    finished.append((g, idx))
        else:
            hit = np.flatnonzero(t_all <= cut)
            ends = np.cumsum([len(g.rem) for g in groups])
            owner = np.searchsorted(ends, hit, side="right")
            for k in np.unique(owner).tolist():
                sel = hit[owner == k]
                finished.append((groups[k], sel - (int(ends[k - 1]) if k else 0)))
        ev = self.env.timeout(t_min)
        gen = self._gen
        ev.callbacks.append(lambda _e: self._on_wake(gen, finished))

    # ------------------------------------------------------------------ results
    @property
    def bytes_sent(self) -> float:
        """Payload bytes of every transfer issued so far (all ranks together)."""
        return self._bytes_total

    @property
    def records(self) -> TransferRecords:
        """All recorded transfers so far (flows still in flight have ``end_s`` NaN).

        Built from the classes on first access: O(transfers) time and memory, so a caller
        that needs only totals should use :attr:`n_transfers` and :attr:`bytes_sent`."""
        if self._records_cache is not None and not self._active:
            return self._records_cache
        tail = self.per_message_overhead_s
        src: list[np.ndarray] = []
        dst: list[np.ndarray] = []
        size: list[np.ndarray] = []
        start: list[np.ndarray] = []
        end: list[np.ndarray] = []
        tags: list[str] = []
        for g in self._groups:
            if isinstance(g, _Coast):
                pat = g.rep.pattern
                drain = np.full(pat.n, math.nan)
                for part, idx, off in g.ends:
                    mask = np.isin(part.cls, idx)
                    drain[mask] = off + pat.latency_s[mask] + tail
                for i in range(g.count):
                    t0 = g.t0_s + i * g.step_s
                    src.append(pat.src)
                    dst.append(pat.dst)
                    size.append(np.full(pat.n, g.rep.size))
                    start.append(np.full(pat.n, t0))
                    end.append(t0 + drain)
                    tags.append(g.rep.step_tag(g.first + i))
                continue
            pat = g.pattern
            e = np.full(pat.n, math.nan)
            for part, idx, t in g.ends:
                mask = np.isin(part.cls, idx)
                e[mask] = t + pat.latency_s[mask] + tail
            src.append(pat.src)
            dst.append(pat.dst)
            size.append(np.broadcast_to(np.asarray(g.nbytes, dtype=float), (pat.n,)))
            start.append(np.full(pat.n, g.start_s))
            end.append(e)
            tags.append(g.tag)
        if not src:
            z = np.zeros(0)
            zi = np.zeros(0, dtype=np.int32)
            return TransferRecords(zi, zi, z, z, z, zi, np.zeros(0, dtype=object))
        lens = np.array([len(x) for x in src])
        rec = TransferRecords(
            src=np.concatenate(src).astype(np.int32),
            dst=np.concatenate(dst).astype(np.int32),
            nbytes=np.concatenate(size),
            start_s=np.concatenate(start),
            end_s=np.concatenate(end),
            batch=np.repeat(np.arange(len(src), dtype=np.int32), lens),
            batch_tags=np.array(tags, dtype=object),
        )
        self._records_cache = rec
        return rec
