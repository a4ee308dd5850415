"""The signing keys of an update repository: one ed25519 key per file, in one folder.

    <keys>/<role>-<n>.pem                the role's current keys (PKCS#8 PEM, mode 0600; folder 0700)
    <keys>/pending/<role>-<n>.pem        new keys of a rotation in progress, written before the new root
    <keys>/retired/root-v<N>/<role>-<n>.pem  keys a rotation replaced; root v<N> was the last to trust them

Keys are made and loaded by securesystemslib's ``CryptoSigner`` (pyca/cryptography underneath); the
public half lives in the root metadata, so a key file is all a signer needs. They are written
unencrypted: their protection is the folder's permissions and, for the root keys, being offline
(docs/update.md, "trust").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from edgerun.errors import UsageError

__all__ = ["MAX_KEYS_PER_ROLE", "ROLES", "generate_keys", "load_signers", "retire_keys"]

ROLES = ("root", "targets", "snapshot", "timestamp")
MAX_KEYS_PER_ROLE = 16


def generate_keys(folder: Path, role: str, count: int) -> list[Any]:
    """``count`` new ed25519 signers for ``role``, each written to ``folder/<role>-<n>.pem`` (never over a file)."""
    from securesystemslib.signer import CryptoSigner

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    signers = []
    for n in range(1, count + 1):
        signer = CryptoSigner.generate_ed25519()
        fd = os.open(folder / f"{role}-{n}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(signer.private_bytes)
            fh.flush()
            os.fsync(fh.fileno())
        signers.append(signer)
    return signers


def load_signers(keys_dir: Path, role: str, root: Any) -> list[Any]:
    """The role's signers from ``<keys>/<role>-*.pem``: each must be a key ``root`` (a tuf Root) names
    for the role, and there must be at least the role's threshold of them."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    allowed = set(root.roles[role].keyids)
    threshold = root.roles[role].threshold
    signers = []
    for path in sorted(keys_dir.glob(f"{role}-*.pem")):
        try:
            signer = CryptoSigner(load_pem_private_key(path.read_bytes(), password=None))
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"{path}: cannot read it as a PEM private key ({exc}); expected a --init key") from exc
        if signer.public_key.keyid not in allowed:
            raise UsageError(
                f"{path}: not one of the {role} keys root v{root.version} trusts (keyid "
                f"{signer.public_key.keyid[:16]}...); remove it or rotate the {role} keys"
            )
        signers.append(signer)
    if len(signers) < threshold:
        raise UsageError(
            f"{keys_dir}: {len(signers)} {role} key(s) found ({role}-*.pem), root requires {threshold}; "
            f"expected the keys written by `edgerun publish --init`{' (back from offline)' if role == 'root' else ''}"
        )
    return signers


def retire_keys(keys_dir: Path, role: str, last_root_version: int) -> None:
    """Move ``role``'s current key files to ``retired/root-v<N>/`` and the pending ones into their place."""
    retired = keys_dir / "retired" / f"root-v{last_root_version}"
    retired.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in sorted(keys_dir.glob(f"{role}-*.pem")):
        os.replace(path, retired / path.name)
    pending = keys_dir / "pending"
    for path in sorted(pending.glob(f"{role}-*.pem")):
        os.replace(path, keys_dir / path.name)
    shutil.rmtree(pending, ignore_errors=True)
