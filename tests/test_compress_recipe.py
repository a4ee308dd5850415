"""Compression recipes: the TOML grammar (no torch needed) and the CLI's behaviour around it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgerun.cli import main
from edgerun.compress.recipe import DistillStep, ExportSpec, PruneStep, load_recipe, parse_recipe
from edgerun.errors import RecipeError

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
name = "t"
[[step]]
kind = "train"
name = "teacher"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


def test_minimal_recipe_gets_the_documented_defaults(tmp_path):
    r = load_recipe(_write(tmp_path, MINIMAL))
    assert r.name == "t" and r.gate.max_drop_points == 1.0 and r.data.input_size_px == 64
    assert r.steps[0].train.epochs == 10 and len(r.source_sha256) == 64


def test_distill_defaults_are_the_lectures():
    r = parse_recipe(
        {"name": "t", "step": [{"kind": "train", "name": "a"}, {"kind": "distill", "name": "b", "teachers": ["a"]}]}
    )
    step = r.steps[1]
    assert isinstance(step, DistillStep)
    assert (step.temperature, step.alpha_soft) == (3.0, 0.7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "temprature = 3\n", "unknown key 'temprature'"),
        (MINIMAL + "train = { epochs = 'ten' }\n", "epochs: must be int"),
        (MINIMAL + "model = { width = 0.5, colour = 1 }\n", "unknown key 'colour'"),
        (MINIMAL.replace('"train"', '"bake"'), "'kind' must be one of"),
        ('name = "t"\n', "at least one [[step]]"),
        (MINIMAL + "[[export]]\nsource = 'nobody'\n", "source 'nobody' is not a step"),
        (MINIMAL + "[[export]]\nsource = 'teacher'\nprecision = 'int2'\n", "precision: must be one of"),
        (
            MINIMAL + "[[export]]\nsource = 'teacher'\nformat = 'tflite'\nmode = 'dynamic'\nprecision = 'int8'\n",
            "not supported",
        ),
        (MINIMAL + "[[export]]\nsource = 'teacher'\nformat = 'tflite'\nprecision = 'mixed'\n", "not supported"),
        (MINIMAL + "[[export]]\nsource = 'teacher'\nprecision = 'mixed'\nmode = 'dynamic'\n", "not supported"),
        (MINIMAL + "[gate]\nmax_drop = 1\n", "unknown key 'max_drop'"),
        (MINIMAL + "[gate]\nmin_accuracy = 2.0\n", "min_accuracy: must be in"),
        (MINIMAL + "[[step]]\nkind = 'prune'\nname = 'p'\nsource = 'teacher'\n", "exactly one of 'amount'"),
        (MINIMAL + "[[step]]\nkind = 'distill'\nname = 's'\nteachers = ['ghost']\n", "refers to 'ghost'"),
        (MINIMAL + "[[step]]\nkind = 'train'\nname = 'teacher'\n", "used twice"),
        ("name = [", "not valid TOML"),
    ],
)
def test_malformed_recipe_names_the_bad_key(tmp_path, text, expected):
    with pytest.raises(RecipeError, match=None) as err:
        load_recipe(_write(tmp_path, text))
    assert expected in str(err.value)
    assert str(tmp_path / "r.toml") in str(err.value)  # says which file


def test_export_names_follow_the_grammar():
    assert ExportSpec(source="s").file_name == "s-fp32.onnx"
    assert ExportSpec(source="s", precision="int8").file_name == "s-int8.onnx"
    assert ExportSpec(source="s", precision="int8", mode="dynamic").file_name == "s-int8-dynamic.onnx"
    assert ExportSpec(source="s", format="tflite", precision="int4").file_name == "s-int4.tflite"
    assert ExportSpec(source="s", name="x").file_name == "x.onnx"
    mixed = ExportSpec(source="s", precision="mixed")
    assert mixed.file_name == "s-mixed.onnx" and mixed.resolved_mode == "static"


def test_prune_threshold_recipe():
    r = parse_recipe(
        {
            "name": "t",
            "step": [
                {"kind": "train", "name": "a"},
                {"kind": "prune", "name": "p", "source": "a", "threshold": 0.4},
            ],
        }
    )
    assert isinstance(r.steps[1], PruneStep) and r.steps[1].threshold == 0.4


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    assert load_recipe(path).steps


def test_cli_check_and_malformed_recipe(tmp_path, capsys):
    good = _write(tmp_path, MINIMAL)
    assert main(["compress", str(good), "--check"]) == 0
    assert "valid recipe 't'" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "epoch = 3\n")
    assert main(["compress", str(bad)]) == 1
    assert "unknown key 'epoch'" in capsys.readouterr().err


def test_cli_without_torch_says_what_to_install(tmp_path):
    """Simulate a runtime-only install: torch cannot be imported."""
    good = _write(tmp_path, MINIMAL)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import importlib.util as u; real = u.find_spec\n"
        "u.find_spec = lambda n, *a: None if n == 'torch' else real(n, *a)\n"
        f"from edgerun.cli import main; sys.exit(main(['compress', {str(good)!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert 'pip install "edgerun[compress]"' in proc.stderr


def test_cli_module_imports_nothing_heavy():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import edgerun.cli, edgerun.cli.compress"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    assert not imported & {"torch", "onnx", "torch_pruning", "litert_torch", "ai_edge_quantizer"}
