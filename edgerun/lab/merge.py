"""``edgerun lab merge OUT.sqlite A.sqlite B.sqlite ...``: several lab databases into a new one, for one report.

When lab hosts keep databases of their own (each ran part of a plan against the same
labgrid coordinator; or a database was copied off a lab host), the report reads one file,
so the files are merged:

- ``runs``: every run of every input, renumbered (run ids are per file); ``host`` says
  which machine ran it, and ``plan_path`` is kept;
- ``results``: by ``job_key`` (the hash of plan, artifact, target, options and repetition:
  the same job has the same key on every host). A job in more than one input is kept
  once, from the first input that has it, and counted in the merge's summary (a lab that
  shared its ledger never runs a job twice; two that did not may have);
- ``failures``: all of them, with their run renumbered.

Each result keeps its ``result_json`` as stored: a labgrid job's ``target.labgrid`` names
its lab host, place, exporter and when it ran, so per-host and per-place views survive the
merge. The ledger's ``claims`` and ``leases`` are a running lab's state and are not copied.
Inputs are opened read-only and checked like ``lab report`` checks them; OUT must not exist
(an output never replaces a database), and is written under a temporary name and renamed
into place, so an interrupted merge leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgerun.errors import LabError
from edgerun.lab.store import LabStore

__all__ = ["MergeSummary", "merge_databases"]

_RUN_COLS = ("plan", "plan_path", "started_utc", "finished_utc", "host", "edgerun_version", "jobs_total",
             "jobs_skipped")  # fmt: skip
_FAIL_COLS = ("plan", "job_key", "target", "artifact", "error_type", "message", "created_utc")


@dataclass
class MergeSummary:
    runs: int = 0
    results: int = 0
    failures: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)  # input -> jobs already taken from an earlier input


def _columns(store: LabStore, table: str) -> list[str]:
    with store._lock:  # noqa: SLF001 - a reader of the store's own file
        return [r[1] for r in store._db.execute(f"PRAGMA table_info({table})")]  # noqa: SLF001


def merge_databases(out: Path, inputs: list[Path]) -> MergeSummary:
    if len(inputs) < 2:
        raise LabError("lab merge needs two or more databases to merge")
    if out.exists() or out.is_symlink():
        raise LabError(f"{out}: exists; lab merge writes a new database (choose another name, or remove it)")
    resolved = {p.resolve() for p in inputs}
    if out.resolve() in resolved or len(resolved) != len(inputs):
        raise LabError("lab merge: each input once, and OUT is not one of them")
    tmp = out.with_name(f".{out.name}.merging-{os.getpid()}")
    summary = MergeSummary()
    try:
        target = LabStore(tmp)
        try:
            for path in inputs:
                source = LabStore(path, create=False)
                try:
                    _merge_one(target, source, str(path), summary)
                finally:
                    source.close()
        finally:
            target.close()
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{tmp}{suffix}").unlink()
        os.replace(tmp, out)
    except BaseException:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{tmp}{suffix}").unlink()
        raise
    return summary


def _merge_one(target: LabStore, source: LabStore, name: str, summary: MergeSummary) -> None:
    src = source._db  # noqa: SLF001
    result_cols = [c for c in _columns(source, "results") if c in set(_columns(target, "results"))]
    with source._lock:  # noqa: SLF001
        runs = src.execute(f"SELECT run_id, {', '.join(_RUN_COLS)} FROM runs ORDER BY run_id").fetchall()
        results = src.execute(f"SELECT {', '.join(result_cols)} FROM results ORDER BY rowid").fetchall()
        failures = src.execute(f"SELECT run_id, {', '.join(_FAIL_COLS)} FROM failures ORDER BY id").fetchall()
    run_at = result_cols.index("run_id")
    with target._tx() as db:  # noqa: SLF001 - one transaction per input: all of it or none
        new_id = {}
        for old, *values in runs:
            cur = db.execute(f"INSERT INTO runs ({', '.join(_RUN_COLS)}) VALUES ({', '.join('?' * len(_RUN_COLS))})",
                             values)  # fmt: skip
            new_id[old] = cur.lastrowid
        summary.runs += len(runs)
        for row in results:
            values = list(row)
            values[run_at] = new_id.get(values[run_at], values[run_at])
            cur = db.execute(
                f"INSERT OR IGNORE INTO results ({', '.join(result_cols)}) VALUES ({', '.join('?' * len(values))})",
                values,
            )
            if cur.rowcount:
                summary.results += 1
            else:
                summary.duplicates[name] = summary.duplicates.get(name, 0) + 1
        for old, *values in failures:
            db.execute(
                f"INSERT INTO failures (run_id, {', '.join(_FAIL_COLS)}) VALUES ({', '.join('?' * (1 + len(values)))})",
                (new_id.get(old, old), *values),
            )
        summary.failures += len(failures)
