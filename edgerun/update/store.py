"""The on-device model store: accepted versions, an atomic ``current``, one ``previous``.

    <root>/<name>/versions/<version>/   model + manifest (+ samples) + acceptance.json
    <root>/<name>/current  -> versions/<version>     (a relative symlink)
    <root>/<name>/previous -> versions/<version>
    <root>/<name>/history.jsonl         one JSON line per install, refusal and rollback
    <root>/<name>/.lock                 held (flock) by the one install or rollback at work
    <root>/<name>/.staging-*            a copy in progress; removed by the next install

The root and the ``name@current`` references are edgerun.modelstore's (below the runtime, so
that ``edgerun.load("name@current")`` never imports this package); its names are re-exported here.

Power-cut safety comes from two POSIX guarantees and an order of steps. ``rename(2)`` replaces
its target atomically, for a symlink as for a file: a link is switched by making a temporary
symlink beside it and ``os.replace``-ing it over the old one, then fsync-ing the folder so that
the rename itself is on disk. A version folder is copied under a ``.staging-*`` name, each file
fsync'd, and renamed into ``versions/`` whole. A switch sets ``previous`` first, then
``current``: a cut between the two leaves both naming the old version, which loads. Nothing
ever deletes the folder ``current`` or ``previous`` names.

A rollback moves ``current`` first, then ``previous``: a cut between the two has already
done what the rollback was for (both name the version rolled back to).

Only the standard library is imported here (edgerun.artifact to verify a rollback's target).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgerun.errors import ArtifactError, UsageError
from edgerun.modelstore import (  # noqa: F401 (re-exported: the interface names them here)
    _PART_RE,
    ACCEPTANCE_FILE,
    MANIFEST_SUFFIX,
    POINTERS,
    STORE_ENV,
    StoreRef,
    check_acceptance,
    check_part,
    is_ref,
    manifest_in,
    model_dir,
    parse_ref,
    pointer,
    resolve,
    resolve_ref,
    store_root,
    version_folder,
)

#: Test hook: the install or rollback step to SIGKILL this process at (tests/test_update_store.py
#: proves that a power cut at each step leaves ``current`` loadable). Never set it in production.
CRASH_ENV = "EDGERUN_UPDATE_CRASH_AT"
HISTORY_FILE = "history.jsonl"
#: history.jsonl is rotated to history.1.jsonl past this size (one older file kept).
HISTORY_MAX_BYTES = 1 << 20


# --- crash-safe writes ---------------------------------------------------------------------


def crash_point(step: str) -> None:
    """SIGKILL this process at ``step`` when the test hook CRASH_ENV names it (a power cut)."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_folder(folder: Path) -> None:
    """Make renames in ``folder`` durable (no error where a folder cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def set_pointer(root: Path, name: str, which: str, version: str) -> None:
    """Point ``current`` or ``previous`` at versions/<version>, atomically (temp symlink + rename)."""
    folder = model_dir(root, name)
    tmp = folder / f".{which}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(Path("versions") / check_part(version, "model version"), tmp)
    crash_point(f"{which}-link-made")
    os.replace(tmp, folder / which)
    fsync_folder(folder)


def copy_durable(src: Path, dst: Path) -> None:
    """Copy a file and fsync it, so that a rename after it never exposes a half-written file."""
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())


@contextlib.contextmanager
def locked(root: Path, name: str) -> Iterator[Path]:
    """Hold ``<root>/<name>/.lock`` for one install or rollback; a second one is refused, not queued.

    flock(2) locks die with their process, so a cut or SIGKILL never leaves the store locked.
    """
    import fcntl  # POSIX only, like the devices edgerun updates

    folder = model_dir(root, name)
    try:
        (folder / "versions").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"model store {root}: cannot make {folder / 'versions'} ({exc.strerror}); expected a writable folder"
        ) from exc
    with open(folder / ".lock", "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another `edgerun update` or `edgerun rollback` of {name!r} is at work on {folder} "
                "(it holds .lock); wait for it to end"
            ) from None
        yield folder


def remove_stale(folder: Path) -> list[str]:
    """Remove what a cut-off install left: .staging-* folders and temporary links. Under the lock."""
    removed = []
    for entry in folder.iterdir():
        if entry.name.startswith(".staging-"):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        elif entry.name.startswith((".current.tmp-", ".previous.tmp-")) and entry.is_symlink():
            entry.unlink()
            removed.append(entry.name)
    return removed


# --- history ---------------------------------------------------------------------------------


def append_history(root: Path, name: str, event: dict[str, Any]) -> None:
    """Append one JSON line to history.jsonl (fsync'd); rotated to history.1.jsonl past 1 MiB."""
    folder = model_dir(root, name)
    path = folder / HISTORY_FILE
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > HISTORY_MAX_BYTES:
            os.replace(path, folder / "history.1.jsonl")
    line = json.dumps({"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **event}, sort_keys=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        # a cut mid-write leaves a line without its newline: end it, or this event would be glued to it
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        os.write(fd, (("\n" if torn else "") + line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_history(root: Path, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """The last ``limit`` events, oldest first; a line a cut left half-written is skipped."""
    path = model_dir(root, name) / HISTORY_FILE
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - HISTORY_MAX_BYTES))
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    events = []
    for raw in lines[-limit:]:
        with contextlib.suppress(ValueError):
            item = json.loads(raw)
            if isinstance(item, dict):
                events.append(item)
    return events


# --- switching -----------------------------------------------------------------------------


def switch(root: Path, name: str, version: str) -> str | None:
    """Make ``version`` current and the old current previous; returns the old current. Under the lock.

    ``previous`` is set first: a cut before ``current`` moves leaves both on the old version.
    """
    old = pointer(root, name, "current")
    if old == version:
        return old
    if old is not None:
        set_pointer(root, name, "previous", old)
        crash_point("previous-set")
    set_pointer(root, name, "current", version)
    crash_point("current-set")
    return old


def rollback(store: str | os.PathLike[str] | None, name: str) -> tuple[str, str]:
    """Swap ``current`` and ``previous``; returns (from_version, to_version).

    The previous version is verified (edgerun.artifact: manifest and sha256) before the switch.
    UsageError when there is no previous version to go back to.
    """
    root = store_root(store)
    if not model_dir(root, name).is_dir():
        raise ArtifactError(f"no model {name!r} in the model store {root}")
    with locked(root, name):
        old, back = pointer(root, name, "current"), pointer(root, name, "previous")
        if back is None or old is None or back == old:
            raise UsageError(f"{name!r} has no previous version in {root} to roll back to")
        ref = resolve_ref(f"{name}@{back}", root)
        from edgerun.artifact import load_artifact  # sha256 against the manifest: never switch to a bad file

        load_artifact(ref.manifest_path)
        set_pointer(root, name, "current", back)
        crash_point("rollback-current-set")
        set_pointer(root, name, "previous", old)
        append_history(root, name, {"event": "rollback", "from": old, "to": back})
    log_event("rollback", name=name, from_version=old, to_version=back)
    return old, back


def log_event(kind: str, **fields: Any) -> None:
    """Tell the telemetry event log (edgerun.telemetry.events; a no-op unless one is configured)."""
    from edgerun.telemetry.events import log_event as telemetry_log

    telemetry_log(kind, **fields)


def check_event(kind: str, **fields: Any) -> dict[str, Any]:
    """The event's fields as the log would write them, or its UsageError now: called before a
    switch, so that logging a switch that happened can never turn it into an error."""
    from edgerun.telemetry.events import check

    return check(kind, **fields)


#: verdicts named in one event: the event log takes at most 32 items per list (edgerun.telemetry.events)
EVENT_VERDICTS = 24


def verdict_summary(verdicts: dict[str, dict[str, Any]]) -> list[str]:
    """``["hard: pass", ...]``: at most EVENT_VERDICTS short strings, failed verdicts first, then the
    headline ones (no ``.`` in the name); the rest counted in a last ``"... N more"``. The full
    verdicts are in acceptance.json and history.jsonl."""
    order = sorted(verdicts, key=lambda k: (verdicts[k].get("status") in ("pass", "skipped"), "." in k))
    lines = [f"{k[:64]}: {str(verdicts[k].get('status'))[:16]}" for k in order]
    if len(lines) > EVENT_VERDICTS:
        lines = lines[: EVENT_VERDICTS - 1] + [f"... {len(lines) - EVENT_VERDICTS + 1} more"]
    return lines


# --- pruning -------------------------------------------------------------------------------


def version_key(version: str) -> tuple[tuple[int, Any], ...]:
    """Sort key: digit runs compare as numbers (1.10 after 1.9), other runs as text. No pre-release
    rule (1.0.0-rc1 sorts after 1.0.0): docs/update.md says to publish candidates under another name."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[^\d]+", version))


def prune(store: str | os.PathLike[str] | None, name: str, keep: int) -> dict[str, list[str]]:
    """Remove old versions: ``current``, ``previous`` and the ``keep`` highest other accepted
    versions stay; every other version folder goes (a folder never accepted goes whatever ``keep``).

    Under the name's lock. Each folder is first renamed to ``.staging-pruned-*`` (atomic; it is then
    no version) and the folder fsync'd, then deleted: a cut leaves a ``.staging-*`` that the next
    install or prune removes, and never touches what ``current`` or ``previous`` name.
    Returns ``{"removed": [...], "kept": [...]}``, versions highest first.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= 10_000:
        raise UsageError(f"--keep {keep!r}: expected a whole number of versions, 0 .. 10000")
    root = store_root(store)
    if not model_dir(root, name).is_dir():
        raise ArtifactError(f"no model {name!r} in the model store {root}")
    with locked(root, name) as folder:
        remove_stale(folder)
        versions = folder / "versions"
        found = sorted((p.name for p in versions.iterdir() if _PART_RE.fullmatch(p.name)), key=version_key)
        pinned = {pointer(root, name, "current"), pointer(root, name, "previous")}
        others = [v for v in reversed(found) if v not in pinned]
        accepted = [v for v in others if _listed(name, versions / v)["accepted"]][:keep]
        removed = [v for v in others if v not in accepted]
        for version in removed:
            aside = folder / f".staging-pruned-{version}-{os.getpid()}"
            os.rename(versions / version, aside)
            fsync_folder(versions)
            crash_point("prune-moved")
            shutil.rmtree(aside, ignore_errors=True)
            crash_point("prune-removed")
        kept = [v for v in reversed(found) if v not in removed]
        if removed:
            append_history(root, name, {"event": "pruned", "removed": removed, "kept": kept})
    return {"removed": removed, "kept": kept}


# --- listing -------------------------------------------------------------------------------


def list_models(store: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every model in the store: its versions (accepted or not), current and previous."""
    root = store_root(store)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _PART_RE.fullmatch(p.name)):
        versions = folder / "versions"
        found = sorted((p.name for p in versions.iterdir() if p.is_dir()), key=version_key) if versions.is_dir() else []
        out.append(
            {
                "name": folder.name,
                "current": pointer(root, folder.name, "current"),
                "previous": pointer(root, folder.name, "previous"),
                "versions": [_listed(folder.name, versions / v) for v in found if _PART_RE.fullmatch(v)],
            }
        )
    return out


def _listed(name: str, folder: Path) -> dict[str, Any]:
    """``{"version", "accepted"}``, and ``"reason"`` when the version is not loadable."""
    try:
        check_acceptance(folder, name, folder.name)
    except ArtifactError as exc:
        return {"version": folder.name, "accepted": False, "reason": str(exc)}
    return {"version": folder.name, "accepted": True}
