"""What a benchmark (and `edgerun run` without an input) feeds a model.

The caller's inputs file (``edgerun bench --inputs``), else the artifact's bundled samples when
its manifest names them (real data), else seeded random tensors that match the raw input spec,
drawn from the ranges LiteRT's ``benchmark_model`` uses (labelled ``random``). A module of its own,
light (numpy and the artifact only), so that `edgerun run` need not import the benchmark loop and
its settings to pick one input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgerun.artifact import Artifact, TensorSpec
from edgerun.errors import ArtifactError, InputError


def sample_inputs(artifact: Artifact, seed: int, inputs_file: str | None = None) -> tuple[list[Any], str]:
    """Inputs to cycle through: the caller's file, else bundled samples if the manifest names them, else random."""
    if inputs_file is not None:
        return _from_file(artifact, Path(inputs_file))
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


def _from_file(artifact: Artifact, path: Path) -> tuple[list[Any], str]:
    """A user's .npz of raw inputs, in a manifest's samples format (schema/files.py checks it), each
    input checked against the model's raw input spec before the first inference."""
    from edgerun.pipeline import check_input  # the pipeline's own check: the same accept/refuse
    from edgerun.schema.files import read_samples

    specs = artifact.raw_inputs
    if len(specs) != 1:
        raise InputError(
            f"{path}: an inputs file holds one input per sample ('x'); this model takes {len(specs)} "
            f"({', '.join(t.describe() for t in specs)}): give it a manifest with samples instead"
        )
    x, _ = read_samples(path)
    inputs = [x[i] for i in range(len(x))]  # as given: a cast they need is the pre stage's, as in use
    for i, sample in enumerate(inputs):
        try:
            check_input(sample, specs[0])
        except InputError as exc:
            raise InputError(f"{path}: sample {i} of {len(x)}: {exc}") from None
    return inputs, f"file:{path.name} ({len(inputs)} inputs)"


# LiteRT's benchmark_model fills inputs with these uniform ranges when given no data
# (tensorflow/lite/tools/benchmark/benchmark_tflite_model.cc, CreateRandomTensorData): wide integer
# inputs are usually indices, token ids or shapes, and a value drawn from the type's whole range
# (an int64 of 2.5e18) makes a Gather or an Expand fail where any real input would run.
_INT_RANGES = {"int8": (-127, 127), "uint8": (0, 254)}
_INT_DEFAULT = (0, 99)


def _random(rng: np.random.Generator, spec: TensorSpec) -> np.ndarray:
    shape = tuple(1 if d is None else d for d in spec.shape)
    dtype = np.dtype(spec.dtype)
    if dtype.kind in "iu":
        low, high = _INT_RANGES.get(dtype.name, _INT_DEFAULT)
        return rng.integers(low, high, size=shape, endpoint=True, dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 1, size=shape, endpoint=True).astype(bool)
    return np.asarray(rng.random(size=shape) - 0.5, dtype=dtype)  # [-0.5, 0.5), as benchmark_model; 0-d stays an array
