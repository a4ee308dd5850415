"""Start a Seldon MLServer on loopback serving an ONNX model through a small onnxruntime runtime.

    python tools/mlserver_launch.py [--mlserver PATH] [--threads N] [--name NAME] [MODEL.onnx]

Shared by tools/bench_fallback.py (the side-by-side throughput mode) and usable by the
interop tests; run as a script it serves ``MODEL.onnx`` (default: the bundled FP32 demo
model) until Ctrl-C and prints the base URL.

A stock custom runtime (an ``MLModel`` whose ``predict`` runs the model with onnxruntime)
declares no signature, so MLServer's model metadata has empty ``inputs``, ``outputs`` and
``versions``, and ``GET v2`` lists no binary tensor extension. MLServer runs as a
subprocess (``mlserver start FOLDER``) on free ports, metrics off, inference in the server
process (``parallel_workers: 0``). The executable is ``--mlserver``, else the one named by
EDGERUN_MLSERVER, else ``mlserver`` beside this Python: mlserver pins protobuf < 7 and
starlette < 0.47, so a development machine may keep it in a venv of its own (with onnxruntime).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FP32 = ROOT / "edgerun" / "demo" / "digits-fp32.onnx"
READY_TIMEOUT_S = 120  # MLServer imports grpc, fastapi and pandas before it listens: seconds, more when loaded

RUNTIME = '''
"""A custom MLServer runtime: an ONNX model through onnxruntime, declaring no signature."""
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        threads = (self.settings.parameters.extra or {}).get("threads")
        if threads:
            options.intra_op_num_threads = int(threads)
        self._session = ort.InferenceSession(
            self.settings.parameters.uri, options, providers=["CPUExecutionProvider"]
        )
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        names = [o.name for o in self._session.get_outputs()]
        outs = self._session.run(names, feeds)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(n, o) for n, o in zip(names, outs)],
        )
'''


class MLServerUnavailable(RuntimeError):
    """No mlserver executable: not installed here and EDGERUN_MLSERVER not set."""


class MLServerFailed(RuntimeError):
    """mlserver exited, or was not ready in time; the message ends with its log's tail."""


def mlserver_command(explicit: str | None = None) -> list[str]:
    """The command that runs mlserver; MLServerUnavailable when there is none."""
    exe = explicit or os.environ.get("EDGERUN_MLSERVER")
    if exe:
        return [exe]
    if importlib.util.find_spec("mlserver") is not None:
        script = Path(sys.executable).with_name("mlserver")
        return [str(script)] if script.exists() else [shutil.which("mlserver") or "mlserver"]
    raise MLServerUnavailable(
        "mlserver is not installed: pip install -e '.[interop]' (or set EDGERUN_MLSERVER to an mlserver "
        "executable from a venv of its own: it pins protobuf < 7 and starlette < 0.47)"
    )


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:  # held together, so the n ports differ
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, timeout_s: float) -> None:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise MLServerFailed(f"mlserver exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # a poll interval: readiness is bounded by timeout_s
    raise MLServerFailed(f"mlserver was not ready within {timeout_s:g} s:\n{log.read_text()[-3000:]}")


@contextmanager
def mlserver(
    model: Path,
    folder: Path,
    name: str = "digits",
    command: list[str] | None = None,
    threads: int | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve ``model`` as ``name`` from an MLServer whose settings go in ``folder``; yields (base URL, process).

    ``threads``: onnxruntime's intra-op threads (None: onnxruntime's default).
    """
    command = command or mlserver_command()
    http_port, grpc_port, metrics_port = free_ports(3)
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "metrics_endpoint": None,  # no metrics server at all
        "parallel_workers": 0,  # inference in the server process: no worker pool to start
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "edgerun_onnx_runtime.py").write_text(RUNTIME)
    (folder / name).mkdir(exist_ok=True)
    parameters: dict[str, object] = {"uri": str(model)}
    if threads:
        parameters["extra"] = {"threads": threads}
    model_settings = {"name": name, "implementation": "edgerun_onnx_runtime.OnnxModel", "parameters": parameters}
    (folder / name / "model-settings.json").write_text(json.dumps(model_settings))
    log = folder / "mlserver.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}  # the settings files decide
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*command, "start", str(folder)], cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        base = f"http://127.0.0.1:{http_port}"
        _wait_ready(proc, base, log, ready_timeout_s)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", type=Path, default=FP32, help="ONNX model (default: the FP32 demo)")
    ap.add_argument("--mlserver", help="mlserver executable (default: EDGERUN_MLSERVER, else this environment's)")
    ap.add_argument("--name", default="digits", help="model name to serve it under (default digits)")
    ap.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: onnxruntime's)")
    args = ap.parse_args()
    try:
        command = mlserver_command(args.mlserver)
    except MLServerUnavailable as exc:
        raise SystemExit(f"mlserver_launch: {exc}") from exc
    with (
        tempfile.TemporaryDirectory(prefix="mlserver-") as tmp,
        mlserver(args.model.resolve(), Path(tmp), args.name, command, args.threads) as url,
    ):
        print(f"MLServer serving {args.name!r} at {url}/v2/models/{args.name} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
