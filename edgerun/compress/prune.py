"""Pruning: magnitude (torch.nn.utils.prune), channels (torch-pruning), lottery ticket, RigL / SET.

Unstructured pruning zeroes weights; the dense exported file keeps its size (the report
shows the sparsity, and a sparse kernel or compression would cash it in). Channel pruning
really removes channels, so the exported model has fewer parameters and runs faster.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

PRUNABLE = (nn.Conv2d, nn.Linear)
Prunable = nn.Conv2d | nn.Linear


def prunable(model: nn.Module) -> list[tuple[str, Prunable]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]


def magnitude_prune(model: nn.Module, *, amount: float = 0.0, threshold: float = 0.0, scope: str = "global") -> None:
    """Mask the smallest-magnitude weights (masks stay attached so fine-tuning keeps them zero).

    ``threshold`` > 0: every |w| < threshold goes (one global threshold). Else ``amount``:
    ``scope="global"`` keeps the top-(1 - amount) weights of the whole model (one threshold
    chosen for all layers); ``scope="layer"`` removes ``amount`` of each layer (a threshold per
    layer). Call ``make_permanent`` before export.
    """
    layers = prunable(model)
    if threshold > 0:
        for _, m in layers:
            prune.custom_from_mask(m, "weight", (m.weight.detach().abs() >= threshold).to(m.weight.dtype))
    elif scope == "global":
        prune.global_unstructured([(m, "weight") for _, m in layers], prune.L1Unstructured, amount=amount)
    elif scope == "layer":
        for _, m in layers:
            prune.l1_unstructured(m, "weight", amount=amount)
    else:
        raise ValueError(f"unknown pruning scope {scope!r}; expected 'global' or 'layer'")


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold pruning masks into the weights and drop the re-parametrization hooks."""
    for _, m in prunable(model):
        if prune.is_pruned(m) and hasattr(m, "weight_orig"):
            prune.remove(m, "weight")
    return model


def weight_sparsity(model: nn.Module, layers: Sequence[Prunable] | None = None) -> float:
    """Fraction of zero entries over all conv / linear weights, or over ``layers`` (0..1)."""
    total = zeros = 0
    for m in [m for _, m in prunable(model)] if layers is None else layers:
        w = m.weight.detach()
        total += w.numel()
        zeros += int((w == 0).sum())
    return zeros / total if total else 0.0


def channel_prune(model: nn.Module, example: torch.Tensor, amount: float, scope: str = "layer") -> nn.Module:
    """Remove ``amount`` of the output channels of every prunable layer (L2 magnitude importance).

    torch-pruning traces the graph and removes coupled channels together (depthwise
    convs, BatchNorms, the next layer's inputs), so the model stays valid and is really
    smaller. The classifier's outputs (the classes) are never pruned.
    """
    import torch_pruning as tp

    classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=amount,
        global_pruning=scope == "global",
        ignored_layers=classifier,
        round_to=4,  # keep channel counts int8-kernel friendly
    )
    pruner.step()
    return model


# --- lottery ticket -------------------------------------------------------------------


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights under their plain names (``x.weight``, not ``x.weight_orig``)."""
    return {_plain(k): v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("_mask")}


def rewind(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Reset every surviving weight to ``saved`` (masks kept): the lottery-ticket rewind."""
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not key.endswith("_mask"):
                value.copy_(saved[_plain(key)])


def _plain(key: str) -> str:
    return key[: -len("_orig")] if key.endswith("_orig") else key


# --- dynamic sparse training ---------------------------------------------------------


class DynamicSparsity:
    """Keep each layer at a fixed sparsity while the connectivity changes (RigL or SET).

    Every ``update_every_steps`` optimizer steps, a (cosine-decaying) fraction of each
    layer's live weights with the smallest magnitude is dropped and the same number of
    dead ones is grown: at random (SET, Mocanu et al. 2018) or where the dense gradient is
    largest (RigL, Evci et al. 2020). Grown weights start at zero. Updates stop after 75%
    of training so the final connectivity gets trained.
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: float,
        method: str,
        drop_fraction: float,
        update_every_steps: int,
        total_steps: int,
        rng: np.random.Generator,
    ):
        if method not in ("rigl", "set"):
            raise ValueError(f"unknown dynamic sparsity method {method!r}; expected 'rigl' or 'set'")
        self.method, self.drop_fraction, self.every = method, drop_fraction, update_every_steps
        self.stop_step = int(0.75 * total_steps)
        self.rng = rng
        self.layers = sparsifiable(model)
        self.masks = [self._random_mask(m.weight, sparsity) for m in self.layers]
        self.updates = 0
        self.apply()

    def _random_mask(self, w: torch.Tensor, sparsity: float) -> torch.Tensor:
        n_dead = int(round(sparsity * w.numel()))
        mask = torch.ones(w.numel())
        mask[torch.from_numpy(self.rng.permutation(w.numel())[:n_dead])] = 0
        return mask.reshape(w.shape)

    def apply(self) -> None:
        with torch.no_grad():
            for m, mask in zip(self.layers, self.masks):
                m.weight.mul_(mask)

    def after_step(self, step: int) -> None:
        if step % self.every == 0 and step < self.stop_step:
            fraction = self.drop_fraction * (1 + math.cos(math.pi * step / self.stop_step)) / 2
            for i, m in enumerate(self.layers):
                self.masks[i] = self._update(m.weight, self.masks[i], fraction)
            self.updates += 1
        self.apply()

    def _update(self, w: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
        live = mask.flatten().bool()
        n = int(fraction * int(live.sum()))
        if n == 0:
            return mask
        flat_w = w.detach().flatten()
        drop = torch.where(live, flat_w.abs(), torch.full_like(flat_w, math.inf)).topk(n, largest=False).indices
        if self.method == "rigl" and w.grad is not None:
            score = w.grad.detach().flatten().abs()
        else:
            score = torch.from_numpy(self.rng.random(flat_w.numel())).to(flat_w.dtype)
        # Grow among weights that were dead before this update, so the connectivity really moves.
        grow = torch.where(live, torch.full_like(score, -math.inf), score).topk(n).indices
        new = mask.flatten().clone()
        new[drop], new[grow] = 0, 1
        with torch.no_grad():
            w.view(-1)[grow] = 0
        return new.reshape(mask.shape)

    def sparsity(self) -> float:
        dead = sum(int((mask == 0).sum()) for mask in self.masks)
        return dead / sum(mask.numel() for mask in self.masks)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.masks)


def sparsifiable(model: nn.Module) -> list[Prunable]:
    """The layers dynamic sparse training keeps sparse, in module order."""
    return [m for _, m in prunable(model) if _sparsifiable(m)]


def _sparsifiable(m: nn.Module) -> bool:
    # Depthwise and single-input-channel convs are tiny and fragile; sparsify the rest.
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1 and m.in_channels > 1)
