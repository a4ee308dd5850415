"""edgerun.compress: distillation, pruning, quantization and export, driven by TOML recipes.

    from edgerun.compress import load_recipe, run_recipe
    result = run_recipe(load_recipe("recipes/digits-demo.toml"))
    print(result.table)

Needs the ``compress`` extra (``pip install "edgerun[compress]"``: torch==2.13.0,
torch-pruning, onnx, litert-torch, ai-edge-quantizer, matplotlib). The recipe grammar
is in docs/compress.md. ``import edgerun`` never imports this package; importing it
loads only the recipe parser, and torch comes in with ``run_recipe``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgerun.compress.recipe import Recipe, load_recipe, parse_recipe

__all__ = ["Recipe", "RunResult", "load_recipe", "parse_recipe", "run_recipe"]

if TYPE_CHECKING:
    from edgerun.compress.runner import RunResult, run_recipe


def __getattr__(name: str) -> Any:
    if name in ("run_recipe", "RunResult"):
        from edgerun.compress import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'edgerun.compress' has no attribute {name!r}")
