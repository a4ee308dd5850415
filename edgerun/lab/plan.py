"""Lab plans: a TOML file naming artifacts, targets, option axes and repetitions (docs/lab.md).

    [lab]                 name, database (relative to the plan), repetitions
    [bench]               ``edgerun bench`` options for every job (``BenchOptions`` names)
    [matrix]              optional axes: threads = [1, 4], providers = ["CPU", "XNNPACK"], engines = ["onnx"]
    [[artifact]]          path = "models/ecg-int8.onnx" (relative to the plan)
    [targets.NAME]        url = "ssh://pi@pi5.local", any target option, cooldown_s, cooldown_c, cooldown_max_s
    [targets.NAME]        labgrid = "place-name" | {board = "rpi5"} (a labgrid place, or any place with these
                          tags), ssh options for its NetworkService, place_wait_s, boot_wait_s, power_off_s;
                          [lab] coordinator
    [targets.NAME]        labgrid = ..., tiny = {dataset = "DIR", iterations = 20, ...}: `serial tiny` on the
                          place's NetworkSerialPort (a wearable), one job per repetition

A labgrid target is a pool: each of its jobs runs once, on whichever matching place the
coordinator allocates (one worker per place: edgerun.lab.place_worker); its key names the
selector (``labgrid://rpi5-1``, ``labgrid://?board=rpi5``), not the place. A board that stops
answering is power-cycled through the place's power port and its job retried once; ``power_off_s``
is how long it stays off (labgrid-client's ``--delay``; default the driver's 2 s), ``boot_wait_s``
bounds the wait for it to answer again.

Jobs are the product artifacts x targets x threads x providers x engines x repetitions
(an engine axis skips artifacts of the other format). A job's key is a hash of
everything that makes its measurement what it is (plan name, the artifact's sha256,
target name and address, options, repetition), so a resumed run recognises finished
jobs, and changing an option makes new jobs instead of reusing old results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerun._tomlio import read_toml
from edgerun.errors import LabError
from edgerun.lab.plan_tiny import TinyJob, tiny_job_of
from edgerun.targets.options import BenchOptions
from edgerun.targets.spec import _ONLY, TargetSpec, parse_target

__all__ = ["Job", "Plan", "PlanTarget", "load_plan"]

_ENGINE_FORMAT = {"onnx": ".onnx", "litert": ".tflite"}
_COOLDOWN_KEYS = ("cooldown_s", "cooldown_c", "cooldown_max_s")
_LABGRID_KEYS = ("labgrid", "place_wait_s", "boot_wait_s", "power_off_s", "tiny")
DEFAULT_PLACE_WAIT_S = 600.0  # how long a labgrid place held by someone else is waited for
DEFAULT_BOOT_WAIT_S = 120.0  # how long a power-cycled board is waited for until it answers again
MAX_POWER_OFF_S = 600.0  # a power cycle's off time: long enough for any supply's capacitors to drain
_TAG = re.compile(r"[a-z][a-z0-9_]+")  # labgrid's TAG_KEY (labgrid/remote/common.py)


@dataclass(frozen=True)
class PlanTarget:
    """A target of the plan and how long it rests between jobs (seconds, degrees C)."""

    spec: TargetSpec
    cooldown_s: float | None = None
    cooldown_c: float | None = None
    cooldown_max_s: float = 300.0
    labgrid: dict[str, str] | None = None  # a labgrid reservation filter ({"name": place} or tags)
    place_wait_s: float = DEFAULT_PLACE_WAIT_S
    boot_wait_s: float = DEFAULT_BOOT_WAIT_S
    power_off_s: float | None = None  # a power cycle's off time; None: the labgrid power driver's (2 s)
    tiny: TinyJob | None = None  # `serial tiny` on the place's NetworkSerialPort instead of bench

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        """What the job key names: the URL, or for labgrid the selector (any matching place)."""
        if self.labgrid is None:
            return self.spec.url
        if set(self.labgrid) == {"name"}:
            return f"labgrid://{self.labgrid['name']}"
        return "labgrid://?" + "&".join(f"{k}={v}" for k, v in sorted(self.labgrid.items()))


@dataclass(frozen=True)
class Job:
    """One benchmark of one artifact on one target with one option set (one repetition)."""

    key: str
    plan: str
    artifact: Path
    artifact_sha256: str
    target: str
    threads: int | None
    providers: str | None
    engine: str | None
    repetition: int
    options: BenchOptions

    def describe(self) -> str:
        parts = [f"serial tiny {self.artifact.name}" if self.artifact.is_dir() else self.artifact.name]
        parts += [f"threads={self.threads}"] if self.threads is not None else []
        parts += [f"providers={self.providers}"] if self.providers else []
        parts += [f"engine={self.engine}"] if self.engine else []
        return " ".join([*parts, f"rep {self.repetition}"])


@dataclass(frozen=True)
class Plan:
    name: str
    path: Path
    database: Path
    repetitions: int
    bench: BenchOptions
    artifacts: tuple[Path, ...]
    targets: tuple[PlanTarget, ...]
    threads: tuple[int | None, ...] = (None,)
    providers: tuple[str | None, ...] = (None,)
    engines: tuple[str | None, ...] = (None,)
    coordinator: str | None = None  # labgrid coordinator HOST:PORT ([lab] coordinator; else LG_COORDINATOR)

    def jobs(self) -> list[Job]:
        """Every job of the plan, in a stable order (target, artifact, options, repetition)."""
        from edgerun.artifact import model_sha256, sha256_file

        # an ONNX model's digest covers its external data files: new weights are a new job, never a resumed one
        digests = {a: model_sha256(a, "onnx")[0] if a.suffix == ".onnx" else sha256_file(a) for a in self.artifacts}
        out = []
        for target in self.targets:  # a wearable's jobs: its dataset, once per repetition (no artifact, no axes)
            if target.tiny is not None:
                tiny, none = target.tiny, BenchOptions()
                out += [self._job(target, tiny.dataset, tiny.dataset_sha256, none, r) for r in self._reps()]
        axes = itertools.product(self.targets, self.artifacts, self.threads, self.providers, self.engines)
        for target, artifact, threads, providers, engine in axes:
            if target.tiny is not None:
                continue
            if engine is not None and artifact.suffix != _ENGINE_FORMAT[engine]:
                continue
            axes_set = {"threads": threads, "providers": providers, "engine": engine}
            options = self.bench.replace(**{k: v for k, v in axes_set.items() if v is not None})
            for rep in range(1, self.repetitions + 1):
                out.append(self._job(target, artifact, digests[artifact], options, rep))
        return out

    def _reps(self) -> range:
        return range(1, self.repetitions + 1)

    def _job(self, target: PlanTarget, artifact: Path, sha: str, options: BenchOptions, rep: int) -> Job:
        identity = {
            "plan": self.name, "artifact_sha256": sha, "target": target.name, "url": target.address,
            "options": list(target.tiny.options) if target.tiny else options.argv(), "repetition": rep,
        }  # fmt: skip
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return Job(
            key, self.name, artifact, sha, target.name, options.threads, options.providers, options.engine, rep, options
        )


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise LabError(f"{where}: [{key}] must be a table, got {type(value).__name__}")
    return value


def _axis(matrix: dict[str, Any], key: str, kind: type, where: str) -> tuple[Any, ...]:
    values = matrix.get(key)
    if values is None:
        return (None,)
    if not isinstance(values, list) or not values or not all(isinstance(v, kind) for v in values):
        raise LabError(f"{where}: [matrix] {key} must be a non-empty list of {kind.__name__}, got {values!r}")
    if key == "engines" and not set(values) <= set(_ENGINE_FORMAT):
        raise LabError(f"{where}: [matrix] engines must be among {sorted(_ENGINE_FORMAT)}, got {values}")
    return tuple(values)


def _targets(data: dict[str, Any], where: str, base: Path) -> tuple[PlanTarget, ...]:
    tables = _table(data, "targets", where)
    if not tables:
        raise LabError(f'{where}: no [targets.NAME] table; add e.g. [targets.here] with url = "local"')
    out = []
    for name, table in tables.items():
        if isinstance(table, dict) and "labgrid" in table:
            out.append(_labgrid_target(name, table, where, base))
            continue
        if not isinstance(table, dict) or "url" not in table:
            raise LabError(
                f'{where}: [targets.{name}] needs url = "local" | "ssh://..." | "adb://..." '
                '(or labgrid = "PLACE" | {tag = "value"})'
            )
        options = {k: v for k, v in table.items() if k != "url" and k not in _COOLDOWN_KEYS}
        cooldown: dict[str, Any] = {k: float(table[k]) for k in _COOLDOWN_KEYS if k in table}
        try:
            spec = parse_target(str(table["url"]), name=name, extra=options)
        except ValueError as exc:
            raise LabError(f"{where}: [targets.{name}]: {exc}") from exc
        out.append(PlanTarget(spec, **cooldown))
    return tuple(out)


def _labgrid_target(name: str, table: dict[str, Any], where: str, base: Path) -> PlanTarget:
    """``labgrid = "place"`` or ``labgrid = {tag = "value", ...}``; the other keys are ssh options
    for the place's NetworkService (its address, port and user come from the exporter)."""
    here = f"{where}: [targets.{name}]"
    select = table["labgrid"]
    if isinstance(select, str) and select:
        filters = {"name": select}
    elif isinstance(select, dict) and select and all(isinstance(v, str) for v in select.values()):
        filters = dict(select)
    else:
        raise LabError(
            f'{here}: labgrid must be a place name or a table of tags like {{board = "rpi5"}}, got {select!r}'
        )
    bad = [k for k in filters if not _TAG.fullmatch(k)]
    if bad:
        raise LabError(f"{here}: labgrid tag names must be lowercase letters, digits and _ (labgrid's rule), got {bad}")
    if "url" in table:
        raise LabError(f"{here}: give url or labgrid, not both (a labgrid place's address comes from its exporter)")
    wait, boot = table.get("place_wait_s", DEFAULT_PLACE_WAIT_S), table.get("boot_wait_s", DEFAULT_BOOT_WAIT_S)
    for key, value in (("place_wait_s", wait), ("boot_wait_s", boot)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 7 * 86400:
            raise LabError(f"{here}: {key} must be seconds between 0 and 604800, got {value!r}")
    off = table.get("power_off_s")
    seconds = isinstance(off, (int, float)) and not isinstance(off, bool)
    if off is not None and not (seconds and 0 < off <= MAX_POWER_OFF_S):
        raise LabError(
            f"{here}: power_off_s (how long a power cycle keeps the board off) must be seconds, more than 0 and at "
            f"most {MAX_POWER_OFF_S:g}, got {off!r}"
        )
    tiny = tiny_job_of(table["tiny"], base, here) if "tiny" in table else None
    options = {k: v for k, v in table.items() if k not in _COOLDOWN_KEYS and k not in _LABGRID_KEYS}
    cooldown: dict[str, Any] = {k: float(table[k]) for k in _COOLDOWN_KEYS if k in table}
    # a place may be an ssh board or a phone (known once acquired): ssh options and adb-only ones are both
    # checked here; each target kind gets those that apply to it (edgerun.lab.place_kinds)
    phone = {k: v for k, v in options.items() if _ONLY.get(k) == "adb"}
    try:
        spec = parse_target(
            "ssh://labgrid-place", name=name, extra={k: v for k, v in options.items() if k not in phone}
        )
        phone_options = parse_target("adb://labgrid-phone", extra=phone).options
    except ValueError as exc:
        raise LabError(f"{here}: {exc}") from exc
    spec = dataclasses.replace(
        spec, options=dataclasses.replace(spec.options, **{k: getattr(phone_options, k) for k in phone})
    )
    return PlanTarget(
        spec, **cooldown, labgrid=filters, place_wait_s=float(wait), boot_wait_s=float(boot),
        power_off_s=None if off is None else float(off), tiny=tiny,
    )  # fmt: skip


def _artifacts(data: dict[str, Any], base: Path, where: str, needed: bool = True) -> tuple[Path, ...]:
    entries = data.get("artifact", [])
    if not needed and not entries:  # every target is a wearable's `serial tiny`: its dataset is its input
        return ()
    if not isinstance(entries, list) or not entries:
        raise LabError(f'{where}: no [[artifact]] entries; add one with path = "model.onnx"')
    paths = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise LabError(f'{where}: each [[artifact]] needs path = "...", got {entry!r}')
        path = (base / entry["path"]).resolve()
        if not path.is_file():
            raise LabError(f"{where}: artifact {entry['path']!r} not found (looked at {path})")
        paths.append(path)
    return tuple(paths)


def load_plan(path: str | Path, database: str | Path | None = None) -> Plan:
    """Read and check a plan; LabError naming the file, the key and what was expected."""
    where = str(path)
    # size-capped; nan/inf, integers past 64 bits and deep nesting are LabErrors naming the key
    data = read_toml(path, LabError, what="plan")
    base = Path(path).resolve().parent
    lab, matrix = _table(data, "lab", where), _table(data, "matrix", where)
    unknown = sorted(set(data) - {"lab", "bench", "matrix", "artifact", "targets"})
    if unknown:
        raise LabError(f"{where}: unknown table(s) {unknown}; expected lab, bench, matrix, artifact, targets")
    try:
        bench = BenchOptions.from_mapping(_table(data, "bench", where), f"{where}: [bench]")
    except (TypeError, ValueError) as exc:
        raise LabError(str(exc)) from exc
    repetitions = lab.get("repetitions", 1)
    if not isinstance(repetitions, int) or repetitions < 1:
        raise LabError(f"{where}: [lab] repetitions must be a whole number >= 1, got {repetitions!r}")
    coordinator = lab.get("coordinator")
    if coordinator is not None and (not isinstance(coordinator, str) or not coordinator.strip()):
        raise LabError(f'{where}: [lab] coordinator must be "HOST:PORT" (a labgrid coordinator), got {coordinator!r}')
    targets = _targets(data, where, base)
    return Plan(
        coordinator=coordinator,
        name=str(lab.get("name", Path(path).stem)),
        path=Path(path).resolve(),
        database=Path(database) if database else base / str(lab.get("database", "lab.sqlite")),
        repetitions=repetitions,
        bench=bench,
        artifacts=_artifacts(data, base, where, needed=any(t.tiny is None for t in targets)),
        targets=targets,
        threads=_axis(matrix, "threads", int, where),
        providers=_axis(matrix, "providers", str, where),
        engines=_axis(matrix, "engines", str, where),
    )
