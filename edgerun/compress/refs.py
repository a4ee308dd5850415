"""Resolve a recipe's ``module:function`` references (model and data factories). No torch import.

``package.module:function`` is imported by name; ``path/to/file.py:function`` is loaded from
that file, relative to the recipe's folder, so an example's Python can sit beside its recipe
without being installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgerun.errors import CompressError


def resolve(ref: str, base_dir: Path, what: str) -> Callable[..., Any]:
    """The callable named by ``ref``; a CompressError saying what is missing otherwise."""
    module_name, _, func_name = ref.rpartition(":")
    if not module_name or not func_name:
        raise CompressError(f"{what}: {ref!r} is not 'module:function' or 'file.py:function'")
    if module_name.endswith(".py"):
        module = _load_file((base_dir / module_name).resolve(), what)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise CompressError(f"{what}: cannot import {module_name!r} ({exc})") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        public = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise CompressError(f"{what}: {module_name!r} has no function {func_name!r}; it has: {', '.join(public)}")
    return func


def _load_file(path: Path, what: str) -> Any:
    if not path.is_file():
        raise CompressError(f"{what}: no Python file {path}")
    # One module object per file: a model factory and a data factory from the same file share it.
    name = f"edgerun_recipe_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CompressError(f"{what}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def call(func: Callable[..., Any], kwargs: Mapping[str, Any], offered: Mapping[str, Any], what: str) -> Any:
    """Call ``func(**kwargs)``, adding each of ``offered`` (e.g. ``num_classes``) that its signature
    names and ``kwargs`` does not set: a factory learns the data's shape without the recipe repeating it."""
    params: Mapping[str, Any]
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}
    extra = {k: v for k, v in offered.items() if k in params and k not in kwargs}
    try:
        return func(**kwargs, **extra)
    except TypeError as exc:
        raise CompressError(f"{what}: calling {func.__name__}(**{dict(kwargs)}) failed: {exc}") from exc
