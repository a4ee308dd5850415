"""edgerun.compress: distillation, pruning, quantization and export, driven by TOML recipes.

    from edgerun.compress import load_recipe, run_recipe
    result = run_recipe(load_recipe("recipes/digits-demo.toml"))
    print(result.table)

Needs the ``compress`` extra (``pip install "edgerun[compress]"``: torch==2.13.0,
torch-pruning, onnx, litert-torch, ai-edge-quantizer, matplotlib). The recipe grammar
is in docs/compress.md. ``import edgerun`` never imports this package; importing it
loads nothing else: the recipe parser comes in with the first of its names used (it is
tens of milliseconds, and ``edgerun compress --help`` or ``edgerun.cli.compress`` alone need
none of it), torch with ``run_recipe``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Recipe", "RunResult", "export_coreml", "load_recipe", "parse_recipe", "run_recipe"]

# Public name -> the submodule that defines it, imported on first use (PEP 562).
_LAZY = {
    "Recipe": "edgerun.compress.recipe",
    "load_recipe": "edgerun.compress.recipe",
    "parse_recipe": "edgerun.compress.recipe",
    "RunResult": "edgerun.compress.runner",
    "run_recipe": "edgerun.compress.runner",
    "export_coreml": "edgerun.compress.export_coreml",  # .mlpackage, not measured here (coreml extra)
}

if TYPE_CHECKING:
    from edgerun.compress.export_coreml import export_coreml
    from edgerun.compress.recipe import Recipe, load_recipe, parse_recipe
    from edgerun.compress.runner import RunResult, run_recipe


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgerun.compress' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
