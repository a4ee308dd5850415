"""TOML tables -> frozen dataclasses, every key and type checked (used by recipe.py).

A typo is a ``RecipeError`` naming the key, the table it sits in and the keys that table
accepts. No torch import.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from edgerun.errors import RecipeError

# Dataclass fields that are not TOML keys (filled in by load_recipe).
NOT_KEYS = {"source_path", "source_sha256", "base_dir"}
# TOML keys that are Python keywords, spelled with a trailing underscore as fields.
_KEYWORDS = {"from_": "from"}


def key_of(field_name: str) -> str:
    return _KEYWORDS.get(field_name, field_name)


def build(cls: type, table: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a dict, checking every key and type."""
    if isinstance(table, cls):
        return table
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: must be a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {key_of(f.name): f for f in dataclasses.fields(cls) if f.name not in NOT_KEYS}
    for key in table:
        if key not in fields:
            raise RecipeError(f"{where}: unknown key {key!r}; expected one of: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        if key in table:
            kwargs[f.name] = convert(hints[f.name], table[key], f"{where}.{key}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where}: missing required key {key!r}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{where}: {exc}") from exc
    check_ranges(obj, where)
    return obj


def convert(tp: Any, value: Any, where: str) -> Any:
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
            return convert(inner[0], value, where)
        return value  # a union of step types: already built
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise RecipeError(f"{where}: must be an array, got {value!r}")
        return tuple(convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        # Free-form keyword arguments (a factory's): TOML already typed the values.
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: must be a table, got {value!r}")
        return types.MappingProxyType(dict(value))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise RecipeError(f"{where}: must be {tp.__name__}, got {type(value).__name__} {value!r}")


RANGES = {
    "test_fraction": (0.05, 0.9),
    "validation_fraction": (0.0, 0.9),
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
    "max_drop_vs_teacher_points": (0.0, 100.0),
    "rounds": (1, 50),
    "update_every_steps": (1, 1_000_000),
    "calibration_samples": (1, 100_000),
    "layers": (0, 10_000),
}


def check_ranges(obj: Any, where: str) -> None:
    for name, (lo, hi) in RANGES.items():
        value = getattr(obj, name, None)
        if isinstance(value, int | float) and not isinstance(value, bool) and not lo <= value <= hi:
            raise RecipeError(f"{where}.{name}: must be in [{lo}, {hi}], got {value}")
