"""Boundaries of what a user hands edgerun: artifact paths, file contents in errors, input
ranges, and the JSON it reads. Real demo artifacts and real engines throughout (issue 11, section 1)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun._jsonio import MANIFEST_MAX_BYTES, read_json
from edgerun.artifact import load_artifact, manifest_path_for
from edgerun.bench.result import read_result_file
from edgerun.bench.runner import sample_inputs
from edgerun.errors import ArtifactError, BenchError, InputError, IntegrityError
from edgerun.pipeline import compile_pre

SECRET = b"PATIENT 4711 HIV+ "  # what a file that is not a model might hold


@pytest.fixture
def nested(demo_copy, tmp_path: Path):
    """``tmp_path/art/<manifest>`` with the demo model and samples one level up, in ``tmp_path``:
    ``edit(fn)`` rewrites the manifest, which then names files outside its folder."""

    def make(name: str, edit) -> Path:
        model = demo_copy(name)
        folder = tmp_path / "art"
        folder.mkdir(exist_ok=True)
        mpath = folder / manifest_path_for(model).name
        data = json.loads(manifest_path_for(model).read_text())
        edit(data, model)
        mpath.write_text(json.dumps(data))
        return mpath

    return make


def _edit_manifest(model: Path, **changes) -> Path:
    mpath = manifest_path_for(model)
    data = json.loads(mpath.read_text())
    data.update(changes)
    mpath.write_text(json.dumps(data))
    return mpath


# --- a) model_file and samples stay inside the manifest's folder ---------------------------


@pytest.mark.parametrize(
    "key,value",
    [
        ("model_file", lambda model: "../" + model.name),
        ("model_file", lambda model: str(model)),  # absolute
        ("samples", lambda model: "../digits-test.npz"),
        ("samples", lambda model: str(model.parent / "digits-test.npz")),
    ],
)
def test_manifest_paths_that_leave_the_folder_are_refused(nested, key, value):
    mpath = nested("digits-fp32.onnx", lambda d, model: d.update({key: value(model)}))
    if key == "samples":  # the model itself sits beside the manifest
        shutil.copy(mpath.parent.parent / "digits-fp32.onnx", mpath.parent / "digits-fp32.onnx")
    bad = json.loads(mpath.read_text())[key]
    with pytest.raises(ArtifactError, match=rf"'{key}' is '{bad}'.*outside the manifest's folder.*expected"):
        load_artifact(mpath)
    with pytest.raises(ArtifactError, match=key):
        edgerun.load(mpath)


def test_symlinks_are_judged_by_where_they_lead(demo_copy, tmp_path: Path):
    model = demo_copy("digits-fp32.onnx")
    folder = tmp_path / "art"
    folder.mkdir()
    shutil.copy(manifest_path_for(model), folder / manifest_path_for(model).name)
    (folder / "digits-test.npz").symlink_to(tmp_path / "digits-test.npz")  # leads out
    (folder / model.name).symlink_to(model)  # leads out
    with pytest.raises(ArtifactError, match="'model_file' is 'digits-fp32.onnx'.*outside"):
        load_artifact(folder / manifest_path_for(model).name)
    (folder / model.name).unlink()
    shutil.copy(model, folder / "real.onnx")
    (folder / model.name).symlink_to("real.onnx")  # stays inside: fine
    with pytest.raises(ArtifactError, match="'samples' is 'digits-test.npz'.*outside"):
        load_artifact(folder / manifest_path_for(model).name)
    (folder / "digits-test.npz").unlink()
    shutil.copy(tmp_path / "digits-test.npz", folder / "digits-test.npz")
    assert load_artifact(folder / model.name).sha256 == load_artifact(model).sha256


def test_allow_outside_is_an_explicit_opt_in(nested):
    def outside(data, model):
        data.update(model_file="../" + model.name, samples="../digits-test.npz")

    mpath = nested("digits-int8.tflite", outside)
    art = load_artifact(mpath, allow_outside=True)
    inputs, source = sample_inputs(art, seed=0)
    assert source.startswith("samples:") and len(inputs) > 1
    with edgerun.load(mpath, allow_outside=True) as rt:
        assert rt.run(inputs[0]).top


# --- b) errors name a file, never echo what is in it -------------------------------------


def test_unknown_format_error_names_size_and_expectation_not_content(tmp_path: Path):
    path = tmp_path / "notes.onnx"
    path.write_bytes(SECRET * 4)
    with pytest.raises(ArtifactError) as err:
        edgerun.load(path)
    message = str(err.value)
    assert str(path) in message and f"{len(SECRET) * 4} bytes" in message
    assert "TFL3" in message and "ONNX" in message
    assert "PATIENT" not in message and "HIV" not in message


def test_integrity_error_states_the_expected_hash_only(demo_copy):
    model = demo_copy("digits-fp32.onnx")
    expected = json.loads(manifest_path_for(model).read_text())["sha256"]
    swapped = b"\x08" + SECRET * 8  # sniffs as ONNX, is not the model
    model.write_bytes(swapped)
    with pytest.raises(IntegrityError) as err:
        edgerun.load(model)
    message = str(err.value)
    assert expected in message and f"{len(swapped)} bytes" in message
    assert hashlib.sha256(swapped).hexdigest() not in message
    assert "PATIENT" not in message


# --- c) an input cast never changes a value -----------------------------------------------


@pytest.fixture
def int8_raw(demo_copy) -> Path:
    """The int8 TFLite demo with no pre-processing: its raw input is the model's int8 tensor."""
    model = demo_copy("digits-int8.tflite")
    _edit_manifest(model, raw_inputs=None, preprocess=[])
    return model


@pytest.mark.parametrize(
    "dtype,value,found",
    [("int64", 300, r"\[0, 300\]"), ("uint8", 200, r"\[0, 200\]"), ("int16", -129, r"\[-129, 0\]")],
)
def test_integer_inputs_out_of_the_model_range_are_refused(int8_raw, dtype, value, found):
    x = np.zeros((1, 1, 64, 64), dtype)
    x[0, 0, 5, 5] = value
    expected = rf"input 'serving_default_args_0': values {found}.*int8 range \[-128, 127\]"
    with edgerun.load(int8_raw) as rt, pytest.raises(InputError, match=expected):
        rt.run(x)


def test_integer_inputs_within_range_cast_to_the_same_result(int8_raw):
    q = np.random.default_rng(0).integers(-128, 128, size=(1, 1, 64, 64)).astype(np.int8)
    with edgerun.load(int8_raw) as rt:
        want = rt.run(q).outputs
        got = rt.run(q.astype(np.int64)).outputs
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


# --- d) JSON: no NaN/Infinity, a size cap, one reader ------------------------------------


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_a_manifest_are_refused(demo_copy, token):
    model = demo_copy("digits-fp32.onnx")
    mpath = manifest_path_for(model)
    text = mpath.read_text().replace('"factor": 0.0625', f'"factor": {token}')
    assert token in text
    mpath.write_text(text)
    with pytest.raises(ArtifactError, match=rf"{mpath}: .*{token} at preprocess\[2\]\.factor.*finite"):
        edgerun.load(model)


def test_non_finite_numbers_as_strings_are_refused_by_the_ops(demo_copy):
    with pytest.raises(ArtifactError, match="'factor' must be a finite number, got 'nan'"):
        compile_pre([{"op": "scale", "factor": "nan"}], None, "m.json")
    with pytest.raises(ArtifactError, match="'std' must be a finite number, got 'inf'"):
        compile_pre([{"op": "normalize", "mean": [0.0], "std": ["inf"]}], None, "m.json")
    model = demo_copy("digits-int8.tflite")
    data = json.loads(manifest_path_for(model).read_text())
    data["inputs"][0]["quant"]["scale"] = "nan"
    manifest_path_for(model).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="scale"):
        edgerun.load(model)


def test_oversized_manifest_is_refused_before_it_is_read(demo_copy):
    model = demo_copy("digits-fp32.onnx")
    mpath = manifest_path_for(model)
    with open(mpath, "a") as fh:  # valid JSON, padded past the cap with whitespace
        fh.truncate(MANIFEST_MAX_BYTES + 1)
    mpath.write_bytes(mpath.read_bytes().replace(b"\0", b" "))
    with pytest.raises(ArtifactError, match=rf"{mpath}: manifest is {MANIFEST_MAX_BYTES + 1} bytes; expected at most"):
        load_artifact(model)


def test_result_files_refuse_non_finite_numbers(tmp_path: Path):
    path = tmp_path / "r.json"
    path.write_text('{"schema": "edgerun.bench", "schema_version": 2, "results": [{"x": NaN}]}')
    with pytest.raises(BenchError, match=rf"{path}: .*NaN at results\[0\]\.x"):
        read_result_file(str(path))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_manifest_that_never_ends_is_refused_and_the_read_is_cut_at_the_cap(demo_copy, tmp_path: Path):
    """/dev/zero-like sources report size 0: a manifest must be a regular file, and the JSON read
    itself is bounded for the callers that take other files (a result piped through <(...))."""
    model = demo_copy("digits-fp32.onnx")
    mpath = manifest_path_for(model)
    mpath.unlink()
    mpath.symlink_to("/dev/zero")
    with pytest.raises(ArtifactError, match=r"manifest is a character device; expected a regular file"):
        load_artifact(mpath)
    with pytest.raises(ArtifactError, match="at most"):
        read_json("/dev/zero", what="manifest", error=ArtifactError, max_bytes=1024)


# --- e) model files: dims, names and engine messages ---------------------------------------


def _onnx_with_dims(tmp_path: Path, dims: list) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "dims",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "dims.onnx"
    onnx.save(model, str(path))
    return path


def test_negative_and_huge_onnx_dims_are_shown_as_unknown(tmp_path: Path, capsys):
    from edgerun.cli import main

    path = _onnx_with_dims(tmp_path, [1, -1, 2**40, 3])
    assert load_artifact(path).inputs[0].shape == (1, None, None, 3)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "x: float32[1x?x?x3]" in out and "18446744073709551615" not in out


def test_negative_initializer_dims_are_a_corrupt_model(tmp_path: Path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])
    weight.dims[0] = -2  # as a corrupt writer would leave it
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "W"], ["y"])],
        "neg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "neg.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match=r"corrupt or truncated ONNX model \(initializer 'W' has dims \[-2, 2\]"):
        load_artifact(path)


@pytest.mark.parametrize(
    "name,tensor", [("digits-int8.tflite", b"serving_default_args_0"), ("digits-fp32.onnx", b"logits")]
)
def test_names_that_are_not_utf8_are_an_artifact_error(demo_copy, tmp_path: Path, name, tensor):
    from edgerun.cli import main

    data = demo_copy(name).read_bytes()
    assert tensor in data
    bare = tmp_path / "bare" / name  # no manifest: the names are read from the model
    bare.parent.mkdir()
    bare.write_bytes(data.replace(tensor, b"\xff" + tensor[1:]))
    with pytest.raises(ArtifactError, match="not UTF-8"):
        edgerun.load(bare)
    assert main(["info", str(bare)]) == 1


def test_engine_messages_are_one_line(tmp_path: Path, demo_copy, capsys):
    """LiteRT reports each failed check on a line of its own; the CLI prints one line."""
    from edgerun.cli import main

    data = bytearray(demo_copy("digits-fp32.tflite").read_bytes())
    bare = tmp_path / "bare" / "m.tflite"
    bare.parent.mkdir()
    bare.write_bytes(bytes(data[: len(data) // 2]))  # buffers cut off: several checks fail
    assert main(["info", str(bare)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgerun: error: ") and err.count("\n") == 1
