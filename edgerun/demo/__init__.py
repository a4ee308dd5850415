"""The bundled demo artifacts: a distilled, channel-pruned digits CNN in five variants.

Built by tools/build_demo.py through the compression toolkit (recipes/digits-demo.toml:
teacher -> distilled student -> pruned -> FP32 / INT8 / INT4 ONNX and FP32 / INT8 TFLite)
from scikit-learn's digits images (they ship inside scikit-learn; nothing is downloaded).
``edgerun bench`` with no argument benchmarks these.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).parent
DEMO_NAMES = ("digits-fp32.onnx", "digits-int8.onnx", "digits-int4.onnx", "digits-fp32.tflite", "digits-int8.tflite")


def demo_artifacts() -> list[Path]:
    """The demo model files that are present, in FP32 -> INT8 -> INT4 order, ONNX then TFLite."""
    return [DEMO_DIR / name for name in DEMO_NAMES if (DEMO_DIR / name).exists()]
