"""Signed updates, the TUF side: a real repository with real ed25519 keys, read by python-tuf's ngclient.

``edgerun.update.repo`` writes the repository; ``fetch_release`` reads it through ngclient's
Updater from a folder, a loopback HTTP server and a loopback HTTPS server with a CA made here.
Each attack is built the way python-tuf's own tests build them (tests/test_updater_top_level_update.py,
tests/repository_simulator.py upstream): metadata edited with tuf.api.metadata and re-signed with
the keys the attacker is assumed to hold, or old signed files replayed. Each must be refused with
an ``UpdateRefused`` naming the attack, and leave no staged file behind.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

try:
    import tuf  # noqa: F401
except ImportError:
    if os.environ.get("CI"):  # CI installs the update extra through `test`: missing there is a broken install
        pytest.fail("tuf is not installed (the update extra, pulled in by edgerun[test])", pytrace=False)
    pytest.skip("the update extra is not installed (pip install 'edgerun[update]')", allow_module_level=True)

from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: E402
from securesystemslib.signer import CryptoSigner  # noqa: E402
from tuf.api.metadata import Metadata, MetaFile  # noqa: E402
from tuf.api.serialization.json import JSONSerializer  # noqa: E402

from edgerun.artifact import load_artifact  # noqa: E402
from edgerun.errors import OutputError, UpdateRefused, UsageError  # noqa: E402
from edgerun.update.fetch import fetch_release  # noqa: E402
from edgerun.update.repo import init_repo, publish, refresh, rotate_keys  # noqa: E402

DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"
INT8, FP32 = DEMO / "digits-int8.onnx", DEMO / "digits-fp32.onnx"
NAME = "digits"


# --- a repository with two releases, and a device that fetched the newest ----------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """repo/ and keys/ with release 1.0.0 (int8) and 1.1.0 (fp32); targets threshold 2 (two keys)."""
    base = tmp_path_factory.mktemp("tuf")
    init_repo(base / "repo", base / "keys", thresholds={"targets": 2})
    publish(INT8, base / "repo", base / "keys", NAME, version="1.0.0")
    shutil.copytree(base / "repo", base / "repo-at-1.0.0")  # a stale mirror / an old USB stick
    publish(FP32, base / "repo", base / "keys", NAME, version="1.1.0")
    return base


@pytest.fixture
def world(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built repository and keys for one test to attack."""
    for name in ("repo", "keys", "repo-at-1.0.0"):
        shutil.copytree(built / name, tmp_path / name)
    return tmp_path


def fetch(world: Path, source: str | Path | None = None, dest: str = "stage", **kw: Any):  # noqa: ANN201
    """fetch_release as the device does it: its pinned root (a copy, as provisioning would make) and cache."""
    pinned = world / "device-root.json"
    if not pinned.exists():
        shutil.copy(world / "repo" / "metadata" / "1.root.json", pinned)
    return fetch_release(
        str(source or world / "repo"),
        kw.pop("name", NAME),
        kw.pop("version", None),
        trusted_root=pinned,
        dest_dir=world / dest,
        cache_dir=world / "device-cache",
        **kw,
    )


def signers_in(folder: Path, role: str) -> list[CryptoSigner]:
    keys = sorted(folder.glob(f"{role}-*.pem"))
    return [CryptoSigner(load_pem_private_key(p.read_bytes(), password=None)) for p in keys]


def signers(world: Path, role: str) -> list[CryptoSigner]:
    return signers_in(world / "keys", role)


def md_path(world: Path, role: str) -> Path:
    """The file of ``role``'s current metadata, followed from timestamp.json as a client does."""
    md = world / "repo" / "metadata"
    if role == "timestamp":
        return md / "timestamp.json"
    ts = Metadata.from_file(str(md / "timestamp.json"))
    if role == "snapshot":
        return md / f"{ts.signed.snapshot_meta.version}.snapshot.json"
    snap = Metadata.from_file(str(md / f"{ts.signed.snapshot_meta.version}.snapshot.json"))
    return md / f"{snap.signed.meta['targets.json'].version}.targets.json"


def resign(world: Path, role: str, edit: Callable[[Any], None], keys: list[CryptoSigner] | None = None) -> Metadata:
    """Edit ``role``'s current metadata, bump its version, sign it (by default with the role's real keys)
    and write it where the one above it points; then re-sign the chain above so that only the edit differs."""
    path = md_path(world, role)
    md = Metadata.from_file(str(path))
    edit(md.signed)
    md.signed.version += 1
    md.signatures.clear()
    for key in signers(world, role) if keys is None else keys:
        md.sign(key, append=True)
    data = md.to_bytes(JSONSerializer(compact=False))
    out = path if role == "timestamp" else path.with_name(f"{md.signed.version}.{role}.json")
    out.write_bytes(data)
    above = {"targets": ("snapshot", "targets.json"), "snapshot": ("timestamp", None)}.get(role)
    if above:
        parent, key = above
        info = MetaFile.from_data(md.signed.version, data, ["sha256"])

        def point(signed: Any) -> None:
            if key is None:
                signed.snapshot_meta = info
            else:
                signed.meta[key] = info

        resign(world, parent, point)
    return md


def past(signed: Any) -> None:
    signed.expires = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=1)


def refused(world: Path, match: str, **kw: Any) -> UpdateRefused:
    with pytest.raises(UpdateRefused, match=match) as info:
        fetch(world, dest="stage-attacked", **kw)
    assert not (world / "stage-attacked").exists(), "a refused update left staged files"
    assert "\n" not in str(info.value)
    return info.value


# --- the good path ---------------------------------------------------------------------------


def test_publish_then_fetch_from_a_folder(world: Path) -> None:
    release = fetch(world)
    assert (release.name, release.version) == (NAME, "1.1.0")  # the highest published
    assert release.model_path.read_bytes() == FP32.read_bytes()
    assert release.manifest_path.read_bytes() == Path(f"{FP32}.edgerun.json").read_bytes()
    assert release.samples_path is not None
    assert release.samples_path.read_bytes() == (DEMO / "digits-test.npz").read_bytes()
    assert release.sha256 == load_artifact(FP32).sha256
    assert load_artifact(release.manifest_path).path == release.model_path

    older = fetch(world, dest="stage-old", version="1.0.0")
    assert older.model_path.read_bytes() == INT8.read_bytes()


def test_the_highest_version_compares_digit_runs_as_numbers(world: Path) -> None:
    publish(INT8, world / "repo", world / "keys", NAME, version="1.10")
    publish(FP32, world / "repo", world / "keys", NAME, version="1.9")
    assert fetch(world).version == "1.10"  # not "1.9", which sorts higher as text


def test_repository_layout_and_target_custom(world: Path) -> None:
    md = world / "repo" / "metadata"
    assert {p.name for p in md.iterdir()} >= {"1.root.json", "root.json", "timestamp.json", "3.targets.json"}
    targets = Metadata.from_file(str(md_path(world, "targets"))).signed
    info = targets.targets[f"{NAME}/1.1.0/digits-fp32.onnx"]
    assert info.custom == {"edgerun": {"name": NAME, "version": "1.1.0", "kind": "model"}}
    kinds = sorted(t.custom["edgerun"]["kind"] for p, t in targets.targets.items() if "/1.0.0/" in p)
    assert kinds == ["manifest", "model", "samples"]
    blob = world / "repo" / "targets" / NAME / "1.1.0" / f"{info.hashes['sha256']}.digits-fp32.onnx"
    assert blob.read_bytes() == FP32.read_bytes()  # consistent snapshot: named by hash


def test_a_published_version_is_never_replaced_and_refresh_keeps_it_fetchable(world: Path) -> None:
    with pytest.raises(UsageError, match="already published"):
        publish(INT8, world / "repo", world / "keys", NAME, version="1.1.0")
    fetch(world, dest="first")
    done = refresh(world / "repo", world / "keys", expires_days=2)
    assert done.timestamp_version == 4
    assert fetch(world, dest="second").version == "1.1.0"


# A publish of 1.2.0 that dies by SIGKILL right after its k-th file write (3 targets, then targets,
# snapshot and timestamp metadata): the crash point is injected, the death and what a device then
# reads are real.
_DIE_AFTER_WRITE = """
import os, signal, sys
from edgerun.update import repo
k, writes, real = int(sys.argv[1]), [0], repo._write_atomic
def write_then_die(path, data):
    real(path, data)
    writes[0] += 1
    if writes[0] == k:
        os.kill(os.getpid(), signal.SIGKILL)
repo._write_atomic = write_then_die
repo.publish(sys.argv[2], sys.argv[3], sys.argv[4], "digits", version="1.2.0")
"""


@pytest.mark.parametrize("k", range(1, 7))
def test_a_publish_killed_after_any_write_leaves_a_consistent_repository(world: Path, k: int) -> None:
    import signal
    import subprocess
    import sys

    fetch(world, dest="before")  # the device knows 1.1.0
    argv = [sys.executable, "-c", _DIE_AFTER_WRITE, str(k), str(INT8), str(world / "repo"), str(world / "keys")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    expected = "1.2.0" if k == 6 else "1.1.0"  # the timestamp, written last, is what publishes
    assert fetch(world, dest="after-kill").version == expected
    if k < 6:  # the publisher runs again and completes
        publish(INT8, world / "repo", world / "keys", NAME, version="1.2.0")
        assert fetch(world, dest="after-rerun").version == "1.2.0"


def test_one_publish_at_a_time(world: Path) -> None:
    """Another publisher holds the repository's lock: this one stops before writing anything."""
    import fcntl

    before = sorted(p.name for p in (world / "repo" / "metadata").iterdir())
    with open(world / "repo" / ".publish.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UsageError, match="another edgerun publish is at work"):
            publish(INT8, world / "repo", world / "keys", NAME, version="2.0.0")
        with pytest.raises(UsageError, match="another edgerun publish is at work"):
            refresh(world / "repo", world / "keys")
    assert sorted(p.name for p in (world / "repo" / "metadata").iterdir()) == before
    assert publish(INT8, world / "repo", world / "keys", NAME, version="2.0.0").version == "2.0.0"  # released


def test_publish_needs_the_online_keys_up_to_the_threshold(world: Path) -> None:
    (world / "keys" / "targets-2.pem").unlink()
    with pytest.raises(UsageError, match=r"1 targets key\(s\) found .*root requires 2"):
        publish(INT8, world / "repo", world / "keys", NAME, version="2.0.0")


def test_unknown_release_and_a_used_staging_folder(world: Path) -> None:
    refused(world, r"no release named 'other'", name="other")
    refused(world, r"no release digits 9\.9 .*published: 1\.0\.0, 1\.1\.0", version="9.9")
    (world / "busy").mkdir()
    (world / "busy" / "x").write_text("mine")
    with pytest.raises(OutputError, match="must be new or empty"):
        fetch(world, dest="busy")
    assert (world / "busy" / "x").read_text() == "mine"


# --- the attacks -------------------------------------------------------------------------------


def test_expired_timestamp(world: Path) -> None:
    resign(world, "timestamp", past)
    refused(world, r"expired metadata \(timestamp\.json is expired\).*freeze attack")


def test_freeze_a_stale_mirror_after_the_device_saw_newer(world: Path) -> None:
    """A mirror (or USB stick) frozen before 1.1.0: fine for a device that never saw 1.1.0,
    refused by one that did (its cached timestamp is newer than the mirror's)."""
    fetch(world)
    refused(world, r"rollback attack \(New timestamp version 2 must be >= 3\)", source=world / "repo-at-1.0.0")


def test_rollback_old_timestamp_replayed(world: Path) -> None:
    fetch(world)
    shutil.copy(world / "repo-at-1.0.0" / "metadata" / "timestamp.json", md_path(world, "timestamp"))
    refused(world, r"rollback attack \(New timestamp version 2 must be >= 3\)")


def test_rollback_to_an_older_snapshot(world: Path) -> None:
    """The timestamp key is the attacker's: a new timestamp points at the older, validly signed snapshot."""
    fetch(world)
    old = Metadata.from_file(str(world / "repo" / "metadata" / "2.snapshot.json"))
    data = old.to_bytes(JSONSerializer(compact=False))
    resign(world, "timestamp", lambda s: setattr(s, "snapshot_meta", MetaFile.from_data(2, data, ["sha256"])))
    refused(world, r"rollback attack \(New snapshot version must be >= 3, got version 2\)")


def test_rollback_to_older_targets(world: Path) -> None:
    """Snapshot and timestamp keys are the attacker's: a new snapshot lists the older targets (1.0.0 only)."""
    fetch(world)
    old = (world / "repo" / "metadata" / "2.targets.json").read_bytes()
    resign(world, "snapshot", lambda s: s.meta.__setitem__("targets.json", MetaFile.from_data(2, old, ["sha256"])))
    refused(world, r"rollback attack \(Expected targets\.json version 2, got 3\.\)")


def test_mix_and_match_older_targets_file_in_place_of_the_current(world: Path) -> None:
    """Old, validly signed targets bytes served under the current version's name."""
    shutil.copy(world / "repo" / "metadata" / "2.targets.json", md_path(world, "targets"))
    refused(world, r"tampered or mixed metadata .*mix-and-match")


@pytest.mark.parametrize("how", ["flipped", "longer"])
def test_a_target_whose_bytes_do_not_match(world: Path, how: str) -> None:
    targets = Metadata.from_file(str(md_path(world, "targets"))).signed
    info = targets.targets[f"{NAME}/1.1.0/digits-fp32.onnx"]
    blob = world / "repo" / "targets" / NAME / "1.1.0" / f"{info.hashes['sha256']}.digits-fp32.onnx"
    data = bytearray(blob.read_bytes())
    if how == "flipped":
        data[len(data) // 2] ^= 0x01
    else:
        data += b"\0" * 16
    blob.write_bytes(bytes(data))
    err = refused(world, rf"tampered file {NAME}/1\.1\.0/digits-fp32\.onnx \(.*\): its bytes do not match the signed")
    assert hashlib.sha256(data).hexdigest() not in str(err)  # the tampered file's own hash is not logged


def test_a_folder_repository_cannot_lead_out_of_itself(world: Path) -> None:
    """A symlink on the stick that points at another file of the device is not followed out of the folder."""
    targets = Metadata.from_file(str(md_path(world, "targets"))).signed
    info = targets.targets[f"{NAME}/1.1.0/digits-fp32.onnx"]
    blob = world / "repo" / "targets" / NAME / "1.1.0" / f"{info.hashes['sha256']}.digits-fp32.onnx"
    outside = world / "elsewhere.onnx"
    shutil.move(blob, outside)
    blob.symlink_to(outside)
    refused(world, r"cannot read the repository \(.*is outside the repository folder")


def test_targets_signed_below_threshold(world: Path) -> None:
    """One of the two targets keys (and the online snapshot/timestamp keys) stolen: 1/2 signatures."""

    def swap(signed: Any) -> None:
        evil = signed.targets[f"{NAME}/1.0.0/digits-int8.onnx"]
        signed.targets[f"{NAME}/1.1.0/digits-fp32.onnx"] = evil  # the old model under the new name

    resign(world, "targets", swap, keys=signers(world, "targets")[:1])
    refused(world, r"untrusted signatures \(targets was signed by 1/2 keys\)")


def test_timestamp_signed_with_a_wrong_key(world: Path) -> None:
    resign(world, "timestamp", lambda s: None, keys=[CryptoSigner.generate_ed25519()])
    refused(world, r"untrusted signatures \(timestamp was signed by 0/1 keys\)")


# --- key rotation ------------------------------------------------------------------------------


def test_rotating_a_stolen_timestamp_key(world: Path) -> None:
    fetch(world, dest="before")
    rotate_keys(world / "repo", world / "keys", "timestamp")
    assert (world / "keys" / "retired" / "root-v1" / "timestamp-1.pem").is_file()
    publish(INT8, world / "repo", world / "keys", NAME, version="1.2.0")  # the new key signs
    assert fetch(world, dest="after").version == "1.2.0"  # the device walked from root v1 to v2
    assert (world / "device-cache" / "root_history" / "2.root.json").is_file()

    stolen = signers_in(world / "keys" / "retired" / "root-v1", "timestamp")
    resign(world, "timestamp", lambda s: None, keys=stolen)
    refused(world, r"untrusted signatures \(timestamp was signed by 0/1 keys\)")


def test_rotating_root_and_a_root_signed_by_the_old_keys(world: Path) -> None:
    rotate_keys(world / "repo", world / "keys", "root")
    assert fetch(world, dest="after").version == "1.1.0"  # pinned v1 signs v2 (old and new keys sign it)

    md = world / "repo" / "metadata"
    forged = Metadata.from_file(str(md / "2.root.json"))
    forged.signed.version = 3
    forged.signatures.clear()
    for key in signers_in(world / "keys" / "retired" / "root-v1", "root"):
        forged.sign(key, append=True)
    forged.to_file(str(md / "3.root.json"), JSONSerializer(compact=False))
    refused(world, r"untrusted signatures \(root was signed by 0/1 keys\)")


def test_a_cut_off_rotation_is_named_not_guessed(world: Path) -> None:
    (world / "keys" / "pending").mkdir()
    with pytest.raises(UsageError, match="a rotation was cut off"):
        rotate_keys(world / "repo", world / "keys", "snapshot")


# --- the network rules -------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(
    folder: Path, tls: ssl.SSLContext | None = None, redirect_to: str | None = None
) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP(S) server on 127.0.0.1 serving ``folder`` (or redirecting every request to ``redirect_to``);
    yields its URL and the paths it was asked for."""
    asked: list[str] = []

    class Handler(_Quiet):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, directory=str(folder), **k)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            asked.append(self.path)
            if redirect_to is None:
                super().do_GET()
                return
            self.send_response(302)
            self.send_header("Location", redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetch_over_loopback_http_only_with_opt_in(world: Path) -> None:
    with serving(world / "repo") as (url, asked):
        with pytest.raises(UsageError, match="network use is off by default"):
            fetch(world, source=url)
        assert asked == []
        release = fetch(world, source=url, allow_network=True)
    assert release.model_path.read_bytes() == FP32.read_bytes()
    assert "/metadata/timestamp.json" in asked


def test_redirects_are_not_followed(world: Path) -> None:
    with serving(world / "repo") as (good, asked_good), serving(world / "repo", redirect_to=good) as (url, asked):
        refused(world, r"cannot read the repository \(HTTP 302 for .*/2\.root\.json", source=url, allow_network=True)
    assert asked == ["/metadata/2.root.json"] and asked_good == []  # the first file a client asks for


def test_https_with_a_pinned_ca(world: Path) -> None:
    from test_fallback_helpers import make_tls

    files = make_tls(world)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert, files.key)
    with serving(world / "repo", tls=ctx) as (url, _):
        refused(world, r"cannot read the repository .*CERTIFICATE_VERIFY_FAILED", source=url, allow_network=True)
        release = fetch(world, source=url, allow_network=True, ca_file=files.ca)
    assert release.version == "1.1.0"


def _own_address() -> str | None:
    """This machine's address on its default route (no packet is sent: UDP connect only picks a route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): never answered, only routed
            return str(s.getsockname()[0])
        except OSError:
            return None


def test_http_to_a_host_that_is_not_loopback_is_refused_before_any_connection(world: Path) -> None:
    """A listener on this machine's own non-loopback address: reachable (one connect proves it), yet the
    update makes no connection to it, with or without allow_network."""
    addr = _own_address()
    if addr is None or addr.startswith("127."):
        if os.environ.get("CI"):
            pytest.fail("no non-loopback IPv4 address on this machine")
        pytest.skip("no non-loopback IPv4 address on this machine")
    # No accept thread: a connect that returned is in the listener's queue, so draining the queue
    # afterwards counts every connection made, with no timing involved.
    with socket.create_server((addr, 0), backlog=16) as listener:
        port = listener.getsockname()[1]
        socket.create_connection((addr, port), timeout=10).close()  # reachable
        url = f"http://{addr}:{port}"
        for allow in (False, True):
            with pytest.raises(UsageError, match="plain http to a host that is not this machine"):
                fetch(world, source=url, allow_network=allow)
        with pytest.raises(UsageError, match="plain http"):
            fetch(world, source="http://updates.example.org", allow_network=True)  # no DNS lookup either
        listener.setblocking(False)
        accepted = 0
        while True:
            try:
                listener.accept()[0].close()
            except BlockingIOError:
                break
            accepted += 1
    assert accepted == 1  # only the reachability check's


# --- the command line --------------------------------------------------------------------------


def test_cli_init_publish_refresh_then_fetch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgerun.cli import main

    repo, keys = str(tmp_path / "r"), str(tmp_path / "k")
    assert main(["publish", "--init", "--repo", repo, "--keys", keys, "--threshold", "root=2", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    root = Metadata.from_file(made["trusted_root"]).signed
    assert root.roles["root"].threshold == 2 and len(root.roles["root"].keyids) == 2
    assert oct((tmp_path / "k" / "root-1.pem").stat().st_mode & 0o777) == "0o600"

    assert main(["publish", str(INT8), "--repo", repo, "--keys", keys, "--version", "3", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["name"] == "digits-cnn-int8-onnx" and done["version"] == "3" and len(done["targets"]) == 3
    assert main(["publish", "--refresh", "--repo", repo, "--keys", keys]) == 0
    assert "timestamp v3" in capsys.readouterr().out
    assert main(["publish", "--rotate", "snapshot", "--repo", repo, "--keys", keys, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rotated"] == "snapshot"
    assert Metadata.from_file(made["trusted_root"]).signed.version == 2  # root.json is the newest root

    # a second publish of version 3 is refused (exit 2, one line); so is a version that would leave its folder
    assert main(["publish", str(INT8), "--repo", repo, "--keys", keys, "--version", "3"]) == 2
    assert main(["publish", str(FP32), "--repo", repo, "--keys", keys, "--version", "../4"]) == 2
    assert main(["publish", "--init", "--repo", repo, "--keys", keys]) == 1  # never over an existing repository
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[0] for line in err] == ["edgerun"] * 3
    assert "already published" in err[0] and "'../4'" in err[1] and "not empty" in err[2]

    shutil.copy(tmp_path / "r" / "metadata" / "1.root.json", tmp_path / "pinned.json")  # as provisioned
    release = fetch_release(
        repo,
        "digits-cnn-int8-onnx",
        trusted_root=tmp_path / "pinned.json",
        dest_dir=tmp_path / "stage",
        cache_dir=tmp_path / "cache",
    )
    assert release.version == "3" and release.model_path.read_bytes() == INT8.read_bytes()


@pytest.mark.parametrize(
    "argv",
    [
        ["--init", "x.onnx"],
        ["--refresh", "--version", "1"],
        ["--threshold", "root=2", "x.onnx", "--version", "1"],
        ["--init", "--threshold", "admin=2"],
        ["--init", "--threshold", "root=0"],
        ["--rotate", "root", "--threshold", "targets=2"],
        ["--rotate", "admin"],
        ["x.onnx"],
    ],
)
def test_cli_usage_errors(tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from edgerun.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["publish", "--repo", str(tmp_path / "r"), "--keys", str(tmp_path / "k"), *argv])
    assert ended.value.code == 2
    assert "edgerun publish: error:" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "k").exists()


def test_cli_warns_when_root_expires_soon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgerun.cli import main

    repo, keys = str(tmp_path / "r"), str(tmp_path / "k")
    assert main(["publish", "--init", "--repo", repo, "--keys", keys, "--root-expires-days", "10"]) == 0
    assert main(["publish", str(INT8), "--repo", repo, "--keys", keys, "--version", "1"]) == 0
    err = capsys.readouterr().err
    assert "root expires" in err and "renew it with --rotate root" in err
    assert main(["publish", "--rotate", "root", "--repo", repo, "--keys", keys]) == 0  # 365 days again
    assert "root expires" not in capsys.readouterr().err
