"""Quantization-aware training: the recipe grammar, fake quantization in the training forward pass, and
an INT4 export that loses nothing where post-training quantization does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

import edgerun  # noqa: E402
from edgerun.compress import parse_recipe, run_recipe  # noqa: E402
from edgerun.compress import qat as qt  # noqa: E402
from edgerun.compress.models import build_model  # noqa: E402
from edgerun.compress.recipe import ModelConfig, QatStep  # noqa: E402
from edgerun.errors import RecipeError  # noqa: E402

BASE = [{"kind": "train", "name": "float"}]


def _recipe(qat: dict) -> dict:
    return {"name": "t", "step": [*BASE, {"kind": "qat", "name": "q", "source": "float", **qat}]}


def test_qat_step_grammar_and_defaults():
    step = parse_recipe(_recipe({})).steps[1]
    assert isinstance(step, QatStep)
    assert (step.bits, step.finetune.epochs, step.finetune.lr) == (8, 3, 5e-4)
    assert parse_recipe(_recipe({"bits": 4, "finetune": {"epochs": 1, "lr": 1e-4}})).steps[1].bits == 4


@pytest.mark.parametrize(
    ("qat", "expected"),
    [
        ({"bits": 2}, "bits: must be one of [8, 4]"),
        ({"bits": 8.0}, "bits: must be one of [8, 4]"),
        ({"source": "ghost"}, "refers to 'ghost'"),
        ({"epochs": 3}, "unknown key 'epochs'"),
        ({"finetune": {"epochs": -1}}, "epochs: must be in"),
    ],
)
def test_qat_step_rejects_bad_keys(qat, expected):
    with pytest.raises(RecipeError) as err:
        parse_recipe(_recipe(qat))
    assert expected in str(err.value)


def test_qat_step_needs_a_source():
    with pytest.raises(RecipeError, match="missing required key 'source'"):
        parse_recipe({"name": "t", "step": [*BASE, {"kind": "qat", "name": "q"}]})


def _on_int8_grid(w: torch.Tensor) -> bool:
    scale = w.abs().flatten(1).amax(1).reshape(-1, *([1] * (w.dim() - 1))) / 127
    return bool(torch.allclose(w / scale, torch.round(w / scale), atol=1e-3))


def _on_int4_grid(w: torch.Tensor) -> bool:
    blocks = nn.functional.pad(w, (0, (-w.shape[1]) % 32)).reshape(w.shape[0], -1, 32)
    signed = blocks.gather(-1, blocks.abs().argmax(-1, keepdim=True))
    q = blocks / torch.where(signed == 0, torch.ones_like(signed), signed / -8)
    return bool(torch.allclose(q, torch.round(q), atol=1e-3) and q.min() >= -8 - 1e-3 and q.max() <= 7 + 1e-3)


@pytest.mark.parametrize("bits", [8, 4])
def test_fake_quant_is_in_the_training_forward_pass(bits):
    torch.manual_seed(0)
    model = qt.prepare(build_model(ModelConfig(width=0.25, depth=2)))
    seen: dict[str, torch.Tensor] = {}
    fc = model.classifier
    conv = model.features[0].conv
    fc.register_forward_hook(lambda m, a, o: seen.__setitem__("fc", m.weight.detach().clone()))
    conv.register_forward_hook(lambda m, a, o: seen.__setitem__("conv", m.weight.detach().clone()))
    handle = qt.attach(model, bits)
    x = torch.randn(16, 1, 8, 8)
    qt.calibrate(handle, x)
    model.train()
    loss = model(x).square().mean()
    loss.backward()
    on_grid = _on_int8_grid if bits == 8 else _on_int4_grid
    assert on_grid(seen["fc"])  # the layer computed with quantized weights while training
    assert _on_int8_grid(seen["conv"]) == (bits == 8)  # int4 is weight-only on Linear (MatMul) layers
    latent = fc.parametrizations.weight.original
    assert latent.grad is not None and latent.grad.abs().sum() > 0  # straight-through gradient
    assert not on_grid(latent.detach())  # the float weights being trained are off the grid
    if bits == 8:
        scale, _ = handle.act_fq[0].calculate_qparams()
        assert float(scale) == pytest.approx((float(x.max()) - float(x.min())) / 255, rel=1e-3)  # calibrated
    out = handle.finish()
    assert not hasattr(out.classifier, "parametrizations") and on_grid(out.classifier.weight.detach())


def _logits(model: Path, raw: np.ndarray) -> np.ndarray:
    """The engine's raw outputs (logits) for each raw sample, through edgerun's declared pre-processing."""
    with edgerun.load(model) as rt:
        return np.concatenate([rt.pipeline.session.run(rt.pipeline.preprocess(x))[0] for x in raw])


def test_qat_int4_export_equals_its_float_model_where_ptq_does_not(tmp_path):
    """The mechanism, not one trained model's accuracy delta: QAT leaves the Linear weights exactly on
    onnxruntime's MatMulNBits grid, so the INT4 export computes what its own FP32 export computes (up to
    float rounding of the scales); post-training INT4 of a float model rounds weights that are off the grid,
    so its logits move by orders of magnitude more. Accuracy deltas of a tiny model differ across CPUs and
    kernels (one image in 450 is 0.22 points); this ratio does not depend on them.
    """
    torch.set_num_threads(1)
    recipe = parse_recipe(
        {
            "name": "qat",
            "seed": 0,
            "data": {"input_size_px": 8, "calibration_samples": 64},
            "step": [
                {"kind": "train", "name": "float", "model": {"width": 0.5, "depth": 4}, "train": {"epochs": 3}},
                {"kind": "qat", "name": "qat", "source": "float", "bits": 4, "calibration_samples": 64,
                 "finetune": {"epochs": 1}},
            ],
            "gate": {"max_drop_points": 100.0, "max_drop_vs_teacher_points": 100.0},
            "export": [
                {"source": "float", "precision": "fp32"},
                {"source": "float", "precision": "int4"},
                {"source": "qat", "precision": "fp32"},
                {"source": "qat", "precision": "int4"},
            ],
        }
    )  # fmt: skip
    lines: list[str] = []
    run_recipe(recipe, tmp_path, progress=lines.append)
    with np.load(tmp_path / "reference-test.npz") as samples:
        raw = samples["x"][:200]  # the test split's raw images, as the manifests name them

    def moved(name: str) -> float:  # largest logit change of the INT4 file over its own FP32 file, relative
        fp32, int4 = _logits(tmp_path / f"{name}-fp32.onnx", raw), _logits(tmp_path / f"{name}-int4.onnx", raw)
        return float(np.abs(int4 - fp32).max() / np.abs(fp32).max())

    qat_moved, ptq_moved = moved("qat"), moved("float")
    assert qat_moved < 1e-4, qat_moved  # on the grid: only float rounding of the stored scales is left
    assert ptq_moved > 100 * max(qat_moved, 1e-7), (ptq_moved, qat_moved)  # rounding off-grid weights moves logits
    report = json.loads(Path(tmp_path / "report.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["qat-int4.onnx"]["drop_points"] == pytest.approx(0.0, abs=1e-9)  # same logits, same argmax
    assert any("PTQ" in line and "-> QAT" in line for line in lines)
    manifest = json.loads((tmp_path / "qat-int4.onnx.edgerun.json").read_text())
    assert "quantization-aware training" in json.dumps(manifest)
