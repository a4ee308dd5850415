"""Target addresses: ``local``, ``ssh://[user@]host[:port]``, ``adb://[serial]``, with typed options.

Options come from the URL's query string (``ssh://pi@pi5?python=/opt/venv/bin/python``) or,
in a lab plan, from the target's TOML table; both use the same keys (docs/lab.md):

==================== ====== ===============================================================
key                  kinds  meaning
==================== ====== ===============================================================
python               all    interpreter that has edgerun on the device (default: the venv
                            ``target setup`` made, ``<workdir>/venv/bin/python``; local:
                            this Python; adb: none, so the native runner is used)
workdir              all    where artifacts and results go on the device (ssh: ``.edgerun``
                            under the login directory; adb: ``/data/local/tmp/edgerun``)
connect_timeout_s    all    seconds to wait for a connection (default 10)
ssh_config           ssh    an ssh_config file (``ssh -F``); default: the user's own
identity_file        ssh    a private key (``ssh -i``); default: ssh_config, agent, ~/.ssh
alive_interval_s     ssh    ServerAliveInterval; 3 unanswered = link dropped (default 5)
runner               adb,   ``edgerun`` (Python on the device, e.g. Termux) or ``native``
                     ssh    (ssh: ``trtexec`` benchmarks ONNX artifacts, e.g. on a Jetson)
benchmark_model      adb    path of LiteRT/TFLite ``benchmark_model`` on the device
onnxruntime_perf_test adb   path of ``onnxruntime_perf_test`` on the device
trtexec              ssh    path of TensorRT's ``trtexec`` on the device (JetPack:
                            ``/usr/src/tensorrt/bin/trtexec``); used with ``runner=native``
trtexec_precision    ssh    ``fp16``, ``int8`` or ``fp16,int8``: trtexec's ``--fp16`` /
                            ``--int8`` (default: none, FP32 kernels)
taskset              adb    CPU mask (hex) to pin the benchmark to, e.g. ``f0`` = big cores
power                adb    ``auto`` (ODPM, else battery gauge), ``off``, or a probe name
adb                  adb    the adb client executable (default ``adb``)
server_port          adb    the adb server's port (``adb -P``; default: adb's own, 5037)
server_host          adb    the adb server's host (``adb -H``; default: this machine's; a lab's
                            phones hang off an adb server on the exporter host, docs/lab.md)
==================== ====== ===============================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from edgerun.errors import UsageError

__all__ = ["KINDS", "RUNNERS", "TRTEXEC_PRECISIONS", "TargetOptions", "TargetSpec", "parse_target"]

KINDS = ("local", "ssh", "adb")
RUNNERS = ("edgerun", "native")
TRTEXEC_PRECISIONS = ("fp16", "int8", "fp16,int8")  # "," not "+": a URL query reads "+" as a space
_ONLY = {
    "ssh_config": "ssh",
    "identity_file": "ssh",
    "alive_interval_s": "ssh",
    "runner": "adb/ssh",
    "trtexec": "ssh",
    "trtexec_precision": "ssh",
    "benchmark_model": "adb",
    "onnxruntime_perf_test": "adb",
    "taskset": "adb",
    "power": "adb",
    "adb": "adb",
    "server_port": "adb",
    "server_host": "adb",
}


@dataclass(frozen=True)
class TargetOptions:
    """Per-target settings (see the module docstring); None means "the kind's default"."""

    python: str | None = None
    workdir: str | None = None
    connect_timeout_s: float = 10.0
    ssh_config: str | None = None
    identity_file: str | None = None
    alive_interval_s: float = 5.0
    runner: str | None = None
    benchmark_model: str | None = None
    onnxruntime_perf_test: str | None = None
    trtexec: str | None = None
    trtexec_precision: str | None = None
    taskset: str | None = None
    power: str = "auto"
    adb: str = "adb"
    server_port: int | None = None
    server_host: str | None = None

    def __post_init__(self) -> None:
        if self.connect_timeout_s <= 0 or self.alive_interval_s <= 0:
            raise UsageError(
                f"connect_timeout_s and alive_interval_s must be > 0 seconds, "
                f"got {self.connect_timeout_s} and {self.alive_interval_s}"
            )
        if self.runner is not None and self.runner not in RUNNERS:
            raise UsageError(f"target option runner must be one of {RUNNERS}, got {self.runner!r}")
        if self.trtexec_precision is not None and self.trtexec_precision not in TRTEXEC_PRECISIONS:
            raise UsageError(
                f"target option trtexec_precision must be one of {TRTEXEC_PRECISIONS}, got {self.trtexec_precision!r}"
            )
        if self.taskset is not None:
            try:
                int(self.taskset, 16)
            except ValueError:
                raise UsageError(
                    f"target option taskset must be a hex CPU mask like 'f0', got {self.taskset!r}"
                ) from None


_FIELDS = {f.name: f for f in dataclasses.fields(TargetOptions)}


def _coerce(key: str, value: Any) -> Any:
    kind = str(_FIELDS[key].type)
    try:
        if "float" in kind:
            return float(value)
        if "int" in kind:
            return int(value)
    except (TypeError, ValueError):
        raise UsageError(f"target option {key} must be a number, got {value!r}") from None
    if not isinstance(value, str):
        raise UsageError(f"target option {key} must be a string, got {value!r}")
    return value


def options_from(kind: str, values: Mapping[str, Any]) -> TargetOptions:
    """Typed options from a query string or TOML table; unknown keys or keys of another kind are errors."""
    out = {}
    for key, value in values.items():
        if key not in _FIELDS:
            raise UsageError(f"unknown target option {key!r}; known: {', '.join(sorted(_FIELDS))}")
        only = _ONLY.get(key)
        if only is not None and kind not in only.split("/"):
            raise UsageError(f"target option {key!r} applies to {only} targets, not {kind}")
        out[key] = _coerce(key, value)
    return TargetOptions(**out)


@dataclass(frozen=True)
class TargetSpec:
    """Where a job runs. ``host`` is the ssh host (or ssh_config alias), or the adb serial ("" = the only device)."""

    kind: str
    host: str = ""
    user: str | None = None
    port: int | None = None
    options: TargetOptions = TargetOptions()
    name: str = ""

    @property
    def url(self) -> str:
        """The address without options, as it is shown in results and reports."""
        if self.kind == "local":
            return "local://"
        if self.kind == "adb":
            return f"adb://{self.host}"
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"ssh://{user}{self.host}{port}"

    @property
    def label(self) -> str:
        return self.name or self.url

    def with_options(self, **changes: Any) -> TargetSpec:
        """A copy with some options replaced (None values are ignored: "not given")."""
        given = {k: v for k, v in changes.items() if v is not None}
        merged = options_from(self.kind, {**_explicit(self.options), **given})
        return dataclasses.replace(self, options=merged)


def _explicit(options: TargetOptions) -> dict[str, Any]:
    defaults = TargetOptions()
    return {k: v for k, v in dataclasses.asdict(options).items() if v != getattr(defaults, k)}


def parse_target(url: str, name: str = "", extra: Mapping[str, Any] | None = None) -> TargetSpec:
    """Parse a target address; ``extra`` options (a TOML table) override the query string's.

    Raises ValueError naming what was wrong and what was expected.
    """
    text = url.strip()
    parts = urlsplit("local://" if text == "local" else text)
    if parts.scheme not in KINDS:
        raise UsageError(f"target {url!r}: expected local, ssh://[user@]host[:port] or adb://[serial]")
    query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    options = options_from(parts.scheme, {**query, **dict(extra or {})})
    if parts.scheme == "local":
        if parts.netloc or parts.path not in ("", "/"):
            raise UsageError(f"target {url!r}: local takes no host or path (use ?workdir=...)")
        return TargetSpec("local", options=options, name=name)
    netloc = unquote(parts.netloc)  # not .hostname: adb serials are case-sensitive
    if parts.path not in ("", "/"):
        raise UsageError(f"target {url!r}: no path expected after the host (use ?workdir=... for a directory)")
    if parts.scheme == "adb":
        return TargetSpec("adb", host=netloc, options=options, name=name)
    user, _, hostport = netloc.rpartition("@")
    host, _, port = hostport.partition(":")
    if not host:
        raise UsageError(f"target {url!r}: expected ssh://[user@]host[:port], the host is missing")
    if port and not port.isdigit():
        raise UsageError(f"target {url!r}: the port must be a number, got {port!r}")
    return TargetSpec("ssh", host=host, user=user or None, port=int(port) if port else None, options=options, name=name)
