"""One exit-code table (edgerun/exitcodes.py) for every command, and what `edgerun` returns for each kind of error.

The command line is run for real (a child Python running ``edgerun.cli.main``): a usage error is
exit 2, every other EdgerunError exit 1 with one line, and anything else is a bug that says so
(a ValueError is no longer taken for a usage error).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import edgerun
import edgerun.errors as E
from edgerun.demo import DEMO_DIR
from edgerun.exitcodes import (
    ERROR_EXIT_CODES,
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_NOT_VALID,
    EXIT_PASS,
    EXIT_USAGE,
    exit_code,
    verdict_exit_code,
)

MODEL = str(DEMO_DIR / "digits-fp32.onnx")
PACKAGE = Path(edgerun.__file__).parent


def edgerun_cli(*argv: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport sys\nfrom edgerun.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)


def test_every_error_class_has_its_exit_code() -> None:
    classes = {getattr(E, name) for name in E.__all__}
    assert classes == set(ERROR_EXIT_CODES), (
        f"no exit code for {sorted(c.__name__ for c in classes - set(ERROR_EXIT_CODES))}"
    )


def test_exit_code_follows_the_nearest_class_in_the_table() -> None:
    class Unlisted(E.UsageError):
        pass

    assert exit_code(E.UsageError("x")) == exit_code(Unlisted("x")) == EXIT_USAGE
    assert exit_code(E.IntegrityError("x")) == EXIT_FAIL
    assert exit_code(KeyboardInterrupt()) == EXIT_INTERRUPTED
    assert exit_code(ValueError("x")) == EXIT_FAIL  # not ours: a bug, never "usage"


@pytest.mark.parametrize(
    ("overalls", "code"),
    [
        ((), EXIT_PASS),
        (("pass", "pass"), EXIT_PASS),
        (("pass", "not-valid"), EXIT_NOT_VALID),
        (("not-valid", "fail"), EXIT_FAIL),
        (("pass", "error"), EXIT_FAIL),
        (("pass", "mystery"), EXIT_FAIL),  # a verdict the table does not know is not a pass
    ],
)
def test_one_rule_turns_verdicts_into_an_exit_code(overalls: tuple[str, ...], code: int) -> None:
    assert verdict_exit_code(overalls) == code


def test_no_command_module_defines_its_own_exit_codes() -> None:
    """``EXIT_X = n`` (or a tuple of them) only in edgerun/exitcodes.py."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "exitcodes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign):
                names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                if any(n.startswith("EXIT_") for n in names):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not found, found


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        # UsageError from the library: a target URL without a host
        (["target", "info", "ssh://"], 2, "the host is missing"),
        # PolicyError: a URL but a mode that sends nothing
        (["run", MODEL, "--fallback-url", "http://127.0.0.1:9"], 2, "nothing would be sent"),
        # ProfileError
        (["run", MODEL, "--profile", "no-such-profile"], 1, "unknown device profile 'no-such-profile'"),
        # ArtifactError
        (["info", "/nonexistent/model.onnx"], 1, "/nonexistent/model.onnx"),
    ],
    ids=["usage", "policy", "profile", "artifact"],
)
def test_each_kind_of_error_is_one_line_with_its_exit_code(argv: list[str], code: int, says: str) -> None:
    proc = edgerun_cli(*argv)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("edgerun: error: ") and says in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_corrupt_model_is_an_artifact_error_from_the_format_reader(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07\x12\xff\xff")  # ir_version 7, then a field that runs past the end
    proc = edgerun_cli("info", str(bad))
    assert proc.returncode == 1 and proc.stderr.startswith(f"edgerun: error: {bad}: corrupt or truncated ONNX")


def test_a_builtin_error_is_reported_as_a_bug_not_as_usage() -> None:
    # `edgerun info` made to hit a ValueError the way a bug in edgerun would (the command itself is replaced)
    prelude = "import edgerun.cli.info as m\ndef broken(args):\n    raise ValueError('boom')\nm.cmd_info = broken"
    proc = edgerun_cli("info", MODEL, prelude=prelude)
    assert proc.returncode == 1
    assert "internal error in edgerun" in proc.stderr and "ValueError: boom" in proc.stderr and "a bug" in proc.stderr
