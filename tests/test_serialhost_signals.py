"""SIGTERM ends a session like Ctrl-C: `edgerun serial host` writes its summary, and the firmware
emulator removes its --link (real processes, real signals, real ptys)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import waiting
from tool_modules import tool

emu_mod = tool("firmware_emulator")
EMULATOR = Path(__file__).resolve().parent.parent / "tools" / "firmware_emulator.py"


def wait_for(predicate, what: str, timeout_s: float = 60.0) -> None:  # noqa: ANN001
    """waiting.wait_for, polled every 20 ms."""
    waiting.wait_for(predicate, what, timeout_s, poll_s=0.02)


def test_sigterm_to_the_emulator_removes_its_link(tmp_path: Path) -> None:
    link = tmp_path / "ttyEcg"
    proc = subprocess.Popen([sys.executable, str(EMULATOR), "host", "--link", str(link)], stdout=subprocess.DEVNULL)
    try:
        wait_for(link.is_symlink, "the emulator's --link")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert not link.is_symlink() and not link.exists()


def test_sigterm_to_serial_host_still_writes_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "host.json"
    fw = emu_mod.HostFirmware(speed=20.0)
    with emu_mod.FirmwareEmulator(fw) as emu:
        cmd = [sys.executable, "-m", "edgerun.cli", "serial", "host", "--port", emu.path, "--json", str(out), "-q"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(fw.results) >= 3, "the host's first RESULT frames")
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert "Traceback" not in err
    doc = json.loads(out.read_text())
    assert doc["end"]["reason"] == "stopped" and doc["windows"]["decided"] >= 3
    assert doc["sessions"]["handshakes"] >= 1
