"""The device wheel (edgerun/targets/wheel.py) carries the installed metadata: a checkout whose
pyproject.toml names a dependency that metadata lacks (an editable install older than pyproject) is
refused in one line instead of pushing an edgerun without it to the device."""

from __future__ import annotations

import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from edgerun.errors import TargetSetupError
from edgerun.targets.wheel import build_self_wheel, check_metadata_current

REPO = Path(__file__).resolve().parents[1]


def _pyproject(tmp_path: Path, deps: list[str]) -> Path:
    path = tmp_path / "pyproject.toml"
    listed = ", ".join(f'"{d}"' for d in deps)
    path.write_text(f'[project]\nname = "edgerun"\ndependencies = [{listed}]\n')
    return path


def test_a_dependency_the_installed_metadata_lacks_is_named(tmp_path: Path) -> None:
    dist = metadata.distribution("edgerun")
    installed = [r for r in dist.requires or () if "extra" not in r]
    path = _pyproject(tmp_path, [*installed, "Some_New.Dep>=1; python_version >= '3.10'"])
    with pytest.raises(TargetSetupError, match=r"lacks dependencies .*\(some-new-dep\).*pip install -e \. again"):
        check_metadata_current(dist, path)


def test_the_same_dependencies_pass_and_the_wheel_carries_them(tmp_path: Path) -> None:
    dist = metadata.distribution("edgerun")
    check_metadata_current(dist, _pyproject(tmp_path, [r for r in dist.requires or () if "extra" not in r]))
    check_metadata_current(dist, tmp_path / "absent.toml")  # an installed wheel: nothing to compare
    wheel = build_self_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as whl:
        meta = whl.read(f"edgerun-{dist.version}.dist-info/METADATA").decode()
    assert all(f"Requires-Dist: {r}" in meta for r in dist.requires or ())
