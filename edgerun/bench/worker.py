"""Crash-isolated benchmark workers (pyperf style).

Each artifact is benchmarked in a fresh ``python -m edgerun.bench.worker``
process. The parent sends one JSON request on the worker's stdin; the worker
answers with JSON lines on a dedicated pipe (``--result-fd``): progress
messages, then exactly one result. The worker's own stdout and stderr go to a
temporary file, because native engines print there (``INFO: Created
TensorFlow Lite XNNPACK delegate``) and a crash report lands there too.

The parent enforces a wall-clock timeout. A worker that dies by a signal
(SIGSEGV from a malformed model, SIGABRT, SIGKILL from the out-of-memory
killer), exits without a result, prints garbage on the result pipe, or hangs,
becomes an ``error`` result with its exit status or signal and the tail of its
stderr; the rest of a multi-artifact run goes on.
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

Progress = Callable[[str, float], None]


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


def _worker_argv(result_fd: int) -> list[str]:
    return [sys.executable, "-m", "edgerun.bench.worker", "--result-fd", str(result_fd)]


def run_in_worker(
    request: WorkerRequest,
    timeout_s: float,
    progress: Progress | None = None,
    argv: Callable[[int], Sequence[str]] = _worker_argv,
) -> dict[str, Any]:
    """Benchmark one artifact in a child process; always returns a result dict (ok or error).

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
            messages, timed_out = _read_messages(read_fd, monotonic() + timeout_s, progress)
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


def _read_messages(fd: int, deadline: float, progress: Progress | None) -> tuple[list[dict[str, Any]], bool]:
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
    if timed_out:
        kind, message = "WorkerTimeout", f"the benchmark did not finish within {timeout_s:g} s and was killed"
    elif status < 0:
        sig = signal.Signals(-status).name
        kind = "WorkerCrashed"
        message = f"the worker died from {sig}"
        if sig == "SIGKILL":
            message += " (often the out-of-memory killer: check `dmesg` and the device's RAM)"
        elif sig in ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL", "SIGFPE"):
            message += " inside native code: the engine crashed on this artifact (a malformed model can do this)"
    else:
        kind = "WorkerCrashed"
        garbage = [m["text"] for m in messages if m.get("type") == "garbage"]
        message = f"the worker exited with status {status} without a result"
        if garbage:
            message += f"; it wrote unreadable output: {garbage[0]!r}"
    res = error_result(request.path, RuntimeError(message), None, request.profile_reason)
    res["error"]["type"] = kind
    res["profile"]["name"] = request.profile
    res["worker"] = {
        "exit_status": None if timed_out else status,
        "signal": sig,
        "timed_out": timed_out,
        "stderr_tail": tail,
    }
    return res


# --- the child side ---------------------------------------------------------------------


def _child(request: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    from edgerun.bench.result import bench_one
    from edgerun.bench.runner import BenchConfig
    from edgerun.budget import Budget
    from edgerun.profiles import load_profile

    profile = load_profile(request["profile"]) if request.get("profile") else None
    config = BenchConfig(**{**request["config"], "providers": tuple(request["config"].get("providers", ()))})
    budget = Budget(**request["budget"])
    progress = lambda phase, f: send({"type": "progress", "phase": phase, "fraction": f})  # noqa: E731
    send(
        {
            "type": "result",
            "result": bench_one(request["path"], config, profile, budget, request["profile_reason"], progress),
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="edgerun benchmark worker (started by `edgerun bench`)")
    parser.add_argument("--result-fd", type=int, required=True)
    args = parser.parse_args(argv)
    out = os.fdopen(args.result_fd, "w", buffering=1, encoding="utf-8")

    def send(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg) + "\n")

    request: dict[str, Any] = {}
    try:
        request = json.loads(sys.stdin.read())
        _child(request, send)
    except Exception as exc:  # report, don't just die: the parent shows this to the user
        traceback.print_exc()
        from edgerun.bench.result import error_result

        path = str(request.get("path", "?"))
        send({"type": "result", "result": error_result(path, exc, None, "the worker failed before benchmarking")})
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
