"""How many intra-op threads a model gets: one rule for every way edgerun opens one.

    explicit (``threads=`` / ``--threads``) > the device profile's > the usable CPUs,
    always capped at the usable CPUs.

``bench``, ``run``, ``edgerun.load()``, ``serve`` and the serial host all go through
``edgerun.runtime.load``, which applies ``resolve_threads``; the result says the number and
where it came from (``LoadInfo.threads`` / ``threads_source``). Before this rule ``bench`` used
the profile's threads while ``run`` and ``load()`` left it to the engine (onnxruntime: one per
physical core; LiteRT: 1), so the same model ran differently under each.

*Usable CPUs* are what this process may really run on at once: the CPUs in its affinity mask
(``taskset``, cpusets), further limited by a cgroup CPU quota (a container's ``--cpus 2``, a
systemd ``CPUQuota=``), which the affinity mask does not show: a quota of 2 CPUs on a 64-core
host still lists 64 CPUs, and 64 threads would be throttled in turn, each inference stalling
for the rest of every 100 ms period once the quota is spent. Read from cgroup v2
(``cpu.max``: ``"max 100000"`` = no limit, ``"200000 100000"`` = 2 CPUs) and v1
(``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, -1 = no limit), in the process's own cgroup
and each one above it (a parent's quota binds its children); a fraction rounds up (1.5 CPUs
-> 2 threads), as Java and Go do. ``CGROUP_ROOT`` / ``PROC_SELF_CGROUP`` (or the ``root`` and
``proc_cgroup`` arguments) point the reader at a fixture tree in tests.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from edgerun.errors import UsageError
from edgerun.formats.frozen import Record

__all__ = ["CpuLimit", "ThreadChoice", "cgroup_cpu_quota", "cpu_limit", "resolve_threads", "usable_cpus"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


class CpuLimit(Record):
    """The CPUs this process may use, and why that many. (These are tuples with named fields,
    ``edgerun.formats.frozen.Record``, as the ``NamedTuple`` classes they were, but cheaper to create
    at import; every ``edgerun run`` imports them.)"""

    __slots__ = ()
    _fields = ("cpus", "affinity", "quota", "reason")
    cpus: int
    affinity: int  # CPUs in the affinity mask (os.cpu_count() where there is no mask)
    quota: int | None  # CPUs the cgroup quota allows, None = no quota
    reason: str  # e.g. "2 CPUs: cgroup v2 cpu.max 200000 100000 (affinity mask: 8)"

    def __new__(cls, cpus: int, affinity: int, quota: int | None, reason: str) -> CpuLimit:
        return tuple.__new__(cls, (cpus, affinity, quota, reason))


class ThreadChoice(Record):
    """How many threads, where that came from, and why, in words."""

    __slots__ = ()
    _fields = ("threads", "source", "detail")
    threads: int
    source: str  # "explicit", "profile <name>" or "usable CPUs"
    detail: str  # the source, any cap, and the CPU limit's reason, in words

    def __new__(cls, threads: int, source: str, detail: str) -> ThreadChoice:
        return tuple.__new__(cls, (threads, source, detail))

    def to_dict(self) -> dict[str, object]:
        return {"threads": self.threads, "source": self.source, "detail": self.detail}


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:  # bytes, then decode: a text file's "ascii" codec lookup imports encodings.ascii (~0.2 ms per start)
        return path.read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError):  # absent controller, no permission, not a cgroup fs
        return None


def _quota_cpus(quota_text: str | None, period_text: str | None) -> int | None:
    """CPUs a quota/period pair allows (rounded up), None for no limit or text that is not one."""
    if quota_text is None or period_text is None:
        return None
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:  # "max" (v2's no limit) or garbage
        return None
    if quota <= 0 or period <= 0:  # v1 writes -1 for no limit
        return None
    return max(1, math.ceil(quota / period))


def _dirs(hierarchy: Path, cgroup_path: str) -> list[Path]:
    """The process's cgroup folder and every one above it, up to the hierarchy's root.

    In a container with its own cgroup namespace the path is "/" and the root is the
    container's cgroup; without one the path may name a folder the mount does not show, and
    then only the mount's root is read.
    """
    parts = [p for p in cgroup_path.strip().split("/") if p not in ("", ".")]
    if ".." in parts or not hierarchy.joinpath(*parts).is_dir():
        return [hierarchy]
    return [hierarchy.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_cpu_quota(root: Path | None = None, proc_cgroup: Path | None = None) -> tuple[int, str] | None:
    """The tightest cgroup CPU quota over this process (v2 and v1), as (CPUs, where), or None."""
    root = CGROUP_ROOT if root is None else root
    text = _read(PROC_SELF_CGROUP if proc_cgroup is None else proc_cgroup) or "0::/"
    found: list[tuple[int, str]] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy_id, controllers, path = parts
        if hierarchy_id == "0" and controllers == "":  # cgroup v2: one unified tree
            for d in _dirs(root, path):
                fields = (_read(d / "cpu.max") or "").split()
                cpus = _quota_cpus(*fields) if len(fields) == 2 else None
                if cpus is not None:
                    found.append((cpus, f"cgroup v2 {d / 'cpu.max'} {' '.join(fields)}"))
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's own tree
            mount = next(
                (root / n for n in (controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu") if (root / n).is_dir()), None
            )
            if mount is None:
                continue
            for d in _dirs(mount, path):
                quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                cpus = _quota_cpus(quota, period)
                if cpus is not None:
                    found.append((cpus, f"cgroup v1 {d / 'cpu.cfs_quota_us'} {quota} / period {period}"))
    return min(found) if found else None


def cpu_limit(root: Path | None = None, proc_cgroup: Path | None = None) -> CpuLimit:
    affinity = _affinity()
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None and quota[0] < affinity:
        return CpuLimit(quota[0], affinity, quota[0], f"{quota[0]} CPUs: {quota[1]} (affinity mask: {affinity})")
    note = f"; cgroup quota {quota[0]} does not bind" if quota is not None else ""
    return CpuLimit(affinity, affinity, quota[0] if quota else None, f"{affinity} CPUs in the affinity mask{note}")


def usable_cpus(root: Path | None = None, proc_cgroup: Path | None = None) -> int:
    """CPUs this process may use at once: the affinity mask, limited by any cgroup CPU quota."""
    return cpu_limit(root, proc_cgroup).cpus


def resolve_threads(
    explicit: int | None,
    profile_threads: int | None = None,
    profile_name: str | None = None,
    *,
    limit: CpuLimit | None = None,
) -> ThreadChoice:
    """The rule: explicit > profile > usable CPUs, capped at the usable CPUs (``limit``: cpu_limit())."""
    limit = cpu_limit() if limit is None else limit
    if explicit is not None:
        asked, source = explicit, "explicit"
    elif profile_threads is not None:
        asked, source = profile_threads, f"profile {profile_name}" if profile_name else "profile"
    else:
        return ThreadChoice(limit.cpus, "usable CPUs", f"usable CPUs: {limit.reason}")
    if asked < 1:
        raise UsageError(f"threads must be >= 1, got {asked}")
    if asked > limit.cpus:
        # more intra-op threads than usable cores only measures oversubscription (a profile
        # describes its target device, maybe bigger than the dev box standing in for it)
        return ThreadChoice(limit.cpus, source, f"{source} asked {asked}, capped at {limit.reason}")
    return ThreadChoice(asked, source, f"{source}: {asked} (of {limit.cpus} usable CPUs)")
