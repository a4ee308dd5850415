"""The ExecuTorch engine (edgerun/engines/executorch.py) and edgerun's .pte reader (edgerun/formats/pte.py).

Real programs, real runtime: the bundled demo's digits network as ExecuTorch programs lowered to XNNPACK
(edgerun/demo/digits-{fp32,int8}.pte, built by tools/build_demo.py from recipes/digits-demo.toml), checked
against onnxruntime on the same network's ONNX export, and against ExecuTorch's own metadata; a tiny
network exported here through edgerun.compress.export_executorch. The executorch package comes with the
compress extra; without it these tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgerun.artifact import inspect_model, load_artifact
from edgerun.demo import DEMO_DIR
from edgerun.errors import ArtifactError, ProviderUnavailable

FP32, INT8 = DEMO_DIR / "digits-fp32.pte", DEMO_DIR / "digits-int8.pte"
ONNX_FP32 = DEMO_DIR / "digits-fp32.onnx"


def _need_executorch() -> None:
    try:
        import executorch  # noqa: F401  (its __init__ alone: no torch)
    except ImportError:
        reason = "the executorch package is not installed (pip install '.[compress]')"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI installs the compress extra: a missing one is a broken install")
        pytest.skip(reason)


def _samples(n: int = 64) -> np.ndarray:
    with np.load(DEMO_DIR / "digits-test.npz") as z:
        return z["x"][:n]


def test_reader_takes_io_and_precision_from_the_file_without_torch():
    """edgerun's flatbuffer reader, in a fresh interpreter: no torch import, and its parameter count of the
    FP32 program equals the ONNX export's (a different file format, read by a different reader)."""
    code = (
        "import sys, json; from pathlib import Path; from edgerun.artifact import inspect_model\n"
        f"out = {{n: inspect_model(Path(n)) for n in {[str(FP32), str(INT8), str(ONNX_FP32)]!r}}}\n"
        "print(json.dumps({n: [i.format, i.precision, i.parameter_count, i.parameter_dtypes,"
        " [list(t.shape) for t in i.inputs], [t.dtype for t in i.inputs], [list(t.shape) for t in i.outputs],"
        " i.op_histogram] for n, i in out.items()} | {'torch': 'torch' in sys.modules}))"
    )
    got = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert got.pop("torch") is False
    fp32, int8, onnx = got[str(FP32)], got[str(INT8)], got[str(ONNX_FP32)]
    assert fp32[:2] == ["pte", "fp32"] and int8[:2] == ["pte", "int8"]
    assert fp32[4:7] == int8[4:7] == [[[1, 1, 64, 64]], ["float32"], [[1, 10]]] == onnx[4:5] + [["float32"], [[1, 10]]]
    assert fp32[2] == onnx[2] == int8[2]  # same network: same number of weights and biases
    assert set(fp32[3]) == {"float32"}
    assert int8[3]["int8"] > 0.9 * int8[2]  # the weights; the biases stay int32 (XNNPACK's quantized bias)
    assert "delegate:XnnpackBackend" in fp32[7] and "delegate:XnnpackBackend" in int8[7]


def test_session_io_specs_agree_with_the_runtime_metadata_and_the_manifest():
    _need_executorch()
    from edgerun.engines import EngineOptions, engine_for

    for path in (FP32, INT8):
        art = load_artifact(path)  # through its manifest
        session = engine_for("pte").open(art, EngineOptions(threads=1))
        bare = inspect_model(path)  # the file alone: input_0 / output_0
        assert [(t.shape, t.dtype) for t in session.inputs] == [(t.shape, t.dtype) for t in bare.inputs]
        assert [(t.shape, t.dtype) for t in session.outputs] == [(t.shape, t.dtype) for t in bare.outputs]
        assert [t.name for t in session.inputs] == [t.name for t in art.inputs]  # the manifest's names
        assert session.providers == ("XnnpackBackend", "CPU")
        assert art.precision == bare.precision == ("fp32" if path == FP32 else "int8")


def test_outputs_agree_with_onnxruntime_on_the_same_network():
    """FP32: the ExecuTorch program's logits equal onnxruntime's on the ONNX export of the same trained model
    (float reassociation only). INT8: its top-1 agrees with FP32 on the test images as the gate demands."""
    _need_executorch()
    import edgerun

    x = _samples()
    onnx = edgerun.load(ONNX_FP32, threads=1)
    ref = np.stack([onnx.run(s).outputs["logits"][0] for s in x])
    fp32 = edgerun.load(FP32, threads=1)
    got = np.stack([fp32.run(s).outputs["logits"][0] for s in x])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    int8 = edgerun.load(INT8, threads=1)
    q = np.stack([int8.run(s).outputs["logits"][0] for s in x])
    agree = float(np.mean(q.argmax(1) == ref.argmax(1)))
    assert agree >= 0.95, f"INT8 top-1 agrees with FP32 on {agree:.1%} of {len(x)} images"


def test_threads_set_the_runtime_thread_pool_and_providers_are_checked():
    _need_executorch()
    from executorch.extension.pybindings import portable_lib

    from edgerun.engines import EngineOptions, engine_for

    eng, art = engine_for("pte"), load_artifact(FP32)
    for n in (1, 2):
        eng.open(art, EngineOptions(threads=n))
        assert portable_lib._threadpool_get_thread_count() == n
    assert eng.open(art, EngineOptions(providers=("XNNPACK",))).providers == ("XnnpackBackend", "CPU")
    with pytest.raises(ProviderUnavailable, match=r"'CUDA'.*XnnpackBackend, CPU"):
        eng.open(art, EngineOptions(providers=("CUDA",)))


def _corruptions(tmp_path: Path) -> dict[str, Path]:
    data = FP32.read_bytes()
    cases = {
        "truncated-half": data[: len(data) // 2],
        "truncated-header": data[:40],
        "garbage-after-identifier": data[:8] + bytes(range(256)) * 8,
        "zeroed-flatbuffer": data[:32] + b"\0" * (len(data) - 32),
    }
    out = {}
    for name, blob in cases.items():
        (tmp_path / f"{name}.pte").write_bytes(blob)
        out[name] = tmp_path / f"{name}.pte"
    return out


def test_corrupt_programs_are_refused_with_a_clear_error(tmp_path):
    """Each corruption is an ArtifactError naming the file, from edgerun's reader before the native
    runtime reads a byte; run in a child so that a native crash would show as its exit status."""
    _need_executorch()
    files = _corruptions(tmp_path)
    code = (
        "import sys\nfrom pathlib import Path\nfrom edgerun.errors import EdgerunError\n"
        "from edgerun.engines.executorch import open_session\nfrom edgerun.engines import EngineOptions\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n        open_session(Path(p), EngineOptions(threads=1))\n        print(p, 'LOADED')\n"
        "    except EdgerunError as e:\n        print(p, type(e).__name__, str(e).replace(chr(10), ' '))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, files.values())], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    for path in files.values():
        kind, message = lines[str(path)].split(" ", 1)
        assert kind == "ArtifactError" and "ExecuTorch program" in message and str(path) in message
        with pytest.raises(ArtifactError, match="corrupt or truncated ExecuTorch program"):
            load_artifact(path)  # a bare file: the same reader refuses it, without the runtime
    assert "the header says the file is" in lines[str(files["truncated-half"])]


@pytest.mark.slow  # two workers, each importing torch for ExecuTorch: ~15 s idle, a minute on a loaded box
def test_bench_runs_a_program_in_the_worker_and_reports_a_corrupt_one(tmp_path):
    """`edgerun bench` on a .pte, the crash-isolated worker: a result with the executorch engine and its
    inference times; a truncated copy beside it is an error result and the run goes on."""
    _need_executorch()
    for f in (FP32, FP32.with_name(FP32.name + ".edgerun.json"), DEMO_DIR / "digits-test.npz"):
        shutil.copy(f, tmp_path / f.name)
    bad = tmp_path / "broken.pte"
    bad.write_bytes(FP32.read_bytes()[:1000])
    out = tmp_path / "bench.json"
    from edgerun.cli import EXIT_PASS, main

    args = ["bench", str(tmp_path / FP32.name), str(bad), "--runs", "20", "--min-seconds", "0", "--warmup", "2"]
    code = main([*args, "--warmup-seconds", "0", "--no-energy", "--json", str(out), "-q"])
    results = json.loads(out.read_text())["results"]
    assert code != EXIT_PASS  # one artifact failed
    ok = next(r for r in results if r["artifact"]["path"].endswith(FP32.name))
    err = next(r for r in results if r["artifact"]["path"].endswith("broken.pte"))
    assert ok["status"] == "ok" and ok["engine"]["name"] == "executorch", ok.get("error")
    assert ok["steady"]["runs"] >= 20
    assert err["status"] == "error" and "corrupt or truncated ExecuTorch program" in err["error"]["message"]


@pytest.mark.slow  # torch.export + lowering twice: ~15 s idle, minutes on a loaded 2-core box
def test_export_builds_fp32_and_int8_programs_of_a_torch_model(tmp_path):
    """edgerun.compress.export_executorch on a tiny CNN: the FP32 program computes what torch and the
    ONNX export compute; the INT8 one reads as int8 from the file and stays close to FP32."""
    _need_executorch()
    torch = pytest.importorskip("torch")
    from torch import nn

    from edgerun.compress.export import export_onnx
    from edgerun.compress.export_executorch import export_pte, export_pte_int8
    from edgerun.engines import EngineOptions
    from edgerun.engines.executorch import open_session
    from edgerun.engines.onnx import open_session as onnx_session

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 1, 1, 8, 8)).astype(np.float32)
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    fp32, int8 = export_pte(model, (1, 8, 8), tmp_path / "m.pte"), tmp_path / "m-int8.pte"
    export_pte_int8(model, (1, 8, 8), int8, calib)
    onnx = export_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    assert (inspect_model(fp32).precision, inspect_model(int8).precision) == ("fp32", "int8")
    ref = onnx_session(onnx, EngineOptions(threads=1)).run([x])[0]
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(open_session(fp32, EngineOptions(threads=1)).run([x])[0], ref, rtol=1e-5, atol=1e-5)
    q = open_session(int8, EngineOptions(threads=1)).run([x])[0]
    assert np.abs(q - ref).max() <= 0.05 * np.abs(ref).max() + 0.02  # INT8 rounding on a 3-layer network
