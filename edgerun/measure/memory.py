"""Memory of one inference process: RSS/USS per phase, steady-state peak, system headroom.

Sources: psutil's documentation and the kernel's ``Documentation/filesystems/proc.rst``:

- RSS is cheap (``psutil.Process.memory_info().rss``); USS walks ``/proc/<pid>/smaps``
  (``memory_full_info().uss``), is slower, and may be denied for another user's process.
- ``VmHWM:`` in ``/proc/<pid>/status`` is the peak RSS, in "kB" that are KiB (the
  kernel prints pages << (PAGE_SHIFT - 10)). ``ru_maxrss`` is KiB on Linux, bytes on
  macOS, and cannot be reset.
- Writing ``5`` to ``/proc/<pid>/clear_refs`` resets VmHWM to the current RSS (kernel
  commit 695f05593693, Linux 4.0; writable by the process owner), so the steady-state
  phase gets a peak of its own instead of one that includes model loading.
- Accelerator buffers (nvmap, ION, dma-buf) often miss RSS, so the drop in system
  ``MemAvailable`` (``/proc/meminfo``, Linux 3.14+) is logged beside it.

Typical use in a benchmark worker (see ``PeakTracker``)::

    tracker = PeakTracker(model_file_bytes=path.stat().st_size)
    tracker.before_load(); session = load(path); tracker.after_session()
    session.run(x); tracker.after_first_inference()
    tracker.start_steady_state()
    for _ in range(n): session.run(x)
    report = tracker.report()          # MemoryReport; edgerun.budget.memory_verdicts(report, profile)

Every reader takes ``proc_root`` so tests can point it at fixture files.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from edgerun.errors import BenchError

__all__ = [
    "MemoryReport",
    "MemorySnapshot",
    "PeakTracker",
    "parse_meminfo",
    "parse_status",
    "reset_peak",
    "snapshot",
]

PROC = Path("/proc")
_KIB = 1024  # /proc "kB" is KiB
_KB_LINE = re.compile(r"^(\w+):\s+(\d+)\s+kB\s*$", re.MULTILINE)


@dataclass(frozen=True)
class MemorySnapshot:
    """One process's memory at one moment (bytes; ``t_ns`` is ``time.perf_counter_ns()``).

    ``uss_bytes``, ``hwm_bytes`` and ``mem_available_bytes`` are None where the source
    was unreadable; ``notes`` says why.
    """

    rss_bytes: int
    uss_bytes: int | None
    hwm_bytes: int | None
    mem_available_bytes: int | None
    t_ns: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "notes": list(self.notes)}


def parse_status(text: str) -> dict[str, int]:
    """Every ``Key: N kB`` line of ``/proc/<pid>/status`` (or meminfo), in bytes."""
    return {key: int(value) * _KIB for key, value in _KB_LINE.findall(text)}


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes by key (``MemTotal``, ``MemAvailable``, ...).

    Lines without a unit (``HugePages_Total: 0``) are left out: they are counts.
    """
    return parse_status(text)


def _proc_dir(pid: int | None, proc_root: Path) -> Path:
    return proc_root / ("self" if pid is None else str(pid))


def _read_kb_file(path: Path, key: str, notes: list[str]) -> int | None:
    try:
        values = parse_status(path.read_text(encoding="ascii", errors="replace"))
    except OSError as exc:
        notes.append(f"cannot read {path}: {exc.strerror or exc}")
        return None
    if key not in values:
        # MemAvailable arrived in Linux 3.14; VmHWM is missing for kernel threads.
        notes.append(f"no {key} line in {path}")
    return values.get(key)


def _process(pid: int | None) -> psutil.Process:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess as exc:
        raise BenchError(f"cannot measure memory of process {pid}: it does not exist") from exc


def _uss_bytes(proc: psutil.Process, notes: list[str]) -> int | None:
    try:
        return int(proc.memory_full_info().uss)
    except (psutil.AccessDenied, psutil.ZombieProcess) as exc:
        notes.append(f"USS unavailable: {type(exc).__name__} reading smaps of pid {proc.pid}")
    except (AttributeError, NotImplementedError, OSError) as exc:  # platform without uss
        notes.append(f"USS unavailable: {exc}")
    return None


def snapshot(pid: int | None = None, *, uss: bool = True, proc_root: Path = PROC) -> MemorySnapshot:
    """RSS (bytes, psutil), USS (smaps walk: slower, skip with ``uss=False``), VmHWM and MemAvailable.

    ``pid`` None means this process. Raises ``BenchError`` when the process does not exist.
    """
    proc = _process(pid)
    notes: list[str] = []
    t_ns = time.perf_counter_ns()
    try:
        rss_bytes = int(proc.memory_info().rss)
    except psutil.NoSuchProcess as exc:
        raise BenchError(f"cannot measure memory of process {pid}: it exited") from exc
    uss_bytes = _uss_bytes(proc, notes) if uss else None
    hwm_bytes = _read_kb_file(_proc_dir(pid, proc_root) / "status", "VmHWM", notes)
    available = _read_kb_file(proc_root / "meminfo", "MemAvailable", notes)
    return MemorySnapshot(rss_bytes, uss_bytes, hwm_bytes, available, t_ns, tuple(notes))


def _hwm_and_rss(status: Path) -> tuple[int | None, int | None]:
    try:
        values = parse_status(status.read_text(encoding="ascii", errors="replace"))
    except OSError:
        return None, None
    return values.get("VmHWM"), values.get("VmRSS")


def reset_peak(pid: int | None = None, *, proc_root: Path = PROC) -> tuple[bool, str]:
    """Reset VmHWM to the current RSS by writing "5" to clear_refs (proc.rst; Linux 4.0+).

    Returns (True, what happened) or (False, why not). A write that the kernel accepts
    but that leaves VmHWM above RSS counts as a failure: the peak would still include
    everything before, and the report must say so.
    """
    proc_dir = _proc_dir(pid, proc_root)
    path = proc_dir / "clear_refs"
    hwm_before, rss_before = _hwm_and_rss(proc_dir / "status")
    try:
        fd = os.open(path, os.O_WRONLY)  # no O_CREAT, no read: clear_refs is mode 0200
        try:
            os.write(fd, b"5")
        finally:
            os.close(fd)
    except FileNotFoundError:
        return False, f"{path} does not exist (not Linux, or /proc not mounted)"
    except PermissionError as exc:
        return False, f"cannot write {path}: {exc.strerror} (only the process owner may)"
    except OSError as exc:  # EINVAL: kernel older than 4.0 knows only 1-4
        return False, f"writing 5 to {path} failed: {exc.strerror} (kernel older than 4.0?)"
    hwm_after, _ = _hwm_and_rss(proc_dir / "status")
    if hwm_after is None:
        return False, f"wrote 5 to {path} but cannot read VmHWM back to confirm the reset"
    kib = f"VmHWM {_kib(hwm_before)} -> {_kib(hwm_after)} KiB"
    was_above = hwm_before is not None and rss_before is not None and hwm_before > rss_before
    if was_above and hwm_before is not None and hwm_after >= hwm_before:
        return False, f"wrote 5 to {path} but VmHWM did not drop ({kib}): the kernel ignored it"
    return True, f"VmHWM reset to the current RSS through {path} ({kib})"


def _kib(value_bytes: int | None) -> str:
    return "?" if value_bytes is None else str(value_bytes // _KIB)


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * _KIB  # macOS: bytes


@dataclass(frozen=True)
class MemoryReport:
    """Memory of one benchmarked model, in bytes (reference §7).

    ``peak_rss_steady_bytes`` is the peak RSS over the steady-state phase when
    ``peak_includes_loading`` is False; otherwise it also covers loading and the first
    inference (and, for "ru_maxrss" or "VmHWM since process start", everything the
    worker process did before). ``mem_available_delta_bytes`` is system MemAvailable
    before load minus after the first inference: positive means the system lost memory,
    which catches accelerator buffers RSS misses, but also counts other processes.
    """

    model_file_bytes: int | None
    rss_before_load_bytes: int | None
    rss_after_session_bytes: int | None
    rss_after_first_inference_bytes: int | None
    uss_before_load_bytes: int | None
    uss_after_session_bytes: int | None
    uss_after_first_inference_bytes: int | None
    peak_rss_steady_bytes: int | None
    peak_includes_loading: bool
    peak_method: str  # "VmHWM after clear_refs" | "VmHWM since process start" | "ru_maxrss" | "unavailable"
    mem_available_delta_bytes: int | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "notes": list(self.notes)}


class PeakTracker:
    """Records one process's memory through load, first inference and steady state.

    Call the phase methods in order; a phase left out leaves its fields None. The
    steady-state peak is read by ``report()``; without a successful
    ``start_steady_state()`` it includes loading, and the report says so.
    """

    def __init__(
        self, model_file_bytes: int | None = None, *, pid: int | None = None, uss: bool = True, proc_root: Path = PROC
    ) -> None:
        self.model_file_bytes = model_file_bytes
        self._pid, self._uss, self._proc_root = pid, uss, proc_root
        self.snapshots: dict[str, MemorySnapshot] = {}
        self._reset: tuple[bool, str] | None = None

    def _take(self, phase: str) -> MemorySnapshot:
        snap = snapshot(self._pid, uss=self._uss, proc_root=self._proc_root)
        self.snapshots[phase] = snap
        return snap

    def before_load(self) -> MemorySnapshot:
        return self._take("before_load")

    def after_session(self) -> MemorySnapshot:
        return self._take("after_session")

    def after_first_inference(self) -> MemorySnapshot:
        return self._take("after_first_inference")

    def start_steady_state(self) -> tuple[bool, str]:
        """Reset the peak (``reset_peak``) right before the steady-state loop."""
        self._reset = reset_peak(self._pid, proc_root=self._proc_root)
        return self._reset

    def _peak(self, notes: list[str]) -> tuple[int | None, bool, str]:
        """(peak RSS bytes, includes loading, method), falling back as reference §7 allows."""
        hwm, _ = _hwm_and_rss(_proc_dir(self._pid, self._proc_root) / "status")
        if self._reset is None:
            notes.append("start_steady_state() was not called, so the peak was never reset")
        elif not self._reset[0]:
            notes.append(f"peak not reset: {self._reset[1]}")
        if hwm is not None:
            reset_ok = self._reset is not None and self._reset[0]
            return hwm, not reset_ok, "VmHWM after clear_refs" if reset_ok else "VmHWM since process start"
        if self._pid is None:
            peak = _ru_maxrss_bytes()
            if peak is not None:
                notes.append("no VmHWM: ru_maxrss is the lifetime peak of the whole process")
                return peak, True, "ru_maxrss"
        notes.append("no peak RSS source (no VmHWM, and ru_maxrss covers only this process)")
        return None, True, "unavailable"

    def report(self) -> MemoryReport:
        notes: list[str] = []
        peak, includes_loading, method = self._peak(notes)
        snaps = self.snapshots
        for phase in ("before_load", "after_session", "after_first_inference"):
            if phase not in snaps:
                notes.append(f"phase {phase} was not recorded")
            else:
                notes.extend(f"{phase}: {note}" for note in snaps[phase].notes)

        def at(phase: str, name: str) -> int | None:
            return getattr(snaps[phase], name) if phase in snaps else None

        before, after = at("before_load", "mem_available_bytes"), at("after_first_inference", "mem_available_bytes")
        return MemoryReport(
            model_file_bytes=self.model_file_bytes,
            rss_before_load_bytes=at("before_load", "rss_bytes"),
            rss_after_session_bytes=at("after_session", "rss_bytes"),
            rss_after_first_inference_bytes=at("after_first_inference", "rss_bytes"),
            uss_before_load_bytes=at("before_load", "uss_bytes"),
            uss_after_session_bytes=at("after_session", "uss_bytes"),
            uss_after_first_inference_bytes=at("after_first_inference", "uss_bytes"),
            peak_rss_steady_bytes=peak,
            peak_includes_loading=includes_loading,
            peak_method=method,
            mem_available_delta_bytes=None if before is None or after is None else before - after,
            notes=tuple(notes),
        )
