"""Data for compression runs: scikit-learn's digits (bundled, nothing is downloaded).

The numpy pre-processing here is exactly what the produced manifests describe (cast ->
resize -> scale -> normalize -> add batch and channel axes), so a model trained on it
is evaluated correctly by edgerun's runtime. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgerun.compress.recipe import DataConfig

RAW_HW = 8  # sklearn digits are 8x8, values 0..16
PIXEL_SCALE = 1.0 / 16.0
LABELS = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class Dataset:
    """Raw (N, 8, 8) float32 images in [0, 16] and int64 labels, with the normalization stats."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    size_px: int
    mean: float
    std: float
    description: str

    def model_input(self, raw: np.ndarray) -> np.ndarray:
        """(N, 8, 8) raw -> (N, 1, size, size) float32 model-ready batch."""
        return preprocess(raw, self.size_px, self.mean, self.std)

    def calibration(self, n: int) -> np.ndarray:
        """The first n train images as batch-1 tensors (N, 1, 1, size, size) for static quantization."""
        return self.model_input(self.train_x[:n])[:, None]


def load_dataset(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.images.astype(np.float32), d.target.astype(np.int64)
    tx, vx, ty, vy = train_test_split(x, y, test_size=cfg.test_fraction, stratify=y, random_state=cfg.split_seed)
    if cfg.train_limit:
        tx, ty = tx[: cfg.train_limit], ty[: cfg.train_limit]
    scaled = to_scaled(tx, cfg.input_size_px).astype(np.float64)
    mean, std = round(float(scaled.mean()), 4), round(float(scaled.std()), 4)
    desc = f"sklearn digits test split ({cfg.test_fraction:.0%}, stratified, seed {cfg.split_seed}), {len(vy)} images"
    return Dataset(tx, ty, vx, vy, cfg.input_size_px, mean, std, desc)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) interpolation matrix, half-pixel centres.

    Same index maths as torch's upsample_bilinear2d with align_corners=False and as
    edgerun's runtime resize, so training and deployment see the same pixels.
    """
    m = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        frac = src - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    return m.astype(np.float32)


def to_scaled(raw: np.ndarray, size_px: int) -> np.ndarray:
    """cast -> resize -> scale, batched: (N, 8, 8) -> (N, size, size)."""
    x = raw.astype(np.float32)
    if size_px != x.shape[-1]:
        rh, rw = _bilinear_matrix(x.shape[-2], size_px), _bilinear_matrix(x.shape[-1], size_px)
        x = np.einsum("ih,...hw,jw->...ij", rh, x, rw).astype(np.float32)
    return x * np.float32(PIXEL_SCALE)


def preprocess(raw: np.ndarray, size_px: int, mean: float, std: float) -> np.ndarray:
    x = (to_scaled(raw, size_px) - np.float32(mean)) / np.float32(std)
    return x[:, None, :, :].astype(np.float32)


def shift_augment(raw: np.ndarray, rng: np.random.Generator, shift_px: int) -> np.ndarray:
    """Random shift of each raw image by up to shift_px pixels (zero fill), before the resize."""
    if shift_px <= 0:
        return raw
    k = shift_px
    pad = np.pad(raw, ((0, 0), (k, k), (k, k)))
    off = rng.integers(0, 2 * k + 1, size=(len(raw), 2))
    h, w = raw.shape[-2:]
    return np.stack([pad[i, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(off)])


def manifest_pipeline(data: Dataset) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The manifest's preprocess / postprocess op lists (docs/manifest.md) for float IO."""
    pre: list[dict[str, Any]] = [{"op": "cast", "dtype": "float32"}]
    if data.size_px != RAW_HW:
        pre.append({"op": "resize", "size": [data.size_px, data.size_px], "method": "bilinear", "layout": "HW"})
    pre += [
        {"op": "scale", "factor": PIXEL_SCALE},
        {"op": "normalize", "mean": [data.mean], "std": [data.std]},
        {"op": "expand_dims", "axis": 0},
        {"op": "expand_dims", "axis": 0},
    ]
    return pre, [{"op": "softmax"}, {"op": "topk", "k": 3}]
