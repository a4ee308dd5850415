"""Model-store references: ``"name@current"`` to the files of an accepted version.

The on-device model store (written by edgerun.update.store, which describes the layout and why
each step survives a power cut) keeps ``<root>/<name>/versions/<version>/`` folders and two
symlinks, ``current`` and ``previous``. This module only reads it: ``resolve("name@current")``
(also ``@previous`` and ``@<version>``) gives the model file of an accepted version, and
``edgerun.load("name@current")`` goes through it. A version folder without ``acceptance.json``
(refused, or cut off before its acceptance ended) resolves to an error.

The root is ``--store DIR``, else ``$EDGERUN_MODELS``, else ``$XDG_DATA_HOME/edgerun/models``
(``~/.local/share/edgerun/models`` when XDG_DATA_HOME is unset, as the XDG Base Directory
specification says).

A version loads only with a valid ``acceptance.json`` (``check_acceptance``: its schema is
edgerun.schema.acceptance, pydantic, imported when a reference resolves); a missing, malformed
or edited one makes the version not loadable, said in one line.

It sits below the runtime, beside edgerun.artifact, and imports only the standard library at
module level: the
update package (TUF, the acceptance benchmark) sits above the bench, so the runtime must not
import it (tests/test_layers.py: no import circle between packages). edgerun.update.store
re-exports every name here, the home the issue-16 interface gave them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerun.errors import ArtifactError, UsageError

STORE_ENV = "EDGERUN_MODELS"
ACCEPTANCE_FILE = "acceptance.json"
MANIFEST_SUFFIX = ".edgerun.json"  # edgerun.artifact's; not imported, to keep this module light
MANIFEST_READ_BYTES = 4 << 20  # enough for any manifest; loading it checks its size for real

# A name or version is one path component: letters, digits and . _ + - (not starting with a dot,
# so that it never names a hidden or staging folder), at most 128 characters.
_PART = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
_PART_RE = re.compile(_PART)
_REF_RE = re.compile(rf"({_PART})@({_PART})")
POINTERS = ("current", "previous")


@dataclass(frozen=True)
class StoreRef:
    """An accepted version in the store: its name, version and files."""

    name: str
    version: str
    folder: Path
    model_path: Path
    manifest_path: Path


def store_root(store: str | os.PathLike[str] | None = None) -> Path:
    """``store``, else $EDGERUN_MODELS, else $XDG_DATA_HOME/edgerun/models (~/.local/share/...)."""
    if store:
        return Path(store)
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data_home) / "edgerun" / "models"


def check_part(value: object, what: str) -> str:
    """``value`` if it is a usable model name or version (one safe path component); UsageError otherwise."""
    if not isinstance(value, str) or not _PART_RE.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:60] + "..."
        raise UsageError(
            f"{what} {shown} is not usable; expected 1-128 letters, digits or . _ + - (not starting with . _ + -)"
        )
    return value


def is_ref(text: object) -> bool:
    """Whether ``text`` has the form ``name@selector`` (a store reference, not a file path)."""
    return isinstance(text, str) and _REF_RE.fullmatch(text) is not None


def parse_ref(ref: str) -> tuple[str, str]:
    """``"name@current"`` -> ("name", "current"); UsageError for anything else."""
    match = _REF_RE.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        raise UsageError(f"model reference {ref!r} is not NAME@current, NAME@previous or NAME@VERSION")
    return match.group(1), match.group(2)


def model_dir(root: Path, name: str) -> Path:
    return root / check_part(name, "model name")


def pointer(root: Path, name: str, which: str) -> str | None:
    """The version ``current`` or ``previous`` names, or None when it is not set."""
    try:
        target = os.readlink(model_dir(root, name) / which)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ArtifactError(f"{model_dir(root, name) / which}: not a symlink the store made ({exc.strerror})") from exc
    parts = Path(target).parts
    if len(parts) != 2 or parts[0] != "versions" or not _PART_RE.fullmatch(parts[1]):
        raise ArtifactError(f"{model_dir(root, name) / which} points at {target!r}; expected versions/<version>")
    return parts[1]


def version_folder(root: Path, name: str, version: str) -> Path:
    return model_dir(root, name) / "versions" / check_part(version, "model version")


def resolve_ref(ref: str, store: str | os.PathLike[str] | None = None) -> StoreRef:
    """The accepted version ``ref`` ("name@current", "name@previous", "name@<version>") names.

    ArtifactError when the store has no such model or version, or the version was never
    accepted on this device.
    """
    name, selector = parse_ref(ref)
    root = store_root(store)
    if selector in POINTERS:
        version = pointer(root, name, selector)
        if version is None:
            where = model_dir(root, name)
            raise ArtifactError(
                f"{ref}: the model store {root} has no {selector} version of {name!r} ({where / selector} "
                "is not set); install one with `edgerun update`"
            )
    else:
        version = selector
    folder = version_folder(root, name, version)
    if not folder.is_dir():
        raise ArtifactError(f"{ref}: no version {version!r} of {name!r} in the model store {root}")
    manifest = manifest_in(folder)
    try:
        check_acceptance(folder, name, version, manifest)
    except ArtifactError as exc:
        raise ArtifactError(f"{ref}: {exc}") from None
    return StoreRef(name, version, folder, folder / manifest.name[: -len(MANIFEST_SUFFIX)], manifest)


def check_acceptance(folder: Path, name: str, version: str, manifest: Path | None = None) -> dict[str, Any]:
    """The version folder's acceptance record, checked (edgerun.schema.acceptance: schema, every
    verdict a pass, name and version those of the folder, sha256 that of the manifest); otherwise
    ArtifactError saying in one line why the version is not loadable."""
    from edgerun.schema.acceptance import MAX_BYTES, parse_acceptance  # pydantic: only when a ref resolves

    path = folder / ACCEPTANCE_FILE
    fix = "install it with `edgerun update`"
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ArtifactError(
            f"version {version!r} of {name!r} was not accepted on this device (its acceptance was refused or "
            f"cut off); {fix}"
        ) from None
    except OSError as exc:
        raise ArtifactError(f"version {version!r} of {name!r}: {path} cannot be read ({exc.strerror}); {fix}") from None
    try:
        doc = parse_acceptance(raw, str(path))
        if (doc["name"], doc["version"]) != (name, version):
            raise ArtifactError(f"{path}: names {doc['name']} {doc['version']}, not this folder's {name} {version}")
        declared = _manifest_sha256(manifest or manifest_in(folder))
        if declared is not None and declared != doc["sha256"]:
            raise ArtifactError(
                f"{path}: accepted the model with sha256 {doc['sha256']}, but the manifest now names {declared}"
            )
    except ArtifactError as exc:
        raise ArtifactError(f"version {version!r} of {name!r} is not loadable: {exc}; {fix} again") from None
    return doc


def _manifest_sha256(manifest: Path) -> str | None:
    """The manifest's ``sha256`` field, or None where the manifest is not readable JSON (loading it says why)."""
    try:
        with open(manifest, "rb") as fh:
            data = json.loads(fh.read(MANIFEST_READ_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    value = data.get("sha256") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def resolve(ref: str, store: str | os.PathLike[str] | None = None) -> Path:
    """The model file of the accepted version ``ref`` names (see :func:`resolve_ref`)."""
    return resolve_ref(ref, store).model_path


def manifest_in(folder: Path) -> Path:
    """The one manifest in a version folder (staging names it after its model file)."""
    found = sorted(folder.glob("*" + MANIFEST_SUFFIX))
    if len(found) != 1:
        raise ArtifactError(f"{folder}: a store version holds exactly one *{MANIFEST_SUFFIX}, found {len(found)}")
    return found[0]
