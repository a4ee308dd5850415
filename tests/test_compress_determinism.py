"""A recipe reproduces on one machine: same seed and thread count -> the same model, bit for bit; the
manifests say what else the result depends on (torch, threads, CPU). Tiny models; a few seconds."""

from __future__ import annotations

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from edgerun.compress import parse_recipe, run_recipe  # noqa: E402
from edgerun.errors import RecipeError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {
    "name": "det",
    "threads": 1,
    "data": {"input_size_px": 8, "calibration_samples": 32, "train_limit": 400},
    "step": [
        {"kind": "train", "name": "teacher", "model": {"width": 0.25, "depth": 2}, "train": {"epochs": 2}},
        {
            "kind": "distill",
            "name": "student",
            "teachers": ["teacher"],
            "model": {"width": 0.25, "depth": 1},
            "train": {"epochs": 2},
        },
    ],
    "gate": {"max_drop_points": 100.0, "max_drop_vs_teacher_points": 100.0},
    "export": [{"source": "student"}],
}


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_and_threads_give_the_same_model_bit_for_bit(tmp_path):
    torch.set_num_threads(2)  # the process's count; the recipe's threads = 1 applies to its steps only
    runs = [run_recipe(parse_recipe(TINY), tmp_path / str(i)) for i in range(2)]
    assert torch.get_num_threads() == 2  # restored
    first, second = (tmp_path / str(i) / "student-fp32.onnx" for i in range(2))
    assert _digest(first) == _digest(second)  # strip_onnx_noise: the bytes are the weights and the graph
    assert [r.accuracy for r in runs[0].rows] == [r.accuracy for r in runs[1].rows]
    facts = json.loads((tmp_path / "0" / "student-fp32.onnx.edgerun.json").read_text())["provenance"]["training"]
    assert facts["threads"] == 1 and facts["deterministic_algorithms"] is True
    assert facts["torch"] == torch.__version__.split("+")[0] and facts["cpu"]
    other = run_recipe(parse_recipe({**TINY, "seed": 1}), tmp_path / "seed1")  # the digest can tell models apart
    assert _digest(tmp_path / "seed1" / "student-fp32.onnx") != _digest(first) and other.rows


def test_threads_out_of_range_is_a_recipe_error():
    with pytest.raises(RecipeError, match="'threads' must be 0"):
        parse_recipe({**TINY, "threads": -1})
