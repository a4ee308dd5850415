"""What a benchmark (and `edgerun run` without an input) feeds a model.

The artifact's bundled samples when its manifest names them (real data), else seeded random
tensors that match the raw input spec (labelled ``random``, as LiteRT's ``benchmark_model`` does
by default). A module of its own, light (numpy and the artifact only), so that `edgerun run`
need not import the benchmark loop and its settings to pick one input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgerun.artifact import Artifact, TensorSpec
from edgerun.errors import ArtifactError


def sample_inputs(artifact: Artifact, seed: int) -> tuple[list[Any], str]:
    """Inputs to cycle through: bundled samples if the manifest names them, else random."""
    manifest = artifact.manifest
    samples_file = manifest.samples if manifest else None
    if samples_file and artifact.manifest_path is not None:
        path = artifact.manifest_path.parent / samples_file
        try:
            with np.load(path) as data:
                x = data["x"]
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: bundled samples are unreadable (need an .npz with 'x'): {exc}") from exc
        return [x[i] for i in range(len(x))], f"samples:{samples_file} ({len(x)} inputs)"
    rng = np.random.default_rng(seed)
    specs = artifact.raw_inputs
    inputs = [[_random(rng, spec) for spec in specs] for _ in range(16)]
    return [v[0] if len(v) == 1 else v for v in inputs], "random (seeded, 16 inputs)"


def _random(rng: np.random.Generator, spec: TensorSpec) -> np.ndarray:
    shape = tuple(1 if d is None else d for d in spec.shape)
    dtype = np.dtype(spec.dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 1, size=shape, endpoint=True).astype(bool)
    return rng.random(size=shape).astype(dtype)
