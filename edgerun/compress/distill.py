"""Knowledge distillation losses: soft targets, multi-teacher aggregation, features, attention.

Conventions (the lecture's, Hinton et al. 2015):

    L = alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, y)

with p^T = softmax(z / T). KL uses ``reduction="batchmean"`` (sum over classes, mean over
the batch): the mathematically correct KL. ``nn.KLDivLoss()``'s default "mean" also
divides by the number of classes, which silently shrinks the soft loss by that factor.
The T^2 factor keeps the soft-target gradients at the same scale as T changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgerun.errors import UsageError


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.softmax(teacher_logits / temperature, dim=-1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 3.0,
    alpha_soft: float = 0.7,
) -> torch.Tensor:
    """Hinton distillation loss; ``teacher_probs`` are already softened at ``temperature``."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    soft = F.kl_div(log_p_student, teacher_probs, reduction="batchmean") * temperature**2
    hard = F.cross_entropy(student_logits, labels)
    return alpha_soft * soft + (1.0 - alpha_soft) * hard


def aggregate_teachers(
    teacher_logits: Sequence[torch.Tensor],
    temperature: float,
    how: str = "average",
    weights: Sequence[float] = (),
) -> torch.Tensor:
    """One soft-target distribution from several teachers, (N, C).

    ``average``: mean of the teachers' softened distributions. ``weighted``: fixed weights
    (normalized to sum 1). ``confidence``: per sample, each teacher is weighted by its
    confidence (max probability at T=1), softmax-normalized over teachers, so the teacher
    that is surest about *this* image speaks loudest (attention-style dynamic selection).
    """
    probs = torch.stack([soft_targets(z, temperature) for z in teacher_logits])  # (K, N, C)
    k = probs.shape[0]
    if how == "average":
        w = torch.full((k, 1, 1), 1.0 / k)
    elif how == "weighted":
        if len(weights) != k:
            raise UsageError(f"weighted aggregation needs {k} weights, got {len(weights)}")
        w = torch.tensor(weights, dtype=probs.dtype).reshape(k, 1, 1)
        w = w / w.sum()
    elif how == "confidence":
        conf = torch.stack([F.softmax(z, dim=-1).max(dim=-1).values for z in teacher_logits])  # (K, N)
        w = F.softmax(conf, dim=0).unsqueeze(-1)
    else:
        raise UsageError(f"unknown teacher aggregation {how!r}; expected average, weighted or confidence")
    return (w * probs).sum(dim=0)


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Spatial attention of an (N, C, H, W) feature map (Zagoruyko & Komodakis 2017).

    mean over channels of f^2, flattened and L2-normalized per sample: where the layer
    "looks", independent of how many channels it has.
    """
    a = features.pow(2).mean(dim=1).flatten(1)
    return F.normalize(a, dim=1)


def attention_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """||A_s - A_t||_2 per sample, averaged over the batch; maps of unequal size are pooled to the smaller."""
    student_feat, teacher_feat = _same_spatial(student_feat, teacher_feat)
    return (attention_map(student_feat) - attention_map(teacher_feat)).norm(p=2, dim=1).mean()


def _same_spatial(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if s.shape[-2:] == t.shape[-2:]:
        return s, t
    size = min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1])
    return F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size)


class FeatureTap:
    """Forward hooks that keep the output of named modules (e.g. ``features.4``) for one pass."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            known = [n for n in modules if n.count(".") <= 1 and n]
            raise UsageError(f"no layer named {missing} in {type(model).__name__}; layers: {known}")
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._keep(n)) for n in names]

    def _keep(self, name: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self.outputs[name] = output

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()


class FeatureAdapter(nn.Module):
    """Learned 1x1 projection from student to teacher channels (identity when widths match).

    Trained jointly with the student and thrown away afterwards: the deployed student
    does not carry it.
    """

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.proj: nn.Module = (
            nn.Identity()
            if student_channels == teacher_channels
            else nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def feature_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """Mean squared error ||f_T - adapter(f_S)||^2 (per element), pooled to the smaller map."""
    s, t = _same_spatial(adapter(student_feat), teacher_feat)
    return F.mse_loss(s, t)
