"""Publish edgerun artifacts into a TUF repository (The Update Framework, python-tuf's Metadata API).

A repository is a folder that a web server, a CDN or a USB stick can carry as it is:

    <repo>/metadata/1.root.json             the first root: what a device is provisioned with
    <repo>/metadata/root.json               a copy of the newest root (the file to pin on a device)
    <repo>/metadata/<N>.targets.json        what is published: one TargetFile per file, signed by targets
    <repo>/metadata/<N>.snapshot.json       which targets version is current, signed by snapshot
    <repo>/metadata/timestamp.json          which snapshot is current, signed by timestamp; short-lived
    <repo>/targets/<name>/<version>/<sha256>.<filename>   the files themselves

Consistent snapshots (TUF specification 1.0, section 6.2 "consistent snapshots"): every
metadata file but timestamp.json is named by its version and every target by its hash, so a
publish never rewrites a file a device may be reading. A device (or a CDN cache) reading
mid-publish sees one consistent set, old or new; a publish writes the targets, then
``N.targets.json``, then ``N.snapshot.json``, and last replaces ``timestamp.json`` atomically, so a
crash at any point leaves the previous release set in force. Old versions stay: a device that
read an older timestamp a moment ago still finds the files it names.

Target paths are ``<name>/<version>/<filename>``; each TargetFile carries
``custom = {"edgerun": {"name": ..., "version": ..., "kind": "model" | "manifest" | "samples" | "data:<file>"}}``
(``data:``: an ONNX model's external data file, which its sha256 covers: docs/manifest.md).
A published (name, version) is never replaced: publish a new version instead.

Keys (``init``, edgerun/update/keys.py): one ed25519 key per role by default (``thresholds`` raises
a role's threshold and makes that many keys), one PEM file each. ``publish`` and ``refresh`` need the
targets, snapshot and timestamp keys only: move the root keys offline after ``init`` and bring them
back only to ``rotate_keys`` (docs/update.md, "trust").
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from edgerun.errors import ArtifactError, OutputError, UsageError
from edgerun.update.keys import MAX_KEYS_PER_ROLE, ROLES, generate_keys, load_signers, retire_keys

__all__ = ["DEFAULT_EXPIRES_DAYS", "ROLES", "Published", "check_name", "init_repo", "publish", "refresh", "rotate_keys"]

# Days until each role's metadata expires. Snapshot and timestamp: a week, so that a copy on a USB
# stick stays usable that long; an online repository re-signs daily (refresh with 1 day) so that a
# device notices a frozen repository (or someone replaying old metadata) within a day. Root is
# long-lived because re-signing it needs the offline root keys.
DEFAULT_EXPIRES_DAYS = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 7}
MAX_EXPIRES_DAYS = 3650
# A release name or version is one path component of a target path and of a device's store.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_ONLINE = ("targets", "snapshot", "timestamp")


@dataclass(frozen=True)
class Published:
    """What one ``publish`` (or ``refresh``) wrote: the release and the new metadata versions."""

    name: str
    version: str
    targets: tuple[str, ...]  # target paths, <name>/<version>/<filename>
    targets_version: int
    snapshot_version: int
    timestamp_version: int
    timestamp_expires: str  # ISO 8601, UTC
    root_expires: str  # ISO 8601, UTC: devices refuse everything after it (renew: rotate_keys(..., "root"))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def check_name(what: str, value: str) -> str:
    """``value`` if it is a safe release name/version (one path component), else UsageError."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise UsageError(
            f"release {what} {value!r}: expected 1-100 characters of letters, digits and . _ + - "
            "(starting with a letter or digit, no '..'); it becomes a folder name in the repository and on devices"
        )
    return value


def _expiry(days: float, what: str) -> datetime:
    if not 0 < days <= MAX_EXPIRES_DAYS:
        raise UsageError(f"{what}: expected days in (0, {MAX_EXPIRES_DAYS}]; got {days!r}")
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=days)


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync'd, renamed into place: a crash leaves old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself reaches the disk
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _write_md(md: Any, path: Path) -> None:
    from tuf.api.serialization.json import JSONSerializer

    _write_atomic(path, md.to_bytes(JSONSerializer(compact=False)))


def _sign(md: Any, signers: list[Any]) -> None:
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)


# --- the repository ----------------------------------------------------------------------


def init_repo(
    repo_dir: str | os.PathLike[str],
    keys_dir: str | os.PathLike[str],
    *,
    thresholds: dict[str, int] | None = None,
    root_expires_days: float = DEFAULT_EXPIRES_DAYS["root"],
) -> Path:
    """Make a new, empty repository and its keys; return the path of ``metadata/root.json``.

    ``thresholds`` maps a role to how many signatures it needs (default 1 each); that many keys are
    made for it. Refuses to touch an existing repository or key folder with anything in it.
    """
    from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp

    repo, keys = Path(repo_dir), Path(keys_dir)
    wanted = {role: 1 for role in ROLES} | dict(thresholds or {})
    for role, n in wanted.items():
        if role not in ROLES or not isinstance(n, int) or not 1 <= n <= MAX_KEYS_PER_ROLE:
            raise UsageError(
                f"threshold {role}={n!r}: expected a role of {', '.join(ROLES)} and 1..{MAX_KEYS_PER_ROLE} keys"
            )
    for folder, what in ((repo / "metadata", "repository"), (keys, "key folder")):
        if folder.exists() and any(folder.iterdir()):
            raise OutputError(f"{folder}: the {what} exists and is not empty; --init makes a new one, it never reuses")
    root_expires = _expiry(root_expires_days, "root expiry")
    (repo / "metadata").mkdir(parents=True, exist_ok=True)
    (repo / "targets").mkdir(exist_ok=True)
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys, 0o700)

    signers = {role: generate_keys(keys, role, wanted[role]) for role in ROLES}
    root = Metadata(Root(expires=root_expires, consistent_snapshot=True))
    for role in ROLES:
        for signer in signers[role]:
            root.signed.add_key(signer.public_key, role)
        root.signed.roles[role].threshold = wanted[role]
    targets = Metadata(Targets(expires=_expiry(DEFAULT_EXPIRES_DAYS["targets"], "targets expiry")))
    snapshot = Metadata(Snapshot(expires=_expiry(DEFAULT_EXPIRES_DAYS["snapshot"], "snapshot expiry")))
    timestamp = Metadata(Timestamp(expires=_expiry(DEFAULT_EXPIRES_DAYS["timestamp"], "timestamp expiry")))
    _sign(targets, signers["targets"])
    snapshot.signed.meta["targets.json"] = _metafile(MetaFile, targets)
    _sign(snapshot, signers["snapshot"])
    timestamp.signed.snapshot_meta = _metafile(MetaFile, snapshot)
    _sign(timestamp, signers["timestamp"])
    _sign(root, signers["root"])
    md = repo / "metadata"
    _write_md(targets, md / "1.targets.json")
    _write_md(snapshot, md / "1.snapshot.json")
    _write_md(root, md / "1.root.json")
    _write_md(root, md / "root.json")
    _write_md(timestamp, md / "timestamp.json")
    return md / "root.json"


def _metafile(cls: Any, md: Any) -> Any:
    """Version, length and sha256 of a metadata file: the hash binds the exact bytes (mix-and-match)."""
    from tuf.api.serialization.json import JSONSerializer

    data = md.to_bytes(JSONSerializer(compact=False))
    return cls.from_data(md.signed.version, data, ["sha256"])


@contextlib.contextmanager
def _locked(repo: Path) -> Iterator[None]:
    """One publish, refresh or rotation at a time per repository: two would both write version N+1."""
    import fcntl

    if not (repo / "metadata").is_dir():
        raise UsageError(f"{repo}: no metadata/ folder; expected a repository made by `edgerun publish --init`")
    fd = os.open(repo / ".publish.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UsageError(
                f"{repo}: another edgerun publish is at work on this repository (it holds {repo / '.publish.lock'}); "
                "run them one after another"
            ) from exc
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@dataclass
class _State:
    root: Any
    targets: Any
    snapshot: Any
    timestamp: Any


def _load_state(repo: Path) -> _State:
    """The repository's current metadata, followed from timestamp.json (what a device would see)."""
    from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

    md = repo / "metadata"
    try:
        root = Metadata[Root].from_file(str(md / "root.json"))
        timestamp = Metadata[Timestamp].from_file(str(md / "timestamp.json"))
        snapshot = Metadata[Snapshot].from_file(str(md / f"{timestamp.signed.snapshot_meta.version}.snapshot.json"))
        targets = Metadata[Targets].from_file(str(md / f"{snapshot.signed.meta['targets.json'].version}.targets.json"))
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(
            f"{repo}: not a readable edgerun update repository ({exc}); expected one made by `edgerun publish --init`"
        ) from exc
    return _State(root, targets, snapshot, timestamp)


def _commit(repo: Path, state: _State, signers: dict[str, list[Any]], expires: datetime) -> None:
    """Bump versions, sign and write: targets, snapshot, then timestamp last (``expires`` for snapshot and
    timestamp; targets gets at least its default 90 days, renewed on every publish and refresh)."""
    from tuf.api.metadata import MetaFile

    md = repo / "metadata"
    state.targets.signed.version += 1
    state.targets.signed.expires = max(expires, _expiry(DEFAULT_EXPIRES_DAYS["targets"], "targets expiry"))
    _sign(state.targets, signers["targets"])
    _write_md(state.targets, md / f"{state.targets.signed.version}.targets.json")
    state.snapshot.signed.meta["targets.json"] = _metafile(MetaFile, state.targets)
    state.snapshot.signed.version += 1
    state.snapshot.signed.expires = expires
    _sign(state.snapshot, signers["snapshot"])
    _write_md(state.snapshot, md / f"{state.snapshot.signed.version}.snapshot.json")
    state.timestamp.signed.version += 1
    state.timestamp.signed.expires = expires
    state.timestamp.signed.snapshot_meta = _metafile(MetaFile, state.snapshot)
    _sign(state.timestamp, signers["timestamp"])
    _write_md(state.timestamp, md / "timestamp.json")


def _release_files(artifact_path: str | os.PathLike[str]) -> tuple[Any, list[tuple[str, Path]]]:
    """The verified artifact and its files as (kind, path): model, manifest, external data files, samples
    if named and present."""
    from edgerun.artifact import load_artifact

    art = load_artifact(Path(artifact_path))  # the manifest's schema and the model's sha256, as a device will check
    if art.manifest is None or art.manifest_path is None:
        raise ArtifactError(
            f"{artifact_path}: no manifest ({art.path.name}.edgerun.json); a published model needs one, so "
            "devices can verify and accept it (docs/manifest.md)"
        )
    home = art.path.parent.resolve()
    external = art.external_data  # an ONNX model's weights beside it (torch.onnx.export's default)
    nested = [str(f.relative_to(home)) for f in external if f.parent != home]
    if nested:  # a release is one folder on the device; the sha256 covers these names
        raise UsageError(
            f"{artifact_path}: external data in a subfolder ({', '.join(nested)}); a release keeps its data files "
            "beside the model: save them there (onnx.save_model(..., location=NAME))"
        )
    files = [("model", art.path), ("manifest", art.manifest_path)]
    files += [(f"data:{f.name}", f) for f in external]
    if art.manifest.samples is not None:
        samples = art.manifest_path.parent / art.manifest.samples
        if samples.is_file():
            files.append(("samples", samples))
    return art, files


def publish(
    artifact_path: str | os.PathLike[str],
    repo_dir: str | os.PathLike[str],
    keys_dir: str | os.PathLike[str],
    name: str | None = None,
    *,
    version: str,
    expires_days: float = DEFAULT_EXPIRES_DAYS["snapshot"],
) -> Published:
    """Add an artifact (model, manifest, samples) as release ``name``/``version`` and sign the new state.

    ``name`` defaults to the manifest's ``name``. ``expires_days``: days until the new snapshot and
    timestamp expire (a device refuses them afterwards unless ``refresh`` re-signs them first).
    """
    from tuf.api.metadata import TargetFile

    repo, keys = Path(repo_dir), Path(keys_dir)
    art, files = _release_files(artifact_path)
    name = check_name("name", name if name is not None else art.name)
    version = check_name("version", version)
    expires = _expiry(expires_days, "expires_days")
    with _locked(repo):
        state = _load_state(repo)
        signers = {role: load_signers(keys, role, state.root.signed) for role in _ONLINE}
        prefix = f"{name}/{version}/"
        if any(path.startswith(prefix) for path in state.targets.signed.targets):
            raise UsageError(
                f"release {name} {version} is already published in {repo}; a published version is never "
                "replaced (devices may hold it): publish a new version"
            )
        added = []
        for kind, local in files:
            target_path = prefix + local.name
            info = TargetFile.from_file(target_path, str(local), ["sha256"])
            info.unrecognized_fields["custom"] = {"edgerun": {"name": name, "version": version, "kind": kind}}
            dest = repo / "targets" / name / version / f"{info.hashes['sha256']}.{local.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(dest, local.read_bytes())
            state.targets.signed.targets[target_path] = info
            added.append(target_path)
        _commit(repo, state, signers, expires)
        return _published(name, version, tuple(added), state)


def refresh(
    repo_dir: str | os.PathLike[str],
    keys_dir: str | os.PathLike[str],
    *,
    expires_days: float = DEFAULT_EXPIRES_DAYS["snapshot"],
) -> Published:
    """Re-sign targets, snapshot and timestamp with new expiries, nothing else changed (run it from cron
    so that a device never sees a live repository as frozen)."""
    repo, keys = Path(repo_dir), Path(keys_dir)
    expires = _expiry(expires_days, "expires_days")
    with _locked(repo):
        state = _load_state(repo)
        signers = {role: load_signers(keys, role, state.root.signed) for role in _ONLINE}
        _commit(repo, state, signers, expires)
        return _published("", "", (), state)


def rotate_keys(
    repo_dir: str | os.PathLike[str],
    keys_dir: str | os.PathLike[str],
    role: str,
    *,
    count: int | None = None,
    expires_days: float = DEFAULT_EXPIRES_DAYS["snapshot"],
    root_expires_days: float = DEFAULT_EXPIRES_DAYS["root"],
) -> Published:
    """Replace every key of ``role`` with ``count`` new ones (default: its threshold; all are required).

    Writes root version N+1 trusting the new keys, signed by the threshold of the current root keys
    (and, when root itself is rotated, of the new ones as well: a device checks both, TUF specification
    1.0 section 5.3.4 "check for an arbitrary software attack"), then re-signs targets, snapshot and
    timestamp. A device walks from the root it was provisioned with to the new one on its next
    update. Needs the root keys: bring them back from offline for this, and take them away again.
    """
    from tuf.api.metadata import Metadata, Root

    repo, keys = Path(repo_dir), Path(keys_dir)
    if role not in ROLES:
        raise UsageError(f"rotate {role!r}: expected one of {', '.join(ROLES)}")
    if count is not None and not 1 <= count <= MAX_KEYS_PER_ROLE:
        raise UsageError(f"rotate {role}: expected 1..{MAX_KEYS_PER_ROLE} keys; got {count!r}")
    if (keys / "pending").exists():
        raise UsageError(
            f"{keys / 'pending'}: a rotation was cut off. If root.json already names these keys, move them "
            "up into the keys folder; if not, delete the folder. Then run --rotate again"
        )
    expires, root_expires = _expiry(expires_days, "expires_days"), _expiry(root_expires_days, "root expiry")
    with _locked(repo):
        state = _load_state(repo)
        root: Root = state.root.signed
        root_signers = load_signers(keys, "root", root)
        signers = {r: load_signers(keys, r, root) for r in _ONLINE if r != role}
        new = generate_keys(keys / "pending", role, count or root.roles[role].threshold)
        new_root = Metadata(Root.from_dict(root.to_dict()))
        for keyid in list(root.roles[role].keyids):
            new_root.signed.revoke_key(keyid, role)
        for signer in new:
            new_root.signed.add_key(signer.public_key, role)
        new_root.signed.roles[role].threshold = len(new)
        new_root.signed.version, new_root.signed.expires = root.version + 1, root_expires
        _sign(new_root, root_signers + (new if role == "root" else []))
        _write_md(new_root, repo / "metadata" / f"{new_root.signed.version}.root.json")
        _write_md(new_root, repo / "metadata" / "root.json")
        retire_keys(keys, role, root.version)
        if role != "root":
            signers[role] = new
        state.root = new_root
        _commit(repo, state, signers, expires)
        return _published("", "", (), state)


def _published(name: str, version: str, targets: tuple[str, ...], state: _State) -> Published:
    return Published(
        name=name,
        version=version,
        targets=targets,
        targets_version=state.targets.signed.version,
        snapshot_version=state.snapshot.signed.version,
        timestamp_version=state.timestamp.signed.version,
        timestamp_expires=state.timestamp.signed.expires.isoformat(),
        root_expires=state.root.signed.expires.isoformat(),
    )
