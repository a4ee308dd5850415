"""edgerun.measure.memory: real reads of this process, /proc formats from fixtures, verdicts."""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from edgerun.budget import judge_peak_rss, memory_verdicts
from edgerun.errors import BenchError
from edgerun.measure.memory import (
    MemoryReport,
    PeakTracker,
    parse_meminfo,
    parse_status,
    reset_peak,
    snapshot,
)
from edgerun.profiles import load_profile

MB = 1_000_000


def resident(nbytes: int) -> mmap.mmap:
    """``nbytes`` of new resident memory: an anonymous mapping with every page written.

    Not np.ones: malloc may serve a large array from heap memory that earlier tests freed but
    that is still resident (a library can raise the mmap threshold), and RSS would not grow.
    """
    block = mmap.mmap(-1, nbytes)
    np.frombuffer(block, dtype=np.uint8)[:: mmap.PAGESIZE] = 1
    return block


MIB = 1024 * 1024
linux_only = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")

# /proc/meminfo of a Raspberry Pi 5 (8 GB) in the kernel's format (fs/proc/meminfo.c):
# "kB" columns padded to width 8, plus unit-less HugePages counts.
MEMINFO = """\
MemTotal:        8245680 kB
MemFree:         6893456 kB
MemAvailable:    7561232 kB
Buffers:           52416 kB
Cached:           790960 kB
SwapTotal:        204784 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
"""
# Linux 3.10 (before MemAvailable arrived in 3.14).
MEMINFO_OLD = "MemTotal:        1012600 kB\nMemFree:          412100 kB\nCached:           301200 kB\n"
# /proc/<pid>/status lines as fs/proc/task_mmu.c prints them (tab after the colon).
STATUS = """\
Name:\tpython3
State:\tS (sleeping)
VmPeak:\t  912340 kB
VmSize:\t  901220 kB
VmHWM:\t  612000 kB
VmRSS:\t  148000 kB
RssAnon:\t  120000 kB
Threads:\t4
"""


def _fake_proc(tmp_path: Path, status: str = STATUS, meminfo: str = MEMINFO, clear_refs: bool = True) -> Path:
    (tmp_path / "self").mkdir()
    (tmp_path / "self/status").write_text(status)
    (tmp_path / "meminfo").write_text(meminfo)
    if clear_refs:
        (tmp_path / "self/clear_refs").write_text("")
    return tmp_path


def _hwm_bytes() -> int:
    return parse_status(Path("/proc/self/status").read_text())["VmHWM"]


# --------------------------------------------------------------------------- parsing


def test_parse_status_and_meminfo_are_kib_to_bytes_and_skip_counts():
    status = parse_status(STATUS)
    assert status["VmHWM"] == 612000 * 1024
    assert status["VmRSS"] == 148000 * 1024
    assert "Threads" not in status and "Name" not in status
    meminfo = parse_meminfo(MEMINFO)
    assert meminfo["MemAvailable"] == 7561232 * 1024
    assert meminfo["Hugepagesize"] == 2048 * 1024
    assert "HugePages_Total" not in meminfo  # a count, not kB


def test_snapshot_reads_hwm_and_mem_available_from_proc_root(tmp_path):
    snap = snapshot(proc_root=_fake_proc(tmp_path), uss=False)
    assert snap.hwm_bytes == 612000 * 1024
    assert snap.mem_available_bytes == 7561232 * 1024
    assert snap.rss_bytes > 0 and snap.uss_bytes is None and snap.notes == ()


def test_snapshot_without_mem_available_says_so(tmp_path):
    snap = snapshot(proc_root=_fake_proc(tmp_path, meminfo=MEMINFO_OLD), uss=False)
    assert snap.mem_available_bytes is None
    assert any("MemAvailable" in note for note in snap.notes)


def test_snapshot_without_status_file_is_a_note_not_a_crash(tmp_path):
    snap = snapshot(proc_root=tmp_path, uss=False)
    assert snap.hwm_bytes is None and snap.mem_available_bytes is None
    assert any("status" in note for note in snap.notes) and any("meminfo" in note for note in snap.notes)


def test_uss_denied_is_none_with_a_reason(monkeypatch):
    def denied(self):
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "memory_full_info", denied)
    snap = snapshot()
    assert snap.uss_bytes is None
    assert any("AccessDenied" in note for note in snap.notes)


def test_snapshot_of_a_process_that_is_gone_is_a_bench_error():
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_pid = int(child.stdout)
    if psutil.pid_exists(gone_pid):  # reused already: nothing to test
        pytest.skip("pid was reused")
    with pytest.raises(BenchError, match=str(gone_pid)):
        snapshot(gone_pid)


# --------------------------------------------------------------------------- peak reset


def test_reset_peak_without_clear_refs_says_why(tmp_path):
    ok, why = reset_peak(proc_root=_fake_proc(tmp_path, clear_refs=False))
    assert not ok and "does not exist" in why


def test_reset_peak_that_the_kernel_ignores_is_a_failure(tmp_path):
    # A plain file accepts the write, but VmHWM (612000 kB) stays above VmRSS: not reset.
    ok, why = reset_peak(proc_root=_fake_proc(tmp_path))
    assert not ok and "did not drop" in why
    assert (tmp_path / "self/clear_refs").read_text() == "5"


def test_tracker_without_reset_says_peak_includes_loading(tmp_path):
    tracker = PeakTracker(model_file_bytes=3 * MB, uss=False, proc_root=_fake_proc(tmp_path))
    tracker.before_load()
    tracker.after_session()
    tracker.after_first_inference()
    assert tracker.start_steady_state()[0] is False
    report = tracker.report()
    assert report.peak_rss_steady_bytes == 612000 * 1024
    assert report.peak_includes_loading is True
    assert report.peak_method == "VmHWM since process start"
    assert report.mem_available_delta_bytes == 0  # the fixture's meminfo does not change
    assert any("peak not reset" in note for note in report.notes)


def test_tracker_falls_back_to_ru_maxrss_without_vmhwm(tmp_path):
    (tmp_path / "meminfo").write_text(MEMINFO)
    tracker = PeakTracker(uss=False, proc_root=tmp_path)
    tracker.before_load()
    report = tracker.report()
    assert report.peak_method == "ru_maxrss" and report.peak_includes_loading
    # RSS counters are per-CPU approximations (Linux 6.2+): allow a little slack.
    assert report.peak_rss_steady_bytes is not None
    assert report.peak_rss_steady_bytes >= report.rss_before_load_bytes - 1 * MIB
    assert report.rss_after_session_bytes is None
    assert any("after_session was not recorded" in note for note in report.notes)


@linux_only
def test_real_snapshot_of_this_process():
    snap = snapshot()
    assert snap.rss_bytes > 1 * MIB
    assert snap.uss_bytes is not None and 0 < snap.uss_bytes <= snap.rss_bytes
    assert snap.hwm_bytes is not None and snap.hwm_bytes >= snap.rss_bytes
    assert snap.mem_available_bytes is not None and snap.mem_available_bytes > 0
    json.dumps(snap.to_dict())


@linux_only
def test_200mb_array_raises_rss_and_reset_peak_claims_what_the_kernel_did():
    """Whatever reset_peak() answers must be what happened (in this sandbox: it resets)."""
    before = snapshot(uss=False)
    big = resident(200 * MB)
    during = snapshot(uss=False)
    assert during.rss_bytes - before.rss_bytes > 190 * MB
    big.close()
    peak_after_free = _hwm_bytes()
    assert peak_after_free - before.rss_bytes > 190 * MB  # the high-water mark remembers it

    ok, why = reset_peak()
    dropped = _hwm_bytes() < peak_after_free - 150 * MB
    assert ok == dropped, why
    if ok:  # VmHWM now tracks the new, smaller peak
        # Measured from the RSS right after the reset, not from `before`: in a full test run other
        # objects may be freed in between, and RSS can end below where this test started.
        base = snapshot(uss=False).rss_bytes
        small = resident(50 * MB)
        assert 45 * MB < _hwm_bytes() - base < 150 * MB
        small.close()
    else:  # an independent write must not succeed where reset_peak() said it cannot
        resident(200 * MB).close()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return
        assert _hwm_bytes() - before.rss_bytes > 190 * MB, f"clear_refs works here, but reset_peak said: {why}"


@linux_only
def test_tracker_on_this_process_reports_phases_and_a_steady_peak():
    tracker = PeakTracker(model_file_bytes=42 * MB)
    tracker.before_load()
    weights = resident(60 * MB)  # the "session": stays resident
    tracker.after_session()
    scratch = resident(100 * MB)  # a first-inference workspace, freed before steady state
    tracker.after_first_inference()
    scratch.close()
    ok, why = tracker.start_steady_state()
    activations = resident(20 * MB)
    report = tracker.report()
    weights.close()
    activations.close()

    assert report.rss_after_session_bytes - report.rss_before_load_bytes > 55 * MB
    assert report.rss_after_first_inference_bytes - report.rss_after_session_bytes > 95 * MB
    assert report.uss_after_session_bytes is not None
    first_inference_peak = report.rss_after_first_inference_bytes
    if ok:
        assert report.peak_method == "VmHWM after clear_refs" and not report.peak_includes_loading
        assert report.peak_rss_steady_bytes < first_inference_peak - 50 * MB, why
    else:
        assert report.peak_method == "VmHWM since process start" and report.peak_includes_loading
        assert report.peak_rss_steady_bytes >= first_inference_peak
    data = report.to_dict()
    json.dumps(data)
    assert all(k.endswith("_bytes") for k in data if k not in ("peak_includes_loading", "peak_method", "notes"))


# --------------------------------------------------------------------------- verdicts


def _report(peak_bytes: int | None, baseline_bytes: int = 30 * MIB, model_bytes: int | None = 10 * MB, **kw):
    fields = dict.fromkeys(MemoryReport.__dataclass_fields__)
    fields.update(
        model_file_bytes=model_bytes,
        rss_before_load_bytes=baseline_bytes,
        peak_rss_steady_bytes=peak_bytes,
        peak_includes_loading=False,
        peak_method="VmHWM after clear_refs",
        notes=(),
    )
    fields.update(kw)
    return MemoryReport(**fields)


def test_verdicts_against_pi5_ram_quarter_and_model_limit():
    pi5 = load_profile("raspberry-pi-5")  # 8192 MiB RAM -> 2048 MiB allowance; 50 MB model limit
    verdicts = memory_verdicts(_report(300 * MIB), pi5)
    assert set(verdicts) == {"peak_rss", "model_size"}
    assert verdicts["peak_rss"].status == "pass"
    assert verdicts["peak_rss"].limit == 2048.0 and verdicts["peak_rss"].unit == "MiB"
    assert "heuristic" in verdicts["peak_rss"].reason
    assert verdicts["model_size"].status == "pass"

    assert memory_verdicts(_report(2048 * MIB), pi5)["peak_rss"].status == "fail"  # strictly under
    assert memory_verdicts(_report(2048 * MIB - 1), pi5)["peak_rss"].status == "pass"
    assert memory_verdicts(_report(None), pi5)["peak_rss"].status == "not-valid"
    assert memory_verdicts(_report(10, model_bytes=60 * MB), pi5)["model_size"].status == "fail"
    assert memory_verdicts(_report(10, model_bytes=None), pi5)["model_size"].status == "not-valid"


def test_fraction_is_a_parameter_and_loading_is_named():
    pi5 = load_profile("raspberry-pi-5")
    verdict = memory_verdicts(_report(300 * MIB), pi5, max_ram_fraction=0.03)["peak_rss"]
    assert verdict.status == "fail" and "3%" in verdict.reason
    loading = _report(300 * MIB, peak_includes_loading=True, peak_method="VmHWM since process start")
    assert "including loading" in memory_verdicts(loading, pi5)["peak_rss"].reason
    with pytest.raises(ValueError):
        judge_peak_rss(_report(1), pi5.ram_bytes, 1.5)


def test_process_baseline_over_the_allowance_is_not_valid():
    band = load_profile("wearable-band")  # 384 KiB of MCU SRAM: a host interpreter says nothing
    verdict = memory_verdicts(_report(60 * MIB), band)["peak_rss"]
    assert verdict.status == "not-valid" and "before the model was loaded" in verdict.reason
