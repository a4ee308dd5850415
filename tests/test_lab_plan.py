"""Lab plans: TOML -> jobs (matrix, repetitions, stable keys) and clear errors for bad plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerun.errors import LabError
from edgerun.lab.plan import load_plan

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "edgerun" / "demo"

PLAN = f"""
[lab]
name = "t"
repetitions = 2

[bench]
runs = 100
no_energy = true

[matrix]
threads = [1, 2]
engines = ["onnx", "litert"]

[[artifact]]
path = "{DEMO / "digits-int8.onnx"}"

[[artifact]]
path = "{DEMO / "digits-int8.tflite"}"

[targets.here]
url = "local"
cooldown_s = 0.5

[targets.pi]
url = "ssh://pi@pi5.local"
python = "/opt/edgerun/bin/python"
cooldown_c = 50
"""


def _plan(tmp_path: Path, text: str = PLAN) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_the_matrix_makes_one_job_per_combination_and_repetition(tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path))
    jobs = plan.jobs()
    # 2 targets x 2 artifacts x 2 threads x (the one matching engine) x 2 repetitions
    assert len(jobs) == 16 and len({j.key for j in jobs}) == 16
    assert {(j.artifact.suffix, j.engine) for j in jobs} == {(".onnx", "onnx"), (".tflite", "litert")}
    assert {j.options.runs for j in jobs} == {100} and {j.threads for j in jobs} == {1, 2}
    assert plan.database == tmp_path / "lab.sqlite"
    pi = next(t for t in plan.targets if t.name == "pi")
    assert pi.cooldown_c == 50 and pi.spec.options.python == "/opt/edgerun/bin/python" and pi.spec.user == "pi"


def test_job_keys_are_stable_and_change_with_what_the_measurement_depends_on(tmp_path: Path) -> None:
    keys = [j.key for j in load_plan(_plan(tmp_path)).jobs()]
    assert keys == [j.key for j in load_plan(_plan(tmp_path)).jobs()]
    changed = [j.key for j in load_plan(_plan(tmp_path, PLAN.replace("runs = 100", "runs = 200"))).jobs()]
    assert not set(keys) & set(changed)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("repetitions = 2", "repetitions = 0"), "repetitions must be a whole number >= 1"),
        (("runs = 100", "runz = 100"), "unknown bench option"),
        (("threads = [1, 2]", 'threads = ["1"]'), "threads must be a non-empty list of int"),
        (('engines = ["onnx", "litert"]', 'engines = ["tvm"]'), "engines must be among"),
        (("digits-int8.tflite", "missing.tflite"), "artifact .* not found"),
        (('url = "local"', 'url = "ftp://x"'), r"\[targets.here\]: target 'ftp://x'"),
        (('python = "/opt', 'taskset = "f0"\npython = "/opt'), "applies to adb targets"),
        (("[matrix]", "[matrixx]"), "unknown table"),
    ],
)
def test_bad_plans_name_the_key_and_what_was_expected(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(LabError, match=message):
        load_plan(_plan(tmp_path, PLAN.replace(*edit)))


def test_the_documented_example_plan_loads() -> None:
    plan = load_plan(REPO / "docs" / "examples" / "lab-plan.toml")
    assert {t.name for t in plan.targets} == {"here", "loopback"} and plan.jobs()
