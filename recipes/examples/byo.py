"""Bring your own model and data: the Python the example recipes beside this file name.

A recipe names these as ``"byo.py:function"`` (relative to the recipe). They stand in for
your code: a model factory returning an ``nn.Module`` and a data function returning
(x, y) or train / test splits. ``python recipes/examples/byo.py`` writes
``signal-teacher.pt`` beside this file: the "already trained" teacher that
``signals.toml`` loads (your own checkpoint, in real use).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

SIGNAL_LEN = 256
SIGNAL_CLASSES = ("sine", "square", "noise")
SIGNAL_STD = 0.75  # the scale the teacher was trained with: signals.toml declares it as normalize std


# --- models ----------------------------------------------------------------------------


def mlp(in_features: int, num_classes: int, hidden: list[int] | tuple[int, ...] = (64, 32)) -> nn.Module:
    """A tabular MLP; ``in_features`` / ``num_classes`` come from the data when the recipe omits them."""
    layers: list[nn.Module] = []
    prev = in_features
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    return nn.Sequential(*layers, nn.Linear(prev, num_classes))


class SignalNet(nn.Module):
    """A small 1-D CNN for (N, C, W) signals: two strided convs, global average pooling, a classifier."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(in_channels, width, 7, stride=2, padding=3),
            nn.ReLU(),
            nn.Conv1d(width, 2 * width, 5, stride=2, padding=2),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=-1))


def signal_cnn(in_channels: int, num_classes: int, width: int = 16) -> nn.Module:
    return SignalNet(in_channels, num_classes, width)


# --- data ------------------------------------------------------------------------------


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled Wisconsin breast cancer set: 569 rows of 30 float features, 0 = malignant."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return d.data, d.target


def signals(per_class: int = 200, test_per_class: int = 60, seed: int = 0) -> dict:
    """Synthetic one-channel signals (N, 1, 256): a sine, a square wave or noise, random frequency,
    phase and amplitude, plus a little noise. Train and test come from different seeds."""

    def make(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        t = np.arange(SIGNAL_LEN) / SIGNAL_LEN
        xs, ys = [], []
        for _ in range(n):
            for label in range(len(SIGNAL_CLASSES)):
                freq, phase, amp = rng.uniform(2, 12), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.5)
                wave = np.sin(2 * np.pi * freq * t + phase)
                if label == 1:
                    wave = np.sign(wave)
                elif label == 2:
                    wave = rng.normal(0, 0.7, SIGNAL_LEN)
                xs.append(amp * wave + rng.normal(0, 0.1, SIGNAL_LEN))
                ys.append(label)
        return np.asarray(xs, dtype=np.float32)[:, None, :], np.asarray(ys, dtype=np.int64)

    return {
        "train": make(per_class, np.random.default_rng(seed)),
        "test": make(test_per_class, np.random.default_rng(seed + 1000)),
        "labels": list(SIGNAL_CLASSES),
    }


# --- the stand-in for your already trained teacher ------------------------------------


def train_signal_teacher(path: Path, epochs: int = 8, seed: int = 0) -> Path:
    """Train ``signal_cnn(width=16)`` on the train split of ``signals()`` and save its state dict."""
    torch.manual_seed(seed)
    x, y = signals()["train"]
    xt, yt = torch.from_numpy(x / SIGNAL_STD), torch.from_numpy(y)
    model = signal_cnn(1, len(SIGNAL_CLASSES), width=16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = torch.from_numpy(order.permutation(len(yt)))
        for i in range(0, len(yt), 32):
            idx = perm[i : i + 32]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.save(model.state_dict(), path)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("signal-teacher.pt")
    print(f"wrote {train_signal_teacher(out)}")
