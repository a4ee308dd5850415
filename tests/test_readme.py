"""The README's Python snippets run as written, from any folder (the quick start must stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_its_snippets():
    assert len(BLOCKS) >= 2  # the Python API and the fallback policy


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_snippet_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgerun.demo import DEMO_DIR
    from edgerun.serve.server import ReferenceServer, serve_in_thread

    monkeypatch.chdir(tmp_path)  # not the repository root: paths must come from edgerun.demo
    code = BLOCKS[index]
    if "http://127.0.0.1:8000" not in code:
        exec(compile(code, f"README.md python block {index}", "exec"), {})
        return
    srv = ReferenceServer([DEMO_DIR / "digits-fp32.onnx"], threads=1)  # the README starts `edgerun serve`
    with serve_in_thread(srv) as url:
        exec(compile(code.replace("http://127.0.0.1:8000", url), f"README.md python block {index}", "exec"), {})
