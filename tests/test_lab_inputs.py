"""`lab report` / `lab compare` on malformed inputs: one LabError line each, and the input left as it was.

Every file here is real: a lab database written by a real `edgerun lab run` (WAL mode), copies of
it truncated or garbled, random bytes, an empty file, an SQLite database of another application,
and bench result JSON files cut short or reshaped. After each command the input's bytes are
compared with what they were, and no -wal/-shm file may have appeared beside it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from edgerun.cli import main
from edgerun.lab.store import LabStore

pytest.importorskip("matplotlib", reason="the report draws with matplotlib (the lab extra; the test extra has it)")

DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"
PLAN = f"""
[lab]
name = "inputs"
[bench]
runs = 40
min_seconds = 0
warmup = 2
warmup_seconds = 0
no_energy = true
in_process = true
[[artifact]]
path = "{DEMO / "digits-int8.tflite"}"
[targets.here]
url = "local"
"""


@pytest.fixture(scope="module")
def lab_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("inputs")
    (tmp / "plan.toml").write_text(PLAN)
    assert main(["lab", "run", str(tmp / "plan.toml"), "--db", str(tmp / "lab.sqlite"), "-q"]) == 0
    return tmp / "lab.sqlite"


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "run.json"
    args = ["bench", str(DEMO / "digits-int8.tflite"), "--in-process", "--runs", "40", "--min-seconds", "0"]
    assert main([*args, "--warmup", "2", "--warmup-seconds", "0", "--no-energy", "--json", str(out), "-q"]) in (0, 1, 3)
    return out


def _state(path: Path) -> tuple[str, list[str]]:
    """The file's sha256 and the names beside it (journals included)."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(p.name for p in path.parent.iterdir())


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def _one_line_error(code: int, err: str, path: Path, *words: str) -> None:
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("edgerun: error: ") and str(path) in lines[0], err
    assert "internal error" not in lines[0] and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], err


def _bad_databases(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a word its error must contain)."""
    data = good.read_bytes()
    files: dict[str, tuple[bytes, str]] = {
        "empty": (b"", "empty file"),
        "random": (random.Random(1).randbytes(8192), "not an SQLite database"),
        "truncated-header": (data[:60], "lab database"),
        "truncated-half": (data[: len(data) // 2], "damaged"),
        "truncated-page": (data[: 4096 + 100], "damaged"),
    }
    out = {}
    for name, (content, word) in files.items():
        (folder / name).mkdir()
        out[name] = (folder / name / "lab.sqlite", word)
        out[name][0].write_bytes(content)
    (folder / "other").mkdir()
    other = folder / "other" / "app.sqlite"  # another application's database: no `meta` table
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    db.execute("INSERT INTO notes (body) VALUES ('keep me')")
    db.commit()
    db.close()
    out["other-app"] = (other, "no `meta` table")
    (folder / "future").mkdir()
    future = folder / "future" / "lab.sqlite"
    shutil.copy(good, future)
    db = sqlite3.connect(future)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    out["future-schema"] = (future, "schema 99")
    return out


def test_malformed_databases_are_one_line_errors_and_stay_untouched(lab_db: Path, tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.sqlite"
    shutil.copy(lab_db, good)
    for name, (path, word) in _bad_databases(lab_db, tmp_path).items():
        before = _state(path)
        code, err = _run(["lab", "report", str(path), "-o", str(tmp_path / f"{name}.html")], capsys)
        _one_line_error(code, err, path, word)
        assert _state(path) == before, f"{name}: lab report changed the file or left files beside it"
        code, err = _run(["lab", "compare", str(path), str(good)], capsys)
        _one_line_error(code, err, path, word)
        assert _state(path) == before, f"{name}: lab compare changed the file or left files beside it"
        assert not (tmp_path / f"{name}.html").exists()


def test_a_damaged_row_names_the_database_and_the_job(lab_db: Path, tmp_path: Path, capsys) -> None:
    for name, sql, word in (
        ("json", "UPDATE results SET result_json = substr(result_json, 1, 200)", "stored JSON is damaged"),
        ("type", "UPDATE results SET p99_ns = 'fast'", "results.p99_ns holds str"),
        ("shape", "UPDATE results SET result_json = json_set(result_json, '$.samples_ns.pre', 5)", "samples_ns"),
    ):
        path = tmp_path / f"{name}.sqlite"
        shutil.copy(lab_db, path)
        db = sqlite3.connect(path)
        db.execute(sql)
        db.commit()
        db.close()
        before = _state(path)
        code, err = _run(["lab", "report", str(path), "-o", str(tmp_path / f"{name}.html")], capsys)
        _one_line_error(code, err, path, word)
        code, err = _run(["lab", "compare", str(path), str(lab_db)], capsys)
        _one_line_error(code, err, path, word)
        assert _state(path) == before


def test_another_applications_database_gets_no_lab_tables_from_lab_run(tmp_path: Path, capsys) -> None:
    other = tmp_path / "app.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.commit()
    db.close()
    (tmp_path / "plan.toml").write_text(PLAN)
    before = _state(other)
    code, err = _run(["lab", "run", str(tmp_path / "plan.toml"), "--db", str(other), "-q"], capsys)
    _one_line_error(code, err, other, "no `meta` table")
    assert _state(other) == before  # no tables added, not switched to WAL


def test_a_wal_database_reads_without_a_trace_left(lab_db: Path, tmp_path: Path, capsys) -> None:
    """The lab's database is in WAL mode; with no lab attached, a reader must not create -wal/-shm."""
    assert lab_db.read_bytes()[18:20] == b"\x02\x02"  # written by `lab run`: WAL
    path = tmp_path / "lab.sqlite"
    shutil.copy(lab_db, path)
    before = _state(path)
    assert before[1] == ["lab.sqlite"]
    assert main(["lab", "report", str(path), "-o", str(tmp_path / "r.html")]) == 0
    assert main(["lab", "compare", str(path), str(lab_db), "--json"]) == 0
    assert _state(path)[0] == before[0] and not list(tmp_path.glob("lab.sqlite-*"))


def test_a_database_a_lab_is_writing_reads_and_keeps_the_writers_data(lab_db: Path, tmp_path: Path, capsys) -> None:
    """A lab holding the database open (its -wal has data not yet in the main file): the reader sees it."""
    path = tmp_path / "lab.sqlite"
    shutil.copy(lab_db, path)
    writer = LabStore(path)  # the lab's own connection: WAL, -wal and -shm exist while it is open
    try:
        (row,) = writer.results()
        writer.record(writer.begin_run("inputs", "plan.toml", 1, 0), _Job(row, "second"), row.result)
        main_bytes = path.read_bytes()
        assert Path(f"{path}-wal").stat().st_size > 0
        reader = LabStore(path, create=False)
        try:
            assert len(reader.results()) == 2  # the committed row still only in the -wal
        finally:
            reader.close()
        assert main(["lab", "report", str(path), "-o", str(tmp_path / "r.html")]) == 0
        assert "2 results" in (tmp_path / "r.html").read_text()
        assert path.read_bytes() == main_bytes
    finally:
        writer.close()


class _Job:
    """What LabStore.record reads of a job: the stored row's identity under another key."""

    def __init__(self, row, key: str) -> None:  # noqa: ANN001
        self.key, self.plan, self.target, self.repetition = key, row.plan, row.target, 1
        self.artifact_sha256, self.threads, self.providers, self.engine = "0" * 64, None, None, None


def test_malformed_bench_json_is_one_line_error(bench_json: Path, lab_db: Path, tmp_path: Path, capsys) -> None:
    doc = json.loads(bench_json.read_text())
    text = bench_json.read_text()
    result = doc["results"][0]
    cases = {
        "truncated": (text[: len(text) // 2], "not valid JSON"),
        "empty": ("", "JSON"),
        "binary": (random.Random(2).randbytes(300).decode("latin-1"), ""),
        "a-list": ("[1, 2]", "result file"),
        "results-not-list": (json.dumps({**doc, "results": {"a": 1}}), "`results`"),
        "result-not-object": (json.dumps({**doc, "results": [5]}), "results[0]"),
        "samples-strings": (
            json.dumps({**doc, "results": [{**result, "samples_ns": {"pre": ["x"], "infer": [1], "post": [1]}}]}),
            "samples_ns",
        ),
        "samples-ragged": (
            json.dumps({**doc, "results": [{**result, "samples_ns": {"pre": [1, 2], "infer": [1], "post": [1]}}]}),
            "samples_ns",
        ),
        "config-list": (json.dumps({**doc, "results": [{**result, "config": [1]}]}), "`config`"),
    }
    for name, (content, word) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(content, encoding="latin-1" if name == "binary" else "utf-8")
        before = _state(path)
        code, err = _run(["lab", "compare", str(path), str(bench_json)], capsys)
        _one_line_error(code, err, path, word)
        code, err = _run(["lab", "compare", str(lab_db), str(path)], capsys)
        _one_line_error(code, err, path, word)
        assert _state(path) == before
