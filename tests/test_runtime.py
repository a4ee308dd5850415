"""The runtime on the real demo artifacts: accuracy, INT8/FP32 agreement, input errors."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.demo import DEMO_DIR
from edgerun.errors import InputError


@cache
def _test_split() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DEMO_DIR / "digits-test.npz") as data:
        return data["x"], data["y"]


@cache
def _predictions(name: str) -> np.ndarray:
    rt = edgerun.load(DEMO_DIR / name, threads=1)
    x, _ = _test_split()
    return np.array([rt.run(img).top[0].index for img in x])


def test_accuracy_matches_the_manifest(demo_path: Path):
    """The manifest's accuracy was measured by the build script; edgerun's own pipeline must reproduce it."""
    x, y = _test_split()
    rt = edgerun.load(demo_path)
    claimed = rt.artifact.manifest.provenance["accuracy"]
    assert claimed["n"] == len(y) == 450
    measured = float(np.mean(_predictions(demo_path.name) == y))
    assert measured == pytest.approx(claimed["value"], abs=1.5 / len(y))
    assert measured > 0.9


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_int8_agrees_with_fp32(fmt: str):
    fp32 = _predictions(f"digits-fp32.{fmt}")
    int8 = _predictions(f"digits-int8.{fmt}")
    _, y = _test_split()
    assert np.mean(fp32 == int8) >= 0.97
    assert np.mean(int8 == y) >= np.mean(fp32 == y) - 0.015  # < 1.5 points lost to INT8


def test_result_carries_stage_times_and_route(demo_path: Path):
    rt = edgerun.load(demo_path)
    x, _ = _test_split()
    res = rt.run(x[0])
    assert res.route == "local"
    assert res.times.pre_ns > 0 and res.times.infer_ns > 0 and res.times.post_ns > 0
    assert res.times.total_ns == res.times.pre_ns + res.times.infer_ns + res.times.post_ns
    assert len(res.top) == 3 and res.top[0].score >= res.top[1].score >= res.top[2].score
    probs = next(iter(res.outputs.values()))
    assert probs.dtype == np.float32 and np.isclose(probs.sum(), 1.0, atol=1e-3)


def test_bad_inputs_through_the_real_runtime():
    rt = edgerun.load(DEMO_DIR / "digits-int8.tflite")
    with pytest.raises(InputError, match=r"input 'image': expected shape \[8, 8\]"):
        rt.run(np.zeros((64, 64), np.float32))
    with pytest.raises(InputError, match=r"input 'image': expected dtype float32"):
        rt.run(np.zeros((8, 8), np.complex64))
    with pytest.raises(InputError, match="NaN/Inf"):
        rt.run(np.full((8, 8), np.nan, np.float32))
    with pytest.raises(InputError, match="expected 1 input"):
        rt.run([np.zeros((8, 8)), np.zeros((8, 8))])
    ok = rt.run(np.zeros((8, 8), np.uint8))  # integers cast to float within kind rules
    assert ok.top
