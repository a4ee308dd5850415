"""Run one recipe step (train, distill, prune, lottery, sparse-train) and return its torch model."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgerun.compress import distill as kd
from edgerun.compress import prune as pr
from edgerun.compress import qat as qt
from edgerun.compress.data import Dataset
from edgerun.compress.models import build_model, count_nonzero, count_params
from edgerun.compress.recipe import (
    DistillStep,
    LoadStep,
    LotteryStep,
    ModelConfig,
    PruneStep,
    QatStep,
    SparseTrainStep,
    Step,
    TrainStep,
)
from edgerun.compress.train import Progress, cross_entropy, fit, logits_of, torch_accuracy
from edgerun.errors import CompressError


@dataclass
class Trained:
    """A step's result. Mutable on purpose: it holds a torch module."""

    name: str
    model: nn.Module
    parent: str | None
    accuracy: float  # PyTorch top-1 on the test split (the report's torch rows)
    params: int
    nonzero_params: int
    how: str  # one line for the manifest's provenance


@dataclass(frozen=True)
class Ctx:
    """What every step shares besides its inputs: the data, the seeded generator, progress, the recipe's folder."""

    data: Dataset
    rng: np.random.Generator
    progress: Progress
    base_dir: Path = Path(".")

    def new_model(self, cfg: ModelConfig) -> nn.Module:
        """``cfg``'s network; a factory may take the data's ``num_classes``, ``input_shape``,
        ``in_channels`` (samples with a channel axis) or ``in_features`` (1-D samples)."""
        shape = self.data.input_shape
        offered = {"num_classes": self.data.n_classes, "input_shape": shape}
        offered["in_channels" if len(shape) > 1 else "in_features"] = shape[0]
        return build_model(cfg, self.base_dir, offered)


def run_step(
    step: Step,
    done: dict[str, Trained],
    data: Dataset,
    rng: np.random.Generator,
    progress: Progress,
    base_dir: Path = Path("."),
) -> Trained:
    ctx = Ctx(data, rng, progress, base_dir)
    if isinstance(step, LoadStep):
        model, parent = ctx.new_model(step.model), None
        how = f"brought trained: {step.model.describe()}"
    elif isinstance(step, TrainStep):
        model = ctx.new_model(step.model)
        fit(
            model,
            data,
            step.train,
            cross_entropy(model, step.train.label_smoothing),
            rng,
            progress=progress,
            label=step.name,
        )
        how, parent = f"trained from scratch ({step.train.epochs} epochs), {step.model.describe()}", None
    elif isinstance(step, DistillStep):
        model, how = _distill(step, done, ctx)
        parent = ",".join(step.teachers)
    elif isinstance(step, PruneStep):
        model, how = _prune(step, done[step.source].model, data, rng, progress)
        parent = step.source
    elif isinstance(step, QatStep):
        model, how = _qat(step, done[step.source].model, data, rng, progress)
        parent = step.source
    elif isinstance(step, LotteryStep):
        model, parent = _lottery(step, ctx), None
        how = (
            f"lottery ticket: {step.rounds} rounds of {step.amount_per_round:.0%} global magnitude pruning, "
            f"rewind to epoch {step.rewind_epoch}; weight sparsity {pr.weight_sparsity(model):.1%}"
        )
    else:
        model, parent = _sparse_train(step, ctx), None
        how = (
            f"dynamic sparse training ({step.method}, sparsity {step.sparsity:.0%}, "
            f"update every {step.update_every_steps} steps); weight sparsity of the sparse-trained layers "
            f"{pr.weight_sparsity(model, pr.sparsifiable(model)):.1%}"
        )
    model.eval()
    return Trained(
        step.name, model, parent, torch_accuracy(model, data), count_params(model), count_nonzero(model), how
    )


def _distill(step: DistillStep, done: dict[str, Trained], ctx: Ctx):
    data, rng, progress = ctx.data, ctx.rng, ctx.progress
    student = ctx.new_model(step.model)
    teachers = [done[t].model.eval() for t in step.teachers]
    pairs = list(step.features) + list(step.attention)
    t_tap = kd.FeatureTap(teachers[0], [p.teacher for p in pairs]) if pairs else None
    s_tap = kd.FeatureTap(student, [p.student for p in pairs]) if pairs else None
    adapters = _adapters(step, teachers[0], student, t_tap, s_tap, data) if step.features else nn.ModuleList()

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        probs = kd.aggregate_teachers(
            [logits_of(t, x) for t in teachers], step.temperature, step.aggregation, step.teacher_weights
        )
        total = kd.kd_loss(student(x), probs, y, step.temperature, step.alpha_soft)
        if not pairs:
            return total
        s_out, t_out = s_tap.outputs, t_tap.outputs  # type: ignore[union-attr]
        for adapter, pair in zip(adapters, step.features):
            total = total + pair.weight * kd.feature_loss(s_out[pair.student], t_out[pair.teacher].detach(), adapter)
        for pair in step.attention:
            total = total + pair.weight * kd.attention_loss(s_out[pair.student], t_out[pair.teacher].detach())
        return total

    try:
        fit(
            student, data, step.train, loss, rng, extra_params=adapters.parameters(), progress=progress, label=step.name
        )
    finally:
        for tap in (t_tap, s_tap):
            if tap is not None:
                tap.close()
    how = (
        f"distilled from {list(step.teachers)} ({step.aggregation}), T={step.temperature:g}, "
        f"alpha_soft={step.alpha_soft:g}, {len(step.features)} feature pairs, {len(step.attention)} attention pairs, "
        f"{step.train.epochs} epochs, {step.model.describe()}"
    )
    return student, how


def _adapters(step: DistillStep, teacher: nn.Module, student: nn.Module, t_tap, s_tap, data: Dataset) -> nn.ModuleList:
    """One FeatureAdapter per feature pair, sized from one probe forward pass."""
    x = torch.from_numpy(data.model_input(data.train_x[:2]))
    with torch.no_grad():
        teacher.eval()(x)
        student.eval()(x)
    return nn.ModuleList(
        kd.FeatureAdapter(s_tap.outputs[p.student].shape[1], t_tap.outputs[p.teacher].shape[1]) for p in step.features
    )


def _prune(step: PruneStep, source: nn.Module, data: Dataset, rng: np.random.Generator, progress: Progress):
    model = copy.deepcopy(source)
    if step.method == "channels":
        example = torch.from_numpy(data.model_input(data.train_x[:1]))
        before = count_params(model)
        pr.channel_prune(model.eval(), example, step.amount, step.scope)
        how = (
            f"channel pruning ({step.scope}, {step.amount:.0%} of channels, torch-pruning): "
            f"{before} -> {count_params(model)} parameters"
        )
    elif step.method == "layers":
        how = _remove_layers(step, model, data, progress)
    else:
        pr.magnitude_prune(model, amount=step.amount, threshold=step.threshold, scope=step.scope)
        what = f"|w| < {step.threshold:g}" if step.threshold else f"{step.amount:.0%} ({step.scope})"
        how = f"magnitude pruning {what}"
    fit(model, data, step.finetune, cross_entropy(model), rng, progress=progress, label=f"{step.name} fine-tune")
    pr.make_permanent(model)
    return model, f"{how}, fine-tuned {step.finetune.epochs} epochs; weight sparsity {pr.weight_sparsity(model):.1%}"


def _remove_layers(step: PruneStep, model: nn.Module, data: Dataset, progress: Progress) -> str:
    # Scored on the validation split (the train split's tail without one), never the test split:
    # that is the gate's reference set.
    raw_x, raw_y, scored_on = data.selection()
    x, y = torch.from_numpy(data.model_input(raw_x)), torch.from_numpy(raw_y)
    candidates = pr.removable_layers(model, x[:1])
    if step.layers > len(candidates):
        raise CompressError(
            f"prune step {step.name!r}: layers = {step.layers}, but {step.source!r} has only {len(candidates)} "
            f"removable layers ({', '.join(candidates) or 'none'})"
        )
    before = count_params(model)
    removed = pr.layer_prune(model, x, y, step.layers)
    for name, increase in removed:
        progress(f"{step.name}: removed {name} (loss {increase:+.4f} on {scored_on})")
    listed = ", ".join(f"{name} ({increase:+.3f} loss)" for name, increase in removed)
    return (
        f"layer pruning (greedy, {step.layers} of {len(candidates)} removable layers, loss increase on "
        f"{scored_on}): removed {listed}: {before} -> {count_params(model)} parameters"
    )


def _qat(step: QatStep, source: nn.Module, data: Dataset, rng: np.random.Generator, progress: Progress):
    def train(model: nn.Module) -> None:
        fit(model, data, step.finetune, cross_entropy(model), rng, progress=progress, label=f"{step.name} (QAT)")

    calib = data.model_input(data.train_x[: step.calibration_samples])
    test_x = data.model_input(data.test_x)
    model, ptq, qat = qt.run_qat(source, step.bits, calib, test_x, data.test_y, train)
    what = "INT8 weights + activations" if step.bits == 8 else "INT4 block-32 Linear weights"
    progress(f"{step.name}: simulated {what} top-1: PTQ {ptq:.4f} -> QAT {qat:.4f}")
    how = (
        f"quantization-aware training ({what} fake-quantized, BatchNorm folded), fine-tuned "
        f"{step.finetune.epochs} epochs at lr {step.finetune.lr:g}; simulated top-1 PTQ {ptq:.4f} -> QAT {qat:.4f}"
    )
    return model, how


def _lottery(step: LotteryStep, ctx: Ctx) -> nn.Module:
    data, rng, progress = ctx.data, ctx.rng, ctx.progress
    model = ctx.new_model(step.model)
    saved = {0: pr.snapshot(model)}

    def keep(epoch: int) -> None:
        if epoch == step.rewind_epoch and epoch not in saved:  # the first round's weights only
            saved[epoch] = pr.snapshot(model)

    for r in range(1, step.rounds + 1):
        fit(
            model,
            data,
            step.train,
            cross_entropy(model),
            rng,
            after_epoch=keep,
            progress=progress,
            label=f"{step.name} round {r}",
        )
        pr.magnitude_prune(model, amount=step.amount_per_round, scope="global")
        pr.rewind(model, saved[step.rewind_epoch])
        sparsity = pr.weight_sparsity(model)
        progress(f"{step.name}: round {r}: pruned to {sparsity:.1%} sparsity, rewound to epoch {step.rewind_epoch}")
    fit(model, data, step.train, cross_entropy(model), rng, progress=progress, label=f"{step.name} winning ticket")
    return pr.make_permanent(model)


def _sparse_train(step: SparseTrainStep, ctx: Ctx) -> nn.Module:
    data, rng, progress = ctx.data, ctx.rng, ctx.progress
    model = ctx.new_model(step.model)
    total = step.train.epochs * int(np.ceil(len(data.train_x) / step.train.batch_size))
    dyn = pr.DynamicSparsity(model, step.sparsity, step.method, step.drop_fraction, step.update_every_steps, total, rng)
    fit(
        model,
        data,
        step.train,
        cross_entropy(model),
        rng,
        after_step=dyn.after_step,
        progress=progress,
        label=step.name,
    )
    progress(f"{step.name}: {dyn.updates} {step.method} updates, sparsity held at {dyn.sparsity():.1%}")
    return model
