"""Device profiles: what a class of edge device is, and which one we are running on.

A profile is a TOML file in ``device_profiles/`` (shipped inside the wheel as
``edgerun/device_profiles``) describing one device class: CPU, RAM, accelerators,
the preferred inference engine and its providers, the latency budgets, model
size limits, where the power and thermal sensors live, and a two-point power
model for *labelled estimates* when no sensor is present.

TOML keys carry human units (``ram_mb``, ``model_size_mb``, ``idle_w``); the
dataclasses here carry bytes (``ram_bytes``, ``model_size_limit_bytes``).
``ram_mb`` is MiB (2**20 bytes: RAM is sold in binary units, "8 GB" = 8192);
``model_size_*_mb`` is decimal MB (10**6 bytes), as app stores report file sizes
and as ``edgerun.budget.judge_size`` reports them.

``detect()`` reads a few cheap markers (``/proc/device-tree/model``,
``/etc/nv_tegra_release``, Android's ``getprop``) and returns the matching
profile with a one-sentence reason; anything unrecognised falls back to the
generic host profile, and the reason says so.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from edgerun.budget import Budget
from edgerun.errors import ProfileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "GENERIC_PROFILE",
    "LITERT_PROVIDERS",
    "ONNX_PROVIDERS",
    "CommandRunner",
    "Detection",
    "DeviceProfile",
    "EngineConfig",
    "ModelSizeLimits",
    "PowerModel",
    "PowerSensors",
    "ThermalSensors",
    "detect",
    "list_profiles",
    "load_profile",
    "profile_dir",
    "profile_names",
    "run_local",
]

# Format history: 1 = first version (this file).
SCHEMA_VERSION = 1
GENERIC_PROFILE = "generic-x86_64-linux"
DEVICE_CLASSES = ("sbc", "jetson", "phone", "wearable", "poc", "host")
ENGINES = ("onnx", "litert")
# Provider names a profile may list, as the engines spell them (edgerun.engines.onnx
# PROVIDER_ALIASES; edgerun.engines.litert), compared case-insensitively. Besides
# these, onnx takes full "...ExecutionProvider" names and litert takes
# "delegate:/path/to/libdelegate.so" (GPU, NNAPI, NPU vendor delegates).
ONNX_PROVIDERS = (
    "CPU", "XNNPACK", "CUDA", "TensorRT", "NNAPI", "CoreML", "QNN", "OpenVINO", "DNNL",
    "ACL", "ArmNN", "ROCm", "MIGraphX", "DML", "WebGPU",
)  # fmt: skip
LITERT_PROVIDERS = ("XNNPACK", "CPU")
_MIB = 1024 * 1024  # ram_mb
_MB = 1_000_000  # model_size_*_mb

# A callable that runs argv (on this machine, or later over ADB/SSH) and returns its
# stdout, or None when the command is missing or fails.
CommandRunner = Callable[[Sequence[str]], "str | None"]


@dataclass(frozen=True)
class EngineConfig:
    """Which inference engine to use, and its providers as alternatives, best first.

    The list is a preference order, not a set to combine: a selector takes the first
    one this machine has (for LiteRT, "XNNPACK" and "CPU" even exclude each other).
    """

    preferred: str  # "onnx" | "litert"
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
    schema_version: int = SCHEMA_VERSION
    source: Path | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Detection:
    """The profile detect() chose and a human sentence saying why."""

    profile: DeviceProfile
    reason: str


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
        if not path.is_file():
            raise ProfileError(f"device profile file {path} does not exist")
    else:
        path = profile_dir() / f"{text}.toml"
        if not path.is_file():
            known = ", ".join(profile_names())
            raise ProfileError(f"unknown device profile {text!r}; known profiles: {known}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read device profile: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
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
        schema_version=version,
        source=path,
    )
    top.finish()
    return profile


def _parse_engine(table: _Table) -> EngineConfig:
    preferred = table.text("preferred")
    if preferred not in ENGINES:
        table.fail("preferred", "one of " + ", ".join(ENGINES), preferred)
    providers = table.texts("providers")
    if not providers or not all(_is_provider(preferred, p) for p in providers):
        if preferred == "onnx":
            expected = ", ".join(ONNX_PROVIDERS) + " or a full '...ExecutionProvider' name"
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


# --------------------------------------------------------------------------- detection

# A probe's answer: (profile name or None when recognised but unsupported, reason).
_Finding = tuple["str | None", str]
_PI_MODEL = re.compile(r"^(?:Raspberry Pi (?:Compute Module )?|Compute Module )(\d)")
_PI_PROFILES = {"4": "raspberry-pi-4", "5": "raspberry-pi-5"}
_L4T_RELEASE = re.compile(r"^# R(\d+) \(release\), REVISION: ([\d.]+)(?:.*?BOARD: (\w+))?")
_ORIN_NANO_MODULE = re.compile(r"nvidia,p3767-000[345]\b")  # Orin Nano 8GB/4GB/devkit SKUs


def run_local(argv: Sequence[str], timeout_s: float = 5.0) -> str | None:
    """Run argv on this machine; its stdout, or None when missing, failing or too slow."""
    if not argv or shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _no_commands(argv: Sequence[str]) -> str | None:
    return None


def detect(
    root: str | os.PathLike[str] = "/",
    run: CommandRunner | None = None,
    machine: str | None = None,
) -> Detection:
    """Pick the shipped profile for the device under ``root`` and say why.

    ``run`` answers commands such as ``getprop``; by default it runs them locally,
    but only when ``root`` is "/" (a fixture tree is not this machine). ``machine``
    is the CPU architecture for the fallback reason (default: ``platform.machine()``).
    """
    root_path = Path(root)
    runner: CommandRunner = run or (run_local if root_path.resolve() == Path("/") else _no_commands)
    notes: list[str] = []
    probes: list[Callable[[], _Finding | None]] = [
        lambda: _detect_raspberry_pi(root_path),
        lambda: _detect_jetson(root_path),
        lambda: _detect_android(runner),  # last: it runs commands, the others read files
    ]
    for probe in probes:
        finding = probe()
        if finding is None:
            continue
        name, reason = finding
        if name is not None:
            return Detection(load_profile(name), reason)
        notes.append(reason)
    return _fallback(root_path, notes, machine or platform.machine())


def _read_marker(path: Path) -> str | None:
    """A sysfs/procfs text file without its trailing NUL (device-tree strings end with one)."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace").strip("\0 \n")
    except OSError:
        return None


def _compatible(root: Path) -> list[str]:
    text = _read_marker(root / "proc/device-tree/compatible") or ""
    return [entry for entry in text.split("\0") if entry]


def _detect_raspberry_pi(root: Path) -> _Finding | None:
    model_path = root / "proc/device-tree/model"
    model = _read_marker(model_path)
    if not model or not (model.startswith(("Raspberry Pi", "Compute Module"))):
        return None
    match = _PI_MODEL.match(model)
    name = _PI_PROFILES.get(match.group(1)) if match else None
    if name is None:
        return None, f"found '{model}' in {model_path}, a Raspberry Pi with no shipped profile"
    return name, f"found '{model}' in {model_path}"


def _parse_l4t(release_path: Path) -> tuple[int, str, str] | None:
    """(major, revision, board) from nv_tegra_release's first line, e.g. (36, '4.3', 'generic')."""
    text = _read_marker(release_path)
    match = _L4T_RELEASE.match(text or "")
    if match is None:
        return None
    return int(match.group(1)), match.group(2), match.group(3) or "unknown"


def _detect_jetson(root: Path) -> _Finding | None:
    release_path = root / "etc/nv_tegra_release"
    l4t = _parse_l4t(release_path)
    compatible = _compatible(root)
    soc = next((c.split(",", 1)[1] for c in compatible if c.startswith("nvidia,tegra")), None)
    if l4t is None and soc is None:
        return None
    model = _read_marker(root / "proc/device-tree/model") or None
    facts = [f"'{model}'" if model else "(no device-tree model)"]
    if l4t is not None:
        facts.append(f"L4T R{l4t[0]}.{l4t[1]} (BOARD {l4t[2]}) in {release_path}")
    if soc is not None:
        facts.append(f"'nvidia,{soc}' in {root / 'proc/device-tree/compatible'}")
    found = "found Jetson " + ", ".join(facts)
    # R32 is JetPack 4 (Nano t210, TX2 t186, Xavier t194); R34-R36 are JetPack 5/6 (Orin
    # t234, whose BOARD reads t186ref or generic, so the major version decides); R38 is Thor.
    major, board = (l4t[0], l4t[2]) if l4t is not None else (0, "")
    is_nano = soc == "tegra210" or (soc is None and major == 32 and board.startswith("t210"))
    is_orin = soc == "tegra234" or (soc is None and 34 <= major <= 36)
    if is_nano:
        return "jetson-nano", found
    if not is_orin:
        return None, f"{found}: a Jetson with no shipped profile"
    return "jetson-orin-nano", found + _orin_module_note(model, compatible)


def _orin_module_note(model: str | None, compatible: list[str]) -> str:
    """Empty for an Orin Nano; otherwise why the Orin Nano profile stands in."""
    if (model and "Orin Nano" in model) or any(_ORIN_NANO_MODULE.search(c) for c in compatible):
        return ""
    stand_in = "so the smallest Orin profile stands in (conservative)"
    if model is None and not compatible:
        return f": which Orin module is unknown without the device tree, {stand_in}"
    return f": an Orin module other than the Orin Nano, {stand_in}"


def _getprop(run: CommandRunner, key: str) -> str:
    return (run(["getprop", key]) or "").strip()


def _detect_android(run: CommandRunner) -> _Finding | None:
    sdk = _getprop(run, "ro.build.version.sdk")
    if not sdk.isdigit():
        return None
    abi = _getprop(run, "ro.product.cpu.abi") or "unknown"
    model = _getprop(run, "ro.product.model") or "unknown model"
    found = f"getprop reports Android SDK {sdk}, ABI {abi}, model '{model}'"
    if "watch" in _getprop(run, "ro.build.characteristics").split(","):
        return "wearable-watch", f"{found}, and 'watch' in ro.build.characteristics (Wear OS)"
    if abi != "arm64-v8a":
        return "android-arm64-phone", (
            f"{found}; ABI {abi} is not arm64-v8a (an emulator or a 32-bit build?), "
            "so the arm64 phone profile is only the nearest match"
        )
    return "android-arm64-phone", found


def _fallback(root: Path, notes: list[str], machine: str) -> Detection:
    checked = f"{root / 'proc/device-tree/model'}, {root / 'etc/nv_tegra_release'}, getprop"
    if notes:
        why = "; ".join(notes)
    else:
        why = f"no Raspberry Pi, Jetson or Android markers found (checked {checked})"
    if machine in ("x86_64", "AMD64"):
        tail = f"using the generic host profile for this {machine} machine"
    else:
        tail = (
            f"no shipped profile matches this {machine or 'unknown-architecture'} machine, so "
            f"{GENERIC_PROFILE} is only a fallback: its architecture, cores, RAM and power "
            "model do not describe it; pass a profile TOML of your own for real numbers"
        )
    return Detection(load_profile(GENERIC_PROFILE), f"{why}; {tail}")
