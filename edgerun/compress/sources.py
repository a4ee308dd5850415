"""Load a recipe's data as raw train / validation / test splits: a Python callable, .npz, CSV, image folders.

"Raw" means as the user's data has it: one sample is what ``edgerun run`` will be given
(30 float features, a (1, 256) signal, an (H, W, 3) uint8 image). Labels become class
indices 0..K-1 with names. No torch import.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.compress.data_config import DataConfig
from edgerun.compress.refs import call, resolve
from edgerun.errors import CompressError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray  # class names (str) or indices (int), mapped by ``index_labels``


@dataclass(frozen=True)
class RawSplits:
    train: Split
    validation: Split | None  # None: split here by validation_fraction (when > 0)
    test: Split | None  # None: split here by test_fraction
    labels: tuple[str, ...]  # names the data itself gives ("" when none)
    what: str  # for descriptions: "breast_cancer()", "data/ecg.npz"


def load_raw(cfg: DataConfig, base_dir: Path) -> RawSplits:
    if cfg.source == "python":
        return _from_python(cfg, base_dir)
    reader = {"npz": _read_npz, "csv": _read_csv, "images": _read_images}[cfg.source]
    if cfg.path:
        x, y, labels = reader(base_dir / cfg.path, cfg)
        return RawSplits(Split(x, y), None, None, labels, cfg.path)
    parts = {k: reader(base_dir / getattr(cfg, k), cfg) for k in ("train", "validation", "test") if getattr(cfg, k)}
    labels = next((p[2] for p in parts.values() if p[2]), ())
    val = Split(*parts["validation"][:2]) if "validation" in parts else None
    return RawSplits(Split(*parts["train"][:2]), val, Split(*parts["test"][:2]), labels, cfg.train)


def _from_python(cfg: DataConfig, base_dir: Path) -> RawSplits:
    """The factory returns (x, y) to be split here, or {"train": (x, y), "test": (x, y),
    "validation": (x, y) optional, "labels": [...] optional}."""
    what = f"[data] factory {cfg.factory!r}"
    out = call(resolve(cfg.factory, base_dir, what), cfg.args, {}, what)
    if isinstance(out, tuple) and len(out) == 2:
        return RawSplits(_split(out, what), None, None, (), f"{cfg.factory}()")
    if not isinstance(out, dict) or "train" not in out or "test" not in out:
        raise CompressError(
            f"{what}: must return (x, y) or a dict with 'train' and 'test' (x, y) pairs, optionally "
            f"'validation' and 'labels'; got {type(out).__name__}"
        )
    unknown = set(out) - {"train", "validation", "test", "labels"}
    if unknown:
        raise CompressError(f"{what}: unknown key(s) {sorted(unknown)}; expected train, validation, test, labels")
    val = _split(out["validation"], f"{what} validation") if out.get("validation") is not None else None
    labels = tuple(str(v) for v in out.get("labels") or ())
    return RawSplits(_split(out["train"], what), val, _split(out["test"], what), labels, f"{cfg.factory}()")


def _split(pair: Any, what: str) -> Split:
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise CompressError(f"{what}: a split must be an (x, y) pair of arrays")
    x, y = np.asarray(pair[0]), np.asarray(pair[1])
    if len(x) != len(y) or x.ndim < 2 or y.ndim != 1:
        raise CompressError(f"{what}: x must be (N, ...) samples and y (N,) labels, got x {x.shape}, y {y.shape}")
    return Split(x, y)


def _read_npz(path: Path, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Arrays ``x`` (N, ...) and ``y`` (N,), optionally ``labels`` (class names); no pickles."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise CompressError(f"[data] {path}: needs arrays 'x' and 'y'; has {z.files}")
            labels = tuple(str(v) for v in z["labels"]) if "labels" in z.files else ()
            s = _split((z["x"], z["y"]), f"[data] {path}")
            return s.x, s.y, labels
    except (OSError, ValueError) as exc:
        raise CompressError(f"[data] cannot read {path} as .npz ({exc})") from exc


def _read_csv(path: Path, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A header row; ``label_column`` is the class, every other column a float feature."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise CompressError(f"[data] cannot read {path} ({exc})") from exc
    if len(rows) < 2:
        raise CompressError(f"[data] {path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if cfg.label_column not in header:
        raise CompressError(f"[data] {path}: no column {cfg.label_column!r}; columns: {', '.join(header)}")
    col = header.index(cfg.label_column)
    try:
        x = np.array([[float(v) for i, v in enumerate(r) if i != col] for r in rows[1:]], dtype=np.float32)
    except ValueError as exc:
        raise CompressError(f"[data] {path}: every column but {cfg.label_column!r} must be numeric ({exc})") from exc
    y = np.array([r[col].strip() for r in rows[1:]])
    return x, _int_if_possible(y), ()


def _int_if_possible(y: np.ndarray) -> np.ndarray:
    try:
        as_int = y.astype(np.int64)
    except ValueError:
        return y
    return as_int


def _read_images(folder: Path, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``folder/<class>/<image>``: one subfolder per class (sorted names = class indices), read with Pillow."""
    from PIL import Image

    if not folder.is_dir():
        raise CompressError(f"[data] {folder}: not a folder of class subfolders")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    xs, ys = [], []
    for k, name in enumerate(classes):
        for f in sorted((folder / name).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(f) as im:
                    xs.append(np.asarray(im.convert(cfg.image_mode)))
                ys.append(k)
    if not xs:
        raise CompressError(f"[data] {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in class subfolders")
    shapes = sorted({a.shape for a in xs})
    if len(shapes) > 1:
        raise CompressError(
            f"[data] {folder}: images differ in size ({shapes[:4]}); bring them to one size first "
            f"(the raw input of the artifact is one fixed shape; a 'resize' op then sets the model's)"
        )
    return np.stack(xs), np.array(ys, dtype=np.int64), tuple(classes)


def index_labels(
    splits: Sequence[np.ndarray], names: Sequence[str], given: Sequence[str]
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Labels of every split as int64 indices, and the class names.

    Integer labels are indices already (names: ``given`` [the recipe's], else the data's, else
    "0".."K-1"); string labels are looked up in ``given`` or, without it, in their sorted set.
    """
    if all(np.issubdtype(y.dtype, np.integer) for y in splits):
        k = int(max(int(y.max()) for y in splits if len(y))) + 1
        labels = tuple(given) or tuple(names) or tuple(str(i) for i in range(k))
        if min(int(y.min()) for y in splits if len(y)) < 0 or k > len(labels):
            raise CompressError(
                f"[data] labels run 0..{k - 1}, but {len(labels)} class names are given: {list(labels)}"
            )
        return [y.astype(np.int64) for y in splits], labels
    strings = [y.astype(str) for y in splits]
    labels = tuple(given) or tuple(sorted(set().union(*(set(s) for s in strings))))
    unknown = sorted(set().union(*(set(s) for s in strings)) - set(labels))
    if unknown:
        raise CompressError(f"[data] labels {unknown[:5]} are not among the recipe's labels {list(labels)}")
    index = {name: i for i, name in enumerate(labels)}
    return [np.array([index[v] for v in s], dtype=np.int64) for s in strings], labels
