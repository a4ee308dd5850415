"""edgerun/cli/run_plain.py: ``edgerun run ARTIFACT [--json]`` is read without argparse, into exactly
what argparse makes of it; every other command line goes through argparse (its help and errors)."""

from __future__ import annotations

import pytest

from edgerun import cli
from edgerun.cli.run_plain import RUN_DEFAULTS, plain_run_args


def argparse_args(argv: list[str]) -> dict[str, object]:
    return vars(cli._parse(cli.build_parser(argv), argv))


@pytest.mark.parametrize("artifact", ["model.tflite", "run", "a folder/m.onnx", "x=1", "name@current", ""])
@pytest.mark.parametrize("tail", [[], ["--json"]])
def test_the_plain_forms_give_what_argparse_gives(artifact: str, tail: list[str]) -> None:
    argv = ["run", artifact, *tail]
    plain = plain_run_args(argv)
    assert plain is not None
    assert vars(plain) == argparse_args(argv)  # every option, its default, the command and cmd_run


def test_every_option_of_run_has_its_default_here() -> None:
    """An option added to `run` (edgerun/cli/run.py register) must be added to RUN_DEFAULTS too."""
    expected = set(argparse_args(["run", "m.tflite"])) - {"command", "artifact", "func"}
    assert set(RUN_DEFAULTS) == expected, (
        f"edgerun/cli/run_plain.py RUN_DEFAULTS lacks {sorted(expected - set(RUN_DEFAULTS))} and has "
        f"{sorted(set(RUN_DEFAULTS) - expected)} extra: give each `run` option its argparse default there"
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["run", "-h"],
        ["run", "--help"],
        ["run", "-m.tflite"],  # an option to argparse (unknown: its error)
        ["run", "--", "m.tflite"],
        ["run", "m.tflite", "--js"],  # an abbreviation: argparse expands it
        ["run", "--json", "m.tflite"],
        ["run", "m.tflite", "--json", "--json"],
        ["run", "m.tflite", "--threads", "2"],
        ["run", "m.tflite", "n.tflite"],
        ["bench", "m.tflite"],
        ["--version"],
        ["info", "m.tflite"],
    ],
)
def test_every_other_command_line_is_left_to_argparse(argv: list[str]) -> None:
    assert plain_run_args(argv) is None


def test_a_bad_command_line_still_gets_argparse_s_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "m.tflite", "--jsn"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: edgerun run") and "unrecognized arguments: --jsn" in err
