"""Every maintainer script in tools/ answers ``--help`` with its usage, exit 0, and writes nothing.

(``loopback_sshd.py --help`` used to start an sshd in ``./--help``, ``wheelhouse_from_env.py --help`` to
write a wheelhouse there, ``firmware_emulator.py dut --help`` to crash on a ``%`` in a help string.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
SCRIPTS = sorted(p.name for p in TOOLS.glob("*.py"))
SUBCOMMANDS = [("firmware_emulator.py", "host"), ("firmware_emulator.py", "dut"), ("firmware_emulator.py", "dataset")]


@pytest.mark.parametrize("argv", [(s,) for s in SCRIPTS] + SUBCOMMANDS, ids=" ".join)
def test_help_prints_usage_and_writes_nothing(argv: tuple[str, ...], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(TOOLS / argv[0]), *argv[1:], "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == [], "--help must not create files"
