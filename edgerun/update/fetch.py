"""Fetch a release from a TUF repository on a device: python-tuf's ngclient Updater does every check.

``fetch_release`` reads a repository written by ``edgerun.update.repo`` from a local folder (a USB
stick, a mounted share: no network at all) or from an https:// URL, starting from the root the
device trusts (``trusted_root``, a root.json provisioned out of band) and the metadata it kept
from its last update (``cache_dir``: what makes rollback detectable across runs). The files are
verified against the signed targets metadata (length and sha256) before they are written into
``dest_dir``, a fresh staging folder; ``edgerun.update.store`` installs them from there.

Network rules (the cloud-fallback privacy rules, docs/fallback.md): a URL is read only with
``allow_network=True`` (``--allow-network``), over https with certificates verified (``ca_file``
pins a CA bundle instead of the system's); plain http is refused unless the host is this machine
(localhost, 127.0.0.0/8, ::1), as for the fallback endpoint. All of this is checked before any
connection is made. Redirects are not followed and proxy variables are not read.

Every refusal by TUF becomes ``UpdateRefused`` naming the attack it detected (TUF specification
1.0, section 1.5.2 "attacks and weaknesses" and 5 "detailed client workflow"):

    ExpiredMetadataError            expired metadata: a frozen repository or a freeze attack
    BadVersionNumberError           rollback: older metadata than the device already trusts, or a
                                    mix-and-match of files from different versions
    LengthOrHashMismatchError,      tampered file: bytes differ from the signed length/hash
    DownloadLengthMismatchError     (an endless-data attack is cut at the signed length)
    UnsignedMetadataError           signatures: fewer valid signatures than the role's threshold
                                    (a wrong key, a missing signature)
    other RepositoryError           malformed metadata
    DownloadError                   the repository could not be read (missing file, HTTP error, TLS)

Interface note (issue 16): the agreed signature is kept; ``timeout_s`` was added (keyword, for the
network fetcher's socket timeout).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from edgerun.errors import ArtifactError, EdgerunError, OutputError, UpdateRefused, UsageError
from edgerun.update.repo import check_name
from edgerun.update.store import version_key as _natural  # the store prunes in the same order

__all__ = ["Release", "check_source", "fetch_release"]

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Release:
    """A release whose files TUF verified, staged in a folder. ``sha256`` is the model's (its file's, or
    over the file and its external data: edgerun.artifact.model_sha256)."""

    name: str
    version: str
    model_path: Path
    manifest_path: Path
    samples_path: Path | None
    sha256: str
    data_paths: tuple[Path, ...] = ()  # an ONNX model's external data files, staged beside it

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return str(v) if isinstance(v, Path) else [plain(p) for p in v] if isinstance(v, tuple) else v

        return {k: plain(v) for k, v in self.__dict__.items()}


def _is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, without a DNS lookup (the fallback endpoint's rule)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_source(
    source: str, *, allow_network: bool, ca_file: str | os.PathLike[str] | None
) -> tuple[str, Path | None]:
    """("url", None) or ("folder", path) for ``source``; UsageError before any connection if not allowed."""
    if "://" not in source:
        folder = Path(source)
        if not (folder / "metadata").is_dir():
            raise UsageError(f"update source {source}: expected a repository folder with metadata/ inside, or a URL")
        if ca_file is not None:
            raise UsageError("ca_file: only for an https:// source; a folder is read without TLS")
        return "folder", folder.resolve()
    parts = urlsplit(source)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"update source {source!r}: expected an https:// URL with a host, or a folder")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError(f"update source {source!r}: expected a base URL without user:password, ?query or #fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(
            f"update source {source!r}: plain http to a host that is not this machine; updates travel only over "
            "https (http:// is for 127.0.0.1/localhost/::1)"
        )
    if parts.scheme == "http" and ca_file is not None:
        raise UsageError("ca_file: only for an https:// source; this one is plain http")
    if not allow_network:
        raise UsageError(
            f"update source {source}: a network source, and network use is off by default (medical devices "
            "stay offline unless the integrator opts in); pass allow_network=True (--allow-network) or use a folder"
        )
    if ca_file is not None and not Path(ca_file).is_file():
        raise UsageError(f"ca_file {ca_file}: not a file; expected a PEM CA bundle")
    return "url", None


def _fetchers() -> tuple[type, type]:
    """The two FetcherInterface implementations (tuf is imported here, not when edgerun.update is)."""
    import urllib3
    from tuf.api import exceptions as tuf_exc
    from tuf.ngclient import FetcherInterface

    class FolderFetcher(FetcherInterface):
        """Reads ``file://`` URLs under one folder; a missing file is a 404 (ends the root search)."""

        def __init__(self, root: Path) -> None:
            self.root = root

        def _fetch(self, url: str) -> Iterator[bytes]:
            path = Path(unquote(urlsplit(url).path)).resolve()
            if not path.is_relative_to(self.root):
                raise tuf_exc.DownloadHTTPError(f"{path} is outside the repository folder {self.root}", 403)
            if not path.is_file():
                raise tuf_exc.DownloadHTTPError(f"{path} not found", 404)
            return self._chunks(path)

        @staticmethod
        def _chunks(path: Path) -> Iterator[bytes]:
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk

    class HttpsFetcher(FetcherInterface):
        """urllib3 with the CA bundle pinned, no redirects, no retries, no proxy variables."""

        def __init__(self, ca_file: str | None, timeout_s: float) -> None:
            self.pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=ca_file, retries=False)
            self.timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)

        def _fetch(self, url: str) -> Iterator[bytes]:
            try:
                response = self.pool.request("GET", url, preload_content=False, redirect=False, timeout=self.timeout)
            except urllib3.exceptions.TimeoutError as exc:
                raise tuf_exc.SlowRetrievalError(f"{url}: timed out") from exc
            if response.status != 200:
                response.release_conn()
                raise tuf_exc.DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
            return self._chunks(response)

        @staticmethod
        def _chunks(response: Any) -> Iterator[bytes]:
            try:
                yield from response.stream(_CHUNK)
            except urllib3.exceptions.TimeoutError as exc:
                raise tuf_exc.SlowRetrievalError("read timed out") from exc
            finally:
                response.release_conn()

    return FolderFetcher, HttpsFetcher


def _refusal(exc: BaseException, source: str, phase: str) -> EdgerunError:
    """One line naming the attack TUF detected (or why the repository could not be read); ``phase`` is
    "metadata" while the Updater refreshes, "target <path>" while it downloads one of the release's files.

    A file's observed hash is left out, as IntegrityError does (edgerun/artifact.py): the signed one
    is all that restoring the repository needs."""
    from tuf.api import exceptions as tuf_exc

    why = re.sub(r"Observed hash [0-9a-f]+ does not match", "sha256 does not match", str(exc) or type(exc).__name__)
    if isinstance(exc, tuf_exc.ExpiredMetadataError):
        what = (
            f"expired metadata ({why}): the repository stopped re-signing, or someone replays old metadata "
            "(a freeze attack); the publisher must re-sign it (edgerun publish --refresh)"
        )
    elif isinstance(exc, tuf_exc.BadVersionNumberError):
        what = (
            f"rollback attack ({why}): the repository offers metadata older than this device already trusts, "
            "or mixes files of different versions (mix-and-match)"
        )
    elif isinstance(exc, tuf_exc.LengthOrHashMismatchError | tuf_exc.DownloadLengthMismatchError):
        what = (
            f"tampered file {phase.removeprefix('target ')} ({why}): its bytes do not match the signed metadata"
            if phase.startswith("target")
            else f"tampered or mixed metadata ({why}): a metadata file is not the one the role above it signed "
            "(altered, or a mix-and-match of files from different versions)"
        )
    elif isinstance(exc, tuf_exc.UnsignedMetadataError):
        what = f"untrusted signatures ({why}): fewer valid signatures than the threshold (a wrong or missing key)"
    elif isinstance(exc, tuf_exc.RepositoryError):
        what = f"invalid repository metadata ({why})"
    elif isinstance(exc, tuf_exc.DownloadError):
        cause = exc.__cause__ or exc.__context__
        what = f"cannot read the repository ({why}{f': {cause}' if cause else ''})"
    else:
        what = f"{type(exc).__name__}: {why}"
    return UpdateRefused(f"update refused from {source}: {what}")


def _release_targets(metadata_dir: Path, name: str, version: str | None) -> tuple[str, dict[str, str]]:
    """The version to fetch and its target paths by kind, from the targets metadata the Updater
    verified and kept in ``metadata_dir`` during ``refresh()``."""
    from tuf.api.metadata import Metadata, Targets

    targets = Metadata[Targets].from_file(str(metadata_dir / "targets.json")).signed.targets
    by_version: dict[str, dict[str, str]] = {}
    for path, info in targets.items():
        tag = (info.custom or {}).get("edgerun", {})
        if tag.get("name") == name and isinstance(tag.get("version"), str):
            by_version.setdefault(tag["version"], {})[tag.get("kind", "")] = path
    if not by_version:
        raise UpdateRefused(f"no release named {name!r} in the repository (published: {_names(targets)})")
    chosen = version if version is not None else max(by_version, key=_natural)
    if chosen not in by_version:
        raise UpdateRefused(
            f"no release {name} {chosen} in the repository (published: {', '.join(sorted(by_version, key=_natural))})"
        )
    kinds = by_version[chosen]
    if "model" not in kinds or "manifest" not in kinds:
        raise UpdateRefused(f"release {name} {chosen} lacks its model or manifest in the targets metadata")
    return chosen, kinds


def _names(targets: dict[str, Any]) -> str:
    names = sorted({(t.custom or {}).get("edgerun", {}).get("name", "?") for t in targets.values()})
    return ", ".join(map(str, names)) or "nothing"


def _fresh_dir(dest: Path) -> bool:
    """Make ``dest`` (True) or accept it empty (False); anything in it is refused."""
    if dest.exists():
        if not dest.is_dir() or any(dest.iterdir()):
            raise OutputError(f"{dest}: the staging folder must be new or empty")
        return False
    dest.mkdir(parents=True)
    return True


def fetch_release(
    source: str | os.PathLike[str],
    name: str,
    version: str | None = None,
    *,
    trusted_root: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    allow_network: bool = False,
    ca_file: str | os.PathLike[str] | None = None,
    timeout_s: float = 30.0,
) -> Release:
    """Fetch release ``name`` (``version``, else the highest published) through TUF into ``dest_dir``.

    ``trusted_root``: the root.json this device trusts. ``cache_dir``: the device's TUF metadata
    (kept between calls; one per repository). Raises UpdateRefused when TUF refuses, UsageError
    for a source that is not allowed, OutputError for a ``dest_dir`` that is not new or empty.
    """
    source = os.fspath(source)
    check_name("name", name)
    if version is not None:
        check_name("version", version)
    _, folder = check_source(source, allow_network=allow_network, ca_file=ca_file)
    if not 0 < timeout_s <= 3600:
        raise UsageError(f"timeout_s: expected seconds in (0, 3600]; got {timeout_s!r}")
    try:
        bootstrap = Path(trusted_root).read_bytes()
    except OSError as exc:
        raise UsageError(f"trusted_root {trusted_root}: cannot read it ({exc.strerror}); expected a root.json") from exc
    from tuf.api import exceptions as tuf_exc
    from tuf.ngclient import Updater

    folder_fetcher, https_fetcher = _fetchers()
    if folder is not None:
        base, fetcher = "file://" + quote(str(folder)) + "/", folder_fetcher(folder)
    else:
        base, fetcher = source.rstrip("/") + "/", https_fetcher(None if ca_file is None else str(ca_file), timeout_s)
    meta_dir, dest = Path(cache_dir), Path(dest_dir).absolute()
    meta_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = _fresh_dir(dest)
    phase, done = "metadata", False
    try:
        updater = Updater(str(meta_dir), base + "metadata/", str(dest), base + "targets/", fetcher, bootstrap=bootstrap)
        updater.refresh()
        chosen, paths = _release_targets(meta_dir, name, version)
        staged: dict[str, Path] = {}
        for what, target_path in paths.items():
            phase = f"target {target_path}"
            info = updater.get_targetinfo(target_path)
            if info is None:  # listed a moment ago in the same verified metadata
                raise UpdateRefused(f"update refused from {source}: {target_path} vanished from the targets metadata")
            staged[what] = Path(updater.download_target(info, str(dest / target_path.rsplit("/", 1)[1])))
        release = _check_staged(name, chosen, staged)
        done = True
    except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as exc:
        raise _refusal(exc, source, phase) from exc
    except (OSError, ValueError) as exc:  # tuf's own argument errors and a full disk: not an attack
        raise UpdateRefused(f"update from {source} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if not done:  # a refusal, an error, Ctrl-C: nothing half-staged stays
            _clear(dest, made)
    return release


def _check_staged(name: str, version: str, staged: dict[str, Path]) -> Release:
    """The staged files as an artifact edgerun can load (the manifest names the model and its sha256)."""
    from edgerun.artifact import load_artifact

    try:
        art = load_artifact(staged["manifest"])
    except ArtifactError as exc:
        raise UpdateRefused(
            f"release {name} {version}: its signed files do not form a loadable artifact: {exc}"
        ) from exc
    if art.path.resolve() != staged["model"].resolve():
        raise UpdateRefused(
            f"release {name} {version}: its manifest names {art.path.name}, not the published model "
            f"{staged['model'].name}"
        )
    data = tuple(path for kind, path in sorted(staged.items()) if kind.startswith("data:"))
    return Release(name, version, staged["model"], staged["manifest"], staged.get("samples"), art.sha256, data)


def _clear(dest: Path, made: bool) -> None:
    """Nothing half-staged survives a refusal: the folder goes if we made it, else what we put in it."""
    if made:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        with contextlib.suppress(OSError):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
