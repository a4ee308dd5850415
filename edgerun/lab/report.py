"""``edgerun lab report``: one static HTML page (figures embedded as PNG data URIs) and a Markdown summary.

Sections: the verdict matrix (artifact x device: hard / soft / overall, the worst over
options and repetitions), latency distributions per device, the size / accuracy / p99
Pareto frontier per device, energy per inference where it was measured, the devices, the lab
hosts and labgrid places that ran the jobs, the environment of every job (its lab host and place,
the machine's load at its start), every warning with its count, and the failed jobs (with the lab
host that tried). A job's lab host is its labgrid block's (``target.labgrid.lab_host``) or else
its run's host, so databases from before labgrid, and merged ones, read the same way. An empty
section says "none" rather than showing a bare header.
A device whose results came from an emulator (``target.emulated``: tools/adb_emulator.py,
the Android emulator) is named "(emulated)" everywhere: its figures are not a phone's.
The page loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from edgerun.lab.store import LabStore
from edgerun.lab.summary import Group, LabSummaryData, pareto_points, summarize_results
from edgerun.measure.stats import min_samples

P99_MIN = min_samples(99.0)  # samples a p99 needs to be valid (the LoadGen rule); fewer: starred

__all__ = ["render_html", "render_markdown", "write_report"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3}.pass{background:#d9f2d9}.fail{background:#f7d0d0}.not-valid{background:#fcebc4}
.error{background:#e6c8f0}code{font-size:90%}img{max-width:100%;height:auto;display:block;margin:.5em 0 1.5em}
.small{font-size:85%;color:#555}.emulated{color:#a33;font-weight:600}.busy{background:#fcebc4}
.wide{overflow-x:auto;max-width:100%}.wide table{table-layout:fixed;width:100%}
.wide td,.wide th{overflow-wrap:anywhere;vertical-align:top}
.wide td:first-child,.wide th:first-child{width:11em;position:sticky;left:0;background:#fafafa}
"""


def _esc(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _ms(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f}"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(head: list[str], rows: list[list[str]], raw: bool = False, wide: bool = False) -> str:
    """An HTML table, or "none" without rows; cells are escaped unless ``raw`` (already HTML).

    ``wide``: many or long columns: the table keeps the page's width (long values wrap, the first
    column stays put while the rest scrolls) instead of squashing every column to a sliver."""
    if not rows:
        return "<p>none</p>"
    cell = (lambda c: c) if raw else _esc
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    table = "<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + f"</tr>{body}</table>"
    return f'<div class="wide">{table}</div>' if wide else table


def emulated_targets(data: LabSummaryData) -> set[str]:
    """Targets any of whose results say they ran on an emulator (``target.emulated``)."""
    return {r.target for r in data.rows if (r.result.get("target") or {}).get("emulated") is True}


def _device(target: str, emulated: set[str], raw: bool = False) -> str:
    if target not in emulated:
        return _esc(target) if raw else target
    return f'{_esc(target)} <span class="emulated">(emulated)</span>' if raw else f"{target} (emulated)"


def _labgrid(r: Any) -> dict[str, Any]:
    """The result's ``target.labgrid`` block (a job on a labgrid place); {} for any other job."""
    block = (r.result.get("target") or {}).get("labgrid")
    return block if isinstance(block, dict) else {}


def _lab_host(r: Any, hosts: dict[str, str | None]) -> str:
    """The lab host that ran the job: the labgrid block's, else its run's (older databases: the run's only)."""
    return str(_labgrid(r).get("lab_host") or hosts.get(r.job_key) or "-")


def _place(r: Any) -> str:
    return str(_labgrid(r).get("place") or "-")


def _places_rows(data: LabSummaryData, hosts: dict[str, str | None]) -> list[list[str]]:
    """Per lab host and place: jobs, devices, exporter, the first and last job, power cycles."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in data.rows:
        groups.setdefault((_lab_host(r, hosts), _place(r)), []).append(r)
    rows = []
    for (host, place), rs in sorted(groups.items()):
        when = sorted(r.created_utc for r in rs)
        exporters = sorted({str(_labgrid(r).get("exporter")) for r in rs if _labgrid(r).get("exporter")})
        cycles = sum(len(r.result.get("power_cycles") or []) for r in rs)
        rows.append([host, place, ", ".join(exporters) or "-", ", ".join(sorted({r.target for r in rs})),
                     str(len(rs)), when[0], when[-1], str(cycles)])  # fmt: skip
    return rows


_PLACES_HEAD = ["lab host", "labgrid place", "exporter", "devices", "jobs", "first (UTC)", "last (UTC)",
                "power cycles"]  # fmt: skip


def _matrix_html(data: LabSummaryData) -> str:
    rows = []
    for artifact in data.artifacts:
        cells = [_esc(artifact)]
        for target in data.targets:
            c = data.matrix.get((artifact, target))
            if c is None:
                cells.append("")
                continue
            detail = f"hard {c['hard']} / soft {c['soft']} ({c['jobs']} jobs)"
            text = f"{c['overall'].upper()}<br><span class=small>{detail}</span>"
            cells.append(f'<span class="{_esc(c["overall"])}">{text}</span>')
        rows.append(cells)
    emulated = emulated_targets(data)
    return _table(["artifact \\ device", *(_device(t, emulated) for t in data.targets)], rows, raw=True)


def _latency_html(data: LabSummaryData, plots: Any) -> str:
    parts, emulated = [], emulated_targets(data)
    for target in data.targets:
        name = _device(target, emulated)
        groups = [g for g in data.groups_on(target) if g.samples_ms() is not None]
        if groups:
            png = plots.latency_boxes(name, [g.label for g in groups], [g.samples_ms() for g in groups])
            parts.append(f"<h3>{_device(target, emulated, raw=True)}</h3>" + _img(png, f"latency on {name}"))
        else:
            parts.append(f"<p>{_esc(name)}: no raw samples to draw (native benchmark binaries report summaries).</p>")
    parts.append(
        _table(["device", "artifact [options]", "runs", "n", "p50 ms", "p99 ms", "mean ms"], _latency_rows(data))
    )
    return "".join(parts)


def _p99_valid(g: Group) -> bool:
    n = g.column("n")
    return n is not None and n >= P99_MIN


def _latency_rows(data: LabSummaryData) -> list[list[str]]:
    rows, emulated = [], emulated_targets(data)
    for g in data.groups:
        n = g.column("n")
        p99 = _ms(g.column("p99_ns")) + ("*" if not _p99_valid(g) and g.column("p99_ns") is not None else "")
        count = "-" if n is None else f"{n:.0f}"
        rows.append([_device(g.target, emulated), g.label, str(len(g.rows)), count, _ms(g.column("p50_ns")), p99,
                     _ms(g.column("mean_ns"))])  # fmt: skip
    return rows


def _pareto_html(data: LabSummaryData, plots: Any) -> str:
    parts, emulated = [], emulated_targets(data)
    for target in data.targets:
        name = _device(target, emulated)
        groups = data.groups_on(target)
        points = pareto_points(groups)
        if not points:
            parts.append(f"<p>{_esc(name)}: no result with both a size and a p99 (benchmark_model prints none).</p>")
            continue
        valid = {g.label: _p99_valid(g) for g in groups}
        for p in points:  # a p99 from too few samples is drawn hollow and starred, never passed off as valid
            p["valid"] = valid[p["label"]]
        png = plots.pareto_scatter(name, points)
        parts.append(f"<h3>{_device(target, emulated, raw=True)}</h3>" + _img(png, f"Pareto on {name}"))
        front = [
            [p["label"], f"{p['size_mb']:.3f}", p["accuracy"], f"{p['p99_ms']:.3f}" + ("" if p["valid"] else "*")]
            for p in points
            if p["frontier"]
        ]
        parts.append(_table(["on the frontier", "size MB", "accuracy", "p99 ms"], front))
    return "".join(parts)


def _energy_html(data: LabSummaryData, plots: Any) -> str:
    measured = [g for g in data.groups if g.energy_measured]
    emulated = emulated_targets(data)
    rows = [[_device(g.target, emulated), g.label, ", ".join(sorted({str(r.columns["energy_source"]) for r in g.rows})),
             _esc(g.column("energy_mj"))] for g in data.groups if g.column("energy_mj") is not None]  # fmt: skip
    parts = []
    if measured:
        net = [_median_energy(g, "net_mj_per_inference") for g in measured]
        gross = [_median_energy(g, "gross_mj_per_inference") or 0.0 for g in measured]
        parts.append(_img(plots.energy_bars([f"{g.target}: {g.label}" for g in measured], net, gross), "energy"))
    elif rows:
        parts.append("<p>No run had a measured power source; estimates are listed, labelled, and not plotted.</p>")
    return "".join(parts) + _table(["device", "artifact [options]", "source", "mJ / inference"], rows)


def _median_energy(g: Group, key: str) -> float | None:
    import statistics

    values = [(r.result.get("energy") or {}).get(key) for r in g.rows]
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _device_rows(data: LabSummaryData) -> list[list[str]]:
    """One row per distinct device description (a device's jobs mostly share one)."""
    rows, emulated = {}, emulated_targets(data)
    for r in data.rows:
        tgt, env = r.result.get("target") or {}, r.result.get("environment") or {}
        row = [_device(r.target, emulated), tgt.get("model") or env.get("cpu_model") or "-",
               tgt.get("os") or env.get("os") or "-", tgt.get("kernel") or "-",
               tgt.get("python") or env.get("python") or "-",
               tgt.get("edgerun_version") or env.get("edgerun_version") or "-",
               (r.result.get("profile") or {}).get("name") or "-"]  # fmt: skip
        rows[tuple(map(str, row))] = [str(c) for c in row]
    return list(rows.values())


_DEVICE_HEAD = ["device", "model / CPU", "OS", "kernel", "Python", "edgerun", "profile"]


def _load(load: Any) -> str:
    """``load_at_start`` in words: how busy the machine was with other processes as the job began."""
    if not isinstance(load, dict) or not isinstance(load.get("cpu_busy_pct"), (int, float)):
        return "-"
    avg = load.get("loadavg") or ["?"]
    text = f"{load['cpu_busy_pct']:.0f}% busy (1-min load {avg[0]} on {load.get('cpus', '?')} CPUs)"
    return f'<span class="busy">{_esc(text)}</span>' if load["cpu_busy_pct"] >= _busy_pct() else _esc(text)


def _busy_pct() -> float:
    from edgerun.lab.target_runner import BUSY_WARN_PCT

    return BUSY_WARN_PCT


def _job_rows(data: LabSummaryData, hosts: dict[str, str | None]) -> list[list[str]]:
    rows, emulated = [], emulated_targets(data)
    for r in data.rows:
        eng = r.result.get("engine") or {}
        engine = f"{eng.get('name', '-')} {eng.get('version') or ''}".strip()
        providers = ",".join(eng.get("providers") or [])
        detail = (
            engine
            + (f" [{providers}]" if providers else "")
            + (f", {eng['threads']} threads" if eng.get("threads") else "")
        )
        rows.append([_esc(r.created_utc), _device(r.target, emulated, raw=True), _esc(_lab_host(r, hosts)),
                     _esc(_place(r)), _esc(r.columns["artifact"]),
                     _esc(f"{r.options} rep {r.repetition}".strip()), _esc(detail),
                     _load(r.result.get("load_at_start")), str(len(r.result.get("warnings") or []))])  # fmt: skip
    return rows


_JOB_HEAD = ["when (UTC)", "device", "lab host", "place", "artifact", "options", "engine", "load at start",
             "warnings"]  # fmt: skip


def _warnings_html(data: LabSummaryData) -> str:
    """Every distinct warning once, with how many jobs gave it and where (a count alone says nothing)."""
    seen: dict[str, list[str]] = {}
    emulated = emulated_targets(data)
    for r in data.rows:
        for w in dict.fromkeys(r.result.get("warnings") or []):
            seen.setdefault(w, []).append(f"{_device(r.target, emulated)}: {r.columns['artifact']}")
    if not seen:
        return "<p>none</p>"
    items = []
    for text, where in sorted(seen.items(), key=lambda kv: -len(kv[1])):
        places = ", ".join(sorted(set(where))[:6]) + (", ..." if len(set(where)) > 6 else "")
        items.append(f"<li>{_esc(text)} <span class=small>({len(where)} job(s): {_esc(places)})</span></li>")
    return "<ul>" + "".join(items) + "</ul>"


def render_html(store: LabStore, plan: str | None = None) -> str:
    from edgerun.lab import plots

    data = summarize_results(store.results(plan))
    failures = store.failures(plan)
    hosts = store.result_hosts(plan)
    all_runs = store.runs()
    runs = [r for r in all_runs if plan is None or r["plan"] == plan]
    run_host = {r["run_id"]: r["host"] or "-" for r in all_runs}
    fail_rows = [[f["created_utc"], f["target"], run_host.get(f["run_id"], "-"), f["artifact"], f["error_type"],
                  f["message"]] for f in failures]  # fmt: skip
    sections = [
        ("Verdicts (worst over options and repetitions)", _matrix_html(data)),
        ("Latency per device", _latency_html(data, plots)),
        ("Size / accuracy / p99: Pareto frontier", _pareto_html(data, plots)),
        ("Energy per inference", _energy_html(data, plots)),
        ("Devices", _table(_DEVICE_HEAD, _device_rows(data), wide=True)),
        ("Lab hosts and places", _table(_PLACES_HEAD, _places_rows(data, hosts), wide=True)),
        ("Environment of every run", _table(_JOB_HEAD, _job_rows(data, hosts), raw=True, wide=True)),
        ("Warnings", _warnings_html(data)),
        (
            "Failed jobs (retried by the next `lab run`)",
            _table(["when", "device", "lab host", "artifact", "error", "message"], fail_rows, wide=True),
        ),
    ]
    title = f"edgerun lab: {', '.join(sorted({r['plan'] for r in runs})) or '(empty)'}"
    counts = f"{len(data.rows)} results, {len(failures)} failed attempts, {len(runs)} lab runs"
    head = f"<p>{counts}; database <code>{_esc(store.path)}</code>.</p>"
    note = (
        f"<p class=small>* p99 from fewer than {P99_MIN} samples: not valid (LoadGen rule), shown for orientation "
        "only (hollow markers in the Pareto plots).</p>"
    )
    body = "".join(
        f'<section id="{_anchor(name)}"><h2>{_esc(name)}</h2>{content}</section>' for name, content in sections
    )
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>{head}{body}{note}</body></html>\n"
    )


def _anchor(title: str) -> str:
    """The section's id: its title's words joined by "-" (e.g. ``failed-jobs``), for links and tests."""
    return re.sub(r"[^a-z0-9]+", "-", title.split(" (")[0].lower()).strip("-")


def render_markdown(store: LabStore, plan: str | None = None) -> str:
    data = summarize_results(store.results(plan))
    emulated = emulated_targets(data)
    lines = ["# edgerun lab summary", "", f"{len(data.rows)} results; database `{store.path}`.", "", "## Verdicts", ""]
    lines.append("| artifact | " + " | ".join(_device(t, emulated) for t in data.targets) + " |")
    lines.append("|---" * (len(data.targets) + 1) + "|")
    for artifact in data.artifacts:
        cells = [data.matrix.get((artifact, t)) for t in data.targets]
        text = [f"{c['overall'].upper()} (hard {c['hard']}, soft {c['soft']})" if c else "" for c in cells]
        lines.append(f"| {artifact} | " + " | ".join(text) + " |")
    lines += [
        "",
        "## Latency",
        "",
        "| device | artifact [options] | runs | n | p50 ms | p99 ms | mean ms |",
        "|---" * 7 + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _latency_rows(data)]
    failures = store.failures(plan)
    lines += ["", f"## Failed attempts ({len(failures)})", ""]
    failed = [f"- {f['target']}: {f['artifact']}: {f['error_type']}: {f['message'][:160]}" for f in failures]
    lines += failed or ["none"]
    return "\n".join(lines) + "\n"


def write_report(
    store: LabStore, out_html: Path, out_md: Path | None = None, plan: str | None = None, *, force: bool = False
) -> None:
    """Write the page (and the summary), each atomically; ``force`` lets them replace existing files.

    The caller checks the paths first (edgerun.outputs.check_outputs): never the database itself.
    """
    from edgerun.outputs import write_atomic

    page = render_html(store, plan)  # both rendered before either is written: no half-updated pair
    summary = render_markdown(store, plan) if out_md is not None else None
    write_atomic(out_html, page, force=force)
    if out_md is not None and summary is not None:
        write_atomic(out_md, summary, force=force)
