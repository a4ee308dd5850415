"""The read side of a lab database: is it one, and is each row and result what the readers rely on.

``LabStore(path, create=False)`` (edgerun/lab/store.py) opens a database with ``_open_read_only``
(SQLite ``mode=ro``, or an in-memory copy of a WAL file that has no ``-wal``: a reader leaves no
files behind), then ``check_schema`` (a ``meta`` table with this schema version, the tables and
columns read here, SQLite's quick_check); every row read is type-checked (``_check_row``) and every
stored result shape-checked (``check_result``, also used by ``lab compare`` on JSON files), so a
damaged or foreign file is one LabError line, not a traceback.

Two result shapes are read: an ``edgerun bench`` result (``samples_ns`` = ``pre``/``infer``/``post``
lists of one length) and a ``serial tiny`` result that a lab's wearable job stored (``dut`` set;
``samples_ns`` = ``single``/``perf_mean`` lists: the DUT times inference only).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from edgerun.errors import LabError

__all__ = ["SCHEMA_VERSION", "check_result", "check_schema"]

SCHEMA_VERSION = 1  # of the lab database this edgerun writes and reads; its history: edgerun/lab/store.py

# What a reader selects, by table: column -> (type, NULL allowed). The schema check requires these
# columns; every value read is checked against its type.
_TEXT, _INT, _REAL = (str,), (int,), (int, float)
_TABLES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "runs": {"run_id": (_INT, False), "plan": (_TEXT, False), "plan_path": (_TEXT, True),
             "started_utc": (_TEXT, False), "finished_utc": (_TEXT, True), "host": (_TEXT, True),
             "edgerun_version": (_TEXT, True), "jobs_total": (_INT, True)},
    "results": {"job_key": (_TEXT, False), "plan": (_TEXT, False), "target": (_TEXT, False),
                "repetition": (_INT, False), "threads": (_INT, True), "providers": (_TEXT, True),
                "engine": (_TEXT, True), "created_utc": (_TEXT, False), "result_json": (_TEXT, False),
                "artifact": (_TEXT, False), "format": (_TEXT, True), "precision": (_TEXT, True),
                "size_bytes": (_INT, True), "accuracy": (_REAL, True), "runner": (_TEXT, True),
                "status": (_TEXT, False), "overall": (_TEXT, False), "hard": (_TEXT, True), "soft": (_TEXT, True),
                "n": (_INT, True), "p50_ns": (_INT, True), "p99_ns": (_INT, True), "mean_ns": (_REAL, True),
                "energy_mj": (_REAL, True), "energy_source": (_TEXT, True), "device_model": (_TEXT, True),
                "target_url": (_TEXT, True)},
    "failures": {"run_id": (_INT, False), "plan": (_TEXT, False), "target": (_TEXT, False),
                 "artifact": (_TEXT, False), "error_type": (_TEXT, False), "message": (_TEXT, False),
                 "created_utc": (_TEXT, False), "job_key": (_TEXT, False)},
}  # fmt: skip
_NOT_LAB = "expected a database written by `edgerun lab run`"


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> LabError:
    reason = str(exc) or type(exc).__name__
    if "not a database" in reason:
        return LabError(f"{path}: not an SQLite database ({reason}); {_NOT_LAB}")
    return LabError(f"{path}: damaged or unreadable lab database ({reason}); use a good copy or run the plan again")


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot change ``path`` and leaves no files beside it (see the module docstring)."""
    wal = Path(f"{path}-wal")
    for _ in range(3):
        if wal.exists() or not _wal_header(path):
            # a rollback-journal file, or a WAL one a lab has open (its -wal and -shm exist): plain mode=ro
            uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
            return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        before = os.stat(path)
        data = bytearray(path.read_bytes())
        after = os.stat(path)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or wal.exists():
            continue  # a lab opened it while it was being read: try again (then -wal exists: mode=ro)
        data[18:20] = b"\x01\x01"  # the copy in rollback mode: an in-memory database has no -wal
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        if hasattr(db, "deserialize"):  # Python 3.11+
            db.deserialize(bytes(data))
        else:  # Python 3.10: restore the copy into the in-memory database through a private temp file
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / "copy.sqlite"
                copy.write_bytes(bytes(data))
                src = sqlite3.connect(copy)
                try:
                    src.backup(db)
                finally:
                    src.close()
        return db
    raise LabError(f"{path}: the database kept changing while it was read; try again")


def _wal_header(path: Path) -> bool:
    """Whether the file's SQLite header says WAL (read and write versions 2, bytes 18 and 19)."""
    with path.open("rb") as fh:
        head = fh.read(20)
    return head[:16] == b"SQLite format 3\x00" and head[18:20] == b"\x02\x02"


def check_schema(db: sqlite3.Connection, path: Path) -> None:
    """LabError unless ``db`` is an edgerun lab database of this schema version with the tables read here."""
    if path.stat().st_size == 0:
        raise LabError(f"{path}: empty file (0 bytes), not a lab database; {_NOT_LAB}")
    db.execute("PRAGMA query_only=ON")  # belt and braces: this connection only checks
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            raise LabError(f"{path}: not an edgerun lab database (no `meta` table: another application's?); {_NOT_LAB}")
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or not str(row[0]).isdigit():
            raise LabError(f"{path}: not an edgerun lab database (no schema_version in `meta`); {_NOT_LAB}")
        if int(row[0]) != SCHEMA_VERSION:
            raise LabError(
                f"{path}: lab database schema {row[0]}, this edgerun reads {SCHEMA_VERSION}: use the edgerun "
                "version that wrote it"
            )
        for table, columns in _TABLES.items():
            have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            missing = sorted(set(columns) - have)
            if missing:
                what = "no table" if not have else f"no column(s) {', '.join(missing)} in table"
                raise LabError(f"{path}: damaged lab database: {what} `{table}`; {_NOT_LAB}")
        problems = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise LabError(f"{path}: damaged lab database ({'; '.join(problems)}); use a good copy or run again")
    finally:
        db.execute("PRAGMA query_only=OFF")


def _check_row(path: Path, table: str, row: dict[str, Any]) -> dict[str, Any]:
    for name, value in row.items():
        types, nullable = _TABLES[table][name]
        ok = (value is None and nullable) or (isinstance(value, types) and not isinstance(value, bool))
        if ok and isinstance(value, float) and not (value == value and abs(value) != float("inf")):
            ok = False
        if not ok:
            kind, wanted = "NULL" if value is None else type(value).__name__, "/".join(t.__name__ for t in types)
            raise LabError(
                f"{path}: damaged lab database: {table}.{name} holds {kind} where {wanted} "
                f"belongs (row {row.get('job_key') or row.get('run_id')}); use a good copy or run that job again"
            )
    return row


# The parts of a result the report and compare read, with their types (None is always allowed:
# the readers treat a missing section as empty).
_SECTIONS = {"artifact": dict, "target": dict, "environment": dict, "engine": dict, "profile": dict, "config": dict,
             "energy": dict, "samples_ns": dict, "load_at_start": dict, "warnings": list, "status": str,
             "overall": str}  # fmt: skip


def check_result(result: Any, where: str) -> dict[str, Any]:
    """``result`` if it has the shape the lab's readers rely on, else one LabError naming ``where``."""

    def bad(what: str) -> LabError:
        return LabError(f"{where}: not a usable edgerun result: {what}")

    if not isinstance(result, dict):
        raise bad(f"a JSON {type(result).__name__}, expected an object")
    for key, kind in _SECTIONS.items():
        if result.get(key) is not None and not isinstance(result[key], kind):
            raise bad(f"`{key}` is a {type(result[key]).__name__}, expected a {kind.__name__}")
    samples = result.get("samples_ns")
    if samples and isinstance(result.get("dut"), dict):  # a `serial tiny` result (a wearable's lab job)
        if not all(isinstance(samples.get(k), list) and _integers(samples[k]) for k in ("single", "perf_mean")):
            raise bad("`samples_ns` of a `serial tiny` result needs integer lists `single` and `perf_mean`")
    elif samples:
        parts = [samples.get(stage) for stage in ("pre", "infer", "post")]
        if not all(isinstance(p, list) for p in parts) or len({len(p) for p in parts}) != 1:  # type: ignore[arg-type]
            raise bad("`samples_ns` needs three lists `pre`, `infer`, `post` of one length")
        if not all(_integers(p) for p in parts):  # type: ignore[arg-type]
            raise bad("`samples_ns` holds values that are not integer nanoseconds")
    for section, key in (("engine", "providers"), ("config", "providers")):
        value = (result.get(section) or {}).get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise bad(f"`{section}.{key}` is not a list of strings")
    if not all(isinstance(w, str) for w in result.get("warnings") or []):
        raise bad("`warnings` is not a list of strings")
    energy = result.get("energy") or {}
    for key in ("net_mj_per_inference", "gross_mj_per_inference"):
        value = energy.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise bad(f"`energy.{key}` is not a number")
    return result


def _integers(values: list[Any]) -> bool:
    """A flat list of integers that fit int64 (what the readers turn into numpy arrays)."""
    import numpy as np

    try:
        array = np.asarray(values)
    except (ValueError, OverflowError):  # ragged nesting
        return False
    return array.size == 0 or (array.ndim == 1 and array.dtype.kind in "iu")
