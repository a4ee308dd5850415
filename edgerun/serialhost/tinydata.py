"""EEMBC / MLPerf Tiny datasets: a folder of raw input files and a truth CSV.

The runner's layout (mlcommons/tiny ``benchmark/runner/datasets.py``): a folder
per model (named as the DUT's ``m-model-[...]`` reply, e.g. ``kws01/``) holding
``y_labels.csv``, whose rows are ``file, class_count, class`` with no header,
and the files it names. Each file is the exact bytes the firmware copies into
its input tensor (``th_load_tensor``): for an int8 model, already quantized.

``write_dataset`` makes such a folder from an edgerun artifact and raw inputs,
applying the artifact's own pre-processing (quantize included), so a firmware
running the same model sees what edgerun's Runtime would feed it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.errors import DutError

__all__ = ["TRUTH_FILE", "TinyDataset", "TinyFile", "read_dataset", "write_dataset"]

TRUTH_FILE = "y_labels.csv"


@dataclass(frozen=True)
class TinyFile:
    name: str
    classes: int
    label: int
    data: bytes = field(repr=False)
    bytes_to_send: int | None = None  # ad01: the file is sent in windows of this many bytes ...
    stride: int | None = None  # ... starting every ``stride`` bytes

    @property
    def segments(self) -> tuple[bytes, ...]:
        """What the runner loads: the whole file, or (ad01) every full window, as script.py cuts them."""
        if self.bytes_to_send is None or self.stride is None:
            return (self.data,)
        size, stride = self.bytes_to_send, self.stride
        return tuple(self.data[lo : lo + size] for lo in range(0, len(self.data) - size + 1, stride))


@dataclass(frozen=True)
class TinyDataset:
    path: Path
    files: tuple[TinyFile, ...]

    @property
    def classes(self) -> int:
        return max((f.classes for f in self.files), default=0)


def _resolve(root: Path, model: str | None) -> Path:
    """``root`` itself when it holds the truth file, else ``root/<model>`` (the runner's per-model folders)."""
    if (root / TRUTH_FILE).exists():
        return root
    if model and (root / model / TRUTH_FILE).exists():
        return root / model
    where = f"{root}/{TRUTH_FILE}" + (f" or {root}/{model}/{TRUTH_FILE}" if model else "")
    raise DutError(f"dataset {root}: no {where} (rows: file, class_count, class)")


def read_dataset(root: str | Path, model: str | None = None, limit: int | None = None) -> TinyDataset:
    """Read the truth file and the input files it names; ``model`` picks ``root/<model>/`` when present."""
    folder = _resolve(Path(root), model)
    files = []
    with open(folder / TRUTH_FILE, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or not "".join(row).strip():
                continue
            # kws01/vww01/ic01: file, classes, class; ad01: file, classes, class, bytes_to_send, stride
            # (the runner's csv.DictReader fieldnames in mlcommons/tiny benchmark/runner/datasets.py)
            if len(row) not in (3, 5):
                raise DutError(
                    f"{folder / TRUTH_FILE} line {lineno}: expected 'file, class_count, class' or "
                    f"'file, class_count, class, bytes_to_send, stride' (ad01), got {row}"
                )
            name, *numbers = (c.strip() for c in row)
            try:
                n_classes, index, *seg = (int(v) for v in numbers)
            except ValueError as exc:
                raise DutError(f"{folder / TRUTH_FILE} line {lineno}: all but the file name must be integers") from exc
            if seg and (seg[0] < 1 or seg[1] < 1):
                raise DutError(f"{folder / TRUTH_FILE} line {lineno}: bytes_to_send and stride must be >= 1")
            path = folder / name
            if not path.is_file():
                raise DutError(f"{folder / TRUTH_FILE} line {lineno}: input file {path} does not exist")
            f = TinyFile(name, n_classes, index, path.read_bytes(), *seg)
            if not f.segments:
                raise DutError(f"{folder / TRUTH_FILE} line {lineno}: {name} is shorter than bytes_to_send {seg[0]}")
            files.append(f)
            if limit is not None and len(files) >= limit:
                break
    if not files:
        raise DutError(f"{folder / TRUTH_FILE} names no input files")
    return TinyDataset(folder, tuple(files))


def model_feed(runtime: Any, raw: np.ndarray) -> bytes:
    """The bytes a firmware's input tensor holds for ``raw``: the artifact's pre-processing, then its dtype."""
    feeds = runtime.pipeline.preprocess(raw)
    spec = runtime.pipeline.session.inputs[0]
    return np.ascontiguousarray(feeds[0], dtype=spec.dtype).tobytes()


def write_dataset(runtime: Any, x: Sequence[np.ndarray], y: Sequence[int], out: str | Path) -> Path:
    """Write ``x`` (raw inputs) as model-ready .bin files and ``y`` as the truth CSV into ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    n_classes = len(runtime.artifact.manifest.labels) if runtime.artifact.manifest else int(max(y)) + 1
    rows = []
    for i, (raw, label) in enumerate(zip(x, y)):
        name = f"tst_{i:06d}_{int(label)}.bin"
        (folder / name).write_bytes(model_feed(runtime, np.asarray(raw)))
        rows.append((name, n_classes, int(label)))
    with open(folder / TRUTH_FILE, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return folder
