"""The durable results store of a sweep: one SQLite file, one transaction per finished point.

A sweep can be killed at any moment (Ctrl-C, a killed worker, a killed driver), so the
driver writes each point the moment it finishes, in a single transaction that inserts
the point's status row, its result rows and its traces together: after a crash a point is
either wholly present or absent, never half-written. SQLite (standard library, embedded,
one file) runs in WAL mode with ``synchronous=FULL`` so a committed point survives the
process dying right after the commit. Points are keyed by ``point_id``, a stable hash of
the resolved scenario point, which is how a re-run knows what to skip. Rows and traces are
kept as JSON (traces zlib-compressed, since a 1024-rank timeline is large); tables
(``results.csv``, ``results.parquet``) and dashboards are exported from the store, never
from a re-run.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gradwire.errors import ConfigError, StoreError
from gradwire.results import LinkUse, Row, Segment, Trace, rows_to_records

__all__ = ["STORE_FILENAME", "ResultStore", "row_from_dict", "row_to_dict", "trace_from_dict", "trace_to_dict"]

STORE_FILENAME = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    point_id    TEXT PRIMARY KEY,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error       TEXT,
    traceback   TEXT,
    meta        TEXT NOT NULL DEFAULT '{}',
    finished_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rows (
    point_id TEXT NOT NULL REFERENCES points(point_id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (point_id, idx)
);
CREATE TABLE IF NOT EXISTS traces (
    point_id TEXT NOT NULL REFERENCES points(point_id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    data     BLOB NOT NULL,
    PRIMARY KEY (point_id, idx)
);
CREATE TABLE IF NOT EXISTS info (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _jsonable(value: Any) -> Any:
    """JSON-ready copy; tuples become lists (restored where the field type says tuple)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def row_to_dict(row: Row) -> dict[str, Any]:
    return _jsonable(asdict(row))  # type: ignore[no-any-return]


def row_from_dict(data: dict[str, Any]) -> Row:
    return Row(**data)


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    return _jsonable(asdict(trace))  # type: ignore[no-any-return]


def trace_from_dict(data: dict[str, Any]) -> Trace:
    return Trace(
        point=int(data["point"]),
        codec=str(data["codec"]),
        segments=[Segment(**s) for s in data.get("segments", [])],
        links=[LinkUse(**lk) for lk in data.get("links", [])],
        positions={k: (float(v[0]), float(v[1])) for k, v in data.get("positions", {}).items()},
        node_kinds=dict(data.get("node_kinds", {})),
        resolution_s=float(data.get("resolution_s", 0.0)),
    )


def _dumps(obj: Any) -> str:
    # NaN speedups (no fp32 reference at a point) are legal values: keep them (JSON5-style
    # NaN literals, which json.loads reads back).
    return json.dumps(obj, allow_nan=True, separators=(",", ":"))


class ResultStore:
    """A sweep's results in one SQLite file (``results.sqlite`` inside a directory).

    ``path`` is either the database file or a directory (the file is then
    ``<dir>/results.sqlite``); parent directories are created. Only the process driving
    the sweep writes; readers (a dashboard regenerated while a sweep runs) may open the
    same file concurrently thanks to WAL.
    """

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if p.is_dir() or p.suffix == "":
            p = p / STORE_FILENAME
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"results store {p}: cannot create its folder ({exc.strerror}); "
                             "pass a writable folder") from None
        if p.exists() and not p.is_file():
            raise StoreError(f"results store {p}: is not a file; remove it or pass another folder")
        self.path = p
        try:
            self._conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"results store {p}: cannot open ({exc}); pass a writable directory") from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before put() returns, so a killed driver loses nothing
            # it has reported as stored.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ConfigError(f"results store {p}: not a GradWire results database ({exc})") from None

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front; COMMIT or ROLLBACK as one unit.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------
    def put(self, point_id: str, rows: Sequence[Row], traces: Sequence[Trace] = (), *,
            meta: dict[str, Any] | None = None) -> None:
        """Store a finished point, its rows and traces, atomically (replacing an earlier error)."""
        row_blobs = [(point_id, i, _dumps(row_to_dict(r))) for i, r in enumerate(rows)]
        trace_blobs = [(point_id, i, zlib.compress(_dumps(trace_to_dict(t)).encode(), 6))
                       for i, t in enumerate(traces)]
        with self._transaction() as c:
            c.execute("DELETE FROM points WHERE point_id = ?", (point_id,))
            c.execute(
                "INSERT INTO points (point_id, status, error, traceback, meta, finished_at) "
                "VALUES (?, 'ok', NULL, NULL, ?, ?)",
                (point_id, _dumps(_jsonable(meta or {})), time.time()),
            )
            c.executemany("INSERT INTO rows (point_id, idx, data) VALUES (?, ?, ?)", row_blobs)
            c.executemany("INSERT INTO traces (point_id, idx, data) VALUES (?, ?, ?)", trace_blobs)

    def put_error(self, point_id: str, error: str, *, traceback: str = "",
                  meta: dict[str, Any] | None = None) -> None:
        """Record that a point raised; a later re-run tries it again."""
        with self._transaction() as c:
            c.execute("DELETE FROM points WHERE point_id = ?", (point_id,))
            c.execute(
                "INSERT INTO points (point_id, status, error, traceback, meta, finished_at) "
                "VALUES (?, 'error', ?, ?, ?, ?)",
                (point_id, error, traceback, _dumps(_jsonable(meta or {})), time.time()),
            )

    def set_info(self, key: str, value: Any) -> None:
        """Store-wide facts (scenario name and definition) for regenerating reports."""
        with self._transaction() as c:
            c.execute("INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)", (key, _dumps(_jsonable(value))))

    # -- reading ---------------------------------------------------------------------------
    def info(self, key: str, default: Any = None) -> Any:
        cur = self._conn.execute("SELECT value FROM info WHERE key = ?", (key,))
        hit = cur.fetchone()
        return json.loads(hit[0]) if hit else default

    def done_ids(self) -> set[str]:
        """Ids of points stored with results (failed points are not done: re-runs retry them)."""
        return {r[0] for r in self._conn.execute("SELECT point_id FROM points WHERE status = 'ok'")}

    def provenance(self) -> dict[str, dict[str, Any]]:
        """What produced each stored point (``meta["provenance"]``; empty for older stores)."""
        cur = self._conn.execute("SELECT point_id, meta FROM points WHERE status = 'ok'")
        out: dict[str, dict[str, Any]] = {}
        for pid, meta in cur:
            try:
                prov = json.loads(meta).get("provenance")
            except (ValueError, AttributeError):
                prov = None
            out[pid] = prov if isinstance(prov, dict) else {}
        return out

    def failed_ids(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT point_id FROM points WHERE status = 'error'")}

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM points WHERE status = 'ok'").fetchone()[0])

    def rows(self) -> list[Row]:
        """Every stored row, ordered by point index, then by the order the point produced them."""
        cur = self._conn.execute("SELECT data FROM rows ORDER BY point_id, idx")
        out = [row_from_dict(json.loads(d)) for (d,) in cur]
        out.sort(key=lambda r: r.point)  # stable: keeps each point's own order
        return out

    def traces(self) -> list[Trace]:
        cur = self._conn.execute("SELECT data FROM traces ORDER BY point_id, idx")
        out = [trace_from_dict(json.loads(zlib.decompress(d))) for (d,) in cur]
        out.sort(key=lambda t: t.point)
        return out

    def errors(self) -> list[dict[str, Any]]:
        """Failed points: ``point_id``, ``error`` (one line), ``traceback``, ``meta``, ``finished_at``."""
        cur = self._conn.execute(
            "SELECT point_id, error, traceback, meta, finished_at FROM points "
            "WHERE status = 'error' ORDER BY finished_at")
        return [{"point_id": pid, "error": err, "traceback": tb or "", "meta": json.loads(meta),
                 "finished_at": at} for pid, err, tb, meta, at in cur]

    # -- export ----------------------------------------------------------------------------
    def export(self, out_dir: str | Path, *, rows: Sequence[Row] | None = None,
               extra_columns: Mapping[tuple[str, str], Mapping[str, Any]] | None = None) -> dict[str, Path]:
        """Write ``results.csv`` and ``results.parquet`` (one flat record per row).

        ``rows`` defaults to every stored row; a caller may pass a subset (the points of
        the current scenario when the folder also holds an earlier version's points).
        ``extra_columns`` adds columns to the rows of (point id, codec) (the break-even points).
        """
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        records = rows_to_records(self.rows() if rows is None else rows)
        if extra_columns:
            records = [{**rec, **extra_columns.get((str(rec["point_id"]), str(rec["codec"])), {})}
                       for rec in records]
        columns: list[str] = []
        for rec in records:
            for k in rec:
                if k not in columns:
                    columns.append(k)
        arrays = {c: _column([_cell(rec.get(c)) for rec in records]) for c in columns}
        table = pa.table(arrays) if records else pa.table({"point_id": pa.array([], pa.string())})
        paths = {"csv": out / "results.csv", "parquet": out / "results.parquet"}
        pq.write_table(table, paths["parquet"])
        pacsv.write_csv(table, paths["csv"])
        return paths


def _column(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # A swept axis mixing kinds (a number at one point, a name at another): text column.
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _cell(value: Any) -> Any:
    # Swept values may be lists or dicts (a list of stragglers): keep columns scalar.
    if isinstance(value, list | tuple | dict):
        return json.dumps(_jsonable(value))
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
