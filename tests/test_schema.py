"""The manifest schema (edgerun/schema): every field typed and bounded, one error line naming the
file, the field path and what was expected; the samples file checked by its type and headers."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.artifact import load_artifact, manifest_path_for, parse_manifest, write_manifest
from edgerun.demo import DEMO_DIR
from edgerun.errors import ArtifactError
from edgerun.formats.limits import MAX_RESIZE_SIDE, MAX_TENSOR_ELEMENTS
from edgerun.schema.files import read_samples

BASE = json.loads((DEMO_DIR / "digits-int8.tflite.edgerun.json").read_text())


def _parse(edit) -> str:
    data = copy.deepcopy(BASE)
    edit(data)
    with pytest.raises(ArtifactError) as err:
        parse_manifest(data, "m.json")
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "edit,expected",
    [
        (
            lambda d: d["preprocess"][1].update(size=[10**9, 10**9]),
            r"preprocess\[1\]\.size\[0\]: expected a value <= 8192",
        ),
        (lambda d: d["preprocess"][1].update(size=[64]), r"preprocess\[1\]\.size: expected at least 2 item"),
        (lambda d: d["preprocess"][1].update(size=["64", 64]), r"preprocess\[1\]\.size\[0\]: expected an integer"),
        (lambda d: d["preprocess"][1].update(method="cubic"), r"preprocess\[1\]\.method: expected 'bilinear' or"),
        (lambda d: d["preprocess"][2].update(factor="nan"), r"preprocess\[2\]\.factor: expected a number; got 'nan'"),
        (lambda d: d["preprocess"][2].update(factor=True), r"preprocess\[2\]\.factor: expected a number; got True"),
        (lambda d: d["preprocess"][3].update(std=[0]), r"preprocess\[3\]: std has a 0"),
        (lambda d: d["preprocess"][3].update(std=[1.0, 2.0]), r"preprocess\[3\]: mean has 1 values and std 2"),
        (lambda d: d["preprocess"][4].update(axis=1.0), r"preprocess\[4\]\.axis: expected an integer"),
        (lambda d: d["preprocess"].append({"op": "blur"}), r"preprocess\[7\]: unknown op 'blur'; expected one of cast"),
        (lambda d: d["preprocess"].append({"kind": "cast"}), r"preprocess\[7\]: an op without an 'op' key"),
        (lambda d: d["preprocess"].append({"op": "layout", "from": "HWC", "to": "CHX"}), r"layout 'HWC' -> 'CHX'"),
        (
            lambda d: d["preprocess"].append({"op": "cast", "dtype": "float32", "x": 1}),
            r"preprocess\[7\]\.x: an unknown",
        ),
        (lambda d: d["postprocess"].append({"op": "topk", "k": 0}), r"postprocess\[3\]\.k: expected a value >= 1"),
        (lambda d: d["postprocess"].append({"op": "sigmoid"}), r"unknown op 'sigmoid'; expected one of dequantize"),
        (lambda d: d["inputs"][0].update(shape=[1, -1, 64, 64]), r"inputs\[0\]\.shape\[1\]: expected a value >= 1"),
        (
            lambda d: d["inputs"][0].update(shape=[1, 1, 65536, 65536]),
            r"inputs\[0\]: shape .* expected at most 268435456",
        ),
        (lambda d: d["inputs"][0].update(dtype="float128"), r"inputs\[0\]\.dtype: expected 'float32'"),
        (lambda d: d["inputs"][0].pop("name"), r"inputs\[0\]\.name: a required key is missing$"),
        (lambda d: d["inputs"][0]["quant"].update(scale=0), r"inputs\[0\]\.quant\.scale: expected a value > 0"),
        (lambda d: d["inputs"][0]["quant"].update(zero_point=0.5), r"inputs\[0\]\.quant\.zero_point: expected an int"),
        (lambda d: d.update(inputs=[]), r"inputs: expected at least 1 item"),
        (
            lambda d: d.update(labels=["x" * 1000]),
            r"labels\[0\]: expected at most 256 characters; got 'xxx.*\(1002 char",
        ),
        (lambda d: d.update(labels="0123"), r"labels: expected a list"),
        (lambda d: d.update(name="\ud800"), r"name: expected UTF-8 text"),
        (lambda d: d.update(sha256="abc"), r"sha256: expected 64 hexadecimal digits"),
        (lambda d: d.update(postprocesss=[]), r"postprocesss: an unknown key"),
        (lambda d: d.update(model_file="a\0b"), r"model_file: a path with a NUL character"),
        (lambda d: d.update(samples=5), r"samples: expected a string"),
        (
            lambda d: d.update(provenance={"accuracy": {"value": "high"}}),
            r"provenance\.accuracy\.value: expected a num",
        ),
        (lambda d: d.update(provenance={"signal": {"sample_rate_hz": -1}}), r"provenance\.signal\.sample_rate_hz"),
        (
            lambda d: d.update(provenance={"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}),
            "deeper",
        ),
        (lambda d: d.update(provenance={"note": "x" * 70000}), r"provenance: a string of 70000 characters"),
        (lambda d: d.update(schema_version=True), r"schema_version True is not supported"),
    ],
)
def test_a_bad_field_is_one_line_with_its_path_and_what_was_expected(edit, expected):
    message = _parse(edit)
    assert message.startswith("m.json: ")
    assert __import__("re").search(expected, message), message


def test_the_demo_manifests_pass_and_round_trip_unchanged(tmp_path: Path):
    for path in sorted(DEMO_DIR.rglob("*.edgerun.json")):
        data = json.loads(path.read_text())
        manifest = parse_manifest(data, str(path))
        out = write_manifest(manifest, tmp_path / manifest.model_file)
        assert json.loads(out.read_text()) == data, path.name  # op dicts as written, no defaults added


def test_null_lists_mean_none():
    data = copy.deepcopy(BASE)
    data.update(preprocess=None, postprocess=None, labels=None, provenance=None)
    m = parse_manifest(data, "m.json")
    assert (m.preprocess, m.postprocess, m.labels, m.provenance) == ((), (), (), {})


def test_the_limits_themselves_are_accepted():
    data = copy.deepcopy(BASE)
    data["preprocess"][1]["size"] = [MAX_RESIZE_SIDE, MAX_RESIZE_SIDE]
    data["inputs"][0]["shape"] = [1, 1, MAX_TENSOR_ELEMENTS]
    assert parse_manifest(data, "m.json").inputs[0].shape == (1, 1, MAX_TENSOR_ELEMENTS)


def test_import_edgerun_does_not_import_pydantic():
    code = "import sys, edgerun, edgerun.artifact; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- the samples file -------------------------------------------------------------------


@pytest.fixture
def samples_art(demo_copy):
    model = demo_copy("digits-fp32.onnx")
    return model, model.parent / "digits-test.npz"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_samples_is_refused_without_opening_it(samples_art):
    model, samples = samples_art
    samples.unlink()
    os.mkfifo(samples)  # opening it would block: the test would hang, not fail
    with pytest.raises(
        ArtifactError, match=r"digits-test.npz: the samples file is a FIFO \(named pipe\); expected a reg"
    ):
        edgerun.load(model)


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "the samples file is empty"),
        (b"PK\x03\x04 garbled", r"not a readable \.npz \(BadZipFile\)"),
        (np.random.default_rng(0).bytes(500), r"not a readable \.npz"),
    ],
)
def test_empty_and_garbled_samples_are_artifact_errors(samples_art, content, expected):
    model, samples = samples_art
    samples.write_bytes(content)
    with pytest.raises(ArtifactError, match=expected):
        load_artifact(model)


def test_samples_without_x_or_with_objects_or_no_rows_are_refused(samples_art):
    model, samples = samples_art
    np.savez(samples, y=np.zeros(3))
    with pytest.raises(ArtifactError, match="has no 'x'"):
        load_artifact(model)
    np.savez(samples, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtifactError, match="holds object values; expected a numeric array"):
        load_artifact(model)
    np.savez(samples, x=np.zeros((0, 8, 8), np.float32))
    with pytest.raises(ArtifactError, match=r"shape \[0, 8, 8\]; expected at least one input"):
        load_artifact(model)
    np.savez(samples, x=np.zeros((3, 8, 8), np.float32), y=np.zeros(2))
    with pytest.raises(ArtifactError, match=r"'y' has shape \[2\]; expected one label per input \(3\)"):
        load_artifact(model)


def test_a_header_that_claims_terabytes_is_refused_before_reading(samples_art):
    import io
    import zipfile

    model, samples = samples_art
    header = io.BytesIO()
    header_dict = {"descr": "<f4", "fortran_order": False, "shape": (10**10, 64)}
    np.lib.format.write_array_header_1_0(header, header_dict)
    with zipfile.ZipFile(samples, "w") as zf:  # a 100-byte file whose x claims 2.5 TB
        zf.writestr("x.npy", header.getvalue() + b"\0" * 16)
    with pytest.raises(ArtifactError, match=r"claims shape \[10000000000, 64\] of float32; expected at most 1024 MiB"):
        load_artifact(model)


def test_read_samples_returns_x_and_y(samples_art):
    _, samples = samples_art
    x, y = read_samples(samples)
    assert x.shape[0] == y.shape[0] > 0 and x.dtype == np.float32


def test_a_missing_samples_file_still_loads(samples_art):
    model, samples = samples_art
    samples.unlink()
    assert load_artifact(model).manifest.samples == "digits-test.npz"


def test_manifest_that_is_a_fifo_is_refused(demo_copy):
    model = demo_copy("digits-fp32.onnx")
    mpath = manifest_path_for(model)
    mpath.unlink()
    os.mkfifo(mpath)
    with pytest.raises(ArtifactError, match="manifest is a FIFO"):
        load_artifact(mpath)
