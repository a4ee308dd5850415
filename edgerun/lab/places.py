"""``edgerun lab places [PLAN]``: what a labgrid coordinator offers, and which places a plan would use.

One line per place: its tags, who holds it (``host/user``, as ``labgrid-client who`` says)
or its reservation, its resources (a ``NetworkService`` shown as ``user@address:port``, with
the exporter), and the plan's labgrid targets that match it. ``--json`` gives the same as
an object: ``{"coordinator", "places": [{"name", "tags", "acquired", "reservation",
"comment", "resources": [{"exporter", "group", "cls", "name", "avail", "params", "broken"}],
"targets": [...]}], "targets": {NAME: {"selector", "places": [...]}}}``. A resource its exporter
marked broken (labgrid's exporter does when it cannot start an export, such as ser2net for a
``RawSerialPort`` whose port is not under /dev/) says so with the reason: no place with it can be
acquired until that exporter restarts.
"""

from __future__ import annotations

from typing import Any

from edgerun.lab.plan import Plan
from edgerun.targets.labgrid_client import LabgridClient, filter_text, matches

__all__ = ["describe_places", "places_table"]


def describe_places(address: str, plan: Plan | None = None) -> dict[str, Any]:
    client = LabgridClient(address)
    try:
        places, resources = client.places(), client.resources()
    finally:
        client.close()
    targets = [t for t in (plan.targets if plan else ()) if t.labgrid is not None]
    out: list[dict[str, Any]] = []
    for name in sorted(places):
        place = places[name]
        found = []
        for exporter, groups in sorted(resources.items()):
            for group, entries in sorted(groups.items()):
                for res_name, data in sorted(entries.items()):
                    cls = data.get("cls", "?")
                    if place.hasmatch((exporter, group, cls, res_name)):
                        avail, params = bool(data.get("avail")), _plain(data.get("params", {}))
                        found.append(
                            {"exporter": exporter, "group": group, "cls": cls, "name": res_name, "avail": avail,
                             "params": params, "broken": _broken(data)}
                        )  # fmt: skip
        out.append({
            "name": name, "tags": dict(place.tags), "acquired": place.acquired, "reservation": place.reservation,
            "comment": place.comment, "resources": found,
            "targets": [t.name for t in targets if t.labgrid is not None and matches(place, t.labgrid)],
        })  # fmt: skip
    return {
        "coordinator": address,
        "places": out,
        "targets": {
            t.name: {"selector": t.address, "places": [p["name"] for p in out if t.name in p["targets"]]}
            for t in targets
        },
    }


def _broken(data: dict[str, Any]) -> str | None:
    """Why its exporter marked the resource broken (it then shows as acquired by ``<broken>``, and no
    place with it can be acquired until the exporter restarts), else None."""
    if data.get("acquired") != "<broken>":
        return None
    return str(((data.get("params") or {}).get("extra") or {}).get("broken") or "see its exporter's log")


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "extra"}


def _resource(r: dict[str, Any]) -> str:
    from edgerun.targets.labgrid_resources import is_adb_service

    p = r["params"]
    if is_adb_service(r):  # a phone (docs/lab.md): its adb server (username = its serial there), or its adbd
        what = f"phone {p.get('username') or ''}@adb {p.get('address', '?')}:{p.get('port', '?')}"
    elif r["cls"] == "NetworkSerialPort":
        what = f"NetworkSerialPort {p.get('protocol', 'rfc2217')} {p.get('host', '?')}:{p.get('port', '?')}"
    elif r["cls"] == "NetworkService":
        what = f"NetworkService {p.get('username', '')}@{p.get('address', '?')}:{p.get('port', 22)}"
    else:
        what = r["cls"]
    broken = f", BROKEN ({r['broken']}): restart its exporter" if r.get("broken") else ""
    return f"{what} ({r['exporter']}{'' if r['avail'] else ', unavailable'}{broken})"


def places_table(view: dict[str, Any]) -> str:
    rows = [("place", "tags", "held by", "resources", "plan targets")]
    for p in view["places"]:
        held = p["acquired"] or (f"reserved {p['reservation']}" if p["reservation"] else "-")
        found = "; ".join(_resource(r) for r in p["resources"]) or "none"
        rows.append((p["name"], filter_text(p["tags"]) or "-", held, found, ", ".join(p["targets"]) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"coordinator {view['coordinator']}: {len(view['places'])} place(s)"]
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
        if i == 0:
            lines.append("-" * (sum(widths) + 8 + len(row[4])))
    for name, t in view["targets"].items():
        used = ", ".join(t["places"]) or "NONE: no place matches, its jobs would wait for none and be left"
        lines.append(f"target {name} ({t['selector']}): {used}")
    return "\n".join(lines)
