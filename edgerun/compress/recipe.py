"""Compression recipes: TOML files parsed into frozen, typed configs (grammar: docs/compress.md).

A recipe is data, not code (ai-edge-quantizer style). ``load_recipe`` validates every
key against the dataclasses below, so a typo is a ``RecipeError`` naming the key, the
table it sits in and the keys that table accepts; nothing runs on a half-valid recipe.
This module never imports torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from edgerun.errors import RecipeError


@dataclass(frozen=True)
class DataConfig:
    """Where the training / reference data comes from and how a model sees it."""

    source: Literal["sklearn-digits"] = "sklearn-digits"
    test_fraction: float = 0.25
    split_seed: int = 0
    input_size_px: int = 64  # 8x8 digits are resized to this (8 = no resize)
    calibration_samples: int = 200  # train images that calibrate static quantization
    train_limit: int = 0  # use only the first N train images (0 = all); for quick runs


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["digits-cnn"] = "digits-cnn"
    width: float = 1.0  # channel multiplier of the MobileNet-style blocks
    depth: int = 6  # depthwise-separable blocks kept (1..6)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    lr: float = 3e-3  # peak of the one-cycle schedule
    batch_size: int = 64
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment_shift_px: int = 1  # random shift of the raw 8x8 image, 0 = off


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


_DEFAULT_MODE = {"fp32": "", "int8": "static", "int4": "weight-only", "mixed": "static"}


@dataclass(frozen=True)
class ExportSpec:
    """One artifact: a step's model in one format and precision."""

    source: str
    format: Literal["onnx", "tflite"] = "onnx"
    precision: Literal["fp32", "int8", "int4", "mixed"] = "fp32"
    mode: Literal["static", "dynamic", "weight-only", ""] = ""  # "" = the precision's default
    max_drop_points: float | None = None  # overrides [gate] for this artifact (and is "mixed"'s target)
    name: str = ""  # file stem; default "<source>-<precision>[-<mode>]"

    @property
    def resolved_mode(self) -> str:
        return self.mode or _DEFAULT_MODE[self.precision]

    @property
    def stem(self) -> str:
        if self.name:
            return self.name
        suffix = f"-{self.resolved_mode}" if self.resolved_mode != _DEFAULT_MODE[self.precision] else ""
        return f"{self.source}-{self.precision}{suffix}"

    @property
    def file_name(self) -> str:
        return f"{self.stem}.{self.format}"


@dataclass(frozen=True)
class GateConfig:
    max_drop_points: float = 1.0  # vs the source model's FP32 ONNX export, in accuracy points
    min_accuracy: float = 0.0  # absolute floor on top-1 (0..1)
    reference_set: Literal["test"] = "test"


# (format, precision, mode) combinations the toolkit builds; docs/compress.md lists them.
SUPPORTED_EXPORTS = (
    ("onnx", "fp32", ""),
    ("onnx", "int8", "static"),
    ("onnx", "int8", "dynamic"),
    ("onnx", "int4", "weight-only"),
    ("onnx", "mixed", "static"),  # INT8 QDQ with the most sensitive layers kept FP32
    ("tflite", "fp32", ""),
    ("tflite", "int8", "static"),
    ("tflite", "int4", "weight-only"),
)

Step = Union[TrainStep, DistillStep, PruneStep, LotteryStep, SparseTrainStep, QatStep]  # noqa: UP007 (a runtime alias)
STEP_KINDS: dict[str, type] = {
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
    out_dir: str = ""  # relative to the current directory; "" = build/compress/<name>
    data: DataConfig = field(default_factory=DataConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    source_path: str = ""  # the TOML file it was read from (not a TOML key)
    source_sha256: str = ""

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


# --- parsing ------------------------------------------------------------------------------

_NOT_KEYS = {"source_path", "source_sha256"}


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a TOML recipe. Raises RecipeError naming the bad key."""
    import hashlib

    from edgerun._tomlio import read_toml_bytes

    p = Path(path)
    # size-capped; nan/inf, integers past 64 bits (seed = 2**70) and deep nesting are RecipeErrors
    data, raw = read_toml_bytes(p, RecipeError, what="recipe")
    recipe = parse_recipe(data, where=str(p))
    return dataclasses.replace(recipe, source_path=str(p), source_sha256=hashlib.sha256(raw).hexdigest())


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
    exports = tuple(_build(ExportSpec, e, f"{where} [[export]] #{i + 1}") for i, e in enumerate(exports_raw))
    recipe = _build(Recipe, {**data, "steps": steps, "exports": exports}, where)
    _check_references(recipe, where)
    return recipe


def _parse_step(table: Any, where: str) -> Step:
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: must be a table")
    kind = table.get("kind")
    if kind not in STEP_KINDS:
        raise RecipeError(f"{where}: 'kind' must be one of {list(STEP_KINDS)}, got {kind!r}")
    name = table.get("name")
    return _build(STEP_KINDS[kind], table, f"{where} ({kind} {name!r})")


def _check_references(recipe: Recipe, where: str) -> None:
    seen: list[str] = []
    for step in recipe.steps:
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
    names = [s.file_name for s in recipe.exports]
    if len(set(names)) != len(names):
        raise RecipeError(f"{where}: two [[export]] tables produce the same file; set 'name' on one ({names})")


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


# --- generic dataclass building -------------------------------------------------------


def _build(cls: type, table: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a dict, checking every key and type."""
    if isinstance(table, cls):
        return table
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: must be a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _NOT_KEYS}
    for key in table:
        if key not in fields:
            raise RecipeError(f"{where}: unknown key {key!r}; expected one of: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in table:
            kwargs[name] = _convert(hints[name], table[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where}: missing required key {name!r}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{where}: {exc}") from exc
    _check_ranges(obj, where)
    return obj


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise RecipeError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, where)
        return value  # a union of step types: already built
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise RecipeError(f"{where}: must be an array, got {value!r}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise RecipeError(f"{where}: must be {tp.__name__}, got {type(value).__name__} {value!r}")


_RANGES = {
    "test_fraction": (0.05, 0.9),
    "input_size_px": (8, 512),
    "width": (0.05, 8.0),
    "depth": (1, 6),
    "epochs": (0, 10_000),
    "lr": (1e-7, 10.0),
    "batch_size": (1, 100_000),
    "temperature": (0.1, 100.0),
    "alpha_soft": (0.0, 1.0),
    "amount": (0.0, 0.99),
    "amount_per_round": (0.01, 0.99),
    "sparsity": (0.0, 0.99),
    "drop_fraction": (0.0, 1.0),
    "min_accuracy": (0.0, 1.0),
    "max_drop_points": (0.0, 100.0),
    "rounds": (1, 50),
    "update_every_steps": (1, 1_000_000),
    "calibration_samples": (1, 100_000),
    "layers": (0, 10_000),
}


def _check_ranges(obj: Any, where: str) -> None:
    for name, (lo, hi) in _RANGES.items():
        value = getattr(obj, name, None)
        if isinstance(value, int | float) and not lo <= value <= hi:
            raise RecipeError(f"{where}.{name}: must be in [{lo}, {hi}], got {value}")
