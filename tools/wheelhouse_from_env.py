"""An offline wheelhouse from the distributions installed in this environment.

    python tools/wheelhouse_from_env.py DIR [DIST ...]   # default: edgerun's runtime dependencies

For ``edgerun target setup --wheelhouse DIR`` when the device has the same
architecture, C library and Python as this machine (a second x86-64 box, an arm64
host preparing an arm64 board). Each installed distribution is packed back into a
wheel from its ``RECORD`` and ``WHEEL`` metadata (the tag it was installed with), so
nothing is downloaded. Scripts outside site-packages are left out (pip recreates entry
points). For another architecture or Python, download instead:

    pip download numpy onnxruntime ai-edge-litert psutil pyserial \\
        --platform manylinux2014_aarch64 --python-version 3.11 --only-binary=:all: -d DIR

The tests use this to install edgerun into a fresh virtual environment over a loopback
sshd without network access.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import re
import sys
import zipfile
from importlib import metadata
from pathlib import Path

SKIP_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def requirement_closure(root: str = "edgerun") -> list[str]:
    """The installed distributions ``root`` needs at run time (extras and other platforms left out)."""
    seen: dict[str, str] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a marker-excluded or optional requirement
        seen[key] = dist.metadata["Name"]
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            spec, _, marker = req.partition(";")
            if marker and not _marker_holds(marker):
                continue
            todo.append(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0])
    return [name for key, name in seen.items() if key != re.sub(r"[-_.]+", "-", root).lower()]


def _marker_holds(marker: str) -> bool:
    try:
        from packaging.markers import Marker
    except ImportError:  # without packaging, keep the requirement: a spare wheel harms nothing
        return True
    return Marker(marker.strip()).evaluate()


def _tag(dist: metadata.Distribution) -> str:
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise ValueError(f"{dist.metadata['Name']}: no Tag in its WHEEL metadata (installed from an sdist?)")
    parts = [list(dict.fromkeys(t.split("-")[i] for t in tags)) for i in range(3)]
    return "-".join(".".join(p) for p in parts)


def repack(name: str, dest: Path) -> Path:
    """Write the installed distribution ``name`` as a wheel into ``dest``; its path."""
    dist = metadata.distribution(name)
    base = Path(str(dist.locate_file("")))
    files = [f for f in dist.files or [] if f.parts[0] != ".." and f.suffix != ".pyc"]
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    safe = re.sub(r"[-.]+", "_", dist.metadata["Name"])
    out = dest / f"{safe}-{dist.version}-{_tag(dist)}.whl"
    rows = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as whl:
        for f in files:
            path = base / f
            if (f.parts[0] == info and f.name in SKIP_INFO) or not path.is_file():
                continue
            data = path.read_bytes()
            whl.writestr(f.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append((f.as_posix(), f"sha256={digest}", str(len(data))))
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows([*rows, (f"{info}/RECORD", "", "")])
        whl.writestr(f"{info}/RECORD", record.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="the wheelhouse folder (made if missing)")
    ap.add_argument("dist", nargs="*", help="distributions to pack (default: edgerun's runtime dependencies)")
    args = ap.parse_args(argv)
    dest = args.dir
    if dest.exists() and not dest.is_dir():
        ap.error(f"{dest} exists and is not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    for name in args.dist or requirement_closure():
        print(repack(name, dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
