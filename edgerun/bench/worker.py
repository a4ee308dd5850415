"""Crash-isolated benchmark workers (pyperf style).

Each artifact is benchmarked in a fresh ``python -m edgerun.bench.worker``
process. The parent sends one JSON request on the worker's stdin; the worker
answers with JSON lines on a dedicated pipe (``--result-fd``): progress
messages and notices (warnings to show while it runs), then exactly one result.
The worker's own stdout and stderr go to a temporary file, because native engines
print there (``INFO: Created TensorFlow Lite XNNPACK delegate``) and a crash
report lands there too.

The parent enforces a wall-clock timeout. A worker that dies by a signal
(SIGSEGV from a malformed model, SIGABRT, SIGKILL from the out-of-memory
killer), exits without a result, prints garbage on the result pipe, or hangs,
becomes an ``error`` result with its exit status or signal and the tail of its
stderr; the rest of a multi-artifact run goes on.

Before each step the worker reports its phase on the result pipe (``{"type":
"phase", "phase": "importing the engine"}``, then "creating the session", "first
inference", "warm-up", "steady state", ...), so that a crash names the step it
happened in: an engine that dies on import (a build whose CPU detection trips over
an emulator) is not this artifact's fault, and only a crash while the engine reads
the model says that a malformed model can do this.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import monotonic
from typing import Any

STDERR_TAIL_BYTES = 4000
PARENT_ENV = "EDGERUN_WORKER_PARENT"
PARENT_POLL_S = 0.25

Progress = Callable[[str, float], None]
Notice = Callable[[str], None]


@dataclass(frozen=True)
class WorkerRequest:
    """Everything a worker needs; JSON-serialisable so it crosses the process boundary."""

    path: str
    config: dict[str, Any]
    budget: dict[str, float]
    profile: str | None  # a profile name or TOML path
    profile_reason: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


# The phases a worker reports, each with what a crash in it means. The runner's progress
# phases map onto them (_RUNNER_PHASES); "importing the engine" comes from the worker itself.
IMPORTING = "importing the engine"
PREPARING = "preparing the benchmark"
CREATING = "creating the session"
LOADING = "loading the artifact"  # import and session together: the engine could not be told in advance
_WHERE = {
    None: "while starting, before it reported a phase",
    IMPORTING: "while importing the engine{detail}, before the model was read",
    PREPARING: "while preparing the benchmark (profile, power probe, thermal state), before the model was read",
    CREATING: "while the engine read the model and created its session",
    LOADING: "while loading the artifact (importing the engine, then reading the model)",
    "first inference": "while running the first inference",
    "warm-up": "while running the warm-up",
    "steady state": "while running the steady state",
    "energy windows": "while running the energy windows",
    "building the result": "after measuring, while building the result",
}
# What a native crash (SIGSEGV, SIGABRT, ...) in a phase says about its cause; the model is
# blamed only where the engine was reading it.
_CRASH_MEANING = {
    None: "Python or edgerun itself failed to start",
    IMPORTING: "the engine itself cannot run on this machine (a build for another CPU, a broken install), "
    "not this artifact",
    CREATING: "the engine crashed on this artifact (a malformed model can do this)",
    LOADING: "the engine crashed on import or on this artifact",
}
_RUNNER_PHASES = {
    "first": "first inference",
    "warmup": "warm-up",
    "measure": "steady state",
    "energy": "energy windows",
    "done": "building the result",
}
_NATIVE_CRASHES = ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL", "SIGFPE")


def _worker_argv(result_fd: int) -> list[str]:
    # faulthandler: a native crash also prints the Python stack it happened under to stderr,
    # whose tail the error result carries.
    return [sys.executable, "-X", "faulthandler", "-m", "edgerun.bench.worker", "--result-fd", str(result_fd)]


def run_in_worker(
    request: WorkerRequest,
    timeout_s: float,
    progress: Progress | None = None,
    argv: Callable[[int], Sequence[str]] = _worker_argv,
    notice: Notice | None = None,
) -> dict[str, Any]:
    """Benchmark one artifact in a child process; always returns a result dict (ok or error).

    ``notice(text)`` is called as each ``{"type": "notice"}`` message arrives: a warning the
    user should see while the run goes on (the soft-verdict forecast after the warm-up).

    ``argv`` builds the child's command line from the result pipe's fd (the tests
    substitute children that crash or hang, to exercise this code for real).
    """
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(
                list(argv(write_fd)),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(write_fd,),
                start_new_session=True,  # own process group: kill it whole
                env={**os.environ, PARENT_ENV: str(os.getpid())},
            )
        finally:
            os.close(write_fd)
        try:
            assert proc.stdin is not None
            try:
                proc.stdin.write(request.to_json().encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the child died before reading; its exit status tells why
            messages, timed_out = _read_messages(read_fd, monotonic() + timeout_s, progress, notice)
        finally:
            os.close(read_fd)
            if proc.poll() is None:
                _kill_group(proc)
            status = proc.wait()
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - STDERR_TAIL_BYTES))
        tail = log.read().decode("utf-8", errors="replace")
    result = next((m["result"] for m in messages if m.get("type") == "result"), None)
    if result is not None and not timed_out:
        return result
    return _failure(request, status, timed_out, timeout_s, tail, messages)


def _read_messages(
    fd: int, deadline: float, progress: Progress | None, notice: Notice | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """JSON lines from the worker until EOF or the deadline. Returns (messages, timed_out)."""
    messages: list[dict[str, Any]] = []
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                return messages, True
            if not sel.select(timeout=remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return messages, False
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg = _parse(line)
                messages.append(msg)
                if progress is not None and msg.get("type") == "progress":
                    progress(str(msg.get("phase")), float(msg.get("fraction", 0.0)))
                elif notice is not None and msg.get("type") == "notice":
                    notice(str(msg.get("text")))


def _parse(line: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"type": "garbage", "text": line[:200].decode("utf-8", errors="replace")}
    return msg if isinstance(msg, dict) else {"type": "garbage", "text": str(msg)[:200]}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _failure(
    request: WorkerRequest, status: int, timed_out: bool, timeout_s: float, tail: str, messages: list[dict[str, Any]]
) -> dict[str, Any]:
    from edgerun.bench.result import error_result

    sig = None
    phases = [m for m in messages if m.get("type") == "phase"]
    phase = str(phases[-1].get("phase")) if phases else None
    detail = f" ({phases[-1]['engine']})" if phases and phases[-1].get("engine") else ""
    where = _WHERE.get(phase, f"while in phase {phase!r}").replace("{detail}", detail)
    if timed_out:
        kind, message = "WorkerTimeout", f"the benchmark did not finish within {timeout_s:g} s and was killed"
        message += f" (it was in: {phase or 'start-up'})"
    elif status < 0:
        sig = signal.Signals(-status).name
        kind = "WorkerCrashed"
        if sig in _NATIVE_CRASHES:
            message = f"the worker crashed with {sig} {where}"
            if phase in _CRASH_MEANING:
                message += f": {_CRASH_MEANING[phase]}"
        else:
            message = f"the worker was killed by {sig} {where}"
        if sig == "SIGKILL":
            message += " (often the out-of-memory killer: check `dmesg` and the device's RAM)"
    else:
        kind = "WorkerCrashed"
        garbage = [m["text"] for m in messages if m.get("type") == "garbage"]
        message = f"the worker exited with status {status} without a result, {where}"
        if garbage:
            message += f"; it wrote unreadable output: {garbage[0]!r}"
    res = error_result(request.path, RuntimeError(message), None, request.profile_reason)
    res["error"]["type"] = kind
    res["profile"]["name"] = request.profile
    res["worker"] = {
        "exit_status": None if timed_out else status,
        "signal": sig,
        "timed_out": timed_out,
        "phase": phase,  # the last phase the worker reported; None if it reported none
        "stderr_tail": tail,
    }
    return res


# --- the child side ---------------------------------------------------------------------


def _engine_of(path: str, engine: str | None) -> str | None:
    """The engine this request will load, when known without verifying the artifact: the one
    asked for, or the one its model file's header or its manifest's "format" names. None when
    unsure (or unknown: the real load says so); the engine is then imported inside the
    "loading the artifact" phase, which blames neither the engine nor the model alone."""
    if engine:
        return engine if engine in ("onnx", "litert", "executorch") else None
    from pathlib import Path

    from edgerun._jsonio import MANIFEST_MAX_BYTES, read_json
    from edgerun.artifact import MANIFEST_SUFFIX, sniff_format
    from edgerun.errors import ArtifactError

    p = Path(path)
    try:
        if p.is_dir():
            manifests = list(p.glob("*" + MANIFEST_SUFFIX))
            p = manifests[0] if len(manifests) == 1 else p
        if p.name.endswith(MANIFEST_SUFFIX):
            fmt = read_json(p, what="manifest", error=ArtifactError, max_bytes=MANIFEST_MAX_BYTES).get("format")
        else:
            fmt = sniff_format(p)
    except Exception:  # the real load reports what is wrong with the artifact, in its own words
        return None
    return {"onnx": "onnx", "tflite": "litert", "pte": "executorch"}.get(fmt) if isinstance(fmt, str) else None


def _import_engine(engine: str, send: Callable[[dict[str, Any]], None]) -> None:
    """Import the engine in a phase of its own: an engine that dies on import must not be taken
    for a model that crashed it. A missing engine is left for the real load to report."""
    from edgerun.errors import EdgerunError

    label = {"onnx": "onnxruntime", "executorch": "ExecuTorch"}.get(engine, "LiteRT")
    send({"type": "phase", "phase": IMPORTING, "engine": label})
    with contextlib.suppress(EdgerunError, ImportError):
        if engine == "onnx":
            from edgerun.engines.onnx import _ort

            _ort()
        elif engine == "executorch":  # executorch.runtime imports torch: seconds, before the model is read
            from edgerun.engines.executorch import _runtime

            _runtime()
        else:
            from edgerun.engines.litert import interpreter_module

            interpreter_module()


def _child(request: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    from edgerun.bench.result import bench_one
    from edgerun.bench.runner import BenchConfig
    from edgerun.budget import Budget
    from edgerun.profiles import load_profile

    profile = load_profile(request["profile"]) if request.get("profile") else None
    config = BenchConfig(**{**request["config"], "providers": tuple(request["config"].get("providers", ()))})
    budget = Budget(**request["budget"])
    engine = _engine_of(request["path"], config.engine)
    if engine is not None:
        _import_engine(engine, send)
    send({"type": "phase", "phase": PREPARING})
    current = [PREPARING]
    steps = {**_RUNNER_PHASES, "load": CREATING if engine is not None else LOADING}

    def progress(phase: str, fraction: float) -> None:
        step = steps.get(phase)
        if step is not None and step != current[0]:  # before the step runs: a crash in it names it
            current[0] = step
            send({"type": "phase", "phase": step})
        send({"type": "progress", "phase": phase, "fraction": fraction})

    send(
        {
            "type": "result",
            "result": bench_one(
                request["path"],
                config,
                profile,
                budget,
                request["profile_reason"],
                progress,
                notice=lambda text: send({"type": "notice", "text": text}),
            ),
        }
    )


def _die_with_parent() -> None:
    """A daemon thread that kills this worker's process group once its parent is gone."""
    import threading

    try:
        parent = int(os.environ.get(PARENT_ENV, ""))
    except ValueError:
        parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(PARENT_POLL_S)
        if os.getpgid(0) == os.getpid():  # our own group (run_in_worker's new session): anything we started too
            with contextlib.suppress(OSError):
                os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)  # not a group leader (started by hand): this process only

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve_one_request(
    argv: list[str] | None,
    child: Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], None],
    description: str,
    failed_phase: str,
) -> int:
    """A worker process's main: read one JSON request on stdin, run ``child(request, send)``, whose
    messages go as JSON lines to ``--result-fd``; an exception becomes an error result naming
    ``failed_phase``, so the parent always gets an answer. The bench worker and the update
    acceptance worker (edgerun/update/accept.py) both run this way."""
    _die_with_parent()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--result-fd", type=int, required=True)
    args = parser.parse_args(argv)
    out = os.fdopen(args.result_fd, "w", buffering=1, encoding="utf-8")

    def send(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg) + "\n")

    request: dict[str, Any] = {}
    try:
        request = json.loads(sys.stdin.read())
        child(request, send)
    except Exception as exc:  # report, don't just die: the parent shows this to the user
        traceback.print_exc()
        from edgerun.bench.result import error_result

        send({"type": "result", "result": error_result(str(request.get("path", "?")), exc, None, failed_phase)})
    out.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve_one_request(
        argv, _child, "edgerun benchmark worker (started by `edgerun bench`)", "the worker failed before benchmarking"
    )


if __name__ == "__main__":
    sys.exit(main())
