"""Model zoo for compression recipes: a MobileNet-style CNN whose width and depth are knobs.

``digits-cnn`` at width 1.0, depth 6 is the network of the original demo (~271k
parameters at 64x64 input). Teachers, assistants and students of a recipe are the same
family at different widths, which keeps layer names aligned for feature distillation
(``features.<i>``) and lets torch-pruning remove channels from any of them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgerun.compress.recipe import ModelConfig
from edgerun.compress.refs import call, resolve
from edgerun.errors import CompressError

# (cin, cout, stride) of the depthwise-separable blocks at width 1.0: the stem halves the
# input, two blocks halve it again. About 35M MACs at 64x64, a millisecond per FP32
# inference on one desktop core, so latency differences between variants are visible.
BLOCKS = ((32, 64, 1), (64, 128, 1), (128, 128, 2), (128, 256, 1), (256, 256, 2), (256, 512, 1))


def _fold_bn(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the preceding conv/linear (output axis 0)."""
    # The stubs type the running statistics as optional (track_running_stats=False); ours always track.
    assert bn.running_mean is not None and bn.running_var is not None, "BatchNorm without running statistics"
    s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    w = layer.weight.detach()
    b = layer.bias.detach() if layer.bias is not None else torch.zeros_like(bn.running_mean)
    layer.weight = nn.Parameter(w * s.reshape(-1, *([1] * (w.dim() - 1))))
    layer.bias = nn.Parameter((b - bn.running_mean) * s + bn.bias.detach())


class ConvBN(nn.Module):
    """Conv (stem or depthwise 3x3) + BatchNorm + ReLU6."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout)  # nn.Identity once folded (fuse)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        if isinstance(self.bn, nn.BatchNorm2d):
            _fold_bn(self.conv, self.bn)
            self.bn = nn.Identity()


class Pointwise(nn.Module):
    """1x1 conv written as a Linear over the channel axis of an NHWC view.

    Why: the ONNX export is then a MatMul, the op onnxruntime's MatMulNBits INT4
    quantizer handles (it skips Conv). Numerically it is a 1x1 convolution.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fc = nn.Linear(cin, cout, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout)  # nn.Identity once folded (fuse)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.act(self.bn(x))

    def fuse(self) -> None:
        if isinstance(self.bn, nn.BatchNorm2d):
            _fold_bn(self.fc, self.bn)
            self.bn = nn.Identity()


class DigitsNet(nn.Module):
    """MobileNet-v1-style CNN for (N, 1, S, S) inputs; ``features.<i>`` are its layers."""

    def __init__(self, cfg: ModelConfig | None = None, n_classes: int = 10, in_channels: int = 1):
        super().__init__()
        cfg = cfg or ModelConfig()
        width, depth = cfg.kwargs.get("width", 1.0), cfg.kwargs.get("depth", 6)
        blocks = [(_w(cin, width), _w(cout, width), s) for cin, cout, s in BLOCKS[:depth]]
        layers: list[nn.Module] = [ConvBN(in_channels, blocks[0][0], stride=2)]
        for cin, cout, stride in blocks:
            layers += [ConvBN(cin, cin, stride, groups=cin), Pointwise(cin, cout)]
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.2)
        # 2-D Linear: exported as Gemm, which the INT4 path rewrites to MatMul + Add.
        self.classifier = nn.Linear(blocks[-1][1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.features(x).mean(dim=(2, 3))))

    def fused(self) -> DigitsNet:
        """An eval-mode copy with every BatchNorm folded into its conv/linear (what gets exported).

        Layers without ``fuse`` (an ``nn.Identity`` left by layer pruning) are left as they are.
        """
        m = copy.deepcopy(self).eval()
        for layer in m.features:
            fuse = getattr(layer, "fuse", None)
            if callable(fuse):
                fuse()
        return m


def _w(channels: int, width: float) -> int:
    # Multiples of 4 keep depthwise/pointwise shapes friendly to int8 kernels.
    return max(4, int(round(channels * width / 4)) * 4)


def digits_cnn(width: float = 1.0, depth: int = 6, num_classes: int = 10, in_channels: int = 1) -> DigitsNet:
    """The built-in ``digits-cnn`` factory (recipe ``arch = "digits-cnn"``)."""
    return DigitsNet(ModelConfig(width=width, depth=depth), n_classes=num_classes, in_channels=in_channels)


def build_model(cfg: ModelConfig, base_dir: Path | str = ".", offered: Mapping[str, Any] | None = None) -> nn.Module:
    """The step's network: ``factory(**args)`` (its weights loaded when given) or a saved model file.

    ``offered`` (``num_classes``, ``in_channels``, ``input_shape``) is passed to a factory whose
    signature names it and whose recipe ``args`` do not set it.
    """
    base = Path(base_dir)
    what = f"model {cfg.describe()}"
    if cfg.file:
        return load_model_file(base / cfg.file)
    func = resolve(cfg.factory_ref, base, what)
    model = call(func, cfg.kwargs, offered or {}, what)
    if not isinstance(model, nn.Module):
        raise CompressError(f"{what}: the factory returned {type(model).__name__}, not a torch nn.Module")
    if cfg.weights:
        load_weights(model, base / cfg.weights)
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """A state dict, or a checkpoint dict holding one under ``state_dict`` / ``model_state_dict`` / ``model``."""
    if not path.is_file():
        raise CompressError(f"model weights: no file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code from a checkpoint
    except Exception as exc:  # torch raises several types for a bad file
        raise CompressError(f"model weights {path}: not a torch state dict ({exc})") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CompressError(f"model weights {path} do not fit the factory's model: {exc}") from exc


class ExportedModule(nn.Module):
    """An ExportedProgram's module, usable as a step's model (a teacher, a source to export).

    Its graph module refuses ``train()`` / ``eval()``, which every step calls; the program is
    frozen in the mode it was exported in, so this wrapper records the mode and stops there.
    The program must have been exported with a dynamic batch dimension to take training batches.
    """

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)

    def train(self, mode: bool = True) -> ExportedModule:
        self.training = mode
        return self


def load_model_file(path: Path) -> nn.Module:
    """A torch.export ExportedProgram (``.pt2``) as its module, or a TorchScript file."""
    if not path.is_file():
        raise CompressError(f"model file: no file {path}")
    try:
        if path.suffix == ".pt2":
            return ExportedModule(torch.export.load(str(path)).module())
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises several types for a file of the wrong kind
        kind = "torch.export ExportedProgram" if path.suffix == ".pt2" else "TorchScript"
        raise CompressError(f"model file {path}: not a {kind} file ({exc})") from exc


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())
