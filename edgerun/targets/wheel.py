"""A wheel of the edgerun that is running here, for installing the same version on a device.

No build backend and no network: the installed package's files (an editable checkout
or an installed wheel alike) and its own metadata are zipped into a pure-Python wheel
(PEP 427). The device then runs exactly the code that drives it. The device profiles
live in ``device_profiles/`` at the top of a checkout and inside the package in a wheel;
either way they go to ``edgerun/device_profiles`` as ``pyproject.toml`` packs them.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import zipfile
from importlib import metadata
from pathlib import Path

from edgerun.errors import TargetSetupError

__all__ = ["build_self_wheel"]

_WHEEL = "Wheel-Version: 1.0\nGenerator: edgerun.targets.wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _package_files() -> list[tuple[str, Path]]:
    """(path inside the wheel, file here) for the package and its device profiles."""
    import edgerun
    from edgerun.profiles import profile_dir

    package = Path(edgerun.__file__).resolve().parent
    out = [
        (f"edgerun/{path.relative_to(package).as_posix()}", path)
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]
    profiles = profile_dir().resolve()
    if package not in profiles.parents:  # an editable checkout: profiles sit beside the package
        out += [(f"edgerun/device_profiles/{p.name}", p) for p in sorted(profiles.glob("*.toml"))]
    return out


def _record_row(name: str, data: bytes) -> tuple[str, str, str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return name, f"sha256={digest}", str(len(data))


def _name(requirement: str) -> str:
    """The project name of a PEP 508 requirement, normalized (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement


def check_metadata_current(dist: metadata.Distribution, pyproject: Path) -> None:
    """Refuse a checkout whose installed metadata predates its pyproject.toml's dependencies.

    The wheel carries the installed METADATA: after pyproject.toml gained a dependency, an editable
    install made before it would push an edgerun that lacks it to the device (seen: orjson, and the
    fallback's import failed there). TargetSetupError names the missing ones and the fix.
    """
    from edgerun._tomlio import read_toml

    if not pyproject.is_file():
        return  # an installed wheel: its metadata is all there is
    try:
        project = read_toml(pyproject, TargetSetupError, what="pyproject.toml").get("project", {})
    except TargetSetupError:
        return  # not a checkout we can read
    if project.get("name") != "edgerun":
        return
    wanted = {_name(r) for r in project.get("dependencies", ())}
    installed = {_name(r) for r in dist.requires or () if not re.search(r"\bextra\s*==", r)}  # not an extra's
    missing = sorted(wanted - installed)
    if missing:
        raise TargetSetupError(
            f"the installed edgerun's metadata lacks dependencies that {pyproject} names ({', '.join(missing)}): "
            "the editable install is older than pyproject.toml; run pip install -e . again, then retry"
        )


def build_self_wheel(dest_dir: Path) -> Path:
    """Write ``edgerun-<version>-py3-none-any.whl`` into ``dest_dir``; its path."""
    import edgerun

    dist = metadata.distribution("edgerun")
    check_metadata_current(dist, Path(edgerun.__file__).resolve().parent.parent / "pyproject.toml")
    version = dist.version
    info = f"edgerun-{version}.dist-info"
    extra = {
        f"{info}/METADATA": (dist.read_text("METADATA") or "").encode(),
        f"{info}/WHEEL": _WHEEL.encode(),
        f"{info}/entry_points.txt": (dist.read_text("entry_points.txt") or "").encode(),
    }
    out = Path(dest_dir) / f"edgerun-{version}-py3-none-any.whl"
    rows = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as whl:
        for name, path in _package_files():
            data = path.read_bytes()
            whl.writestr(name, data)
            rows.append(_record_row(name, data))
        for name, data in extra.items():
            whl.writestr(name, data)
            rows.append(_record_row(name, data))
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows([*rows, (f"{info}/RECORD", "", "")])
        whl.writestr(f"{info}/RECORD", record.getvalue())
    return out
