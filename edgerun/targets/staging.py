"""Staging: copy an artifact (model, manifest, bundled samples) to a device and say where it went.

Below both runners of a target benchmark: ``edgerun.targets.bench`` (the device's own ``edgerun
bench``) and ``edgerun.targets.native`` / ``.trtexec`` (a native binary) take a ``StagedArtifact``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerun.targets.base import Target

__all__ = ["PUSH_TIMEOUT_S", "StagedArtifact", "stage_artifact"]

PUSH_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class StagedArtifact:
    """An artifact copied to a device: its model path there, and what the host knows about it."""

    local_path: Path
    remote_model: str
    name: str
    format: str
    precision: str
    sha256: str
    size_bytes: int
    accuracy: dict[str, Any] | None


def stage_artifact(target: Target, path: Path) -> StagedArtifact:
    """Copy the model, its manifest and its bundled samples under ``artifacts/<sha256 prefix>/``.

    The artifact is loaded (and its sha256 verified) here first: a tampered file fails
    before anything is sent.
    """
    from edgerun.artifact import load_artifact

    art = load_artifact(path)
    folder = f"artifacts/{art.sha256[:16]}"
    files = [art.path]
    if art.manifest_path is not None:
        files.append(art.manifest_path)
        if art.manifest is not None and art.manifest.samples:
            files.append(art.manifest_path.parent / art.manifest.samples)
    for file in files:
        target.push(file, f"{folder}/{file.name}", PUSH_TIMEOUT_S)
    home = art.path.parent.resolve()
    for data in art.external_data:  # an ONNX model's external weights, where it looks
        target.push(data, f"{folder}/{data.relative_to(home).as_posix()}", PUSH_TIMEOUT_S)
    prov = art.manifest.provenance if art.manifest else {}
    return StagedArtifact(
        art.path,
        target.path(f"{folder}/{art.path.name}"),
        art.name,
        art.format,
        art.precision,
        art.sha256,
        art.size_bytes,
        prov.get("accuracy"),
    )
