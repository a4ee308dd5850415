"""``Dataset``: raw train / validation / test splits and how a raw batch becomes a model batch.

Its own module, below both sources of one: ``data.py`` (the built-in digits, and the entry point
``load_dataset``) and ``preprocess.py`` (the user's data). No torch import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Without a validation split, selection steps (layer pruning, mixed precision) score on this many
# of the train split's last samples. Never the test split: that is the gate's reference set.
SELECTION_FALLBACK = 256

Augment = Callable[[np.ndarray, np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class Dataset:
    """Raw splits with int64 labels, the class names, and how a raw batch becomes a model batch."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray  # may be empty: then ``selection`` falls back to the train split's tail
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    labels: tuple[str, ...]
    pre_ops: tuple[dict[str, Any], ...]  # per sample, manifest vocabulary, without the batch axis
    prepare: Callable[[np.ndarray], np.ndarray]  # raw (N, ...) -> float32 model input (N, ...)
    description: str  # the test split (the gate's and the report's reference set)
    raw_name: str = "input"
    augment: Augment | None = None  # a raw-batch augmentation (the digits' random shift)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def model_input(self, raw: np.ndarray) -> np.ndarray:
        return self.prepare(raw)

    def calibration(self, n: int) -> np.ndarray:
        """The first n train samples as batch-1 tensors (N, 1, ...) for static quantization."""
        return self.model_input(self.train_x[:n])[:, None]

    def train_inputs(self, rng: np.random.Generator, shift_px: int) -> np.ndarray:
        """The train split as model input for one epoch (augmented when the source has one)."""
        if self.augment is not None and shift_px > 0:
            return self.model_input(self.augment(self.train_x, rng, shift_px))
        if "train" not in self._cache:
            self._cache["train"] = self.model_input(self.train_x)
        return self._cache["train"]

    def test_inputs(self) -> np.ndarray:
        if "test" not in self._cache:
            self._cache["test"] = self.model_input(self.test_x)
        return self._cache["test"]

    def selection(self) -> tuple[np.ndarray, np.ndarray, str]:
        """Raw (x, y) and a description of the set selection steps score on: validation, never test."""
        if len(self.val_y):
            return self.val_x, self.val_y, f"the validation split ({len(self.val_y)} samples)"
        n = min(SELECTION_FALLBACK, len(self.train_y))
        return self.train_x[-n:], self.train_y[-n:], f"the train split's last {n} samples (no validation split)"

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One pre-processed sample's shape: the model's input without the batch axis."""
        return tuple(self.model_input(self.train_x[:1]).shape[1:])
