"""``edgerun target setup``: a virtual environment with this edgerun in it, on the device.

Steps, each with its own timeout and a typed error that says how to fix it:

1. find the device's Python (``python3`` unless told) and check it is 3.10 or newer;
2. ``python3 -m venv <workdir>/venv`` (Debian and Raspberry Pi OS need ``python3-venv``);
3. build a wheel of the edgerun running here (``edgerun.targets.wheel``) and push it;
4. ``pip install`` it. With ``--wheelhouse DIR`` (wheels built on the host for the
   device's architecture and Python, see docs/lab.md) the folder is pushed and pip runs
   with ``--no-index``: nothing is downloaded, so a device without internet works.
   Without it, pip fetches the dependencies from the package index on the device;
5. check that the new interpreter imports edgerun, and report its version.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgerun.errors import TargetSetupError
from edgerun.targets.base import Target

__all__ = ["SetupReport", "setup_target"]

MIN_PYTHON = (3, 10)
PROBE = "import sys, platform, sysconfig; print(sys.version_info[0], sys.version_info[1], platform.machine(), sysconfig.get_platform())"  # noqa: E501
INSTALL_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class SetupReport:
    url: str
    base_python: str
    python_version: str
    platform: str
    venv_python: str
    edgerun_version: str
    offline: bool
    steps: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probe_python(target: Target, base_python: str) -> tuple[str, str]:
    done = target.run([base_python, "-c", PROBE], 60.0)
    if done.returncode in (126, 127):
        raise TargetSetupError(
            f"{target.spec.label}: no Python at {base_python!r} on the device: install it "
            "(Debian / Raspberry Pi OS: sudo apt install python3 python3-venv) or pass --base-python PATH"
        )
    fields = done.text.split()
    if done.returncode != 0 or len(fields) != 4:
        raise TargetSetupError(f"{target.spec.label}: {base_python} did not run: {done.tail()}")
    version = (int(fields[0]), int(fields[1]))
    if version < MIN_PYTHON:
        raise TargetSetupError(
            f"{target.spec.label}: {base_python} is Python {version[0]}.{version[1]}; edgerun needs "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer (pass --base-python with a newer one)"
        )
    return f"{version[0]}.{version[1]}", fields[3]


def _make_venv(target: Target, base_python: str, venv: str, system_site_packages: bool) -> None:
    argv = [base_python, "-m", "venv", *(["--system-site-packages"] if system_site_packages else []), venv]
    done = target.run(argv, 300.0)
    if done.returncode != 0:
        hint = " (Debian / Raspberry Pi OS: sudo apt install python3-venv)" if "ensurepip" in done.tail() else ""
        raise TargetSetupError(f"{target.spec.label}: cannot create {venv}{hint}: {done.tail()}")


def _push_folder(target: Target, local: Path, remote: str) -> None:
    push_tree = getattr(target, "push_tree", None)
    if push_tree is not None:  # ssh: one tar stream instead of one connection per wheel
        push_tree(local, remote)
        return
    for path in sorted(local.iterdir()):
        if path.is_file():
            target.push(path, f"{remote}/{path.name}", 600.0)


def _install(target: Target, venv_python: str, wheel: str, wheelhouse: str | None) -> None:
    # --no-compile: byte-compiling every installed file takes minutes on an SD card; Python
    # compiles (and caches) only the modules that are imported, on first use.
    argv = [venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-compile"]
    argv += ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    done = target.run([*argv, wheel], INSTALL_TIMEOUT_S)
    if done.returncode != 0:
        hint = ""
        if wheelhouse and "No matching distribution" in done.tail(2000):
            hint = (
                " The wheelhouse lacks a wheel for the device's platform and Python: build it with "
                "`pip download <packages> --platform <tag> --python-version <X.Y> --only-binary=:all: -d DIR` "
                "(docs/lab.md)."
            )
        raise TargetSetupError(f"{target.spec.label}: pip install failed:{hint} {done.tail(1500)}")


def _push_self_wheel(target: Target) -> str:
    """Build a wheel of this edgerun and push it to ``wheels/``; its file name."""
    from edgerun.targets.wheel import build_self_wheel

    with tempfile.TemporaryDirectory(prefix="edgerun-wheel-") as tmp:
        wheel = build_self_wheel(Path(tmp))
        target.push(wheel, f"wheels/{wheel.name}", 600.0)
        return wheel.name


def setup_target(
    target: Target,
    base_python: str = "python3",
    wheelhouse: Path | None = None,
    system_site_packages: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> SetupReport:
    """Prepare ``<workdir>/venv`` on the device with this edgerun; raises TargetSetupError with a fix."""
    if target.spec.kind == "adb":
        raise TargetSetupError(
            "target setup prepares ssh (or local) targets; on Android use runner=native with the "
            "benchmark binaries, or python=... pointing at a Python that adb shell can run"
        )
    steps = []
    version, platform = _probe_python(target, base_python)
    steps.append(say_(say, f"found Python {version} ({platform}) at {base_python}"))
    venv = target.path("venv")
    _make_venv(target, base_python, venv, system_site_packages)
    steps.append(say_(say, f"created {venv}"))
    wheel = _push_self_wheel(target)
    remote_house = None
    if wheelhouse is not None:
        remote_house = target.path("wheelhouse")
        _push_folder(target, Path(wheelhouse), "wheelhouse")
        steps.append(say_(say, f"pushed the wheelhouse {wheelhouse} to {remote_house}"))
    venv_python = f"{venv}/bin/python"
    _install(target, venv_python, target.path(f"wheels/{wheel}"), remote_house)
    steps.append(say_(say, f"installed {wheel}" + (" offline (--no-index)" if remote_house else "")))
    check = target.run([venv_python, "-c", "import edgerun; print(edgerun.__version__)"], 120.0)
    check.check(target.spec.label, "importing edgerun in the new environment")
    return SetupReport(
        target.spec.url,
        base_python,
        version,
        platform,
        venv_python,
        check.text.strip(),
        remote_house is not None,
        tuple(steps),
    )


def say_(say: Callable[[str], None], line: str) -> str:
    say(line)
    return line
