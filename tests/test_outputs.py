"""Output files (issue 11, data loss): never over an input or a database, never over a file without
--force, checked before any work, written atomically; ``--json -`` leaves stdout to the JSON alone.

Real command lines through ``edgerun.cli.main`` on the bundled demo and real lab databases.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tool_modules import tool

from edgerun.cli import main
from edgerun.errors import OutputError
from edgerun.lab.store import LabStore
from edgerun.outputs import check_folder, check_output, check_outputs, write_atomic

FAST = ["--runs", "50", "--min-seconds", "0", "--warmup", "2", "--warmup-seconds", "0", "--no-energy"]
FAST += ["--profile", "raspberry-pi-5"]


def _one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert lines[0].startswith("edgerun: error: ")
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def lab_db(tmp_path: Path) -> Path:
    """A real (small) lab database: one finished run, no results."""
    store = LabStore(tmp_path / "lab.sqlite")
    store.finish_run(store.begin_run("outputs-test", str(tmp_path / "plan.toml"), 0, 0))
    store.close()
    return tmp_path / "lab.sqlite"


# --- lab report --------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["-o", "--markdown"])
def test_lab_report_never_writes_over_its_database(lab_db: Path, option: str, capsys) -> None:
    before = lab_db.read_bytes()
    argv = ["lab", "report", str(lab_db), option, str(lab_db)]
    if option == "--markdown":
        argv += ["-o", str(lab_db.parent / "r.html")]
    for force in ([], ["--force"]):  # not even with --force
        assert main([*argv, *force]) == 1
        assert lab_db.read_bytes() == before
        _one_line_error(capsys.readouterr().err, str(lab_db), "input")
    assert not (lab_db.parent / "r.html").exists()  # refused before anything was written


def test_lab_report_refuses_an_existing_file_without_force_and_replaces_it_with(lab_db: Path, capsys) -> None:
    out, md = lab_db.parent / "r.html", lab_db.parent / "r.md"
    out.write_text("keep me")
    assert main(["lab", "report", str(lab_db), "-o", str(out)]) == 1
    assert out.read_text() == "keep me" and not md.exists()
    _one_line_error(capsys.readouterr().err, str(out), "--force")
    os.chmod(out, 0o640)
    assert main(["lab", "report", str(lab_db), "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("<!doctype html>") or "<html" in out.read_text()
    assert "edgerun lab summary" in md.read_text()
    assert os.stat(out).st_mode & 0o777 == 0o640  # the replaced file's mode is kept
    assert not _leftovers(lab_db.parent)


def test_lab_report_refuses_two_outputs_on_one_file(lab_db: Path, capsys) -> None:
    out = lab_db.parent / "r.md"
    assert main(["lab", "report", str(lab_db), "-o", str(out)]) == 1  # the default --markdown is r.md too
    assert not out.exists()
    _one_line_error(capsys.readouterr().err, str(out), "twice")


# --- bench --------------------------------------------------------------------------------


def test_bench_json_into_a_missing_folder_fails_before_any_benchmark(tmp_path: Path, capfd) -> None:
    target = tmp_path / "no-such-folder" / "r.json"
    assert main(["bench", *FAST, "--json", str(target)]) == 1  # not -q: progress would show a started run
    out, err = capfd.readouterr()
    assert out == ""  # no table: nothing was measured
    _one_line_error(err, str(target), "does not exist")
    assert "profile:" not in err


def test_bench_refuses_an_existing_json_and_replaces_it_with_force(tiny_onnx: Path, tmp_path: Path, capfd) -> None:
    out = tmp_path / "r.json"
    out.write_text("precious\n")
    assert main(["bench", str(tiny_onnx), *FAST, "-q", "--json", str(out)]) == 1
    std, err = capfd.readouterr()
    assert out.read_text() == "precious\n" and std == ""
    _one_line_error(err, str(out), "--force")
    assert main(["bench", str(tiny_onnx), *FAST, "-q", "--json", str(out), "--force"]) in (0, 1, 3)
    assert json.loads(out.read_text())["results"][0]["stats"]["total"]["n"] >= 50
    assert not _leftovers(tmp_path)


def test_bench_json_never_replaces_the_artifact(demo_copy, capfd) -> None:
    model = demo_copy("digits-int8.onnx")
    before = model.read_bytes()
    manifest = Path(f"{model}.edgerun.json")
    for victim, force in ((model, []), (manifest, []), (model, ["--force"]), (manifest, ["--force"])):
        assert main(["bench", str(model), *FAST, "-q", "--json", str(victim), *force]) == 1
        _one_line_error(capfd.readouterr().err, str(victim), "input")
    assert model.read_bytes() == before and json.loads(manifest.read_text())


def test_bench_json_to_stdout_is_parseable_and_the_table_goes_to_stderr(tiny_onnx: Path, capfd) -> None:
    assert main(["bench", str(tiny_onnx), *FAST, "-q", "--json", "-"]) in (0, 1, 3)
    out, err = capfd.readouterr()
    doc = json.loads(out)
    assert doc["results"][0]["stats"]["total"]["n"] >= 50
    assert "p99" in err  # the side-by-side table


# --- serial -------------------------------------------------------------------------------


def test_serial_tiny_checks_json_before_opening_the_port(tmp_path: Path, capsys) -> None:
    target = tmp_path / "gone" / "tiny.json"
    port = tmp_path / "ttyNONE"  # would be a PortUnavailable if the port were opened first
    argv = ["serial", "tiny", "--port", str(port), "--dataset", str(tmp_path), "--json", str(target)]
    assert main(argv) == 1
    _one_line_error(capsys.readouterr().err, str(target), "does not exist")


def test_serial_host_json_to_stdout_is_parseable(capfd) -> None:
    emu_mod = tool("firmware_emulator")
    with emu_mod.FirmwareEmulator(emu_mod.HostFirmware(speed=20.0)) as emu:
        argv = ["serial", "host", "--port", emu.path, "--hop", "250", "--duration", "1.0", "-q", "--json", "-"]
        rc = main([*argv, "--hard-ms", "50", "--profile", "raspberry-pi-5"])
    out, err = capfd.readouterr()
    assert rc in (0, 1, 3)
    assert json.loads(out)["windows"]["decided"] >= 0
    assert "overall" in err  # the text summary


# --- compress -----------------------------------------------------------------------------


def test_compress_out_that_is_a_file_fails_before_training(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("torch_pruning")
    recipe = tmp_path / "r.toml"  # small, so that a regression costs seconds: one epoch at 8x8
    recipe.write_text(
        'name = "t"\n[data]\ninput_size_px = 8\n[[step]]\nkind = "train"\nname = "teacher"\ntrain = { epochs = 1 }\n'
    )
    out = tmp_path / "a-file"
    out.write_text("not a folder")
    assert main(["compress", str(recipe), "--out", str(out)]) == 1
    _one_line_error(capsys.readouterr().err, str(out), "not a folder")  # and no training progress lines
    assert out.read_text() == "not a folder"


# --- the helpers --------------------------------------------------------------------------


def test_check_output_cases(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert check_output(tmp_path / "new.json") == tmp_path / "new.json"
    assert check_output(tmp_path / "f", force=True) == tmp_path / "f"
    assert check_output("/dev/null") == Path("/dev/null")  # a stream: nothing to lose
    with pytest.raises(OutputError, match="it is a folder"):
        check_output(tmp_path)
    os.link(tmp_path / "f", tmp_path / "hard")
    with pytest.raises(OutputError, match="input"):  # the same file under another name
        check_output(tmp_path / "hard", inputs=[tmp_path / "f"], force=True)
    (tmp_path / "link").symlink_to(tmp_path / "f")
    with pytest.raises(OutputError, match="input"):
        check_output(tmp_path / "link", inputs=[tmp_path / "f"], force=True)
    assert check_outputs([None, "-", tmp_path / "a"]) == [tmp_path / "a"]
    with pytest.raises(OutputError, match="is a file"):
        check_folder(tmp_path / "f" / "sub")  # under a file: cannot be made
    assert check_folder(tmp_path / "x" / "y") == tmp_path / "x" / "y"


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    from edgerun.outputs import open_atomic

    out = tmp_path / "r.json"
    out.write_text("old")
    with pytest.raises(RuntimeError), open_atomic(out, force=True) as fh:
        fh.write("half")
        raise RuntimeError("disk full")
    assert out.read_text() == "old" and not _leftovers(tmp_path)
    write_atomic(out, "new", force=True)
    assert out.read_text() == "new"
    write_atomic("/dev/null", "nothing")  # written in place, the device node is not renamed over
    assert Path("/dev/null").is_char_device()


def test_write_atomic_without_force_keeps_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    check_output(out)
    out.write_text("someone else's")  # between the check and the write
    with pytest.raises(OutputError, match="meanwhile"):
        write_atomic(out, "ours")
    assert out.read_text() == "someone else's" and not _leftovers(tmp_path)
