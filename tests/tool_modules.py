"""Scripts the tests drive for real (tools/*.py emulators and builders, tests/fixtures/targets/devices.py),
imported by file path, once per test session: each is registered in ``sys.modules``, so every test
module shares one instance (and, for the device fixtures, one sshd and one adb emulator)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def load_file(path: Path, name: str) -> ModuleType:
    """The module at ``path``, imported under ``name`` the first time and reused after."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module."""
    return load_file(REPO / "tools" / f"{name}.py", f"edgerun_tool_{name}")


def target_devices() -> ModuleType:
    """tests/fixtures/targets/devices.py: the loopback sshd and adb emulator devices."""
    return load_file(TESTS / "fixtures" / "targets" / "devices.py", "edgerun_test_devices")
