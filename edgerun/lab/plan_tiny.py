"""A lab plan's ``tiny`` table: a labgrid target whose jobs are `serial tiny` on a wearable.

    [targets.watch]
    labgrid = "wearable-1"                    # a place with a NetworkSerialPort (ser2net on its exporter)
    tiny = { dataset = "ecg-dataset", iterations = 20, perf_files = 1 }

``dataset`` is the `serial tiny` dataset directory (relative to the plan); the other keys are
``edgerun serial tiny`` options (edgerun.serialhost.tiny.TinyConfig fields; the port and baud
come from the place). Checked with pydantic: unknown keys, wrong types and out-of-range values are
one LabError naming the key and what was expected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerun.errors import LabError

__all__ = ["TinyJob", "dataset_digest", "tiny_job_of"]

MAX_DATASET_FILES = 10_000  # a dataset directory is a few hundred inputs; more is the wrong folder


@dataclass(frozen=True)
class TinyJob:
    """A labgrid target's ``tiny`` table: the dataset and the `serial tiny` options (TinyConfig fields)."""

    dataset: Path
    dataset_sha256: str  # of the file names and contents: the job key changes with the data
    options: tuple[tuple[str, Any], ...]


def _model() -> Any:
    from pydantic import BaseModel, ConfigDict, Field

    class TinyTable(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        dataset: str = Field(min_length=1, max_length=4096)
        baud: int | None = Field(default=None, ge=300, le=20_000_000)  # else the NetworkSerialPort's speed
        iterations: int = Field(default=100, ge=1, le=1_000_000)
        warmups: int = Field(default=10, ge=0, le=1_000_000)
        perf_files: int = Field(default=5, ge=0, le=MAX_DATASET_FILES)
        limit: int | None = Field(default=None, ge=1, le=MAX_DATASET_FILES)
        timeout_s: float = Field(default=2.0, gt=0, le=3600)
        infer_timeout_s: float = Field(default=120.0, gt=0, le=86400)
        sync_timeout_s: float = Field(default=10.0, gt=0, le=3600)
        reset_wait_s: float = Field(default=0.0, ge=0, le=3600)
        no_dtr: bool = False

    return TinyTable


def dataset_digest(root: Path) -> str:
    """sha256 of the dataset's relative file names and contents (what the job measured)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if len(files) > MAX_DATASET_FILES:
        raise LabError(f"{root}: {len(files)} files, more than a `serial tiny` dataset ({MAX_DATASET_FILES})")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def tiny_job_of(value: Any, base: Path, here: str) -> TinyJob:
    """The plan's ``tiny = {...}`` as a ``TinyJob``; LabError (one line) for a bad table."""
    from pydantic import ValidationError

    if not isinstance(value, dict):
        raise LabError(f'{here}: tiny must be a table like {{dataset = "ecg-dataset", iterations = 20}}, got {value!r}')
    try:
        table = _model().model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "tiny"
        raise LabError(f"{here}: tiny.{key}: {first['msg']} (got {first.get('input')!r})") from None
    dataset = (base / table.dataset).resolve()
    if not dataset.is_dir():
        raise LabError(f"{here}: tiny.dataset {table.dataset!r} is not a directory (looked at {dataset})")
    options = tuple(sorted((k, v) for k, v in table.model_dump(exclude={"dataset"}).items() if v is not None))
    return TinyJob(dataset, dataset_digest(dataset), options)
