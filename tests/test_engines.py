"""Engines: provider selection, missing engines, errors translated at the boundary."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.engines import EngineOptions
from edgerun.engines.onnx import resolve_providers
from edgerun.errors import EngineError, ProviderUnavailable


def test_missing_onnx_provider_is_a_clear_error(tiny_onnx: Path):
    with pytest.raises(ProviderUnavailable, match=r"'CUDA' \(CUDAExecutionProvider\) is not available.*available: "):
        edgerun.load(tiny_onnx, providers=["CUDA"])


def test_provider_aliases_resolve_and_cpu_is_appended():
    assert resolve_providers(("cpu",), ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    got = resolve_providers(("TensorRT",), ["TensorrtExecutionProvider", "CPUExecutionProvider"])
    assert got == ["TensorrtExecutionProvider", "CPUExecutionProvider"]


def test_explicit_cpu_provider_runs(tiny_onnx: Path):
    rt = edgerun.load(tiny_onnx, providers=["CPU"], threads=1)
    assert rt.load_info.providers == ("CPUExecutionProvider",)
    out = rt.run(np.ones((1, 4), np.float32)).outputs["y"]
    np.testing.assert_allclose(out, np.ones((1, 4)) @ (np.arange(12).reshape(4, 3) / 10), rtol=1e-6)


def test_litert_unknown_provider_and_conflicts():
    from edgerun.engines.litert import _delegates_and_resolver, interpreter_module

    mod = interpreter_module()
    with pytest.raises(ProviderUnavailable, match="'GPU' is not known"):
        _delegates_and_resolver(mod, ("GPU",))
    with pytest.raises(ProviderUnavailable, match="exclude each other"):
        _delegates_and_resolver(mod, ("CPU", "XNNPACK"))
    with pytest.raises(ProviderUnavailable, match="cannot load LiteRT delegate /nonexistent/libx.so"):
        _delegates_and_resolver(mod, ("delegate:/nonexistent/libx.so",))


def test_engine_format_mismatch(tiny_onnx: Path):
    with pytest.raises(EngineError, match="cannot run onnx models"):
        edgerun.load(tiny_onnx, engine="litert")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="threads"):
        EngineOptions(threads=0)
    with pytest.raises(ValueError, match="graph_optimization"):
        EngineOptions(graph_optimization="max")


def _run_without(modules: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter where `modules` cannot be imported (as if not installed)."""
    block = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    script = "import sys\n" + block + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_missing_onnxruntime_is_engine_unavailable(tiny_onnx: Path):
    proc = _run_without(
        ["onnxruntime"],
        f"""
        import edgerun
        try:
            edgerun.load({str(tiny_onnx)!r})
        except edgerun.EngineUnavailable as exc:
            print("OK", exc)
    """,
    )
    assert proc.stdout.startswith("OK onnxruntime is not installed: pip install onnxruntime"), proc.stderr


def test_missing_litert_names_both_packages(tmp_path: Path):
    proc = _run_without(
        ["ai_edge_litert", "tflite_runtime"],
        """
        from edgerun.engines.litert import interpreter_module
        try:
            interpreter_module()
        except Exception as exc:
            print(type(exc).__name__, exc)
    """,
    )
    assert proc.stdout.startswith("EngineUnavailable LiteRT is not installed: pip install ai-edge-litert"), proc.stderr
    assert "tflite-runtime" in proc.stdout


def test_tflite_runtime_is_the_fallback_import():
    # With ai_edge_litert absent and a stand-in tflite_runtime package on the path, the
    # fallback import must be the one used.
    proc = _run_without(
        ["ai_edge_litert"],
        """
        import types
        pkg = types.ModuleType("tflite_runtime"); sub = types.ModuleType("tflite_runtime.interpreter")
        sub.MARK = "fallback"; pkg.interpreter = sub
        sys.modules["tflite_runtime"] = pkg; sys.modules["tflite_runtime.interpreter"] = sub
        from edgerun.engines.litert import interpreter_module
        print(interpreter_module().MARK)
    """,
    )
    assert proc.stdout.strip() == "fallback", proc.stderr


def test_onnx_session_calls_the_binding_and_matches_the_public_run(tiny_onnx: Path):
    """edgerun calls the C++ binding that InferenceSession.run wraps (engines/onnx.py ``_direct_run``):
    the same outputs as the public API, and a wrong feed is still one InferenceError line."""
    from edgerun.engines.onnx import _direct_run
    from edgerun.errors import InferenceError

    rt = edgerun.load(str(tiny_onnx))
    session = rt.pipeline.session
    native = session.native
    assert _direct_run(native) == native._sess.run  # the binding, not the Python wrapper
    spec = session.inputs[0]
    x = np.random.default_rng(0).standard_normal([d or 1 for d in spec.shape]).astype(spec.dtype)
    ours = session.run([x])
    public = native.run(None, {spec.name: x})
    assert len(ours) == len(public)
    for a, b in zip(ours, public):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InferenceError, match="onnxruntime failed to run the model"):
        session.run([x.astype(np.float64)])  # a dtype the model does not take: the binding's own error


def test_onnx_direct_run_falls_back_to_the_public_run_without_the_binding():
    """Another onnxruntime layout (no ``_sess`` with a ``run``): the public run, nothing guessed."""
    from edgerun.engines.onnx import _direct_run

    class Layout:  # stands in for a session object of another onnxruntime version
        def run(self, names, feed, options=None):
            return ["public"]

    assert _direct_run(Layout())(["y"], {}, None) == ["public"]


def test_a_failing_kernel_is_one_line_and_onnxruntime_logs_nothing(tmp_path: Path, capfd):
    """A Gather with an index past its table fails inside onnxruntime's kernel: edgerun raises one
    InferenceError line, and onnxruntime's own coloured error log stays off stderr (run options)."""
    from onnx_models import gather_model

    from edgerun.errors import InferenceError

    path = gather_model(tmp_path / "gather.onnx", np.zeros((4, 2)), 3)
    rt = edgerun.load(str(path))
    np.testing.assert_array_equal(rt.run(np.array([0, 3, 1]))[0]["y"], np.zeros((3, 2), np.float32))
    capfd.readouterr()
    with pytest.raises(InferenceError, match="indices element out of data bounds") as info:
        rt.run(np.array([0, 4, 1]))  # 4 is past the table's 4 rows
    assert "\n" not in str(info.value)
    assert "onnxruntime" not in capfd.readouterr().err


def test_a_non_tensor_output_is_refused_at_load_with_what_to_do(tmp_path: Path):
    """scikit-learn models converted by skl2onnx end in a ZipMap (a sequence of maps) by default:
    one ArtifactError line at load that names the output, its type and skl2onnx's option."""
    from onnx import TensorProto, helper, save

    from edgerun.errors import ArtifactError

    seq_of_maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["label"]),
            helper.make_node("ZipMap", ["x"], ["probabilities"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]),
        ],
        "zipmap",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [
            helper.make_tensor_value_info("label", TensorProto.FLOAT, [1, 3]),
            helper.make_value_info("probabilities", seq_of_maps),
        ],
    )
    path = tmp_path / "zipmap.onnx"
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    save(helper.make_model(graph, opset_imports=opsets), path)
    with pytest.raises(
        ArtifactError, match=r"output 'probabilities' is a seq\(map\(int64,tensor\(float\)\)\), not a tensor"
    ) as info:
        edgerun.load(str(path))
    assert "zipmap': False" in str(info.value) and "\n" not in str(info.value)


def test_an_input_numpy_has_no_type_for_is_refused_at_load(tmp_path: Path):
    """bfloat16 I/O: onnxruntime's Python API cannot take or give it (numpy has no bfloat16); one line at
    load that says so, instead of a manifest mismatch or a failure at the first call."""
    from onnx import TensorProto, helper, save

    from edgerun.errors import ArtifactError

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "bf16",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "bf16.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ArtifactError, match=r"input 'x' is a tensor\(bfloat16\), which numpy, and so onnxruntime"):
        edgerun.load(str(path))


def test_a_scalar_input_gets_a_scalar_array(tmp_path: Path):
    """A rank-0 input (a threshold, a temperature): the random input is a 0-d array, not a numpy scalar."""
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Relu", ["t"], ["y"])],
        "scalar",
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    path = tmp_path / "scalar.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    from edgerun.bench.inputs import sample_inputs

    rt = edgerun.load(str(path))
    x = sample_inputs(rt.artifact, seed=0)[0][0]
    assert type(x) is np.ndarray and x.shape == ()
    assert rt.run(x).outputs["y"] == max(float(x), 0.0)


def test_a_provider_that_fails_to_start_is_refused_not_silently_replaced(tiny_onnx: Path, monkeypatch, capfd):
    """onnxruntime's InferenceSession, when an offered provider fails to start (CUDA or TensorRT
    libraries of another version on a Jetson), prints "EP Error ... Falling back" on stdout and opens
    the session on the CPU. No GPU here: the start failure is made by refusing Azure's (an offered
    provider) first session creation; onnxruntime's own fallback code then runs as on a device."""
    import onnxruntime

    real = onnxruntime.InferenceSession._create_inference_session

    def failing_start(self, providers, provider_options, *args, **kwargs):
        done = real(self, providers, provider_options, *args, **kwargs)  # sets what its fallback reads
        names = [p if isinstance(p, str) else p[0] for p in providers or []]
        if "AzureExecutionProvider" in names:  # as the provider's own initialisation would fail
            raise RuntimeError("AzureExecutionProvider: failed to load its library (made by this test)")
        return done

    monkeypatch.setattr(onnxruntime.InferenceSession, "_create_inference_session", failing_start)
    with pytest.raises(
        ProviderUnavailable, match=r"could not start AzureExecutionProvider and fell back to CPUExec"
    ) as info:
        edgerun.load(str(tiny_onnx), providers=("AzureExecutionProvider",))
    assert "failed to load its library" in str(info.value) and "\n" not in str(info.value)
    assert "EP Error" not in capfd.readouterr().out  # stdout stays the command's (bench --json -)
    monkeypatch.undo()
    assert (
        edgerun.load(str(tiny_onnx), providers=("AzureExecutionProvider",)).load_info.providers[0]
        == "AzureExecutionProvider"
    )
