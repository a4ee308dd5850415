"""Remembered manifest passes (edgerun/schema/manifest_cache.py): keyed by the exact bytes and the
schema, only passes recorded, a tampered or foreign entry ignored, and every non-schema check
(the model's sha256 above all) still made on a hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgerun.artifact import load_artifact
from edgerun.errors import ArtifactError, IntegrityError
from edgerun.schema import manifest_cache
from edgerun.schema.manifest import validate_manifest

MANIFEST = "digits-fp32.onnx.edgerun.json"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGERUN_NO_CACHE", raising=False)
    return tmp_path / "cache" / "manifests"


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.iterdir()) if cache.exists() else []


def test_a_pass_is_remembered_and_a_hit_builds_the_same_manifest(cache: Path, demo_copy) -> None:
    model = demo_copy("digits-fp32.onnx")
    raw = model.with_name(MANIFEST).read_bytes()
    assert not manifest_cache.known_valid(raw)
    first = load_artifact(model).manifest
    assert len(_entries(cache)) == 1 and manifest_cache.known_valid(raw)
    assert load_artifact(model).manifest == first
    assert first == validate_manifest(json.loads(raw), "m.json")  # the full schema's own answer
    assert (cache.stat().st_mode & 0o777) == 0o700 and (_entries(cache)[0].stat().st_mode & 0o777) == 0o600


def test_one_changed_byte_is_a_new_key(cache: Path, demo_copy) -> None:
    model = demo_copy("digits-fp32.onnx")
    load_artifact(model)
    path = model.with_name(MANIFEST)
    path.write_bytes(path.read_bytes() + b"\n")  # the same document, other bytes
    assert not manifest_cache.known_valid(path.read_bytes())
    load_artifact(model)
    assert len(_entries(cache)) == 2


def test_a_failing_manifest_is_never_remembered(cache: Path, demo_copy) -> None:
    model = demo_copy("digits-fp32.onnx")
    path = model.with_name(MANIFEST)
    path.write_text(path.read_text().replace('"factor": 0.0625', '"factor": "0.0625"'))
    for _ in range(2):  # checked, and reported, every time
        with pytest.raises(ArtifactError, match=r"preprocess\[2\]\.factor: expected a number"):
            load_artifact(model)
    assert _entries(cache) == []


def test_a_hit_still_checks_the_model_file_against_the_manifest(cache: Path, demo_copy) -> None:
    model = demo_copy("digits-fp32.onnx")
    load_artifact(model)
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="sha256 does not match"):
        load_artifact(model)


def test_an_entry_is_honoured_only_as_written_by_us(cache: Path, demo_copy) -> None:
    model = demo_copy("digits-fp32.onnx")
    raw = model.with_name(MANIFEST).read_bytes()
    load_artifact(model)
    (entry,) = _entries(cache)
    record = entry.read_bytes()
    entry.chmod(0o620)  # writable by the group: anyone in it could have written it
    assert not manifest_cache.known_valid(raw)
    entry.chmod(0o600)
    entry.write_bytes(record.replace(record.split(b"\n")[1], b"0" * 64))  # another schema's pass
    assert not manifest_cache.known_valid(raw)
    entry.write_bytes(record[:-1])  # cut short
    assert not manifest_cache.known_valid(raw)
    entry.unlink()
    elsewhere = cache.parent / "elsewhere"
    elsewhere.write_bytes(record)
    entry.symlink_to(elsewhere)  # a link is not followed
    assert not manifest_cache.known_valid(raw)
    entry.unlink()
    entry.write_bytes(record)
    assert manifest_cache.known_valid(raw)


def test_the_key_covers_the_schema_sources_and_pydantic(cache: Path) -> None:
    root = Path(manifest_cache.__file__).resolve().parent.parent
    for source in manifest_cache._SOURCES:  # a renamed file would turn the cache off, not stale
        assert (root / source).is_file(), source
    assert manifest_cache.schema_fingerprint() is not None


def test_no_cache_turns_it_off(cache: Path, demo_copy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGERUN_NO_CACHE", "1")
    model = demo_copy("digits-fp32.onnx")
    load_artifact(model)
    assert manifest_cache.cache_dir() is None and _entries(cache) == []


def test_an_unwritable_cache_is_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_copy) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(blocker))  # a file where the folder would go
    monkeypatch.delenv("EDGERUN_NO_CACHE", raising=False)
    assert load_artifact(demo_copy("digits-fp32.onnx")).manifest is not None
    assert blocker.is_file() and blocker.read_text() == ""


def test_a_forged_entry_the_builder_cannot_read_falls_back_to_the_schema(cache: Path, demo_copy) -> None:
    model = demo_copy("digits-fp32.onnx")
    path = model.with_name(MANIFEST)
    path.write_text(path.read_text().replace('"name": "input"', '"nome": "input"'))
    raw = path.read_bytes()
    entry = manifest_cache._entry(raw)
    assert entry is not None
    entry[0].parent.mkdir(mode=0o700, parents=True)
    entry[0].write_bytes(entry[1])  # what only someone who can write the user's cache could do
    entry[0].chmod(0o600)
    with pytest.raises(ArtifactError, match=r"inputs\[0\]\.name: a required key is missing"):
        load_artifact(model)
