"""Device profiles: what a class of edge device is, read from its TOML file.

A profile is a TOML file in ``device_profiles/`` (shipped inside the wheel as
``edgerun/device_profiles``) describing one device class: CPU, RAM, accelerators,
the preferred inference engine and its providers, the latency budgets, model
size limits, where the power and thermal sensors live, and a two-point power
model for *labelled estimates* when no sensor is present.

TOML keys carry human units (``ram_mb``, ``model_size_mb``, ``idle_w``); the
dataclasses here carry bytes (``ram_bytes``, ``model_size_limit_bytes``).
``ram_mb`` is MiB (2**20 bytes: RAM is sold in binary units, "8 GB" = 8192);
``model_size_*_mb`` is decimal MB (10**6 bytes), as app stores report file sizes
and as ``edgerun.budget.judge_size`` reports them. ``flash_kb`` (optional, microcontroller
profiles) is KiB, as MCU data sheets count flash ("1 MB" = 1024 KB): ``flash_bytes``.

Which profile describes the machine we are running on is ``edgerun.detection``'s
job (``detect()``); the names it used to have here still resolve, lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from edgerun._tomlio import read_toml
from edgerun.budget import Budget
from edgerun.errors import ProfileError

__all__ = [
    "EXECUTORCH_PROVIDERS",
    "GENERIC_PROFILE",
    "LITERT_PROVIDERS",
    "ONNX_PROVIDERS",
    "DeviceProfile",
    "EngineConfig",
    "ModelSizeLimits",
    "PowerModel",
    "PowerSensors",
    "ThermalSensors",
    "list_profiles",
    "load_profile",
    "profile_dir",
    "profile_names",
]

# Format history: 1 = first version (this file).
SCHEMA_VERSION = 1
GENERIC_PROFILE = "generic-x86_64-linux"
DEVICE_CLASSES = ("sbc", "jetson", "phone", "wearable", "poc", "host")
ENGINES = ("onnx", "litert", "executorch")
# Provider names a profile may list, as the engines spell them (edgerun.engines.onnx
# PROVIDER_ALIASES; edgerun.engines.litert; edgerun.engines.executorch BACKEND_ALIASES),
# compared case-insensitively. Besides these, onnx takes full "...ExecutionProvider" names,
# litert takes "delegate:/path/to/libdelegate.so" (GPU, NNAPI, NPU vendor delegates) and
# executorch takes backend ids ("XnnpackBackend", "QnnBackend": `edgerun doctor` lists this runtime's).
ONNX_PROVIDERS = (
    "CPU", "XNNPACK", "CUDA", "TensorRT", "NNAPI", "CoreML", "QNN", "OpenVINO", "DNNL",
    "ACL", "ArmNN", "ROCm", "MIGraphX", "DML", "WebGPU",
)  # fmt: skip
LITERT_PROVIDERS = ("XNNPACK", "CPU")
EXECUTORCH_PROVIDERS = ("XNNPACK", "QNN", "OpenVINO", "CPU")
_MIB = 1024 * 1024  # ram_mb
_MB = 1_000_000  # model_size_*_mb


@dataclass(frozen=True)
class EngineConfig:
    """Which inference engine to use, and its providers as alternatives, best first.

    The list is a preference order, not a set to combine: a selector takes the first
    one this machine has (for LiteRT, "XNNPACK" and "CPU" even exclude each other).
    """

    preferred: str  # "onnx" | "litert" | "executorch"
    providers: tuple[str, ...]
    threads: int


@dataclass(frozen=True)
class ModelSizeLimits:
    """Model file size: a hard limit and the size to aim for."""

    model_size_limit_bytes: int
    model_size_ideal_bytes: int


@dataclass(frozen=True)
class PowerSensors:
    """Where the device's power can be measured: probe names and how to read them."""

    probes: tuple[str, ...]
    notes: str = ""


@dataclass(frozen=True)
class ThermalSensors:
    """Thermal zone files (glob patterns allowed, millidegrees C) and the throttle check."""

    zones: tuple[str, ...]
    throttle: str | None = None


@dataclass(frozen=True)
class PowerModel:
    """Two-point power model: P = idle_w + load * (busy_w - idle_w). Only for labelled estimates."""

    idle_w: float
    busy_w: float


@dataclass(frozen=True)
class DeviceProfile:
    """One device class, as read from its TOML file (units in field names)."""

    name: str
    description: str
    device_class: str  # TOML key "class": sbc | jetson | phone | wearable | poc | host
    architecture: str
    cores: int
    cpu: str
    ram_bytes: int
    accelerators: tuple[str, ...]
    batch_size: int
    engine: EngineConfig
    budget: Budget
    limits: ModelSizeLimits
    power: PowerSensors
    thermal: ThermalSensors
    power_model: PowerModel
    flash_bytes: int | None = None  # on-chip program flash of an MCU (``edgerun mcu check``); None: not stated
    schema_version: int = SCHEMA_VERSION
    source: Path | None = field(default=None, compare=False)


# --------------------------------------------------------------------------- loading


def profile_dir() -> Path:
    """The folder of shipped profiles: inside the package (wheel), else the repo's top level."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "device_profiles", here.parent / "device_profiles"):
        if candidate.is_dir():
            return candidate
    raise ProfileError(f"no device_profiles folder found beside {here} or in {here.parent}")


def profile_names() -> list[str]:
    """Names of the shipped profiles, sorted (cheap: reads no file)."""
    return sorted(path.stem for path in profile_dir().glob("*.toml"))


def list_profiles() -> list[DeviceProfile]:
    """Every shipped profile, loaded and validated, sorted by name."""
    return [load_profile(name) for name in profile_names()]


def load_profile(name_or_path: str | os.PathLike[str]) -> DeviceProfile:
    """Load a shipped profile by name, or a user's own TOML file by path."""
    text = os.fspath(name_or_path)
    is_path = isinstance(name_or_path, os.PathLike) or text.endswith(".toml") or "/" in text
    if is_path:
        path = Path(text)
        if not os.path.exists(path):  # not Path.exists: it raises for a name too long for the OS
            raise ProfileError(f"device profile file {path} does not exist")
    else:
        path = profile_dir() / f"{text}.toml"
        if text not in profile_names():  # a name, never a path: no filesystem error can come of it
            known = ", ".join(profile_names())
            raise ProfileError(f"unknown device profile {text!r}; known profiles: {known}")
    # size-capped; nan/inf, integers past 64 bits and deep nesting are ProfileErrors naming the key
    data = read_toml(path, ProfileError, what="device profile")
    return _parse_profile(_Table(data, str(path)), path)


_MISSING: Any = object()


class _Table:
    """One TOML table being read; every error names the file and the dotted key."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str = "") -> None:
        self._data, self._source, self._prefix = data, source, prefix
        self._read: set[str] = set()

    def fail(self, key: str, expected: str, value: Any = _MISSING) -> NoReturn:
        got = "it is missing" if value is _MISSING else f"got {value!r}"
        raise ProfileError(f"{self._source}: key '{self._prefix}{key}': expected {expected}, {got}")

    def _get(self, key: str, expected: str, ok: Callable[[Any], bool], default: Any) -> Any:
        self._read.add(key)
        if key not in self._data and default is not _MISSING:
            return default
        value = self._data.get(key, _MISSING)
        if value is _MISSING or not ok(value):
            self.fail(key, expected, value)
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        def ok(v: Any) -> bool:
            return isinstance(v, str) and v != ""

        return self._get(key, "a non-empty string", ok, default)

    def integer(self, key: str, minimum: int = 1, default: Any = _MISSING) -> int:
        def ok(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= minimum

        return self._get(key, f"an integer >= {minimum}", ok, default)

    def number(self, key: str, minimum: float = 0.0, default: Any = _MISSING) -> float:
        def ok(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= minimum

        return float(self._get(key, f"a number >= {minimum:g}", ok, default))

    def texts(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        def ok(v: Any) -> bool:
            return isinstance(v, list) and all(isinstance(item, str) and item for item in v)

        return tuple(self._get(key, "a list of non-empty strings", ok, default))

    def table(self, key: str, required: bool = True) -> _Table:
        default = _MISSING if required else {}
        data = self._get(key, "a table", lambda v: isinstance(v, dict), default)
        return _Table(data, self._source, f"{self._prefix}{key}.")

    def finish(self) -> None:
        """Refuse keys nobody read: a typo must not silently become a default."""
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read))
            key = f"{self._prefix}{unknown[0]}"
            raise ProfileError(f"{self._source}: unknown key '{key}' (known keys here: {known})")


def _parse_profile(top: _Table, path: Path) -> DeviceProfile:
    version = top.integer("schema_version")
    if version != SCHEMA_VERSION:
        top.fail("schema_version", f"{SCHEMA_VERSION} (the version this edgerun reads)", version)
    device_class = top.text("class")
    if device_class not in DEVICE_CLASSES:
        top.fail("class", "one of " + ", ".join(DEVICE_CLASSES), device_class)
    profile = DeviceProfile(
        name=top.text("name"),
        description=top.text("description"),
        device_class=device_class,
        architecture=top.text("architecture"),
        cores=top.integer("cores"),
        cpu=top.text("cpu"),
        ram_bytes=round(top.number("ram_mb", minimum=0.001) * _MIB),
        accelerators=top.texts("accelerators", default=[]),
        batch_size=top.integer("batch_size", default=1),
        engine=_parse_engine(top.table("engine")),
        budget=_parse_budget(top.table("budget", required=False)),
        limits=_parse_limits(top.table("limits")),
        power=_parse_power(top.table("power")),
        thermal=_parse_thermal(top.table("thermal")),
        power_model=_parse_power_model(top.table("power_model")),
        flash_bytes=_kib(top.integer("flash_kb", default=None)),
        schema_version=version,
        source=path,
    )
    top.finish()
    return profile


def _kib(kib: int | None) -> int | None:
    return None if kib is None else kib * 1024


def _parse_engine(table: _Table) -> EngineConfig:
    preferred = table.text("preferred")
    if preferred not in ENGINES:
        table.fail("preferred", "one of " + ", ".join(ENGINES), preferred)
    providers = table.texts("providers")
    if not providers or not all(_is_provider(preferred, p) for p in providers):
        if preferred == "onnx":
            expected = ", ".join(ONNX_PROVIDERS) + " or a full '...ExecutionProvider' name"
        elif preferred == "executorch":
            expected = ", ".join(EXECUTORCH_PROVIDERS) + " or a backend id such as 'XnnpackBackend'"
        else:
            expected = ", ".join(LITERT_PROVIDERS) + " or 'delegate:/path/to/lib.so'"
        table.fail("providers", f"a non-empty list of {expected}", list(providers))
    engine = EngineConfig(preferred, providers, table.integer("threads"))
    table.finish()
    return engine


def _is_provider(engine: str, name: str) -> bool:
    if engine == "onnx":
        full_name = name.endswith("ExecutionProvider")
        return full_name or name.lower() in {k.lower() for k in ONNX_PROVIDERS}
    if engine == "executorch":
        backend_id = name.endswith("Backend") and len(name) > len("Backend")
        return backend_id or name.lower() in {k.lower() for k in EXECUTORCH_PROVIDERS}
    delegate = name.startswith("delegate:") and len(name) > len("delegate:")
    return delegate or name.lower() in {k.lower() for k in LITERT_PROVIDERS}


def _parse_budget(table: _Table) -> Budget:
    defaults = Budget()
    soft_ms = table.number("soft_ms", minimum=0.001, default=defaults.soft_ms)
    hard_ms = table.number("hard_ms", minimum=0.001, default=defaults.hard_ms)
    percentile = table.number("percentile", minimum=0.001, default=defaults.percentile)
    if percentile >= 100:
        table.fail("percentile", "a number in (0, 100)", percentile)
    table.finish()
    return Budget(soft_ms=soft_ms, hard_ms=hard_ms, percentile=percentile)


def _parse_limits(table: _Table) -> ModelSizeLimits:
    limit_mb = table.number("model_size_mb", minimum=0.001)
    ideal_mb = table.number("model_size_ideal_mb", minimum=0.001)
    if ideal_mb > limit_mb:
        table.fail("model_size_ideal_mb", f"at most model_size_mb ({limit_mb:g})", ideal_mb)
    table.finish()
    return ModelSizeLimits(round(limit_mb * _MB), round(ideal_mb * _MB))


def _parse_power(table: _Table) -> PowerSensors:
    power = PowerSensors(probes=table.texts("probes"), notes=table.text("notes", default=""))
    table.finish()
    return power


def _parse_thermal(table: _Table) -> ThermalSensors:
    thermal = ThermalSensors(zones=table.texts("zones"), throttle=table.text("throttle", None))
    table.finish()
    return thermal


def _parse_power_model(table: _Table) -> PowerModel:
    idle_w = table.number("idle_w")
    busy_w = table.number("busy_w")
    if busy_w < idle_w:
        table.fail("busy_w", f"at least idle_w ({idle_w:g})", busy_w)
    table.finish()
    return PowerModel(idle_w=idle_w, busy_w=busy_w)
