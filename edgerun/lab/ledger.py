"""Who is running which job, and which labgrid places this lab holds: two tables in the lab database.

labgrid decides who may use a device (a place is acquired by one client at a time); this
ledger decides which *job* a process takes, so that several ``edgerun lab run`` processes on
one plan (on one host, or on several hosts sharing the database file) run each job once:

- ``claims``: one row per job being run (``job_key`` primary key): host, process (pid and its
  start time), labgrid identity, place. A claim is taken in one ``BEGIN IMMEDIATE`` transaction
  that first checks ``results``: a job that is done, or claimed by a live process, is not taken.
  The claim is deleted when the job's result (the done-record) is stored, or when the job fails.
- ``leases``: one row per place this lab means to hold, written *before* AcquirePlace, deleted
  after the release. A ``lab run`` starting on the same host releases the places of leases
  whose process is gone (a SIGKILLed lab, a power cut): the coordinator keeps a place acquired
  when its client disconnects, so nobody else would ever release it.

A claim is stale, and may be taken over, when its process is gone (same host: the pid with that
start time no longer runs) or when the place it names is no longer acquired by the claimant's
labgrid identity (any host: the coordinator is the witness that its device was let go).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from dataclasses import dataclass
from typing import Any

from edgerun.lab.store import LabStore

__all__ = ["Ledger", "Me", "precise_utc"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    job_key TEXT PRIMARY KEY, plan TEXT NOT NULL, run_id INTEGER, host TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start REAL NOT NULL, identity TEXT, place TEXT, claimed_utc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    coordinator TEXT NOT NULL, place TEXT NOT NULL, identity TEXT NOT NULL, host TEXT NOT NULL,
    pid INTEGER NOT NULL, pid_start REAL NOT NULL, run_id INTEGER, reservation TEXT, since_utc TEXT NOT NULL,
    PRIMARY KEY (coordinator, place));
"""


def precise_utc() -> str:
    """Now, UTC, to the microsecond (the job timestamps that show jobs overlapping)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@dataclass(frozen=True)
class Me:
    """This process, as the ledger names it."""

    host: str
    pid: int
    pid_start: float

    @classmethod
    def here(cls) -> Me:
        return cls(platform.node(), os.getpid(), _start_time(os.getpid()) or 0.0)

    def alive(self, host: str, pid: int, pid_start: float) -> bool | None:
        """Whether that process still runs (None: another host, cannot tell from here)."""
        if host != self.host:
            return None
        start = _start_time(pid)
        return start is not None and abs(start - pid_start) < 1.0


class Ledger:
    """The claims and leases of one lab database (created beside the lab's tables)."""

    def __init__(self, store: LabStore, me: Me | None = None) -> None:
        self.store, self.me = store, me or Me.here()
        with store._tx() as db:  # noqa: SLF001 - the ledger shares the store's connection and lock
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)

    def claim(self, job: Any, run_id: int, identity: str, place: str, holder: Any) -> str:
        """Take ``job`` for this process: "ok", "done" (a result is stored) or "taken" (a live claim).

        ``holder(place)`` is who the coordinator says holds a place now (None: nobody)."""
        with self.store._tx() as db:  # noqa: SLF001
            if db.execute("SELECT 1 FROM results WHERE job_key = ?", (job.key,)).fetchone():
                return "done"
            row = db.execute(
                "SELECT host, pid, pid_start, identity, place FROM claims WHERE job_key = ?", (job.key,)
            ).fetchone()
            if row is not None and not self._stale(row[0], row[1], row[2], row[3], row[4], holder):
                return "taken"
            db.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.key, job.plan, run_id, self.me.host, self.me.pid, self.me.pid_start, identity, place,
                 precise_utc()),
            )  # fmt: skip
            return "ok"

    def _stale(self, host: str, pid: int, pid_start: float, identity: str, place: str, holder: Any) -> bool:
        if (host, pid) == (self.me.host, self.me.pid):
            return False  # our own (another worker of this process has it)
        alive = self.me.alive(host, pid, pid_start)
        if alive is not None:
            return not alive
        return holder(place) != identity  # another host's claim lives while it holds the place

    def unclaim(self, job: Any) -> None:
        with self.store._tx() as db:  # noqa: SLF001
            db.execute("DELETE FROM claims WHERE job_key = ? AND host = ? AND pid = ?", (job.key, *self._me()))

    def claimed_by_others(self, keys: set[str], holder: Any) -> dict[str, str]:
        """job key -> "host pid N on place P" for the live claims of other processes among ``keys``."""
        with self.store._lock:  # noqa: SLF001
            rows = self.store._db.execute(  # noqa: SLF001
                "SELECT job_key, host, pid, pid_start, identity, place FROM claims"
            ).fetchall()
        out = {}
        for key, host, pid, start, identity, place in rows:
            if key in keys and (host, pid) != self._me() and not self._stale(host, pid, start, identity, place, holder):
                out[key] = f"{host} pid {pid} on place {place}"
        return out

    def _me(self) -> tuple[str, int]:
        return self.me.host, self.me.pid

    # ------------------------------------------------------------------ leases

    def lease(self, coordinator: str, place: str, identity: str, run_id: int, reservation: str | None) -> None:
        with self.store._tx() as db:  # noqa: SLF001
            db.execute(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (coordinator, place, identity, self.me.host, self.me.pid, self.me.pid_start, run_id, reservation,
                 precise_utc()),
            )  # fmt: skip

    def drop_lease(self, coordinator: str, place: str) -> None:
        with self.store._tx() as db:  # noqa: SLF001
            db.execute(
                "DELETE FROM leases WHERE coordinator = ? AND place = ? AND host = ? AND pid = ?",
                (coordinator, place, *self._me()),
            )

    def orphaned_leases(self, coordinator: str) -> list[dict[str, Any]]:
        """Leases on ``coordinator`` taken on this host by a process that is gone."""
        with self.store._lock:  # noqa: SLF001
            rows = self.store._db.execute(  # noqa: SLF001
                "SELECT place, identity, host, pid, pid_start, reservation FROM leases WHERE coordinator = ?",
                (coordinator,),
            ).fetchall()
        names = ("place", "identity", "host", "pid", "pid_start", "reservation")
        return [dict(zip(names, r)) for r in rows if self.me.alive(r[2], r[3], r[4]) is False]

    def forget_lease(self, coordinator: str, place: str, pid: int) -> None:
        with self.store._tx() as db:  # noqa: SLF001
            db.execute("DELETE FROM leases WHERE coordinator = ? AND place = ? AND pid = ?", (coordinator, place, pid))

    def leases(self) -> list[dict[str, Any]]:
        with self.store._lock:  # noqa: SLF001
            rows = self.store._db.execute("SELECT coordinator, place, host, pid FROM leases").fetchall()  # noqa: SLF001
        return [dict(zip(("coordinator", "place", "host", "pid"), r)) for r in rows]
