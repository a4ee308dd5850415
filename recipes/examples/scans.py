"""An image CNN brought as a factory + checkpoint: the Python that ``scans.toml`` names.

It stands in for your own code: ``digit_scans`` is the data (colour "scans" of handwritten
digits: scikit-learn's bundled 8x8 digits, upsampled to 32x32 RGB uint8 images, blue ink on
beige paper with sensor noise; nothing is downloaded), ``scan_cnn`` the model factory, and
``train_teacher`` the training you did before you came to edgerun. Its pre-processing is
written out here in torch (the constants below) and the recipe declares the same ops for
the manifests:

    uint8 (32, 32, 3) -> float32 -> bilinear resize to 16 x 16 -> HWC to CHW -> (x - MEAN) / STD per channel

    python recipes/examples/scans.py        # writes scan-teacher.pt beside this file (~5 s)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

RAW_SIZE = 32  # the "scanner's" image side, pixels
MODEL_SIZE = 16  # what the CNN sees after the resize
LABELS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAPER = np.array([228.0, 212.0, 182.0])  # RGB
INK = np.array([32.0, 44.0, 128.0])
# Per-channel mean / std of the resized float images of the train split, in 0..255 units (rounded):
# the teacher's normalization constants, declared as they are in scans.toml.
MEAN = (168.0, 161.0, 166.0)
STD = (63.0, 54.0, 17.0)
TEST_FRACTION = 0.25


# --- the data -------------------------------------------------------------------------


def digit_scans(seed: int = 0) -> dict:
    """{"train": (x, y), "test": (x, y)}: x uint8 (N, 32, 32, 3) HWC images, y the digit 0..9.

    A fixed stratified split (the teacher was trained on ``train`` only); the class names come
    from the recipe's ``labels``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    rng = np.random.default_rng(seed)
    ink = torch.nn.functional.interpolate(
        torch.from_numpy(d.images[:, None] / 16.0), size=(RAW_SIZE, RAW_SIZE), mode="bilinear", align_corners=False
    )[:, 0].numpy()  # (N, 32, 32), 0..1
    rgb = PAPER + (INK - PAPER) * ink[..., None] + rng.normal(0, 6, size=(*ink.shape, 3))
    x = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    tx, vx, ty, vy = train_test_split(x, d.target, test_size=TEST_FRACTION, stratify=d.target, random_state=seed)
    return {"train": (tx, ty), "test": (vx, vy)}


def to_model_input(x: np.ndarray) -> torch.Tensor:
    """Your training pipeline's pre-processing, in torch: (N, 32, 32, 3) uint8 -> (N, 3, 16, 16) float32."""
    t = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2)
    t = torch.nn.functional.interpolate(t, size=(MODEL_SIZE, MODEL_SIZE), mode="bilinear", align_corners=False)
    mean, std = torch.tensor(MEAN).reshape(1, 3, 1, 1), torch.tensor(STD).reshape(1, 3, 1, 1)
    return (t - mean) / std


# --- the model ------------------------------------------------------------------------


class ScanNet(nn.Module):
    """A small CNN for (N, C, H, W) images: three conv + BatchNorm + ReLU stages, global pooling, a classifier."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()

        def stage(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *stage(in_channels, width, 1), *stage(width, 2 * width, 2), *stage(2 * width, 2 * width, 2)
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def scan_cnn(in_channels: int, num_classes: int, width: int = 16) -> nn.Module:
    """The recipe's factory: ``in_channels`` and ``num_classes`` come from the data when not set."""
    return ScanNet(in_channels, num_classes, width)


# --- the stand-in for your already trained teacher ------------------------------------


def train_teacher(path: Path, epochs: int = 12, seed: int = 0) -> Path:
    """Train ``scan_cnn(width=16)`` on ``digit_scans()``'s train split; save a checkpoint dict
    (``model_state_dict`` and what it was trained with), as training scripts usually do."""
    torch.manual_seed(seed)
    x, y = digit_scans()["train"]
    xt, yt = to_model_input(x), torch.from_numpy(y.astype(np.int64))
    model = scan_cnn(3, len(LABELS), width=16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.from_numpy(order.permutation(len(yt)))
        for i in range(0, len(yt), 32):
            idx = perm[i : i + 32]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    torch.save({"model_state_dict": model.state_dict(), "epochs": epochs, "mean": MEAN, "std": STD}, path)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("scan-teacher.pt")
    print(f"wrote {train_teacher(out)}")
