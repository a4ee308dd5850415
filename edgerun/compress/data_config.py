"""The ``[data]`` table of a recipe: where the data comes from, how it is split and pre-processed.

Parsed into frozen dataclasses like the rest of the recipe (recipe.py); each pre-processing
op accepts only its own keys. No torch import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgerun.compress.typed import build
from edgerun.errors import RecipeError

# Pre-processing ops a recipe may declare (the manifest's vocabulary, docs/manifest.md) and the
# keys each accepts; ``normalize`` may name ``per`` instead of numbers: statistics of the train split.
PRE_OP_KEYS: dict[str, tuple[str, ...]] = {
    "cast": ("dtype",),
    "resize": ("size", "method", "layout"),
    "scale": ("factor",),
    "normalize": ("mean", "std", "per", "axis"),
    "layout": ("from", "to"),
    "expand_dims": ("axis",),
}


@dataclass(frozen=True)
class PreOp:
    """One per-sample pre-processing op, applied to the raw data in training and written to the manifest."""

    op: Literal["cast", "resize", "scale", "normalize", "layout", "expand_dims"]
    dtype: str = ""
    size: tuple[int, ...] = ()
    method: Literal["bilinear", "nearest"] = "bilinear"
    layout: str = ""  # resize: "HW" | "HWC" | "CHW"
    factor: float = 1.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    per: Literal["", "feature", "channel", "all"] = ""  # normalize: mean/std computed on the train split
    axis: int | None = None  # normalize: the sample's channel axis (per "channel"); expand_dims: where
    from_: str = ""  # layout: e.g. "HWC"
    to: str = ""  # layout: e.g. "CHW"


DATA_SOURCES = ("sklearn-digits", "python", "npz", "csv", "images")


@dataclass(frozen=True)
class DataConfig:
    """Where the training / reference data comes from and how a model sees it.

    Relative paths (``path``, ``train``, ``validation``, ``test``, a ``file.py`` factory) are
    relative to the recipe file's folder.
    """

    source: Literal["sklearn-digits", "python", "npz", "csv", "images"] = "sklearn-digits"
    factory: str = ""  # python: "package.module:function" or "file.py:function" returning the data
    args: Mapping[str, Any] = field(default_factory=dict)  # python: the factory's keyword arguments
    path: str = ""  # npz / csv file or image folder, split by test_fraction / validation_fraction
    train: str = ""  # npz / csv / images: an already split train set (with test, optionally validation)
    validation: str = ""
    test: str = ""
    label_column: str = ""  # csv: the column holding the class
    image_mode: Literal["L", "RGB"] = "RGB"  # images: Pillow mode every image is converted to
    labels: tuple[str, ...] = ()  # class names by index; default: the data's, else "0".."K-1"
    test_fraction: float = 0.25
    validation_fraction: float = 0.0  # of the non-test data, held out for selection steps
    split_seed: int = 0
    preprocess: tuple[PreOp, ...] = ()  # per-sample ops (not sklearn-digits, whose ops are fixed)
    input_size_px: int = 64  # sklearn-digits only: 8x8 digits are resized to this (8 = no resize)
    calibration_samples: int = 200  # train samples that calibrate static quantization
    train_limit: int = 0  # use only the first N train samples (0 = all); for quick runs


def parse_data(table: dict[str, Any], where: str) -> DataConfig:
    """[data], its ``preprocess`` ops checked op by op (each op accepts only its own keys)."""
    ops = table.get("preprocess", [])
    if not isinstance(ops, list):
        raise RecipeError(f"{where}.preprocess: must be an array of tables, got {ops!r}")
    return build(
        DataConfig,
        {**table, "preprocess": tuple(_parse_op(o, f"{where}.preprocess[{i}]") for i, o in enumerate(ops))},
        where,
    )


def _parse_op(table: Any, where: str) -> PreOp:
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: must be a table, got {table!r}")
    op = table.get("op")
    if op not in PRE_OP_KEYS:
        raise RecipeError(f"{where}: 'op' must be one of {list(PRE_OP_KEYS)}, got {op!r}")
    for key in table:
        if key != "op" and key not in PRE_OP_KEYS[op]:
            raise RecipeError(
                f"{where}: unknown key {key!r} for op {op!r}; expected one of: {', '.join(PRE_OP_KEYS[op])}"
            )
    pre = build(PreOp, table, f"{where} ({op})")
    needs = {
        "cast": ("dtype",),
        "resize": ("size",),
        "scale": ("factor",),
        "layout": ("from", "to"),
        "expand_dims": ("axis",),
    }
    for key in needs.get(op, ()):
        if key not in table:
            raise RecipeError(f"{where}: op {op!r} needs {key!r}")
    if op == "resize" and len(pre.size) != 2:
        raise RecipeError(f"{where}: resize 'size' must be [height, width], got {list(pre.size)}")
    if op == "normalize":
        if bool(pre.per) == bool(pre.mean or pre.std):
            raise RecipeError(
                f"{where}: normalize needs either 'per' (statistics of the train split) or 'mean' and 'std'"
            )
        if pre.per == "channel" and pre.axis is None:
            raise RecipeError(f"{where}: normalize per 'channel' needs 'axis' (the sample's channel axis)")
        if not pre.per and (len(pre.mean) != len(pre.std) or not pre.mean or 0.0 in pre.std):
            raise RecipeError(f"{where}: normalize needs equal-length, non-empty 'mean' and 'std', std non-zero")
    if op == "layout" and sorted(pre.from_) != sorted(pre.to):
        raise RecipeError(f"{where}: layout {pre.from_!r} -> {pre.to!r} is not a permutation")
    return pre


# What each data source needs ([data] keys that must be set) and accepts besides the common ones.
_SOURCE_KEYS = {
    "sklearn-digits": ("input_size_px",),
    "python": ("factory", "args"),
    "npz": ("path", "train", "validation", "test"),
    "csv": ("path", "train", "validation", "test", "label_column"),
    "images": ("path", "train", "validation", "test", "image_mode"),
}


def check_data(cfg: DataConfig, where: str) -> None:
    defaults = DataConfig()
    own = {k for keys in _SOURCE_KEYS.values() for k in keys}
    for f in dataclasses.fields(DataConfig):
        if (
            f.name in own
            and f.name not in _SOURCE_KEYS[cfg.source]
            and getattr(cfg, f.name) != getattr(defaults, f.name)
        ):
            raise RecipeError(
                f"{where}: {f.name!r} does not apply to source {cfg.source!r}; "
                f"its own keys: {', '.join(_SOURCE_KEYS[cfg.source])}"
            )
    if cfg.source == "sklearn-digits" and cfg.preprocess:
        raise RecipeError(
            f"{where}: source 'sklearn-digits' has fixed pre-processing; 'preprocess' is for the other sources"
        )
    if cfg.source == "python" and ":" not in cfg.factory:
        raise RecipeError(f'{where}: source \'python\' needs factory = "module:function" (or "file.py:function")')
    if cfg.source in ("npz", "csv", "images"):
        if bool(cfg.path) == bool(cfg.train or cfg.test):
            raise RecipeError(f"{where}: source {cfg.source!r} needs either 'path' (split here) or 'train' and 'test'")
        if not cfg.path and not (cfg.train and cfg.test):
            raise RecipeError(f"{where}: source {cfg.source!r}: 'train' and 'test' go together")
    if cfg.source == "csv" and not cfg.label_column:
        raise RecipeError(f"{where}: source 'csv' needs 'label_column' (the column holding the class)")
