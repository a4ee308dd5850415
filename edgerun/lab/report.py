"""``edgerun lab report``: one static HTML page (figures embedded as PNG data URIs) and a Markdown summary.

Sections: the verdict matrix (artifact x device: hard / soft / overall, the worst over
options and repetitions), latency distributions per device, the size / accuracy / p99
Pareto frontier per device, energy per inference where it was measured, and the
environment of every run. The page loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from edgerun.lab.store import LabStore
from edgerun.lab.summary import Group, LabSummaryData, pareto_points, summarize_results

__all__ = ["render_html", "render_markdown", "write_report"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3}.pass{background:#d9f2d9}.fail{background:#f7d0d0}.not-valid{background:#fcebc4}
.error{background:#e6c8f0}code{font-size:90%}img{max-width:100%;display:block;margin:.5em 0 1.5em}
.small{font-size:85%;color:#555}
"""


def _esc(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _ms(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f}"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (already HTML)."""
    cell = (lambda c: c) if raw else _esc
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + f"</tr>{body}</table>"


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
    return _table(["artifact \\ device", *data.targets], rows, raw=True)


def _latency_html(data: LabSummaryData, plots: Any) -> str:
    parts = []
    for target in data.targets:
        groups = [g for g in data.groups_on(target) if g.samples_ms() is not None]
        if groups:
            png = plots.latency_boxes(target, [g.label for g in groups], [g.samples_ms() for g in groups])
            parts.append(f"<h3>{_esc(target)}</h3>" + _img(png, f"latency on {target}"))
        else:
            parts.append(f"<p>{_esc(target)}: no raw samples to draw (native benchmark binaries report summaries).</p>")
    parts.append(
        _table(["device", "artifact [options]", "runs", "n", "p50 ms", "p99 ms", "mean ms"], _latency_rows(data))
    )
    return "".join(parts)


def _latency_rows(data: LabSummaryData) -> list[list[str]]:
    rows = []
    for g in data.groups:
        n = g.column("n")
        p99 = _ms(g.column("p99_ns")) + ("*" if n is not None and n < 662 and g.column("p99_ns") is not None else "")
        count = "-" if n is None else f"{n:.0f}"
        rows.append(
            [g.target, g.label, str(len(g.rows)), count, _ms(g.column("p50_ns")), p99, _ms(g.column("mean_ns"))]
        )
    return rows


def _pareto_html(data: LabSummaryData, plots: Any) -> str:
    parts = []
    for target in data.targets:
        points = pareto_points(data.groups_on(target))
        if not points:
            parts.append(f"<p>{_esc(target)}: no result with both a size and a p99 (benchmark_model prints none).</p>")
            continue
        parts.append(f"<h3>{_esc(target)}</h3>" + _img(plots.pareto_scatter(target, points), f"Pareto on {target}"))
        front = [
            [p["label"], f"{p['size_mb']:.3f}", _esc(p["accuracy"]), f"{p['p99_ms']:.3f}"]
            for p in points
            if p["frontier"]
        ]
        parts.append(_table(["on the frontier", "size MB", "accuracy", "p99 ms"], front))
    return "".join(parts)


def _energy_html(data: LabSummaryData, plots: Any) -> str:
    measured = [g for g in data.groups if g.energy_measured]
    rows = [[g.target, g.label, ", ".join(sorted({str(r.columns["energy_source"]) for r in g.rows})),
             _esc(g.column("energy_mj"))] for g in data.groups if g.column("energy_mj") is not None]  # fmt: skip
    parts = []
    if measured:
        net = [_median_energy(g, "net_mj_per_inference") for g in measured]
        gross = [_median_energy(g, "gross_mj_per_inference") or 0.0 for g in measured]
        parts.append(_img(plots.energy_bars([f"{g.target}: {g.label}" for g in measured], net, gross), "energy"))
    else:
        parts.append("<p>No run had a measured power source; estimates are listed, labelled, and not plotted.</p>")
    return "".join(parts) + _table(["device", "artifact [options]", "source", "mJ / inference"], rows)


def _median_energy(g: Group, key: str) -> float | None:
    import statistics

    values = [(r.result.get("energy") or {}).get(key) for r in g.rows]
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _environment_rows(data: LabSummaryData) -> list[list[str]]:
    rows = []
    for r in data.rows:
        res, tgt = r.result, r.result.get("target") or {}
        env, eng = res.get("environment") or {}, res.get("engine") or {}
        rows.append([
            r.created_utc, r.target, tgt.get("model") or env.get("cpu_model") or "-",
            tgt.get("os") or env.get("os") or "-",
            tgt.get("kernel", "-"), tgt.get("python") or env.get("python") or "-",
            tgt.get("edgerun_version") or env.get("edgerun_version") or "-",
            f"{eng.get('name', '-')} {eng.get('version') or ''}".strip(), ",".join(eng.get("providers") or []) or "-",
            _esc(eng.get("threads")), (res.get("profile") or {}).get("name") or "-", r.columns["artifact"],
            f"{r.options} rep {r.repetition}".strip(), str(len(res.get("warnings") or [])),
        ])  # fmt: skip
    return rows


_ENV_HEAD = ["when (UTC)", "device", "model", "OS", "kernel", "Python", "edgerun", "engine", "providers", "threads",
             "profile", "artifact", "options", "warnings"]  # fmt: skip


def render_html(store: LabStore, plan: str | None = None) -> str:
    from edgerun.lab import plots

    data = summarize_results(store.results(plan))
    failures = store.failures(plan)
    runs = [r for r in store.runs() if plan is None or r["plan"] == plan]
    fail_rows = [[f["created_utc"], f["target"], f["artifact"], f["error_type"], f["message"]] for f in failures]
    sections = [
        ("Verdicts (worst over options and repetitions)", _matrix_html(data)),
        ("Latency per device", _latency_html(data, plots)),
        ("Size / accuracy / p99: Pareto frontier", _pareto_html(data, plots)),
        ("Energy per inference", _energy_html(data, plots)),
        ("Environment of every run", _table(_ENV_HEAD, _environment_rows(data))),
        (
            "Failed jobs (retried by the next `lab run`)",
            _table(["when", "device", "artifact", "error", "message"], fail_rows),
        ),
    ]
    title = f"edgerun lab: {', '.join(sorted({r['plan'] for r in runs})) or '(empty)'}"
    counts = f"{len(data.rows)} results, {len(failures)} failed attempts, {len(runs)} lab runs"
    head = f"<p>{counts}; database <code>{_esc(store.path)}</code>.</p>"
    note = "<p class=small>* p99 from fewer than 662 samples: not valid (LoadGen rule), shown for orientation only.</p>"
    body = "".join(f"<h2>{_esc(name)}</h2>{content}" for name, content in sections)
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>{head}{body}{note}</body></html>\n"
    )


def render_markdown(store: LabStore, plan: str | None = None) -> str:
    data = summarize_results(store.results(plan))
    lines = ["# edgerun lab summary", "", f"{len(data.rows)} results; database `{store.path}`.", "", "## Verdicts", ""]
    lines.append("| artifact | " + " | ".join(data.targets) + " |")
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
    if failures:
        lines += ["", f"## Failed attempts ({len(failures)})", ""]
        lines += [f"- {f['target']}: {f['artifact']}: {f['error_type']}: {f['message'][:160]}" for f in failures]
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
