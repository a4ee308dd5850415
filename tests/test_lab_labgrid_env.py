"""tests/labgrid_env.py itself: a real coordinator and exporter on loopback, places, holds, a killed exporter."""

from __future__ import annotations

from labgrid_env import labgrid_lab  # noqa: F401
from tool_modules import target_devices

devices = target_devices()


def _resources(lab, name: str) -> dict:  # noqa: ANN001
    with lab.session() as c:
        return {e: g for e, g in c.resources().items() if name in g}


def test_exporter_place_hold_and_free(labgrid_lab) -> None:  # noqa: ANN001, F811
    lab = labgrid_lab
    name = lab.unique("env")
    exp = lab.exporter(name, {name: {"NetworkService": {"address": "127.0.0.1", "username": "u", "port": 2222}}})
    lab.add_place(name, tags={"board": "rpi5"})
    place = lab.places()[name]
    assert place.tags == {"board": "rpi5"} and place.acquired is None
    (group,) = _resources(lab, name).values()
    entry = group[name]["NetworkService"]
    assert entry["avail"] and entry["params"]["port"] == 2222

    lab.hold(name)
    assert lab.places()[name].acquired.endswith("/colleague")
    lab.free(name)
    assert lab.places()[name].acquired is None

    exp.kill()  # the exporter host goes away: the coordinator drops its resources
    assert not exp.running
    assert devices.wait_for(lambda: not _resources(lab, name), timeout_s=30), "the coordinator kept its resources"
    exp.restart()
    assert exp.running
