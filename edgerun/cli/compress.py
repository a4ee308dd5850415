"""``edgerun compress RECIPE``: registered through edgerun.cli.COMMAND_MODULES.

Imports nothing heavy at module level: torch and the converters load inside the
command, and a missing ``compress`` extra is a one-line message saying what to install.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from edgerun.cli.types import existing_file
from edgerun.errors import CompressError
from edgerun.exitcodes import EXIT_PASS

EXTRA_HINT = 'edgerun compress needs the compress extra: pip install "edgerun[compress]"'
NEEDED = ("torch", "torch_pruning", "onnx", "sklearn")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compress",
        help="run a compression recipe: distill, prune, quantize, export, gate, Pareto report",
        description="Run a TOML compression recipe (grammar: docs/compress.md). Every exported artifact is "
        "measured through edgerun's runtime and must pass the recipe's accuracy gate (Core ML packages, which "
        "run only on Apple hardware, are written marked 'not measured'); the run ends with "
        "the size / accuracy / latency table and a Pareto plot.",
    )
    p.add_argument("recipe", type=existing_file, help="the recipe TOML file")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the recipe's out_dir)")
    p.add_argument(
        "--keep-failed",
        action="store_true",
        help="also write artifacts that fail the accuracy gate (marked failed in their manifests)",
    )
    p.add_argument("--check", action="store_true", help="only validate the recipe, run nothing")
    p.set_defaults(func=cmd_compress)


def missing_modules() -> list[str]:
    return [m for m in NEEDED if importlib.util.find_spec(m) is None]


def cmd_compress(args: argparse.Namespace) -> int:
    from edgerun.compress.recipe import load_recipe

    recipe = load_recipe(args.recipe)  # a RecipeError is reported by edgerun.cli.main
    if args.check:
        print(f"{args.recipe}: valid recipe {recipe.name!r}: {len(recipe.steps)} steps, {len(recipe.exports)} exports")
        return EXIT_PASS
    missing = missing_modules()
    if missing:
        raise CompressError(f"{EXTRA_HINT} (missing: {', '.join(missing)})")
    from edgerun.compress.runner import default_out_dir, run_recipe
    from edgerun.outputs import check_folder

    # before training: an --out that is a file or cannot be made would fail only after every step ran
    check_folder(args.out if args.out is not None else default_out_dir(recipe), inputs=[args.recipe])

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run_recipe(recipe, args.out, keep_failed=args.keep_failed, check=False, progress=progress)
    print(result.table)
    from edgerun.compress.report import format_details

    for block in format_details(result.details):
        print("\n" + block)
    if result.plot_path:
        print(f"Pareto plot: {result.plot_path}")
    print(f"report: {result.out_dir / 'report.json'}")
    result.raise_for_gate()
    return EXIT_PASS
