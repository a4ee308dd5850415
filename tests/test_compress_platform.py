"""A recipe's TFLite export where litert-torch cannot be installed (its litert-converter has wheels for
Linux x86-64 and macOS arm64 only; pyproject's compress extra leaves it out elsewhere): one line naming
what is missing and what to do, not an ImportError traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgerun.compress.export import export_tflite  # noqa: E402
from edgerun.errors import CompressError  # noqa: E402


def test_tflite_export_without_litert_torch_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # what `import litert_torch` sees where it is absent
    out = tmp_path / "m.tflite"
    with pytest.raises(CompressError, match=r"litert-torch.*Linux x86-64 and macOS arm64.*tflite \[\[export\]\]"):
        export_tflite(torch.nn.Linear(4, 2), (4,), out)
    assert not out.exists()
