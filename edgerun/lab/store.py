"""The lab's result store: one SQLite file (stdlib ``sqlite3``), WAL journal, one transaction per job.

Why this survives ``kill -9`` at any moment: a job's result is written by one
``INSERT`` in its own transaction; SQLite's journal (WAL) makes a transaction all or
nothing, so after a crash a result is either complete or absent, never half there.
``synchronous=FULL`` also makes committed results survive a power cut. The full JSON
result is kept, and the columns reports and comparisons select by are copied out and
indexed. Schema: docs/lab.md; ``SCHEMA_VERSION`` (kept in store_checks.py, which checks it), history here:

- 1: tables ``meta``, ``runs``, ``results`` (``job_key`` primary key), ``failures``.

Readers (``lab report``, ``lab compare``: ``LabStore(path, create=False)``) never write to the
file: they open it with SQLite's ``mode=ro`` and check it is a lab database (a ``meta`` table
with this schema version, the tables and columns above) before anything reads it; every row is
type-checked as it is read, so a damaged or foreign file is one LabError line, not a traceback.
A reader must also leave no ``-wal``/``-shm`` files behind: a ``mode=ro`` connection to a WAL
database creates them when they are missing (and cannot remove them), so a WAL database that
has no ``-wal`` file (no lab has it open, everything is in the main file) is read as an
in-memory copy of its bytes instead. ``immutable=1`` would skip that too, but it also skips
locking, and a lab may start writing while the report reads. Those checks: edgerun/lab/store_checks.py.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerun.errors import LabError
from edgerun.lab.store_checks import (
    SCHEMA_VERSION,
    _check_row,
    _damaged,
    _open_read_only,
    check_result,
    check_schema,
)

__all__ = ["SCHEMA_VERSION", "LabStore", "StoredResult", "check_result", "index_columns"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, plan TEXT NOT NULL, plan_path TEXT, started_utc TEXT NOT NULL,
    finished_utc TEXT, host TEXT, edgerun_version TEXT, jobs_total INTEGER, jobs_skipped INTEGER);
CREATE TABLE IF NOT EXISTS results (
    job_key TEXT PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(run_id), plan TEXT NOT NULL,
    created_utc TEXT NOT NULL, target TEXT NOT NULL, target_url TEXT, device_model TEXT,
    artifact TEXT NOT NULL, artifact_sha256 TEXT NOT NULL, format TEXT, precision TEXT, size_bytes INTEGER,
    accuracy REAL, threads INTEGER, providers TEXT, engine TEXT, repetition INTEGER NOT NULL,
    runner TEXT, status TEXT NOT NULL, overall TEXT NOT NULL, hard TEXT, soft TEXT,
    n INTEGER, p50_ns INTEGER, p99_ns INTEGER, mean_ns REAL, energy_mj REAL, energy_source TEXT,
    result_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS results_by_artifact_target ON results (artifact, target);
CREATE INDEX IF NOT EXISTS results_by_plan ON results (plan);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, plan TEXT NOT NULL, job_key TEXT NOT NULL,
    target TEXT NOT NULL, artifact TEXT NOT NULL, error_type TEXT NOT NULL, message TEXT NOT NULL,
    created_utc TEXT NOT NULL);
"""
_COLUMNS = (
    "artifact", "format", "precision", "size_bytes", "accuracy", "runner", "status", "overall", "hard", "soft",
    "n", "p50_ns", "p99_ns", "mean_ns", "energy_mj", "energy_source", "device_model", "target_url",
)  # fmt: skip


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _percentile(stats: dict[str, Any] | None, key: str) -> int | None:
    pct = (stats or {}).get("percentiles", {}).get(key)
    return pct["value_ns"] if pct else None


def index_columns(result: dict[str, Any]) -> dict[str, Any]:
    """The indexed copy of a result's headline figures (None where the result has no such figure)."""
    stats, dut = result.get("stats") or {}, result.get("dut") or {}
    # a wearable's `serial tiny` result: the DUT's single-inference latency is its total (it times nothing else)
    art, total = result.get("artifact") or {"name": dut.get("model")}, stats.get("total") or stats.get("single")
    verdicts, energy = result.get("verdicts", {}), result.get("energy") or {}
    accuracy = art.get("accuracy")
    net = energy.get("net_mj_per_inference")
    return {
        "artifact": art.get("name") or Path(art.get("path", "?")).name,
        "format": art.get("format"),
        "precision": art.get("precision"),
        "size_bytes": art.get("size_bytes"),
        "accuracy": accuracy.get("value") if isinstance(accuracy, dict) else None,
        "runner": (result.get("runner") or {}).get("kind") or (result.get("target") or {}).get("runner", "edgerun"),
        "status": result.get("status", "error"),
        "overall": result.get("overall", "error"),
        "hard": verdicts.get("hard", {}).get("status"),
        "soft": verdicts.get("soft", {}).get("status"),
        "n": total.get("n") if total else None,
        "p50_ns": _percentile(total, "p50"),
        "p99_ns": _percentile(total, "p99"),
        "mean_ns": total.get("mean_ns") if total else None,
        "energy_mj": net if net is not None else energy.get("gross_mj_per_inference"),
        "energy_source": energy.get("source"),
        "device_model": (result.get("target") or {}).get("model"),
        "target_url": (result.get("target") or {}).get("url"),
    }


@dataclass(frozen=True)
class StoredResult:
    """One stored job: its indexed columns and the full result."""

    job_key: str
    plan: str
    target: str
    repetition: int
    threads: int | None
    providers: str | None
    engine: str | None
    created_utc: str
    columns: dict[str, Any]
    result: dict[str, Any]

    @property
    def options(self) -> str:
        parts = [f"threads={self.threads}"] if self.threads is not None else []
        parts += [f"providers={self.providers}"] if self.providers else []
        return " ".join(parts + ([f"engine={self.engine}"] if self.engine else []))


class LabStore:
    """A lab database. Safe to share between the lab's threads (one connection, one lock).

    ``create=False``: a reader (``lab report``, ``lab compare``): the file must exist and be a
    lab database; it is opened read-only and nothing is ever written to it or beside it.
    """

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        self.read_only = not create
        if not create and not self.path.exists():
            raise LabError(f"{self.path}: no lab database here (run `edgerun lab run PLAN.toml` first)")
        self._lock = threading.Lock()
        # Labs on several hosts share one file: while another lab creates it or switches it to WAL, an open
        # can meet "database is locked" before any busy handler runs. Retried for the busy timeout's 30 s.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self._open()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise _damaged(self.path, exc) from exc
                if getattr(self, "_db", None) is not None:
                    self._db.close()  # half-opened: the next try opens its own
                    del self._db
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from exc

    def _open(self) -> None:
        if self.read_only:
            self._db = _open_read_only(self.path)
            check_schema(self._db, self.path)
        else:
            if self.path.is_file() and self.path.stat().st_size > 0:
                # before CREATE TABLE or WAL touch it: another application's file stays as it was
                reader = _open_read_only(self.path)
                try:  # no tables yet: a lab started at the same moment is creating it (nothing to lose)
                    if reader.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                        check_schema(reader, self.path)
                finally:
                    reader.close()
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._init_schema()

    def _init_schema(self) -> None:
        with self._tx() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _read(self, query: str, params: tuple[Any, ...], table: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
        """Rows as dicts, each value type-checked: a damaged file is one LabError, not a TypeError later."""
        try:
            with self._lock:
                rows = self._db.execute(query, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from exc
        return [_check_row(self.path, table, dict(zip(names, row))) for row in rows]

    def _tx(self) -> _Transaction:
        if self.read_only:  # an in-memory copy would take the write and lose it: refuse it
            raise LabError(f"{self.path}: opened read-only (a report or a comparison); nothing is written to it")
        return _Transaction(self._db, self._lock)

    def begin_run(self, plan: str, plan_path: str, jobs_total: int, jobs_skipped: int) -> int:
        from edgerun import __version__

        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (plan, plan_path, started_utc, host, edgerun_version, jobs_total, jobs_skipped) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (plan, plan_path, utc_now(), platform.node(), __version__, jobs_total, jobs_skipped),
            )
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET finished_utc = ? WHERE run_id = ?", (utc_now(), run_id))

    def done_keys(self, plan: str) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT job_key FROM results WHERE plan = ?", (plan,))}

    def record(self, run_id: int, job: Any, result: dict[str, Any]) -> None:
        """Store one finished job (a whole row or nothing). A job already stored is kept, not duplicated."""
        cols = index_columns(result)
        row = {
            "job_key": job.key, "run_id": run_id, "plan": job.plan, "created_utc": utc_now(), "target": job.target,
            "artifact_sha256": job.artifact_sha256, "threads": job.threads, "providers": job.providers,
            "engine": job.engine, "repetition": job.repetition, **cols, "result_json": json.dumps(result),
        }  # fmt: skip
        names = ", ".join(row)
        with self._tx() as db:
            db.execute(
                f"INSERT OR IGNORE INTO results ({names}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )

    def record_failure(self, run_id: int, job: Any, error: BaseException) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO failures (run_id, plan, job_key, target, artifact, error_type, message, created_utc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, job.plan, job.key, job.target, job.artifact.name, type(error).__name__, str(error), utc_now()),
            )

    def results(self, plan: str | None = None) -> list[StoredResult]:
        names = ("job_key", "plan", "target", "repetition", "threads", "providers", "engine", "created_utc",
                 "result_json", *_COLUMNS)  # fmt: skip
        query = f"SELECT {', '.join(names)} FROM results" + (" WHERE plan = ?" if plan else "") + " ORDER BY rowid"
        out = []
        for row in self._read(query, (plan,) if plan else (), "results", names):
            where = f"{self.path}: result {row['job_key']}"
            try:
                result = json.loads(row["result_json"])
            except ValueError as exc:
                raise LabError(f"{where}: its stored JSON is damaged ({exc}); run that job again") from exc
            fields = [row[n] for n in names[:8]]  # the eight leading fields, in StoredResult's order
            columns = {c: row[c] for c in _COLUMNS}
            out.append(StoredResult(*fields, columns=columns, result=check_result(result, where)))  # type: ignore[misc]
        return out

    def failures(self, plan: str | None = None) -> list[dict[str, Any]]:
        keys = ("run_id", "plan", "target", "artifact", "error_type", "message", "created_utc", "job_key")
        query = f"SELECT {', '.join(keys)} FROM failures" + (" WHERE plan = ?" if plan else "")
        return self._read(query, (plan,) if plan else (), "failures", keys)

    def result_hosts(self, plan: str | None = None) -> dict[str, str | None]:
        """job_key -> the host of the run that stored the result (``runs.host``; None where unknown)."""
        hosts = {r["run_id"]: r["host"] for r in self.runs()}
        where, params = (" WHERE plan = ?", (plan,)) if plan else ("", ())
        keys = self._read(f"SELECT job_key FROM results{where} ORDER BY rowid", params, "results", ("job_key",))
        try:
            with self._lock:
                run_ids = [r[0] for r in self._db.execute(f"SELECT run_id FROM results{where} ORDER BY rowid", params)]
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from exc
        # a run id that is not a whole number names no run: that result's host is unknown, nothing worse
        return {k["job_key"]: hosts.get(r) if isinstance(r, int) else None for k, r in zip(keys, run_ids)}

    def runs(self) -> list[dict[str, Any]]:
        keys = ("run_id", "plan", "plan_path", "started_utc", "finished_utc", "host", "edgerun_version", "jobs_total")
        return self._read(f"SELECT {', '.join(keys)} FROM runs ORDER BY run_id", (), "runs", keys)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """``with store._tx() as db``: BEGIN IMMEDIATE ... COMMIT under the store's lock (ROLLBACK on error)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        try:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.lock.release()
