"""Human-readable benchmark tables (strings only; cli.py prints them).

Several results render side by side, one column per artifact, so the FP32 /
INT8 / INT4 trade-off reads across a row.
"""

from __future__ import annotations

import re
from typing import Any

from edgerun.budget import allowed_misses
from edgerun.measure.stats import min_samples

_MARK_INVALID = "*"


def _ms(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f}"


def _pct(stats: dict[str, Any], key: str) -> str:
    p = stats["percentiles"].get(key)
    if p is None:
        return "-"
    return _ms(p["value_ns"]) + ("" if p["valid"] else _MARK_INVALID)


def _ci(stats: dict[str, Any], key: str) -> str:
    ci = stats["percentiles"].get(key, {}).get("ci95_ns")
    return "-" if not ci else f"{_ms(ci[0])} .. {_ms(ci[1])}"


def _verdict(v: dict[str, Any] | None, percentile: float | None = None) -> str:
    """``PASS (0/1000 missed)``; a percentile verdict failed before its minimum sample count
    says why the fail is already certain (edgerun.budget.judge_soft)."""
    if v is None:
        return "-"
    text = v["status"].upper()
    if v.get("miss_rate") is not None and v["status"] != "not-valid" and v.get("n"):
        misses = round(v["miss_rate"] * v["n"])
        needed = min_samples(percentile) if percentile is not None else 0
        if percentile is not None and v["status"] == "fail" and v["n"] < needed:
            may = allowed_misses(percentile, needed)
            return f"{text}: {misses} of {v['n']} missed; with {needed} samples at most {may} may miss"
        text += f" ({misses}/{v['n']} missed)"
    return text


def _accuracy(acc: dict[str, Any] | None) -> str:
    if not acc or acc.get("value") is None:
        return "-"
    return f"{acc['value'] * 100:.1f}% (n={acc.get('n', '?')})"


def _rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    if r["status"] != "ok":
        return [("status", "ERROR"), ("error", f"{r['error']['type']} (message below the table)")]
    a, s, v, b = r["artifact"], r["stats"], r["verdicts"], r["budget"]
    cold = r["cold_start"]
    first = sum(cold["first_inference"].values())
    p = f"p{b['percentile']:g}"
    rows = [
        ("format / precision", f"{a['format']} {a['precision']}"),
        ("engine / providers", f"{r['engine']['name']} {','.join(r['engine']['providers'])}"),
        ("size (MB)", f"{a['size_bytes'] / 1e6:.3f}"),
        ("accuracy (manifest)", _accuracy(a.get("accuracy"))),
        ("session create (ms)", _ms(cold["session_create_ns"])),
        ("first inference (ms)", _ms(first)),
        ("steady runs / s", f"{r['steady']['runs']} / {r['steady']['duration_ns'] / 1e9:.2f}"),
    ]
    for stage in ("pre", "infer", "post"):
        st = s[stage]
        rows.append((f"{stage} p50 / p99 (ms)", f"{_pct(st, 'p50')} / {_pct(st, 'p99')}"))
    tot = s["total"]
    rows += [
        ("total min (ms)", _ms(tot["min_ns"])),
        ("total mean ± std (ms)", f"{_ms(tot['mean_ns'])} ± {_ms(tot['std_ns'])}"),
    ]
    rows += [(f"total {k} (ms)", _pct(tot, k)) for k in tot["percentiles"]]
    rows += [(f"total {k} 95% CI (ms)", _ci(tot, k)) for k in ("p50", "p99")]
    stab = r.get("stability", {}).get("total")
    if stab:
        rows.append(("total CV", f"{stab['cv'] * 100:.1f}%" + (" UNSTABLE" if stab["unstable"] else "")))
    rows += [
        ("total max (ms)", _ms(tot["max_ns"])),
        (f"hard < {b['hard_ms']:g} ms (all)", _verdict(v.get("hard"))),
        (f"soft {p} < {b['soft_ms']:g} ms", _verdict(v.get("soft"), b["percentile"])),
        ("model size", _verdict(v.get("model_size"))),
        ("peak RSS vs RAM", _verdict(v.get("peak_rss"))),
        *_measure_rows(r),
        *_sustained_rows(r.get("sustained")),
        ("overall", r["overall"].upper()),
    ]
    return rows


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _measure_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    mem = r.get("memory")
    if mem:
        rows.append(
            (
                "RSS load/first/peak (MiB)",
                " / ".join(
                    _mib(mem[k])
                    for k in ("rss_after_session_bytes", "rss_after_first_inference_bytes", "peak_rss_steady_bytes")
                ),
            )
        )
    energy = r.get("energy")
    if energy:
        label = "energy mJ/inf (est.)" if energy["source"] == "estimated" else f"energy mJ/inf ({energy['scope']})"
        net, ci = energy.get("net_mj_per_inference"), (energy.get("ci95_mj") or {}).get("net")
        if net is None:
            value = "not valid" if not energy["valid"] else "-"
        else:
            value = f"{net:.3f} net" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else "")
        rows.append((label, value))
    thermal = r.get("thermal")
    if thermal:
        rows.append(("thermal", "FLAGGED" if thermal["flags"]["flagged"] else "steady"))
    if r.get("warnings"):
        rows.append(("warnings", str(len(r["warnings"]))))
    return rows


def _sustained_rows(sus: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not sus or sus.get("p50_drift_pct") is None:
        return []
    window = f"{sus['window_ns'] / 1e9:.0f} s"
    return [
        (f"drift p50 (first/last {window})", f"{sus['p50_drift_pct']:+.1f}%"),
        (f"drift p99 (first/last {window})", f"{sus['p99_drift_pct']:+.1f}%"),
    ]


def side_by_side(results: list[dict[str, Any]]) -> str:
    """One column per artifact; a footnote explains invalid percentiles."""
    columns = [_rows(r) for r in results]
    labels: list[str] = []
    for col in columns:
        for label, _ in col:
            if label not in labels:
                labels.append(label)
    # a result from an emulator (target.emulated) must not read as the device it names
    headers = [(r["artifact"].get("name") or r["artifact"]["path"]) + (" (emulated)" if _emulated(r) else "")
               for r in results]  # fmt: skip
    cells = [[dict(col).get(label, "") for col in columns] for label in labels]
    width0 = max(len(x) for x in labels + [""])
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join([" " * width0] + [h.ljust(w) for h, w in zip(headers, widths)])]
    lines.append("  ".join(["-" * width0] + ["-" * w for w in widths]))
    for label, row in zip(labels, cells):
        lines.append("  ".join([label.ljust(width0)] + [c.ljust(w) for c, w in zip(row, widths)]))
    flagged = {q for label, row in zip(labels, cells) for c in row for q in _starred_percentiles(label, c)}
    if any(_MARK_INVALID in c for row in cells for c in row):
        rule = ", ".join(f"{min_samples(q)} samples for p{q:g}" for q in sorted(flagged))
        lines.append(
            f"{_MARK_INVALID} not valid: too few samples for this percentile "
            f"(LoadGen rule: {rule or 'see docs/bench-result.md'}); never counted as a pass."
        )
    for header, r in zip(headers, results):  # whole messages: the fix is often at the end
        if r["status"] != "ok":
            lines.append(f"{header}: {r['error']['type']}: {r['error']['message']}")
    return "\n".join(line.rstrip() for line in lines)


def _emulated(result: dict[str, Any]) -> bool:
    return (result.get("target") or {}).get("emulated") is True


def _starred_percentiles(label: str, cell: str) -> list[float]:
    """The percentiles a cell marks not valid: ``infer p50 / p99 (ms)`` with ``0.25 / 0.40*`` -> [99.0]."""
    percentiles = [float(q) for q in re.findall(r"\bp(\d+(?:\.\d+)?)\b", label)]
    parts = cell.split(" / ") if len(percentiles) > 1 else [cell]
    return [q for q, part in zip(percentiles, parts) if part.strip().endswith(_MARK_INVALID)]
