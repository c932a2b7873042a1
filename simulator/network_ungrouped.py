"""The flow engine without flow classes: one row per flow in flight.

This is the engine :class:`gradwire.simulator.network.Network` replaced: every flow of a
batch keeps its own row (bytes left, rate) and its own record, so each event costs
O(flows in flight) and memory grows with the transfers simulated. It stays as the
reference that the grouped engine must equal exactly (tests/test_network_grouped.py) and
as the baseline of benchmarks/scale.py; the API is the same.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import simpy

from gradwire.errors import ConfigError, TopologyError
from gradwire.simulator.network import (
    _CACHED_GROUPS,
    _SAME_TIME_RTOL,
    LinkReports,
    TransferDone,
    TransferRecords,
    _RateEntry,
    max_min_rates,
)
from gradwire.simulator.topology import Topology


class _Pattern:
    """Routes of one (sources, destinations) pattern as a flow x link incidence list.

    ``sent`` accumulates the bytes per flow of every uniform batch issued on this pattern,
    so per-link byte totals are one multiply at the end instead of one per batch.
    """

    __slots__ = ("counts", "dst", "flow_of", "latency_s", "link_of", "n", "pid", "sent",
                 "src", "ulinks")

    def __init__(self, pid: int, topo: Topology, src: np.ndarray, dst: np.ndarray) -> None:
        self.pid = pid
        self.n = len(src)
        self.src = src
        self.dst = dst
        routes = [topo.route(a, b) for a, b in zip(src.tolist(), dst.tolist(), strict=True)]
        lens = np.fromiter((len(r) for r in routes), dtype=np.int64, count=self.n)
        self.flow_of = np.repeat(np.arange(self.n, dtype=np.int64), lens)
        self.link_of = np.fromiter(
            (link for r in routes for link in r), dtype=np.int64, count=int(lens.sum())
        )
        self.latency_s = np.bincount(
            self.flow_of, weights=topo.latency_s[self.link_of], minlength=self.n
        )
        self.ulinks, self.counts = np.unique(self.link_of, return_counts=True)
        self.sent = 0.0


class _Group:
    """Flows issued by one call; their in-flight state lives in the network's flow table."""

    __slots__ = ("active", "done", "end_s", "gid", "max_end", "n_active", "nbytes", "pattern",
                 "start_s", "tag")

    def __init__(self, gid: int, pattern: _Pattern, nbytes: np.ndarray, start_s: float,
                 tag: str, done: TransferDone) -> None:
        self.gid = gid
        self.pattern = pattern
        self.nbytes = nbytes
        self.active = np.ones(pattern.n, dtype=bool)
        self.n_active = pattern.n
        self.start_s = start_s
        self.end_s = np.full(pattern.n, math.nan)
        self.max_end = start_s
        self.tag = tag
        self.done = done


class UngroupedNetwork(LinkReports):
    """The flow engine one flow per row (the reference the grouped :class:`Network` equals).

    ``per_message_overhead_s`` is added to every transfer (the software part of alpha);
    ``efficiency`` in (0, 1] is payload bytes per wire byte (e.g. 1448/1538 for TCP over
    Ethernet). ``record=False`` keeps no per-transfer records (link totals are still kept).
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
        self._rate_cache: dict[tuple[Any, ...], _RateEntry] = {}
        self._active: dict[int, _Group] = {}
        # The flow table: one row per draining flow, in group order then flow order.
        self._rem = np.zeros(0)  # bytes left
        self._rate = np.zeros(0)  # bytes/s
        self._row_group = np.zeros(0, dtype=np.int64)  # gid of each row
        self._row_flow = np.zeros(0, dtype=np.int64)  # flow index within its group
        self._inc_row = np.zeros(0, dtype=np.int64)  # incidence (row, link), sorted by row
        self._inc_link = np.zeros(0, dtype=np.int64)
        # finished rows stay (rem inf, rate 0) until most rows are finished: compaction is lazy
        self._alive = np.zeros(0, dtype=bool)
        self._n_alive = 0
        self._groups: list[_Group] = []
        self._n_groups = 0
        self.n_transfers = 0
        self._bytes_sent = 0.0
        self._t_last = 0.0
        self._gen = 0
        self._dirty = False
        self._cur: _RateEntry | None = None
        self._uncached: list[_RateEntry] = []
        self._held: dict[int, _RateEntry] = {}  # none here: every rate set is cached or uncached
        self._busy_s = np.zeros(topology.num_links)
        self._bytes = np.zeros(topology.num_links)
        self._records_cache: TransferRecords | None = None

    # ------------------------------------------------------------------ issuing
    def cut_pattern(self, srcs: np.ndarray, dsts: np.ndarray, idx: np.ndarray) -> None:
        """Nothing to do: the reference engine looks every pattern's routes up itself."""

    def transfer(self, src: int, dst: int, nbytes: float, tag: str = "") -> simpy.Event:
        """Send ``nbytes`` from rank ``src`` to rank ``dst``; the event fires on completion."""
        return self.transfers([src], [dst], nbytes, tag)

    def transfers(self, srcs: Sequence[int] | np.ndarray, dsts: Sequence[int] | np.ndarray,
                  nbytes: float | Sequence[float] | np.ndarray, tag: str = "", *,
                  repeat: int = 1, gap_s: float = 0.0) -> simpy.Event:
        """Start a batch of transfers now (``nbytes`` a scalar or one per transfer); the
        event fires when all are complete, with the last completion time as its value.
        ``repeat``/``gap_s``: that many lock-step repetitions (tags ``tag`` + index),
        ``gap_s`` apart, simulated one by one."""
        if repeat == 1 and gap_s == 0:
            return self._transfers(srcs, dsts, nbytes, tag)
        first = self._transfers(srcs, dsts, nbytes, f"{tag}0")
        return self.env.process(self._repeat(first, srcs, dsts, nbytes, tag, repeat, gap_s))

    def _repeat(self, first: simpy.Event, srcs: Any, dsts: Any, nbytes: Any, tag: str,
                repeat: int, gap_s: float) -> Any:
        t = yield first
        for i in range(1, repeat):
            if gap_s > 0:
                yield self.env.timeout(gap_s)
            t = yield self._transfers(srcs, dsts, nbytes, f"{tag}{i}")
        return t

    def _transfers(self, srcs: Sequence[int] | np.ndarray, dsts: Sequence[int] | np.ndarray,
                   nbytes: float | Sequence[float] | np.ndarray, tag: str = "") -> simpy.Event:
        src = np.ascontiguousarray(srcs, dtype=np.int64)
        dst = np.ascontiguousarray(dsts, dtype=np.int64)
        if src.ndim != 1 or src.shape != dst.shape:
            raise ConfigError(
                f"transfers: srcs and dsts must be 1-D and of equal length, got {src.shape} and {dst.shape}"
            )
        n = len(src)
        done = TransferDone(self.env)
        now = float(self.env.now)
        if n == 0:
            done._fire(0.0, now)
            return done
        if np.ndim(nbytes) == 0:
            b = float(nbytes)  # type: ignore[arg-type]
            if not (math.isfinite(b) and b >= 0):
                raise ConfigError(f"transfers: nbytes must be finite and >= 0, got {b!r} (tag {tag!r})")
            size = np.full(n, b)
            uniform = True
        else:
            size = np.array(nbytes, dtype=float)
            if size.shape != (n,):
                raise ConfigError(f"transfers: nbytes must be a scalar or have {n} entries (tag {tag!r})")
            lo, hi = float(size.min()), float(size.max())
            if not (math.isfinite(hi) and lo >= 0):
                raise ConfigError(f"transfers: nbytes must be finite and >= 0 (tag {tag!r})")
            uniform = lo == hi
        key = (src.tobytes(), dst.tobytes())
        pat = self._patterns.get(key)
        if pat is None:
            p = self.topology.num_ranks
            if src.min() < 0 or dst.min() < 0 or src.max() >= p or dst.max() >= p:
                raise TopologyError(
                    f"transfers: ranks must be in 0..{p - 1} on topology {self.topology.name!r} (tag {tag!r})"
                )
            pat = _Pattern(len(self._patterns), self.topology, src.copy(), dst.copy())
            self._patterns[key] = pat
        grp = _Group(self._n_groups, pat, size, now, tag, done)
        self._n_groups += 1
        self.n_transfers += n
        self._bytes_sent += float(size.sum())
        if self.record:
            self._groups.append(grp)
            self._records_cache = None
        if uniform:
            pat.sent += size[0]
        else:
            self._bytes += np.bincount(pat.link_of, weights=size[pat.flow_of],
                                       minlength=self.topology.num_links)
        self._active[grp.gid] = grp
        base = len(self._rem)
        self._rem = np.concatenate((self._rem, size))
        self._rate = np.concatenate((self._rate, np.zeros(n)))
        self._row_group = np.concatenate((self._row_group, np.full(n, grp.gid, dtype=np.int64)))
        self._row_flow = np.concatenate((self._row_flow, np.arange(n, dtype=np.int64)))
        self._inc_row = np.concatenate((self._inc_row, pat.flow_of + base))
        self._inc_link = np.concatenate((self._inc_link, pat.link_of))
        self._alive = np.concatenate((self._alive, np.ones(n, dtype=bool)))
        self._n_alive += n
        if not self._dirty:
            # Coalesce every flow started at this instant into one rate computation.
            self._dirty = True
            ev = self.env.timeout(0)
            ev.callbacks.append(self._on_dirty)
        return done

    # ------------------------------------------------------------------ engine
    def _advance(self, now: float) -> None:
        dt = now - self._t_last
        if dt > 0 and len(self._rem):
            self._rem -= self._rate * dt
            if self._cur is not None:
                self._cur.busy_s += dt
        self._t_last = now

    def _on_dirty(self, _ev: simpy.Event) -> None:
        self._dirty = False
        self._advance(float(self.env.now))
        self._reschedule()

    def _on_wake(self, gen: int, rows: np.ndarray) -> None:
        if gen != self._gen:
            return
        now = float(self.env.now)
        self._advance(now)
        tail = self.per_message_overhead_s
        gids = self._row_group[rows]
        flows = self._row_flow[rows]
        # rows are in group order, so each group's finished flows are one contiguous run
        bounds = [0, *(np.flatnonzero(gids[1:] != gids[:-1]) + 1).tolist(), len(rows)]
        for lo, hi in itertools.pairwise(bounds):
            g = self._active[int(gids[lo])]
            part = flows[lo:hi]
            ends = now + g.pattern.latency_s[part] + tail
            g.end_s[part] = ends
            g.active[part] = False
            g.n_active -= hi - lo
            g.max_end = max(g.max_end, float(ends.max()))
            if g.n_active == 0:
                del self._active[g.gid]
                g.done._fire(g.max_end - now, g.max_end)
        self._n_alive -= len(rows)
        if self._n_alive == 0:
            self._clear_table()
        else:
            self._alive[rows] = False
            self._rem[rows] = math.inf
            self._rate[rows] = 0.0
            if self._n_alive * 2 < len(self._alive):
                self._compact()
        self._reschedule()

    def _clear_table(self) -> None:
        self._rem = np.zeros(0)
        self._rate = np.zeros(0)
        self._row_group = np.zeros(0, dtype=np.int64)
        self._row_flow = np.zeros(0, dtype=np.int64)
        self._inc_row = np.zeros(0, dtype=np.int64)
        self._inc_link = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)

    def _live_incidence(self) -> tuple[np.ndarray, np.ndarray]:
        """(row among live rows, link) pairs of the live flows."""
        if self._n_alive == len(self._alive):
            return self._inc_row, self._inc_link
        keep = self._alive[self._inc_row]
        new_row = np.cumsum(self._alive) - 1
        return new_row[self._inc_row[keep]], self._inc_link[keep]

    def _compact(self) -> None:
        keep = self._alive
        self._inc_row, self._inc_link = self._live_incidence()
        self._rem = self._rem[keep]
        self._rate = self._rate[keep]
        self._row_group = self._row_group[keep]
        self._row_flow = self._row_flow[keep]
        self._alive = np.ones(self._n_alive, dtype=bool)

    def _rates(self) -> _RateEntry:
        key: tuple[Any, ...] | None = None
        if len(self._active) <= _CACHED_GROUPS:
            # few batches in flight (lock-step collectives): their rates repeat step after step
            key = tuple(
                (g.pattern.pid, None if g.n_active == g.pattern.n else g.active.tobytes())
                for g in self._active.values()
            )
            entry = self._rate_cache.get(key)
            if entry is not None:
                return entry
        inc_row, inc_link = self._live_incidence()
        rates = max_min_rates(inc_row, inc_link, self._n_alive, self._capacity)
        entry = _RateEntry(rates, np.unique(inc_link))
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
        for e in [*self._rate_cache.values(), *self._uncached]:
            if e.busy_s:
                self._busy_s[e.ulinks] += e.busy_s
                e.busy_s = 0.0
        self._uncached = []

    def _reschedule(self) -> None:
        self._gen += 1
        if self._n_alive == 0:
            self._cur = None
            return
        entry = self._rates()
        self._cur = entry
        if self._n_alive == len(self._alive):
            self._rate = entry.rates.copy()
        else:
            self._rate[self._alive] = entry.rates
        # finished rows: inf / 0 = inf; flows on no link have rate inf and drain at once
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self._rem / self._rate
        # bytes left a float hair below zero (the clock's rounding) drain now
        t_min = max(float(t.min()), 0.0)
        rows = np.flatnonzero(t <= t_min * (1 + _SAME_TIME_RTOL))
        ev = self.env.timeout(t_min)
        gen = self._gen
        ev.callbacks.append(lambda _e: self._on_wake(gen, rows))

    # ------------------------------------------------------------------ results
    @property
    def bytes_sent(self) -> float:
        """Payload bytes of every transfer issued so far (all ranks together)."""
        return self._bytes_sent

    @property
    def records(self) -> TransferRecords:
        """All recorded transfers so far (flows still in flight have ``end_s`` NaN)."""
        if self._records_cache is not None and not self._active:
            return self._records_cache
        gs = self._groups
        if not gs:
            z = np.zeros(0)
            zi = np.zeros(0, dtype=np.int32)
            return TransferRecords(zi, zi, z, z, z, zi, np.zeros(0, dtype=object))
        lens = np.array([g.pattern.n for g in gs])
        rec = TransferRecords(
            src=np.concatenate([g.pattern.src for g in gs]).astype(np.int32),
            dst=np.concatenate([g.pattern.dst for g in gs]).astype(np.int32),
            nbytes=np.concatenate([g.nbytes for g in gs]),
            start_s=np.repeat(np.array([g.start_s for g in gs]), lens),
            end_s=np.concatenate([g.end_s for g in gs]),
            batch=np.repeat(np.arange(len(gs), dtype=np.int32), lens),
            batch_tags=np.array([g.tag for g in gs], dtype=object),
        )
        self._records_cache = rec
        return rec
