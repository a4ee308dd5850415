"""Start-up stays cheap by mechanism, not by a timing assertion (issue 13; tools/bench_startup.py
measures the CPU time): ``edgerun --help`` imports no command module and no numpy, ``edgerun CMD``
imports only CMD's module, and a run imports no engine, schema or library it does not use."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgerun import cli
from edgerun.demo import DEMO_DIR

# The child lists sys.modules as it exits. Not `python -X importtime`: it logs only imports made
# by the import statement, not importlib.import_module's (how edgerun.cli loads a command module).
ENTRY = (
    "import atexit, os, sys\n"
    "atexit.register(lambda: open(os.environ['MODULES_OUT'], 'w').write('\\n'.join(sorted(sys.modules))))\n"
    "from edgerun.cli import main\n"
    "sys.exit(main())"
)
COMMAND_MODULES = set(cli.COMMAND_MODULES) | {module for module, _ in cli.COMMANDS.values()}


def imported_by(*argv: str, env: dict[str, str] | None = None) -> set[str]:
    """Every module a fresh ``edgerun ARGV`` process (with ``env`` added) has imported when it exits."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "modules"
        env = {**os.environ, **(env or {}), "MODULES_OUT": str(out)}
        proc = subprocess.run(
            [sys.executable, "-c", ENTRY, *argv], capture_output=True, text=True, timeout=120, env=env
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return set(out.read_text().split())


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_help_imports_the_table_only() -> None:
    mods = imported_by("--help")
    assert "edgerun.cli" in mods
    assert not mods & COMMAND_MODULES, sorted(mods & COMMAND_MODULES)
    assert not _top(mods) & {"numpy", "pydantic", "onnxruntime", "ai_edge_litert", "torch", "tomllib"}
    assert not {m for m in mods if m.startswith("edgerun.compress")}


def test_a_command_imports_its_own_module_only() -> None:
    mods = imported_by("profiles")
    assert mods & COMMAND_MODULES == {"edgerun.cli.machine"}


def test_help_lists_every_command_with_its_one_line_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps long help lines
    for name, (_, help_text) in cli.COMMANDS.items():
        if cli.COMMANDS[name][0] in cli.COMMAND_MODULES:
            assert f"{name} {help_text}" in out, name


def test_the_table_matches_what_the_modules_register() -> None:
    # Both ways: the table's help is the module's help= (so --help shows what the full parser
    # would), and every command a tabled module registers is in the table (else it would vanish
    # from `edgerun --help` and answer "invalid choice").
    for module in cli.COMMAND_MODULES:
        tabled = {name: text for name, (mod, text) in cli.COMMANDS.items() if mod == module}
        if not tabled:
            continue
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        registered = {a.dest: a.help for a in sub._choices_actions}
        assert registered == tabled, module


@pytest.mark.parametrize(
    ("command", "option"),
    [("run", "--fallback-url"), ("bench", "--in-process"), ("compress", "--keep-failed"), ("serve", "--threads")],
)
def test_command_help_shows_the_full_options(command: str, option: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert option in capsys.readouterr().out


def test_unknown_command_is_a_usage_error_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "'run'" in err


def test_command_in_reads_the_first_word_that_is_not_an_option() -> None:
    assert cli.command_in(["run", "m.onnx"]) == "run"
    assert cli.command_in(["--version"]) is None
    assert cli.command_in([]) is None
    assert cli.command_in(["--", "bench"]) == "bench"


def _commands(argv: list[str]) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in cli.build_parser(argv)._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_a_command_given_first_gets_its_parsers_alone_else_every_stub_is_there() -> None:
    assert set(_commands(["update", "--help"])) == {"update", "rollback", "models"}  # edgerun.cli.update's three
    assert set(_commands(["info", "m.onnx"])) == {"info"}
    # an option before the command (`edgerun -h run`) reaches the top-level parser: the table is needed
    assert set(_commands(["-h", "info"])) == set(cli.COMMANDS)
    assert set(_commands(["nonsense"])) == set(cli.COMMANDS)  # "invalid choice" lists them all


def test_build_parser_without_argv_registers_every_command() -> None:
    # tests and docs use the full parser: no stub may be in it (a stub has no options and no -h)
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert all(p.add_help for p in sub.choices.values())
    assert set(cli.COMMANDS) <= set(sub.choices)


def test_an_onnx_run_without_a_manifest_imports_no_other_engine_schema_or_subsystem(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(DEMO_DIR / "digits-fp32.onnx", model)  # no manifest beside it
    mods = imported_by("run", str(model))
    assert "onnxruntime" in mods and "numpy" in mods
    top = _top(mods)
    assert not top & {"ai_edge_litert", "tflite_runtime", "torch", "pydantic", "httpx", "onnx"}, sorted(top)
    assert not {m for m in mods if m.startswith(("edgerun.compress", "edgerun.fallback", "edgerun.schema.manifest"))}
    assert mods & COMMAND_MODULES == {"edgerun.cli.run"}


def test_pydantic_comes_in_only_to_check_a_manifest_not_yet_passed() -> None:
    mods = imported_by("run", str(DEMO_DIR / "digits-fp32.onnx"), env={"EDGERUN_NO_CACHE": "1"})
    assert "edgerun.schema.manifest" in mods and "pydantic" in mods
    assert not _top(mods) & {"ai_edge_litert", "torch"}


# What `edgerun run` on an ONNX model must never import: another engine, torch, the schema library
# once the manifest's pass is remembered, the network and serialisation stack of the fallback
# (only with --mode/--fallback-*), the profile/budget/detection machinery (only with --profile or a
# budget), and every other subsystem. A structural check: it fails the day an import creeps in.
NOT_IN_AN_ONNX_RUN = {
    "ai_edge_litert",
    "tflite_runtime",
    "torch",
    "onnx",
    "executorch",
    "coremltools",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_inspection",
    "jsonschema",
    "httpx",
    "httpx2",
    "httpcore",
    "orjson",
    "ssl",
    "email",
    "tomllib",
    "importlib.metadata",
    "edgerun.schema.manifest",
    "edgerun.fallback",
    "edgerun.compress",
    "edgerun.lab",
    "edgerun.targets",
    "edgerun.serialhost",
    "edgerun.power",
    "edgerun.measure",
    "edgerun.profiles",
    "edgerun.detection",
    "edgerun.budget",
    "edgerun.coreml",
    "edgerun.doctor",
    "edgerun.formats.tflite",
    "edgerun.formats.pte",
    "edgerun.engines.tflite",
    # the benchmark loop and its settings (`run` needs one input: edgerun.bench.inputs), and OpenSSL's
    # libcrypto (~3-5 ms to load; a model under 1 MiB is hashed by CPython's own sha256, edgerun/_sha.py)
    "edgerun.bench.runner",
    "edgerun.bench.config",
    "_hashlib",
    # the run path's value classes are edgerun.formats.frozen's, not dataclasses (~0.5 ms each to create,
    # ~0.7 ms to import); a single plain call installs no SIGTERM handler (edgerun/cli/run.py _repeat)
    "dataclasses",
    "signal",
    # `run ARTIFACT` is read without argparse (edgerun/cli/run_plain.py), which brings gettext and locale
    "argparse",
    "gettext",
    "locale",
}
# The same for a TFLite run, with the engine swapped: LiteRT and edgerun's TFLite reader in, onnxruntime out.
NOT_IN_A_TFLITE_RUN = (NOT_IN_AN_ONNX_RUN - {"ai_edge_litert", "edgerun.formats.tflite"}) | {
    "onnxruntime",
    "edgerun.engines.onnx",
    "edgerun.formats.onnx",
    "ai_edge_litert.schema_py_generated",  # the flatbuffer schema: only an integer model is searched for INT4
}


def _banned(mods: set[str], banned: set[str]) -> list[str]:
    return sorted(m for m in mods if m in banned or any(m.startswith(b + ".") for b in banned))


def test_a_remembered_onnx_run_imports_nothing_the_run_path_does_not_need(tmp_path: Path) -> None:
    for f in DEMO_DIR.iterdir():  # the demo's model, manifest and samples, in a folder of our own
        if f.name.startswith("digits-fp32.onnx") or f.suffix == ".npz":
            shutil.copy(f, tmp_path / f.name)
    env = {"EDGERUN_CACHE_DIR": str(tmp_path / "cache")}
    first = imported_by("run", str(tmp_path / "digits-fp32.onnx"), env=env)
    assert "pydantic" in first  # the first start checks the manifest with the schema ...
    mods = imported_by("run", str(tmp_path / "digits-fp32.onnx"), env=env)
    assert "edgerun.schema.manifest_cache" in mods and "onnxruntime" in mods
    banned = {m for m in mods if m in NOT_IN_AN_ONNX_RUN or any(m.startswith(b + ".") for b in NOT_IN_AN_ONNX_RUN)}
    assert not banned, sorted(banned)  # ... the next ones remember its pass
    assert mods & COMMAND_MODULES == {"edgerun.cli.run"}


def test_a_remembered_tflite_run_imports_nothing_the_run_path_does_not_need(tmp_path: Path) -> None:
    for f in DEMO_DIR.iterdir():
        if f.name.startswith("digits-fp32.tflite") or f.suffix == ".npz":
            shutil.copy(f, tmp_path / f.name)
    env = {"EDGERUN_CACHE_DIR": str(tmp_path / "cache")}
    assert "pydantic" in imported_by("run", str(tmp_path / "digits-fp32.tflite"), env=env)
    mods = imported_by("run", str(tmp_path / "digits-fp32.tflite"), env=env)
    assert "edgerun.schema.manifest_cache" in mods and "ai_edge_litert.interpreter" in mods
    assert "edgerun.bench.inputs" in mods  # the bundled samples were read, through the light module
    assert not _banned(mods, NOT_IN_A_TFLITE_RUN), _banned(mods, NOT_IN_A_TFLITE_RUN)
    assert mods & COMMAND_MODULES == {"edgerun.cli.run"}


def test_an_fp32_tflite_run_does_not_read_the_flatbuffer_schema(tmp_path: Path) -> None:
    # the schema tells INT4 from int8; a model whose constants LiteRT reports as float has neither
    model = tmp_path / "m.tflite"
    shutil.copy(DEMO_DIR / "digits-fp32.tflite", model)
    mods = imported_by("run", str(model))
    assert "ai_edge_litert.interpreter" in mods
    assert "ai_edge_litert.schema_py_generated" not in mods
    assert "importlib.metadata" not in mods  # the engine's version comes from its __version__
    assert not _top(mods) & {"onnxruntime", "pydantic", "torch"}


def test_an_int8_tflite_still_has_its_int4_tensors_looked_for(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert.schema_py_generated")
    model = tmp_path / "m.tflite"
    shutil.copy(DEMO_DIR / "digits-int8.tflite", model)
    code = (
        "import sys; from pathlib import Path; from edgerun.artifact import inspect_model\n"
        f"info = inspect_model(Path({str(model)!r}))\n"
        "print(info.precision, 'ai_edge_litert.schema_py_generated' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["int8", "True"]


def test_edgerun_compress_imports_its_recipe_parser_on_first_use() -> None:
    code = (
        "import sys, edgerun.compress as c\n"
        "before = 'edgerun.compress.recipe' in sys.modules\n"
        "c.load_recipe\n"
        "print(before, 'edgerun.compress.recipe' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "False"]


def test_edgerun_compress_names_resolve_lazily() -> None:
    import edgerun.compress as c
    from edgerun.compress import recipe

    assert c.load_recipe is recipe.load_recipe and c.Recipe is recipe.Recipe
    assert set(dir(c)) == set(c.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        c.nope  # noqa: B018
