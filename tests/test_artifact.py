"""Artifacts: integrity, corrupt files, manifests, precision detection, inspection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.artifact import (
    MANIFEST_SUFFIX,
    inspect_model,
    load_artifact,
    manifest_path_for,
    sniff_format,
)
from edgerun.errors import ArtifactError, IntegrityError

EXPECTED_PRECISION = {
    "digits-fp32.onnx": "fp32",
    "digits-int8.onnx": "int8",
    "digits-int4.onnx": "int4",
    "digits-fp32.tflite": "fp32",
    "digits-int8.tflite": "int8",
}


def test_demo_artifacts_load_and_verify(demo_path: Path):
    art = load_artifact(demo_path)
    assert art.manifest is not None and art.manifest_path == manifest_path_for(demo_path)
    assert art.sha256 == art.manifest.sha256
    assert art.format == sniff_format(demo_path)
    assert art.raw_inputs[0].shape == (8, 8)


def test_precision_detected_from_the_model_alone(demo_path: Path, tmp_path: Path):
    bare = tmp_path / demo_path.name
    shutil.copy(demo_path, bare)  # no manifest beside it
    art = load_artifact(bare)
    assert art.manifest is None
    assert art.precision == EXPECTED_PRECISION[demo_path.name]


def test_load_by_manifest_path_and_by_folder(demo_copy):
    model = demo_copy("digits-int8.onnx")
    for path in (manifest_path_for(model), model.parent):
        if path.is_dir():
            for extra in path.glob("*" + MANIFEST_SUFFIX):
                if extra.name != manifest_path_for(model).name:
                    extra.unlink()
        assert load_artifact(path).path == model


def test_tampered_model_is_an_integrity_error(demo_copy):
    model = demo_copy("digits-fp32.onnx")
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the weights
    model.write_bytes(bytes(data))
    with pytest.raises(
        IntegrityError, match=r"sha256 does not match the manifest .* \(expected [0-9a-f]{64}; the file is \d+ bytes\)"
    ):
        edgerun.load(model)


def test_truncated_and_garbage_models_are_artifact_errors(demo_copy, tmp_path: Path):
    for name in ("digits-fp32.onnx", "digits-fp32.tflite"):
        src = demo_copy(name)
        truncated = tmp_path / ("trunc-" + name)
        truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
        with pytest.raises(ArtifactError):
            inspect_model(truncated)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot a model at all" * 50)
    with pytest.raises(ArtifactError, match="not an ONNX or TFLite model"):
        edgerun.load(garbage)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ArtifactError, match="not an ONNX or TFLite model"):
        edgerun.load(empty)


def test_truncated_onnx_fails_before_the_engine(demo_copy, tmp_path: Path):
    src = demo_copy("digits-fp32.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(src.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="corrupt or truncated ONNX model"):
        edgerun.load(cut)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda m: m.update(schema="other"), "'schema' must be 'edgerun.manifest'"),
        (lambda m: m.update(schema_version=99), "schema_version 99 is not supported"),
        (lambda m: m.update(precision="int3"), r"json: precision: expected 'fp32', .*; got 'int3'$"),
        (lambda m: m["inputs"][0].pop("dtype"), r"json: inputs\[0\]\.dtype: a required key is missing$"),
        (lambda m: m.update(model_file="missing.onnx"), "model file not found"),
    ],
)
def test_bad_manifests_name_the_problem(demo_copy, edit, message):
    model = demo_copy("digits-fp32.onnx")
    mpath = manifest_path_for(model)
    data = json.loads(mpath.read_text())
    edit(data)
    mpath.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(mpath)


def test_manifest_that_lies_about_io_is_refused(demo_copy):
    model = demo_copy("digits-fp32.onnx")
    mpath = manifest_path_for(model)
    data = json.loads(mpath.read_text())
    data["inputs"][0]["name"] = "not_the_input"
    mpath.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="does not match the model's"):
        edgerun.load(model)


def test_inspect_reports_ops_params_and_opsets(demo_path: Path):
    info = inspect_model(demo_path)
    assert info.parameter_count > 30_000  # the pruned demo student has ~35k
    if demo_path.suffix == ".onnx" and "int4" not in demo_path.name:  # our protobuf reader agrees with onnx
        # (MatMulNBits packs two int4 weights a byte: edgerun counts weights, the onnx dims count bytes)
        onnx = pytest.importorskip("onnx")
        graph = onnx.load(str(demo_path)).graph
        assert info.parameter_count == sum(int(np.prod(t.dims)) for t in graph.initializer)
    assert sum(info.op_histogram.values()) > 10
    if demo_path.suffix == ".onnx":
        assert info.versions["opset:ai.onnx"] >= 13
    if "int4" in demo_path.name:
        assert info.parameter_dtypes.get("int4", 0) > 0 and "MatMulNBits" in " ".join(info.op_histogram)
    if "int8.onnx" in demo_path.name:
        assert "DequantizeLinear" in info.op_histogram


def test_missing_path():
    with pytest.raises(ArtifactError, match="no such file"):
        load_artifact("/nonexistent/model.onnx")
