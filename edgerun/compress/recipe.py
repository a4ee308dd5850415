"""Compression recipes: TOML files parsed into frozen, typed configs (grammar: docs/compress.md).

A recipe is data, not code (ai-edge-quantizer style). ``load_recipe`` validates every
key against the dataclasses below, so a typo is a ``RecipeError`` naming the key, the
table it sits in and the keys that table accepts; nothing runs on a half-valid recipe.
``[[export]]`` and ``[gate]`` (``ExportSpec``, ``GateConfig``, ``SUPPORTED_EXPORTS``) live in
``export_spec.py`` and are re-exported here. This module never imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from edgerun.compress.data_config import DataConfig, check_data, parse_data
from edgerun.compress.export_spec import SUPPORTED_EXPORTS, ExportSpec, GateConfig
from edgerun.compress.typed import build
from edgerun.errors import RecipeError

# Built-in model factories: a recipe's ``arch`` is a name here, resolved like any ``factory``.
BUILTIN_MODELS = {"digits-cnn": "edgerun.compress.models:digits_cnn"}
MODEL_FILE_SUFFIXES = (".pt2", ".pt", ".pth", ".ts")


@dataclass(frozen=True)
class ModelConfig:
    """Where a step's network comes from: a factory (built-in ``arch`` or ``factory``) or a saved ``file``."""

    arch: str = ""  # a built-in factory (BUILTIN_MODELS); nothing set at all = "digits-cnn"
    factory: str = ""  # "package.module:function" or "file.py:function" returning an nn.Module
    args: Mapping[str, Any] = field(default_factory=dict)  # the factory's keyword arguments
    weights: str = ""  # a state dict / checkpoint loaded into the factory's model
    file: str = ""  # a whole saved model: torch.export ExportedProgram (.pt2) or TorchScript
    width: float | None = None  # shorthand for args.width (digits-cnn's channel multiplier)
    depth: int | None = None  # shorthand for args.depth (digits-cnn's blocks kept, 1..6)

    @property
    def factory_ref(self) -> str:
        """``module:function`` of the factory ("" for a saved file)."""
        if self.file:
            return ""
        return self.factory or BUILTIN_MODELS[self.arch or "digits-cnn"]

    @property
    def kwargs(self) -> dict[str, Any]:
        short = {k: v for k, v in (("width", self.width), ("depth", self.depth)) if v is not None}
        return {**self.args, **short}

    def describe(self) -> str:
        if self.file:
            return f"model file {self.file}"
        what = self.arch or self.factory or "digits-cnn"
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{what}({args})" + (f" with weights {self.weights}" if self.weights else "")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    lr: float = 3e-3  # peak of the one-cycle schedule
    batch_size: int = 64
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment_shift_px: int = 1  # random shift of the raw 8x8 image, 0 = off (sklearn-digits only)
    keep_best: bool = False  # keep the epoch with the best validation top-1 (early stopping's choice)


@dataclass(frozen=True)
class LayerPair:
    """A teacher layer and the student layer that imitates it (module names, e.g. ``features.4``)."""

    teacher: str
    student: str
    weight: float = 1.0


@dataclass(frozen=True)
class TrainStep:
    name: str
    kind: Literal["train"] = "train"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class LoadStep:
    """A model the user brings, already trained: nothing is trained; later steps take it as their source."""

    name: str
    model: ModelConfig
    kind: Literal["load"] = "load"


@dataclass(frozen=True)
class DistillStep:
    name: str
    teachers: tuple[str, ...]
    kind: Literal["distill"] = "distill"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    temperature: float = 3.0
    alpha_soft: float = 0.7  # weight of the soft (KL) loss; the hard (CE) loss gets 1 - alpha_soft
    aggregation: Literal["average", "weighted", "confidence"] = "average"
    teacher_weights: tuple[float, ...] = ()  # for aggregation = "weighted"
    features: tuple[LayerPair, ...] = ()  # feature distillation (MSE, adapter when widths differ)
    attention: tuple[LayerPair, ...] = ()  # attention transfer on spatial attention maps


@dataclass(frozen=True)
class PruneStep:
    name: str
    source: str
    kind: Literal["prune"] = "prune"
    method: Literal["magnitude", "channels", "layers"] = "magnitude"
    scope: Literal["global", "layer"] = "global"
    amount: float = 0.0  # fraction of weights (magnitude) or channels (channels) removed
    threshold: float = 0.0  # magnitude only: prune |w| < threshold everywhere (instead of amount)
    layers: int = 0  # method "layers" only: how many whole layers to remove
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-3))


@dataclass(frozen=True)
class LotteryStep:
    name: str
    kind: Literal["lottery"] = "lottery"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rounds: int = 3
    amount_per_round: float = 0.2  # of the weights still alive, globally
    rewind_epoch: int = 0  # 0 = rewind to the original init; k = to the weights after epoch k


@dataclass(frozen=True)
class SparseTrainStep:
    name: str
    kind: Literal["sparse-train"] = "sparse-train"
    method: Literal["rigl", "set"] = "rigl"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sparsity: float = 0.8
    update_every_steps: int = 20
    drop_fraction: float = 0.3  # of the live weights replaced at each update


@dataclass(frozen=True)
class QatStep:
    """Quantization-aware fine-tuning of ``source`` for an INT8 (static) or INT4 (weight-only) export."""

    name: str
    source: str
    kind: Literal["qat"] = "qat"
    bits: Literal[8, 4] = 8
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=5e-4))
    calibration_samples: int = 200  # train images that initialize the activation ranges (bits 8)


Step = Union[LoadStep, TrainStep, DistillStep, PruneStep, LotteryStep, SparseTrainStep, QatStep]  # noqa: UP007 (a runtime alias)
STEP_KINDS: dict[str, type] = {
    "load": LoadStep,
    "train": TrainStep,
    "distill": DistillStep,
    "prune": PruneStep,
    "lottery": LotteryStep,
    "sparse-train": SparseTrainStep,
    "qat": QatStep,
}


@dataclass(frozen=True)
class Recipe:
    name: str
    steps: tuple[Step, ...]
    exports: tuple[ExportSpec, ...] = ()
    seed: int = 0
    # torch intra-op threads for the steps (training, the torch rows); 0 = as the process has it.
    # Float reductions split by thread count, so a seed reproduces a model only at the same count.
    threads: int = 0
    out_dir: str = ""  # relative to the current directory; "" = build/compress/<name>
    data: DataConfig = field(default_factory=DataConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    source_path: str = ""  # the TOML file it was read from (not a TOML key)
    source_sha256: str = ""
    base_dir: str = ""  # the recipe file's folder: relative paths in the recipe start here (not a TOML key)

    @property
    def teacher(self) -> str:
        return self.gate.teacher or self.steps[0].name

    def path(self, relative: str) -> Path:
        """A path named in the recipe, resolved against the recipe file's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else Path(self.base_dir or ".") / p

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise RecipeError(f"no step named {name!r}; steps: {', '.join(s.name for s in self.steps)}")


# --- parsing ------------------------------------------------------------------------------


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a TOML recipe. Raises RecipeError naming the bad key."""
    import hashlib

    from edgerun._tomlio import read_toml_bytes

    p = Path(path)
    # size-capped; nan/inf, integers past 64 bits (seed = 2**70) and deep nesting are RecipeErrors
    data, raw = read_toml_bytes(p, RecipeError, what="recipe")
    recipe = parse_recipe(data, where=str(p))
    return dataclasses.replace(
        recipe, source_path=str(p), source_sha256=hashlib.sha256(raw).hexdigest(), base_dir=str(p.parent)
    )


def parse_recipe(data: dict[str, Any], where: str = "recipe") -> Recipe:
    """Build a Recipe from a TOML-shaped dict and check cross-references between steps."""
    data = dict(data)
    steps_raw = data.pop("step", None)
    if not isinstance(steps_raw, list) or not steps_raw:
        raise RecipeError(f"{where}: needs at least one [[step]] table (kinds: {', '.join(STEP_KINDS)})")
    steps = tuple(_parse_step(s, f"{where} [[step]] #{i + 1}") for i, s in enumerate(steps_raw))
    exports_raw = data.pop("export", [])
    if not isinstance(exports_raw, list):
        raise RecipeError(f"{where}: 'export' must be an array of tables ([[export]])")
    exports = tuple(build(ExportSpec, e, f"{where} [[export]] #{i + 1}") for i, e in enumerate(exports_raw))
    if isinstance(data.get("data"), dict):
        data["data"] = parse_data(data["data"], f"{where} [data]")
    recipe = build(Recipe, {**data, "steps": steps, "exports": exports}, where)
    if not 0 <= recipe.threads <= 256:
        raise RecipeError(f"{where}: 'threads' must be 0 (as the process has it) .. 256, got {recipe.threads}")
    _check_references(recipe, where)
    check_data(recipe.data, f"{where} [data]")
    if recipe.gate.teacher and recipe.gate.teacher not in [s.name for s in recipe.steps]:
        raise RecipeError(
            f"{where} [gate]: teacher {recipe.gate.teacher!r} is not a step ({[s.name for s in recipe.steps]})"
        )
    return recipe


def _check_model(model: ModelConfig, where: str) -> None:
    set_ = [k for k in ("arch", "factory", "file") if getattr(model, k)]
    if len(set_) > 1:
        raise RecipeError(f"{where}.model: set one of 'arch', 'factory', 'file', got {set_}")
    if model.arch and model.arch not in BUILTIN_MODELS:
        raise RecipeError(
            f"{where}.model.arch: {model.arch!r} is not built in ({list(BUILTIN_MODELS)}); "
            'use factory = "module:function"'
        )
    if model.factory and ":" not in model.factory:
        raise RecipeError(
            f'{where}.model.factory: must be "module:function" or "file.py:function", got {model.factory!r}'
        )
    if model.file:
        if not model.file.endswith(MODEL_FILE_SUFFIXES):
            raise RecipeError(
                f"{where}.model.file: expected a {' / '.join(MODEL_FILE_SUFFIXES)} file, got {model.file!r}"
            )
        extra = [k for k in ("weights", "args", "width", "depth") if getattr(model, k)]
        if extra:
            raise RecipeError(f"{where}.model: {extra} do not apply to a saved model 'file'")


def _parse_step(table: Any, where: str) -> Step:
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: must be a table")
    kind = table.get("kind")
    if kind not in STEP_KINDS:
        raise RecipeError(f"{where}: 'kind' must be one of {list(STEP_KINDS)}, got {kind!r}")
    name = table.get("name")
    return build(STEP_KINDS[kind], table, f"{where} ({kind} {name!r})")


def _check_references(recipe: Recipe, where: str) -> None:
    seen: list[str] = []
    for step in recipe.steps:
        if isinstance(step, LoadStep) and not (step.model.weights or step.model.file):
            raise RecipeError(
                f"{where}: load step {step.name!r}: model needs 'weights' (with a factory or arch) or 'file'; "
                f"a model to train is a 'train' step"
            )
        if hasattr(step, "model"):
            _check_model(step.model, f"{where} step {step.name!r}")
        if step.name in seen:
            raise RecipeError(f"{where}: step name {step.name!r} is used twice; names must be unique")
        inputs = step.teachers if isinstance(step, DistillStep) else (getattr(step, "source", None),)
        for ref in filter(None, inputs):
            if ref not in seen:
                raise RecipeError(
                    f"{where}: step {step.name!r} refers to {ref!r}, which is not an earlier step (earlier: {seen})"
                )
        if isinstance(step, DistillStep):
            _check_distill(step, where)
        if isinstance(step, PruneStep):
            _check_prune(step, where)
        if isinstance(step, LotteryStep) and step.rewind_epoch > step.train.epochs:
            raise RecipeError(
                f"{where}: lottery step {step.name!r}: rewind_epoch {step.rewind_epoch} is after the last epoch "
                f"({step.train.epochs})"
            )
        seen.append(step.name)
    for spec in recipe.exports:
        if (spec.format, spec.precision, spec.resolved_mode) not in SUPPORTED_EXPORTS:
            raise RecipeError(
                f"{where}: [[export]] {spec.file_name!r}: {spec.format} {spec.precision} mode "
                f"{spec.resolved_mode!r} is not supported; supported (format, precision, mode): {SUPPORTED_EXPORTS}"
            )
        if spec.source not in seen:
            raise RecipeError(f"{where}: [[export]] {spec.file_name!r}: source {spec.source!r} is not a step ({seen})")
        if spec.fold_preprocessing:
            _check_foldable(recipe, spec, where)
    names = [s.file_name for s in recipe.exports]
    if len(set(names)) != len(names):
        raise RecipeError(f"{where}: two [[export]] tables produce the same file; set 'name' on one ({names})")


def _check_foldable(recipe: Recipe, spec: ExportSpec, where: str) -> None:
    """Before any training: the declared pre-processing must end (past layout / expand_dims) in scale or normalize.
    The digits' fixed ops do (cast, resize, scale, normalize, expand_dims)."""
    if recipe.data.source == "sklearn-digits":
        return
    ops = [p.op for p in recipe.data.preprocess]
    while ops and ops[-1] in ("layout", "expand_dims"):
        ops.pop()
    if not ops or ops[-1] not in ("scale", "normalize"):
        last = ops[-1] if ops else "nothing"
        raise RecipeError(
            f"{where}: [[export]] {spec.file_name!r}: fold_preprocessing needs [data] preprocess to end in "
            f"'scale' or 'normalize' (before any layout / expand_dims); it ends in {last!r}"
        )


def _check_prune(step: PruneStep, where: str) -> None:
    if step.method == "layers":
        if step.layers <= 0:
            raise RecipeError(
                f"{where}: prune step {step.name!r}: method 'layers' needs 'layers' > 0 (how many layers to remove)"
            )
        for key in ("amount", "threshold"):
            if getattr(step, key) > 0:
                raise RecipeError(
                    f"{where}: prune step {step.name!r}: {key!r} does not apply to method 'layers', "
                    f"which removes 'layers' whole layers"
                )
        return
    if step.layers > 0:
        raise RecipeError(f"{where}: prune step {step.name!r}: 'layers' is for method 'layers' only")
    if (step.amount > 0) == (step.threshold > 0):
        raise RecipeError(f"{where}: prune step {step.name!r} needs exactly one of 'amount' > 0 or 'threshold' > 0")
    if step.method == "channels" and step.threshold > 0:
        raise RecipeError(f"{where}: prune step {step.name!r}: 'threshold' is for method 'magnitude' only")


def _check_distill(step: DistillStep, where: str) -> None:
    if not step.teachers:
        raise RecipeError(f"{where}: distill step {step.name!r} needs at least one teacher")
    if step.aggregation == "weighted" and len(step.teacher_weights) != len(step.teachers):
        raise RecipeError(
            f"{where}: distill step {step.name!r}: aggregation 'weighted' needs one teacher_weights entry per "
            f"teacher ({len(step.teachers)}), got {len(step.teacher_weights)}"
        )
    if len(step.teachers) > 1 and (step.features or step.attention):
        raise RecipeError(f"{where}: distill step {step.name!r}: features/attention need exactly one teacher")
