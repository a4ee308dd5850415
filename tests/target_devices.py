"""The device fixtures (tests/fixtures/targets/devices.py: a loopback sshd, the adb emulator,
offline wheelhouses), loaded once under one module name for the target and lab tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_NAME = "edgerun_test_devices"


def _load() -> ModuleType:
    if _NAME not in sys.modules:
        path = Path(__file__).resolve().parent / "fixtures" / "targets" / "devices.py"
        spec = importlib.util.spec_from_file_location(_NAME, path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


devices = _load()
