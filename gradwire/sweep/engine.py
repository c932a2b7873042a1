"""Running sweep points in parallel on Dask, writing each finished point to the store at once.

:func:`run_sweep` takes the points of a sweep, a function evaluating one point given the
inputs every point shares (profiled workloads, measured codec costs), and a
:class:`~gradwire.sweep.store.ResultStore`. Points already in the store are skipped. The
shared inputs travel once to each worker (``client.scatter(..., broadcast=True)``) rather
than with every task. The driver collects results with ``as_completed`` and commits each
point the moment it arrives, so a sweep stopped at any moment (Ctrl-C, a killed worker or
driver) keeps every point it finished. A point that raises is recorded with its error and
the sweep goes on; a worker that dies is replaced by Dask and its task retried, and a task
that keeps killing workers is recorded as failed. The ``serial`` engine runs the same loop
in-process (the reference the parallel run must agree with); ``dask`` starts a
``LocalCluster`` with one single-threaded worker process per available core, or connects to
a running scheduler given by ``scheduler=`` or ``DASK_SCHEDULER_ADDRESS``.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gradwire.errors import ConfigError
from gradwire.results import Row, Trace
from gradwire.sweep.store import ResultStore

__all__ = ["ENGINES", "FailedPoint", "SweepReport", "available_cores", "run_sweep"]

P = TypeVar("P")
S = TypeVar("S")

ENGINES = ("serial", "dask")
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False,
                       "distributed.admin.system-monitor.gil.enabled": False}
CONNECT_TIMEOUT_S = 20.0  # how long to wait for a running scheduler before giving up


@dataclass(frozen=True)
class FailedPoint:
    point_id: str
    error: str  # "ExceptionType: message"
    traceback: str = ""


@dataclass
class SweepReport(Generic[P]):
    """What one call of :func:`run_sweep` did.

    ``done`` points were evaluated and stored by this call, ``skipped`` were already in the
    store (or repeated in the list), ``failed`` raised. ``points_per_s`` is the throughput
    of this call: evaluated points (done + failed) per second of wall time, including the
    engine's start-up.
    """

    total: int
    done: int
    skipped: int
    failed: list[FailedPoint] = field(default_factory=list)
    elapsed_s: float = 0.0
    engine: str = "serial"
    workers: int = 1

    @property
    def evaluated(self) -> int:
        return self.done + len(self.failed)

    @property
    def points_per_s(self) -> float:
        return self.evaluated / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"{self.total} points: {self.done} done, {self.skipped} skipped (already stored), "
            f"{len(self.failed)} failed; {self.elapsed_s:.1f} s on {self.engine} "
            f"({self.workers} worker{'s' if self.workers != 1 else ''}), {self.points_per_s:.2f} points/s"
        ]
        for f in self.failed:
            lines.append(f"  failed {f.point_id}: {f.error}")
        return "\n".join(lines)


def available_cores() -> int:
    """Cores this process may run on (affinity-aware, unlike ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _evaluate_captured(evaluate: Callable[[Any, Any], tuple[Sequence[Row], Sequence[Trace]]],
                       point: Any, shared: Any) -> tuple[str, Any, str]:
    """Run one point, turning an exception into data so the sweep goes on.

    Runs on a worker; returns ``("ok", (rows, traces), "")`` or ``("error", one-line
    message, traceback)``. Catching here (not letting Dask see the exception) keeps
    user errors from being retried and arbitrary exception types from needing pickling.
    """
    try:
        rows, traces = evaluate(point, shared)
        return "ok", (list(rows), list(traces)), ""
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}", traceback.format_exc()


def _default_point_id(point: Any) -> str:
    return str(point.point_id)


def _meta(point: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for attr in ("index", "values"):
        if hasattr(point, attr):
            meta[attr] = getattr(point, attr)
    return meta


_ACTIVE: list[_Progress] = []  # the bar of a sweep running in this process (for sub-tasks)


@contextmanager
def subtask(label: str, total: int) -> Iterator[Callable[[], None]]:
    """A line of its own under the bar of the sweep running in this process (a point's
    inner work, such as the verdict's draws), removed when done; a no-op ticker when no
    bar is showing (progress off, or a Dask worker process)."""
    bar = _ACTIVE[-1]._bar if _ACTIVE else None
    if bar is None:
        yield lambda: None
        return
    task = bar.add_task(label, total=total, failed=0)
    try:
        yield lambda: bar.update(task, advance=1)
    finally:
        bar.remove_task(task)


class _Progress:
    """A rich progress bar (done / total, failed count, elapsed, ETA), or nothing."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self._bar: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"), TextColumn("elapsed"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(label, total=total, failed=0)
        _ACTIVE.append(self)

    def advance(self, failed: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, failed=failed)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            if self in _ACTIVE:
                _ACTIVE.remove(self)


def run_sweep(
    points: Sequence[P],
    evaluate: Callable[[P, S], tuple[Sequence[Row], Sequence[Trace]]],
    shared: S,
    store: ResultStore,
    *,
    engine: str = "serial",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    point_id: Callable[[P], str] = _default_point_id,
    cost: Callable[[P], float] | None = None,
    label: str = "sweep",
    provenance: Callable[[P], dict[str, Any]] | None = None,
) -> SweepReport[P]:
    """Evaluate every point not yet in ``store`` and store each one as it finishes.

    ``evaluate(point, shared)`` returns the point's rows and traces; on the ``dask`` engine
    it and the points must be picklable (module-level functions, dataclasses). ``workers``
    is the number of local worker processes (default: the available cores; ignored with a
    ``scheduler`` address). ``cost`` estimates a point's relative cost (e.g. its number
    of simulated ranks): the most expensive points then start first, so that a long point
    does not run alone at the end while the other workers idle (longest-processing-time
    first). ``KeyboardInterrupt`` stops the sweep after closing the engine; everything
    stored so far stays. ``provenance(point)`` says what produces the point now (see
    :mod:`gradwire.sweep.provenance`): it is stored with the point, and a stored point is
    skipped only when its stored provenance is equal (without it, any stored point is).
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1; got {workers}")
    t0 = time.perf_counter()
    done_before = store.done_ids()
    stored = store.provenance() if provenance is not None else {}
    pending: list[tuple[str, P]] = []
    seen: set[str] = set()
    for p in points:
        pid = point_id(p)
        reusable = pid in done_before and (provenance is None or stored.get(pid) == provenance(p))
        if reusable or pid in seen:
            continue
        seen.add(pid)
        pending.append((pid, p))
    if cost is not None:
        pending.sort(key=lambda item: -cost(item[1]))  # stable: equal costs keep their order
    report: SweepReport[P] = SweepReport(total=len(points), done=0, skipped=len(points) - len(pending),
                                         engine=engine)
    bar = _Progress(progress and bool(pending), len(pending),
                    f"{label} ({report.skipped} already stored)" if report.skipped else label)

    def meta(point: P) -> dict[str, Any]:
        out = _meta(point)
        if provenance is not None:
            out["provenance"] = provenance(point)
        return out

    def record(pid: str, point: P, outcome: tuple[str, Any, str]) -> None:
        status, payload, tb = outcome
        if status == "ok":
            rows, traces = payload
            store.put(pid, rows, traces, meta=meta(point))
            report.done += 1
        else:
            store.put_error(pid, str(payload), traceback=tb, meta=meta(point))
            report.failed.append(FailedPoint(pid, str(payload), tb))
        bar.advance(len(report.failed))

    try:
        if not pending:
            pass
        elif engine == "serial":
            for pid, p in pending:
                record(pid, p, _evaluate_captured(evaluate, p, shared))
        else:
            with _dask_client(scheduler, workers) as client:
                report.workers = max(1, sum(client.nthreads().values()))
                _run_dask(client, pending, evaluate, shared, record, report.workers)
        if engine == "serial":
            report.workers = 1
    finally:
        bar.stop()
        report.elapsed_s = time.perf_counter() - t0
    return report


@contextmanager
def _dask_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    import dask
    from dask.distributed import Client, LocalCluster

    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address:
        try:
            client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
        except OSError as exc:
            raise ConfigError(
                f"scheduler {address!r}: cannot connect ({exc}); check the address "
                f"(tcp://host:8786) or leave --scheduler and {SCHEDULER_ENV} unset for a local cluster"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or available_cores()
    # One single-threaded process per core: simulation is pure Python/NumPy and holds the GIL.
    # The worker's statistical profiler samples the running stack every 10 ms; on deep SimPy
    # generator stacks that doubled the wall time of a point, so local workers run without it.
    with dask.config.set(LOCAL_WORKER_CONFIG):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _run_dask(client: Any, pending: list[tuple[str, Any]], evaluate: Callable[..., Any], shared: Any,
              record: Callable[[str, Any, tuple[str, Any, str]], None], nthreads: int) -> None:
    from dask.distributed import as_completed

    shared_future = client.scatter(shared, broadcast=True)
    # A bounded window of tasks in flight keeps the scheduler's and the driver's memory flat
    # for sweeps of tens of thousands of points, while every worker always has queued work.
    window = max(4 * nthreads, 16)
    queue = iter(pending)
    owner: dict[Any, tuple[str, Any]] = {}
    inflight: dict[Any, Any] = {}

    def submit_next() -> Any:
        item = next(queue, None)
        if item is None:
            return None
        fut = client.submit(_evaluate_captured, evaluate, item[1], shared_future, pure=False)
        owner[fut.key] = item
        inflight[fut.key] = fut
        return fut

    first = [f for f in (submit_next() for _ in range(window)) if f is not None]
    ac = as_completed(first)
    try:
        for fut in ac:
            pid, point = owner.pop(fut.key)
            inflight.pop(fut.key, None)
            try:
                outcome = fut.result()
            except Exception as exc:  # KilledWorker, a lost connection: the task itself failed
                outcome = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            fut.release()
            record(pid, point, outcome)
            nxt = submit_next()
            if nxt is not None:
                ac.add(nxt)
    except BaseException:
        # Ctrl-C or a store error: stop the remaining tasks before the cluster closes.
        client.cancel(list(inflight.values()))
        raise
