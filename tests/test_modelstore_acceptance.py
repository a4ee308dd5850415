"""acceptance.json is checked when a store reference resolves (edgerun.modelstore.check_acceptance,
schema edgerun.schema.acceptance): a malformed, edited or foreign record makes that version not
loadable with one ArtifactError line, never a traceback of another type.

The store is made by a real install (acceptance in a real worker process); the record is then
mutated byte by byte (seeded, a bounded number of tries), and rewritten field by field.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from test_update_store import FAST, _profile, release

import edgerun
from edgerun.errors import ArtifactError
from edgerun.schema.acceptance import MAX_BYTES
from edgerun.update import store as st
from edgerun.update.accept import install


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("acc")
    root = tmp / "store"
    install(release("digits-fp32.onnx", "1"), root, _profile(tmp, 1000), bench=FAST)
    return root


@pytest.fixture
def store(base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(base, root, symlinks=True)
    return root


def _record(root: Path) -> Path:
    return root / "digits" / "versions" / "1" / "acceptance.json"


def _refused(root: Path) -> str:
    """The one-line error resolving digits@current gives (the test fails if it resolves)."""
    with pytest.raises(ArtifactError) as info:
        st.resolve_ref("digits@current", root)
    text = str(info.value)
    assert "\n" not in text and text.startswith("digits@current: version '1' of 'digits' ")
    return text


def test_the_written_record_passes_and_loads(store: Path) -> None:
    doc = st.check_acceptance(_record(store).parent, "digits", "1")
    assert (doc["schema"], doc["schema_version"], doc["passed"]) == ("edgerun.acceptance", 1, True)
    assert edgerun.load("digits@current", store=store).load_info.model_version == "1"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(schema="something.else"), "schema"),
        (lambda d: d.update(passed=False), "passed"),
        (lambda d: d["verdicts"]["hard"].update(status="fail"), "verdicts.hard.status"),
        (lambda d: d.update(verdicts={}), "verdicts"),
        (lambda d: d.update(version="2"), "names digits 2, not this folder's digits 1"),
        (lambda d: d.update(sha256="0" * 64), "but the manifest now names"),
        (lambda d: d.update(sha256="not hex"), "sha256"),
        (lambda d: d.update(extra="field"), "extra"),
        (lambda d: d.pop("name"), "name: Field required"),
        (lambda d: d.update(summary={f"k{i}": i for i in range(100)}), "summary"),
    ],
)
def test_an_edited_record_is_not_loadable(store: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(_record(store).read_text())
    edit(doc)
    _record(store).write_text(json.dumps(doc))
    text = _refused(store)
    assert "is not loadable" in text and expected in text and "edgerun update` again" in text
    listed = st.list_models(store)[0]["versions"][0]
    assert listed["accepted"] is False and expected in listed["reason"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe{", "not JSON"),
        (b"[]", "the top level"),
        (b"[" * 100_000, "not JSON"),
        (b" " * (MAX_BYTES + 1), f"expected an acceptance record under {MAX_BYTES} bytes"),
    ],
)
def test_a_record_that_is_no_record_is_not_loadable(store: Path, raw: bytes, expected: str) -> None:
    _record(store).write_bytes(raw)
    assert expected in _refused(store)


def test_seeded_byte_mutations_load_or_give_one_line(store: Path) -> None:
    """200 mutations (flip, delete, insert, truncate) of the real record: each either still passes
    the schema (a change inside a reason or a figure) and loads, or is refused in one line."""
    good = _record(store).read_bytes()
    rng = random.Random(16)
    refused = 0
    for _ in range(200):
        data = bytearray(good)
        at = rng.randrange(len(data))
        how = rng.choice(("flip", "delete", "insert", "truncate"))
        if how == "flip":
            data[at] ^= 1 << rng.randrange(8)
        elif how == "delete":
            del data[at]
        elif how == "insert":
            data.insert(at, rng.randrange(256))
        else:
            del data[at:]
        _record(store).write_bytes(bytes(data))
        try:
            ref = st.resolve_ref("digits@current", store)
        except ArtifactError as exc:
            assert "\n" not in str(exc) and "is not loadable" in str(exc), str(exc)
            refused += 1
        else:
            assert ref.version == "1"
    assert refused > 100  # most single-byte changes break the JSON or a checked field
