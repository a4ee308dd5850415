"""tools/gpu_check.py: the demo through onnxruntime-gpu's CUDA and TensorRT providers.

Without an NVIDIA GPU and onnxruntime-gpu (CI, this project's machines) the script must say why
and exit 3 having measured nothing; that path is tested everywhere. The real check runs only
where a CUDA GPU exists and is skipped elsewhere with the script's own reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tool_modules import tool

gpu_check = tool("gpu_check")
SCRIPT = Path(gpu_check.__file__)
REASON = gpu_check.skip_reason()


@pytest.mark.skipif(REASON is None, reason="a CUDA GPU is here: the skip path does not apply")
def test_without_a_gpu_it_says_why_and_measures_nothing(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == gpu_check.EXIT_SKIPPED == 3
    assert proc.stderr.strip() == f"gpu_check: skipped: {REASON}" and proc.stdout == ""
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.hardware
@pytest.mark.skipif(REASON is not None, reason=f"gpu_check cannot run here: {REASON}")
def test_the_demo_on_cuda_and_tensorrt(tmp_path: Path) -> None:  # pragma: no cover - needs an NVIDIA GPU
    out = tmp_path / "r.json"
    model = Path(gpu_check.DEMO) / "digits-fp32.onnx"
    assert gpu_check.main([str(model), "--runs", "100", "--min-seconds", "0.5", "--json", str(out)]) == 0
    results = {r["gpu_check_row"]: r for r in json.loads(out.read_text())["results"]}
    assert all(r["status"] == "ok" for r in results.values()), results
    trt = results["tensorrt"]["engine"]
    assert "TensorrtExecutionProvider" in trt["node_placement"]["by_provider"]
    assert trt["tensorrt_engine_cache"]["cold_start_built_engine"]
    assert trt["provider_options"]["TensorrtExecutionProvider"]["trt_engine_cache_enable"] in ("1", "True", "true")
    fp16 = results["tensorrt fp16"]["engine"]["provider_options"]["TensorrtExecutionProvider"]
    assert fp16["trt_fp16_enable"] in ("1", "True", "true")
    assert "CUDAExecutionProvider" in results["cuda"]["engine"]["node_placement"]["by_provider"]
