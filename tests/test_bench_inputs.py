"""Random inputs (a model without bundled samples) are drawn from LiteRT benchmark_model's ranges
(tensorflow/lite/tools/benchmark/benchmark_tflite_model.cc, CreateRandomTensorData)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_models import gather_model

import edgerun
from edgerun.artifact import TensorSpec
from edgerun.bench.inputs import _random
from edgerun.demo import DEMO_DIR


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [
        ("int8", -127, 127),
        ("uint8", 0, 254),
        ("int16", 0, 99),
        ("int32", 0, 99),
        ("int64", 0, 99),
        ("uint32", 0, 99),
        ("float32", -0.5, 0.5),
        ("float64", -0.5, 0.5),
    ],
)
def test_random_inputs_use_benchmark_models_ranges(dtype: str, low: float, high: float):
    x = _random(np.random.default_rng(0), TensorSpec("x", (4096,), dtype))
    assert x.dtype == np.dtype(dtype)
    assert low <= x.min() and x.max() <= high
    # the range is used, not a corner of it: 4096 draws reach both quarters' ends
    assert x.min() < low + (high - low) / 4 and x.max() > high - (high - low) / 4


def test_a_model_indexed_by_its_int64_input_runs_on_random_data(tmp_path: Path, capsys):
    """An embedding lookup (Gather on an int64 index input) over a 100-row table: an index drawn
    from int64's whole range fails inside onnxruntime; benchmark_model's [0, 99] runs."""
    path = gather_model(tmp_path / "embedding.onnx", np.arange(200).reshape(100, 2), 8)
    from edgerun.bench.inputs import sample_inputs
    from edgerun.cli import main

    rt = edgerun.load(str(path))
    inputs, source = sample_inputs(rt.artifact, seed=0)
    assert source.startswith("random")
    for x in inputs:  # every one of the seeded inputs `edgerun bench` cycles through
        np.testing.assert_array_equal(rt.run(x).outputs["y"][:, 0], 2 * x)
    assert main(["run", str(path), "--json"]) == 0
    assert '"y"' in capsys.readouterr().out


DEMO = DEMO_DIR / "digits-fp32.onnx"


def _quick(**kw):
    from edgerun.bench.runner import BenchConfig

    return BenchConfig(
        min_runs=20, min_seconds=0, warmup_runs=2, warmup_seconds=0, energy=False, memory=False, thermal=False, **kw
    )


def test_an_inputs_file_is_what_the_benchmark_feeds(tmp_path: Path):
    """--inputs replaces the bundled samples: the loop cycles exactly the file's inputs (the first
    inference's outputs are those of the file's first sample), and the result says where they came from."""
    from edgerun.bench.runner import measure

    rt = edgerun.load(str(DEMO))
    spec = rt.artifact.raw_inputs[0]
    x = np.random.default_rng(3).uniform(0, 16, size=(5, *spec.shape)).astype(spec.dtype)
    path = tmp_path / "mine.npz"
    np.savez(path, x=x)
    m = measure(DEMO, _quick(inputs=str(path)))
    assert m.input_source == "file:mine.npz (5 inputs)"
    assert m.runtime.run(x[0]).top == rt.run(x[0]).top  # the same model, the caller's data


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not a zip", "not a readable .npz"),
        ("no x", "has no 'x'"),
        ("wrong shape", "sample 0 of 2: input 'image': expected shape"),
        ("nan", "sample 1 of 2: input 'image': 1 NaN/Inf value"),
        ("strings", "holds <U1 values; expected a numeric array"),
        ("complex", "holds complex64 values; expected a numeric array"),
    ],
)
def test_a_bad_inputs_file_is_one_line_naming_the_file(tmp_path: Path, content: str, expected: str):
    from edgerun.bench.runner import measure
    from edgerun.errors import EdgerunError

    path = tmp_path / "bad.npz"
    good = np.zeros((2, 8, 8), np.float32)
    if content == "not a zip":
        path.write_bytes(b"PK\x03\x04 nothing more")
    elif content == "no x":
        np.savez(path, images=good)
    elif content == "wrong shape":
        np.savez(path, x=np.zeros((2, 9, 9), np.float32))
    elif content == "nan":
        bad = good.copy()
        bad[1, 3, 3] = np.nan
        np.savez(path, x=bad)
    elif content == "strings":
        np.savez(path, x=np.full((2, 8, 8), "a"))
    else:
        np.savez(path, x=np.zeros((2, 8, 8), np.complex64))
    before = path.read_bytes()
    with pytest.raises(EdgerunError, match=expected) as info:
        measure(DEMO, _quick(inputs=str(path)))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == before  # an input file is read, never written


def test_bench_inputs_flag_feeds_the_file_and_never_writes_it(tmp_path: Path, capsys):
    import json

    from edgerun.cli import main

    x = np.random.default_rng(5).uniform(0, 16, size=(7, 8, 8)).astype(np.float32)
    inputs = tmp_path / "mine.npz"
    np.savez(inputs, x=x)
    before = inputs.read_bytes()
    out = tmp_path / "r.json"
    fast = ["--runs", "30", "--min-seconds", "0", "--warmup-seconds", "0", "--no-energy", "-q"]
    main(["bench", str(DEMO), "--inputs", str(inputs), *fast, "--json", str(out)])  # exit: this host's verdicts
    (result,) = json.loads(out.read_text())["results"]
    assert result["status"] == "ok" and result["input_source"] == "file:mine.npz (7 inputs)"
    assert result["config"]["inputs"] == str(inputs.absolute())
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:  # --json over the inputs file: refused before any run
        code = main(["bench", str(DEMO), "--inputs", str(inputs), *fast, "--json", str(inputs), "--force"])
        raise SystemExit(code)
    assert usage.value.code != 0 and "it is an input of this command" in capsys.readouterr().err
    assert inputs.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--inputs", "MISSING"], "argument --inputs: "),
        (["--inputs", "NOTNPZ"], "not a readable .npz"),
        (["--inputs", "GOOD", "--target", "ssh://nobody@127.0.0.1:1"], "with --target, give the artifact a manifest"),
    ],
)
def test_bench_inputs_flag_usage_errors(tmp_path: Path, capsys, argv: list[str], says: str):
    from edgerun.cli import main

    good, notnpz = tmp_path / "good.npz", tmp_path / "x.npz"
    np.savez(good, x=np.zeros((1, 8, 8), np.float32))
    notnpz.write_text("hello")
    names = {"MISSING": str(tmp_path / "missing.npz"), "NOTNPZ": str(notnpz), "GOOD": str(good)}
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(DEMO), *[names.get(a, a) for a in argv]])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse's usage, then the one error line
    assert last.startswith("edgerun bench: error: argument --inputs: ") and says in last


def test_run_says_when_a_failing_input_was_random(tmp_path: Path, capsys):
    """No index is valid for a Gather over an empty table: the failure on random data says the data
    was random and how to give a real input; the same failure on a given input does not."""
    from edgerun.cli import main

    path = gather_model(tmp_path / "empty.onnx", np.zeros((0, 2)), 2)
    assert main(["run", str(path)]) != 0
    err = capsys.readouterr().err.strip()
    assert "onnxruntime failed to run the model" in err and "(the input was random data" in err
    assert "--input FILE.npy" in err and len(err.splitlines()) == 1
    given = tmp_path / "idx.npy"
    np.save(given, np.array([0, 1], np.int64))
    assert main(["run", str(path), "--input", str(given)]) != 0
    err = capsys.readouterr().err.strip()
    assert "onnxruntime failed to run the model" in err and "random" not in err
