"""Remembered manifest passes: a manifest whose exact bytes passed this exact schema is not re-run
through pydantic on the next start (issue 13: the schema's import and build were ~2/3 of
``edgerun run``'s own start-up cost).

Why a remembered pass is still a real check:

- Whether a document passes is a pure function of its bytes and of the schema code. The key is
  the sha256 of the exact bytes just read (and parsed: the same buffer, no second read) together
  with a fingerprint of the schema: the sha256 of the source of ``edgerun/schema/manifest.py``,
  ``edgerun/formats/limits.py``, ``edgerun/formats/manifest.py``, this file, and pydantic's
  ``version.py`` (pydantic pins its pydantic-core). Change one byte of the manifest, of the
  schema or of pydantic's version, and the key changes: the full validation runs again.
- Only passes are recorded; a manifest that fails is checked, and reported, every time.
- An entry is honoured only if it is a regular file owned by this user, not writable by group or
  others, holding exactly the record it should (the fingerprint and the manifest's sha256). Its
  folder is made mode 0700. Anyone who can write there can also edit this user's installed code.
- On a hit every check that is not pydantic's still runs (``edgerun.artifact``): the size cap,
  UTF-8 and strict JSON (no NaN/Infinity), the schema name and version, paths kept inside the
  manifest's folder, the model file's sha256 against the manifest. And ``build_manifest`` is the
  same function that builds the ``Manifest`` after a full validation, so both paths return equal
  objects.

Where: ``$EDGERUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgerun``, else ``~/.cache/edgerun``, in a
``manifests`` folder (one 157-byte file per manifest). ``EDGERUN_NO_CACHE=1`` turns it off. A cache
that cannot be read or written is no cache: nothing fails because of it.

No pydantic here: a hit must not import it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from edgerun._sha import sha256
from edgerun.formats.manifest import Manifest
from edgerun.formats.spec import Quant, TensorSpec

__all__ = ["build_manifest", "cache_dir", "known_valid", "remember", "remembered"]

_EDGERUN = Path(__file__).resolve().parent.parent
_SOURCES = ("schema/manifest.py", "formats/limits.py", "formats/manifest.py", "schema/manifest_cache.py")
_MAGIC = b"edgerun manifest passed v1\n"
_fingerprint: str | None = None


def build_manifest(data: dict[str, Any]) -> Manifest:
    """The ``Manifest`` of a document that has passed the schema (its values are already the
    checked JSON types: strict validation coerces nothing, so they are read as written)."""

    def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(
                t["name"],
                tuple(t["shape"]),
                t["dtype"],
                None if t.get("quant") is None else Quant(float(t["quant"]["scale"]), t["quant"]["zero_point"]),
            )
            for t in items
        )

    raw_inputs = data.get("raw_inputs")
    return Manifest(
        name=data["name"],
        format=data["format"],
        model_file=data["model_file"],
        sha256=data["sha256"].lower(),
        precision=data["precision"],
        inputs=specs(data["inputs"]),
        outputs=specs(data["outputs"]),
        raw_inputs=None if raw_inputs is None else specs(raw_inputs),
        # The ops as written: a reader that rewrites the manifest keeps its bytes.
        preprocess=tuple(dict(op) for op in data.get("preprocess") or ()),
        postprocess=tuple(dict(op) for op in data.get("postprocess") or ()),
        labels=tuple(data.get("labels") or ()),
        provenance=dict(data.get("provenance") or {}),  # as written, extra keys and all
        samples=data.get("samples"),
        schema_version=data["schema_version"],
    )


def remembered(data: dict[str, Any], raw: bytes) -> Manifest | None:
    """The Manifest of ``data`` (parsed from exactly ``raw``) if its pass is remembered, else None.
    A document that the builder cannot read despite an entry (which only a forged entry could
    cause) is None too: the caller then runs the full schema, which says what is wrong."""
    if not known_valid(raw):
        return None
    try:
        return build_manifest(data)
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


def cache_dir() -> Path | None:
    """The manifest-pass folder, or None when caching is off."""
    if os.environ.get("EDGERUN_NO_CACHE", "") not in ("", "0"):
        return None
    root = os.environ.get("EDGERUN_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = os.path.join(xdg, "edgerun") if xdg else os.path.join(os.path.expanduser("~"), ".cache", "edgerun")
    return Path(root) / "manifests"


def schema_fingerprint() -> str | None:
    """sha256 over the schema's sources and pydantic's version file; None if one cannot be read."""
    global _fingerprint
    if _fingerprint is None:
        from importlib.util import find_spec

        h = sha256()
        try:
            spec = find_spec("pydantic")
            if spec is None or not spec.submodule_search_locations:
                return None
            files = [_EDGERUN / s for s in _SOURCES]
            files.append(Path(next(iter(spec.submodule_search_locations))) / "version.py")
            for f in files:
                body = f.read_bytes()
                h.update(f"{f.name} {len(body)}\n".encode())
                h.update(body)
        except (OSError, ValueError, ImportError):
            return None
        _fingerprint = h.hexdigest()
    return _fingerprint


def _entry(raw: bytes) -> tuple[Path, bytes] | None:
    folder, fp = cache_dir(), schema_fingerprint()
    if folder is None or fp is None:
        return None
    hashed = sha256()
    hashed.update(raw)
    digest = hashed.hexdigest()
    named = sha256()
    named.update(f"{fp} {digest}".encode())
    name = named.hexdigest()
    return folder / name, _MAGIC + f"{fp}\n{digest}\n".encode()


def known_valid(raw: bytes) -> bool:
    """Whether these exact manifest bytes have passed this exact schema before (see the module doc)."""
    found = _entry(raw)
    if found is None:
        return False
    path, record = found
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022:
            return False
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            return False
        return os.read(fd, len(record) + 1) == record
    except OSError:
        return False
    finally:
        os.close(fd)


def remember(raw: bytes) -> None:
    """Record that these bytes passed (call only after the full validation did). Best effort."""
    found = _entry(raw)
    if found is None:
        return
    path, record = found
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.write(fd, record)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # atomic: a reader sees no entry or the whole one
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
