"""The one training loop every step uses (train, distill, fine-tune, lottery, sparse training).

AdamW with a one-cycle schedule (and, for the built-in digits, a shift augmentation of the raw images). What
differs between steps is the loss (``LossFn``) and what happens after each optimizer
step (re-applying a sparsity mask, a RigL/SET update), passed in as callables.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgerun.compress.data import Dataset
from edgerun.compress.recipe import TrainConfig

Progress = Callable[[str], None]


class LossFn(Protocol):
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and the run's numpy generator (shuffles, augmentation, sparse masks) and ask for
    deterministic kernels: a rerun with the same seed and thread count on the same machine gives the
    same model, bit for bit. Another CPU (other SIMD kernels) or thread count rounds differently, and
    training amplifies that: the demo recipe's gates carry margins for it (docs/compress.md)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.mkldnn.deterministic = True  # type: ignore[assignment]  # oneDNN: deterministic reductions
    return np.random.default_rng(seed)


def training_facts() -> dict[str, object]:
    """What a seed's result depends on besides the seed: for the manifests' provenance."""
    import platform

    return {
        "torch": torch.__version__.split("+")[0],
        "threads": torch.get_num_threads(),
        "cpu": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}",
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (0: left as it is), then restored."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cross_entropy(model: nn.Module, label_smoothing: float = 0.0) -> LossFn:
    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y, label_smoothing=label_smoothing)

    return loss


def fit(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    loss_fn: LossFn,
    rng: np.random.Generator,
    *,
    extra_params: Iterable[nn.Parameter] = (),
    after_step: Callable[[int], None] | None = None,
    after_epoch: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    label: str = "train",
) -> nn.Module:
    """Train ``model`` in place for cfg.epochs; ``after_step(global_step)`` runs after each update."""
    if cfg.epochs == 0:
        return model.eval()
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params)
    n = len(data.train_x)
    steps = cfg.epochs * int(np.ceil(n / cfg.batch_size))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    y_all = torch.from_numpy(data.train_y)
    best = BestEpoch(data) if cfg.keep_best else None
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        x_all = torch.from_numpy(data.train_inputs(rng, cfg.augment_shift_px))
        order = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = loss_fn(x_all[idx], y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if after_step is not None:
                after_step(step)
            total += float(loss.item()) * len(idx)
        if after_epoch is not None:
            after_epoch(epoch)
        if best is not None:
            best.see(model, epoch)
        if progress is not None:
            progress(f"{label}: epoch {epoch}/{cfg.epochs} loss {total / n:.4f}")
    if best is not None:
        best.restore(model, progress, label)
    return model.eval()


class BestEpoch:
    """``keep_best``: the weights of the epoch with the best top-1 on the selection set (the validation
    split; without one the train split's tail), restored after the last epoch. Never the test split."""

    def __init__(self, data: Dataset):
        x, self.y, self.what = data.selection()
        self.x = torch.from_numpy(data.model_input(x))
        self.accuracy, self.epoch = -1.0, 0
        self.state: dict[str, Any] = {}

    def see(self, model: nn.Module, epoch: int) -> None:
        acc = float((logits_of(model, self.x).argmax(1).numpy() == self.y).mean())
        if acc > self.accuracy:  # ties keep the earlier epoch
            self.accuracy, self.epoch, self.state = acc, epoch, copy.deepcopy(model.state_dict())

    def restore(self, model: nn.Module, progress: Progress | None, label: str) -> None:
        model.load_state_dict(self.state)
        if progress is not None:
            progress(f"{label}: kept epoch {self.epoch} (top-1 {self.accuracy:.2%} on {self.what})")


@torch.no_grad()
def torch_accuracy(model: nn.Module, data: Dataset) -> float:
    """Top-1 of the PyTorch model on the test split (for the report; the gate uses exported files)."""
    logits = model.eval()(torch.from_numpy(data.test_inputs()))
    return float((logits.argmax(1).numpy() == data.test_y).mean())


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.eval()(x)
