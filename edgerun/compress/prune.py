"""Pruning: magnitude (torch.nn.utils.prune), channels (torch-pruning), layers, lottery ticket, RigL / SET.

Unstructured pruning zeroes weights; the dense exported file keeps its size (the report
shows the sparsity, and a sparse kernel or compression would cash it in). Channel and
layer pruning really remove structure (channels, whole layers), so the exported model has
fewer parameters and runs faster.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from edgerun.errors import UsageError

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
        raise UsageError(f"unknown pruning scope {scope!r}; expected 'global' or 'layer'")


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
    """Remove output channels by L2 magnitude importance (torch-pruning), counts rounded to multiples of 4.

    ``scope="layer"``: ``amount`` of each layer's channels. ``scope="global"`` (a recipe's default):
    the channels of all layers ranked together and ``amount`` of them removed in all, so layers lose
    different shares (the demo recipe's student: 19-47% per layer at 0.25). torch-pruning traces
    the graph and removes coupled channels together (depthwise convs, BatchNorms, the next layer's
    inputs), so the model stays valid and is really smaller. The classifier's outputs (the classes)
    are never pruned.
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


# --- layer pruning --------------------------------------------------------------------


def removable_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the layers that can be removed whole, in module order.

    A layer is removable when it is a direct child of an ``nn.Sequential`` and, on one
    forward pass of ``example`` (forward hooks, eval mode), its output has the shape of its
    input: replacing it with ``nn.Identity`` leaves every other shape as it was. Never the
    first child of a Sequential (the stem), nor the module holding the classifier (the last
    ``nn.Linear``), nor a layer without parameters (an activation, or the ``nn.Identity`` of
    an earlier removal). In DigitsNet: the stride-1 depthwise ConvBNs and the Pointwise
    layers with as many outputs as inputs.
    """
    classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    slots: dict[str, nn.Module] = {}
    for prefix, seq in model.named_modules():
        if isinstance(seq, nn.Sequential):
            for key, child in list(seq.named_children())[1:]:
                holds_classifier = any(m is c for m in child.modules() for c in classifier)
                if any(True for _ in child.parameters()) and not holds_classifier:
                    slots[f"{prefix}.{key}" if prefix else key] = child
    same_shape: set[str] = set()

    def hook(name: str):
        def record(_m: nn.Module, args: tuple, out: object) -> None:
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and isinstance(out, torch.Tensor) and x.shape == out.shape:
                same_shape.add(name)

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in slots.items()]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in handles:
            h.remove()
    return [name for name in slots if name in same_shape]


def _swap(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where the submodule ``name`` is; return the module it replaced."""
    parent_name, _, key = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    old = parent.get_submodule(key)
    setattr(parent, key, new)
    return old


@torch.no_grad()
def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(F.cross_entropy(model(x), y))


def layer_importance(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, candidates: Sequence[str] | None = None
) -> dict[str, float]:
    """Cross-entropy increase on (x, y) when each candidate alone is replaced by ``nn.Identity``.

    One candidate at a time, the others present; the model is left as it was. Negative
    when removing the layer lowers the loss. ``candidates`` default: ``removable_layers``.
    """
    model.eval()
    names = removable_layers(model, x[:1]) if candidates is None else list(candidates)
    base = _loss(model, x, y)
    scores: dict[str, float] = {}
    for name in names:
        layer = _swap(model, name, nn.Identity())
        try:
            scores[name] = _loss(model, x, y) - base
        finally:
            _swap(model, name, layer)
    return scores


def layer_prune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int) -> list[tuple[str, float]]:
    """Remove the ``n`` least important removable layers (replaced by ``nn.Identity``), in place.

    Greedy: score every remaining candidate (``layer_importance`` on (x, y)), remove the
    one whose removal raises the loss least (ties: the first in module order), re-score the
    rest against the model without it, and so on. A round costs one forward pass of x per
    candidate, so n removals cost about n * candidates passes (DigitsNet at width 1.0 has 6
    candidates). Removing a shape-preserving layer changes no other shape, so the candidates
    of later rounds are the earlier ones minus those removed. Returns ``[(name, loss
    increase when removed)]`` in removal order; each increase is measured on the model as
    it was in that round.
    """
    candidates = removable_layers(model, x[:1])
    if not 0 < n <= len(candidates):
        raise UsageError(f"cannot remove {n} layers: {len(candidates)} are removable ({candidates})")
    removed: list[tuple[str, float]] = []
    for _ in range(n):
        scores = layer_importance(model, x, y, candidates)
        name = min(candidates, key=scores.__getitem__)
        _swap(model, name, nn.Identity())
        candidates.remove(name)
        removed.append((name, scores[name]))
    return removed


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
            raise UsageError(f"unknown dynamic sparsity method {method!r}; expected 'rigl' or 'set'")
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
