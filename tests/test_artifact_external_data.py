"""ONNX models whose weights live in external data files (onnx's own writer,
onnx/external_data_helper.py) are verified as a whole: the data files are part of the sha256, the
size and the checks, so that a tampered weight file fails like a tampered model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgerun
from edgerun.artifact import Manifest, TensorSpec, load_artifact, model_sha256, sha256_file, write_manifest
from edgerun.errors import ArtifactError, IntegrityError

W = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)


def _model(input_name: str = "x") -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(W, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _save_external(folder: Path, location: str = "model.onnx.data") -> Path:
    path = folder / "model.onnx"
    onnx.save_model(_model(), path, save_as_external_data=True, location=location, size_threshold=0)
    return path


def _manifest(path: Path, sha: str) -> Path:
    return write_manifest(
        Manifest(
            name="external",
            format="onnx",
            model_file=path.name,
            sha256=sha,
            precision="fp32",
            inputs=(TensorSpec("x", (1, 64), "float32"),),
            outputs=(TensorSpec("y", (1, 10), "float32"),),
        ),
        path,
    )


def test_a_model_with_external_data_runs_and_its_data_is_in_its_sha256_and_size(tmp_path: Path):
    path = _save_external(tmp_path)
    data = tmp_path / "model.onnx.data"
    digest, files = model_sha256(path)
    assert files == (data.resolve(),)
    assert digest != sha256_file(path)  # more than the graph file
    art = load_artifact(path)
    assert art.sha256 == digest and art.size_bytes == path.stat().st_size + data.stat().st_size
    x = np.ones((1, 64), np.float32)
    np.testing.assert_allclose(edgerun.load(str(path)).run(x).outputs["y"], x @ W, rtol=1e-5)
    # with a manifest recording that sha256 it loads; one changed weight byte is an IntegrityError
    _manifest(path, digest)
    assert load_artifact(path).manifest is not None
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="sha256 does not match the manifest"):
        load_artifact(path)


def test_a_manifest_whose_sha256_covers_the_graph_file_alone_says_so(tmp_path: Path):
    path = _save_external(tmp_path)
    _manifest(path, sha256_file(path))  # what `sha256sum model.onnx` gives
    with pytest.raises(IntegrityError, match=r"covers the model file alone, not its external data \(model.onnx.data\)"):
        load_artifact(path)


def test_missing_or_escaping_external_data_is_one_line_before_the_engine(tmp_path: Path):
    path = _save_external(tmp_path)
    (tmp_path / "model.onnx.data").unlink()
    with pytest.raises(ArtifactError, match=r"external data 'model.onnx.data' \(the model's weights\) is missing"):
        load_artifact(path)
    inner = tmp_path / "inner"
    inner.mkdir()
    model = onnx.load(str(_save_external(tmp_path, "w.bin")), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../w.bin"  # the file exists, one folder up
    onnx.save(model, str(inner / "model.onnx"))
    with pytest.raises(ArtifactError, match=r"external data '../w.bin' is outside the model's folder") as info:
        edgerun.load(str(inner / "model.onnx"))
    assert "\n" not in str(info.value)


def test_a_tensor_named_location_is_not_external_data(tmp_path: Path):
    """The bytes edgerun looks for first also encode a name "location": the model is parsed to be sure."""
    path = tmp_path / "named.onnx"
    onnx.save_model(_model("location"), path)
    assert model_sha256(path) == (sha256_file(path), ())
    assert load_artifact(path).sha256 == sha256_file(path)


def test_a_release_carries_the_external_data_through_tuf_to_the_store(tmp_path: Path):
    """torch.onnx.export writes model.onnx + model.onnx.data by default: publish signs both, the
    device fetches both through TUF, the store installs both, and model@current runs; a data file
    changed in the repository after signing is refused by TUF."""
    from test_update_store import FAST, _profile

    from edgerun.errors import UpdateRefused
    from edgerun.update.accept import install
    from edgerun.update.fetch import fetch_release
    from edgerun.update.repo import init_repo, publish

    (tmp_path / "src").mkdir()
    path = _save_external(tmp_path / "src")
    _manifest(path, model_sha256(path)[0])
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    init_repo(repo, keys)
    published = publish(path, repo, keys, "external", version="1.0")
    assert "external/1.0/model.onnx.data" in published.targets
    root = repo / "metadata" / "root.json"
    release = fetch_release(
        repo, "external", trusted_root=root, dest_dir=tmp_path / "stage", cache_dir=tmp_path / "tuf"
    )
    assert [p.name for p in release.data_paths] == ["model.onnx.data"] and release.sha256 == model_sha256(path)[0]
    done = install(release, tmp_path / "store", _profile(tmp_path, 1000), bench=FAST)
    assert done.status == "accepted", done
    x = np.ones((1, 64), np.float32)
    rt = edgerun.load("external@current", store=tmp_path / "store")
    np.testing.assert_allclose(rt.run(x).outputs["y"], x @ W, rtol=1e-5)
    (signed,) = (repo / "targets" / "external" / "1.0").glob("*.model.onnx.data")
    raw = bytearray(signed.read_bytes())
    raw[10] ^= 0x01
    signed.write_bytes(bytes(raw))
    with pytest.raises(UpdateRefused):
        fetch_release(repo, "external", trusted_root=root, dest_dir=tmp_path / "stage2", cache_dir=tmp_path / "tuf2")


def test_staging_on_a_target_copies_the_external_data_where_onnxruntime_looks(tmp_path: Path):
    """`bench --target` stages the artifact on the device: the weights go beside the model there, and
    the staged copy verifies against the same sha256."""
    from edgerun.targets import open_target, parse_target
    from edgerun.targets.staging import stage_artifact

    (tmp_path / "src").mkdir()
    path = _save_external(tmp_path / "src")
    _manifest(path, model_sha256(path)[0])
    target = open_target(parse_target(f"local://?workdir={tmp_path / 'device'}"))
    staged = stage_artifact(target, path)
    remote = Path(staged.remote_model)
    assert (remote.parent / "model.onnx.data").read_bytes() == (path.parent / "model.onnx.data").read_bytes()
    assert load_artifact(remote).sha256 == staged.sha256


def test_info_lists_the_data_files(tmp_path: Path, capsys):
    import json

    from edgerun.cli import main

    path = _save_external(tmp_path)
    assert main(["info", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["external_data"] == [str((tmp_path / "model.onnx.data").resolve())]
    assert doc["sha256"] == model_sha256(path)[0]
    assert main(["info", str(path)]) == 0
    assert "data files   model.onnx.data (in size and sha256)" in capsys.readouterr().out


def test_a_lab_job_changes_with_the_external_weights(tmp_path: Path):
    """Lab jobs are keyed by the artifact's digest: new weights in the data file are a new job that a
    resume must run, not an old result it may reuse."""
    from edgerun.lab.plan import load_plan

    path = _save_external(tmp_path)
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[lab]\nname = "t"\n\n[[artifact]]\npath = "{path}"\n\n[targets.here]\nurl = "local"\n')
    before = [j.key for j in load_plan(plan).jobs()]
    assert before == [j.key for j in load_plan(plan).jobs()]
    data = tmp_path / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0x01
    data.write_bytes(bytes(raw))
    assert [j.key for j in load_plan(plan).jobs()] != before


def test_publishing_external_data_in_a_subfolder_is_refused_before_the_repository_is_touched(tmp_path: Path):
    from edgerun.errors import UsageError
    from edgerun.update.repo import init_repo, publish

    (tmp_path / "src" / "weights").mkdir(parents=True)
    path = _save_external(tmp_path / "src", "weights/w.bin")
    _manifest(path, model_sha256(path)[0])
    init_repo(tmp_path / "repo", tmp_path / "keys")
    before = sorted((tmp_path / "repo").rglob("*"))
    with pytest.raises(UsageError, match=r"external data in a subfolder \(weights/w.bin\)"):
        publish(path, tmp_path / "repo", tmp_path / "keys", "external", version="1.0")
    assert sorted((tmp_path / "repo").rglob("*")) == before
