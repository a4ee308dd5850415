"""Quantization-aware training (QAT): fine-tune a model with the export's quantizer in the forward pass.

Used when post-training quantization misses the gate. The step folds BatchNorm first (the
exported graph has no BatchNorm, so the weights that are fake-quantized are the weights that
get exported), then fine-tunes with fake quantization that mirrors the ONNX export it prepares for:

- ``bits = 8`` (``precision = "int8"``, static QDQ): every Conv / Linear weight is fake-quantized
  per output channel, symmetric, scale ``max|w| / 127``, levels -127..127 (onnxruntime's rule for
  symmetric QInt8 weights) with ``torch.fake_quantize_per_channel_affine``; every Conv / Linear
  input is fake-quantized per tensor, asymmetric int8, by ``torch.ao.quantization.FakeQuantize``
  with a moving-average min/max observer, first calibrated on the calibration images (like
  onnxruntime's MinMax calibration).
- ``bits = 4`` (``precision = "int4"``, MatMulNBits weight-only): every Linear weight (the
  exported MatMuls; convs stay FP32) is fake-quantized in blocks of 32 along the input axis,
  symmetric with onnxruntime's rule (scale = the block's signed absmax / -8, levels -8..7).
  Activations stay float.

Gradients pass the rounding unchanged (straight-through estimator). At the end the
parametrizations are removed leaving the *quantized* values in place, so the model's weights
sit on the grid the exporter will find, and the output is a plain float model that goes through
the usual export, quantization and gate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver
from torch.nn.utils import parametrize

from edgerun.errors import UsageError

INT4_BLOCK = 32  # MatMulNBits block size of the int4 export (quantize.onnx_int4)


def fake_quant_int8_per_channel(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel int8 (levels -127..127, scale max|w|/127); STE gradient."""
    amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-12)
    zero = torch.zeros(len(amax), dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, amax / 127.0, zero, 0, -127, 127)


def fake_quant_int4_blockwise(w: torch.Tensor, block: int = INT4_BLOCK) -> torch.Tensor:
    """Symmetric int4 in blocks of ``block`` along the input axis of a (out, in) weight; STE gradient.

    onnxruntime's symmetric MatMulNBits rule: scale = the block's largest-magnitude value / -8,
    q = clip(round(w / scale), -8, 7).
    """
    out, k = w.shape
    d = F.pad(w.detach(), (0, (-k) % block)).reshape(out, -1, block)
    signed_absmax = d.gather(-1, d.abs().argmax(-1, keepdim=True))
    scale = signed_absmax / -8.0
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = (torch.clamp(torch.round(d / safe), -8, 7) * scale).reshape(out, -1)[:, :k]
    return w + (q - w).detach()


class WeightFakeQuant(nn.Module):
    """A ``torch.nn.utils.parametrize`` parametrization: the layer sees its fake-quantized weight."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant_int8_per_channel(w) if self.bits == 8 else fake_quant_int4_blockwise(w)


def act_fake_quant() -> FakeQuantize:
    """Per-tensor asymmetric int8 activation fake-quant (onnxruntime's QInt8 activations, MinMax)."""
    return FakeQuantize(
        observer=MovingAverageMinMaxObserver,
        quant_min=-128,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_tensor_affine,
        averaging_constant=0.01,
    )


@dataclass
class QatHandle:
    """Fake quantization attached to a model; ``finish()`` removes it and leaves quantized weights."""

    model: nn.Module
    bits: int
    layers: Sequence[nn.Module]
    act_fq: nn.ModuleList  # of FakeQuantize
    hooks: list

    def observe(self, on: bool) -> None:
        for module in self.act_fq:
            fq = cast(FakeQuantize, module)
            (fq.enable_observer if on else fq.disable_observer)()

    def finish(self) -> nn.Module:
        for h in self.hooks:
            h.remove()
        for layer in self.layers:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        return self.model


def attach(model: nn.Module, bits: int) -> QatHandle:
    """Put fake quantization for ``bits`` (8 or 4) into ``model``'s forward pass (in place)."""
    if bits not in (8, 4):
        raise UsageError(f"bits must be 8 or 4, got {bits}")
    kinds = (nn.Conv2d, nn.Linear) if bits == 8 else (nn.Linear,)
    layers = [m for m in model.modules() if isinstance(m, kinds)]
    act_fq = nn.ModuleList()
    hooks = []
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", WeightFakeQuant(bits))
        if bits == 8:
            fq = act_fake_quant()
            act_fq.append(fq)
            hooks.append(layer.register_forward_pre_hook(lambda _m, args, fq=fq: (fq(args[0]),)))
    return QatHandle(model, bits, layers, act_fq, hooks)


def prepare(source: nn.Module) -> nn.Module:
    """A copy to fine-tune: BatchNorm folded (when the model can fold), so QAT sees the exported weights."""
    fused = getattr(source, "fused", None)
    return fused() if callable(fused) else copy.deepcopy(source)


@torch.no_grad()
def calibrate(handle: QatHandle, calib_x: torch.Tensor) -> None:
    """Initialize the activation observers from the calibration images in one batch.

    An observer's first batch sets its min/max exactly, so this is MinMax over the calibration
    set, like the exporter's; training then follows the ranges with a moving average.
    """
    handle.model.eval()
    handle.model(calib_x)


def simulated_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x))
    return float((logits.argmax(1).numpy() == y).mean())


def run_qat(
    source: nn.Module,
    bits: int,
    calib_x: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    train: Callable[[nn.Module], None],
) -> tuple[nn.Module, float, float]:
    """Fold, attach fake quant, calibrate, measure PTQ (simulated), ``train(model)``, measure QAT.

    Returns (the plain float model with weights on the grid, simulated PTQ top-1, simulated QAT top-1).
    """
    model = prepare(source)
    handle = attach(model, bits)
    calibrate(handle, torch.from_numpy(calib_x))
    handle.observe(False)
    ptq = simulated_accuracy(model, test_x, test_y)
    handle.observe(True)
    train(model)
    handle.observe(False)
    qat = simulated_accuracy(model, test_x, test_y)
    return handle.finish().eval(), ptq, qat
