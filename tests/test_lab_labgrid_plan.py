"""Lab plans with labgrid targets (syntax, job keys) and the ledger's claims and leases, without a coordinator:
real SQLite lab databases and real processes standing for other labs (alive, and gone)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from edgerun.errors import LabError
from edgerun.lab.ledger import Ledger, Me
from edgerun.lab.plan import load_plan
from edgerun.lab.store import LabStore

DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"


def plan_text(target: str, lab: str = "") -> str:
    return f'[lab]\nname = "p"\n{lab}\n[[artifact]]\npath = "{DEMO / "digits-int8.tflite"}"\n\n[targets.pi]\n{target}\n'


def load(tmp_path: Path, target: str, lab: str = ""):  # noqa: ANN201
    (tmp_path / "plan.toml").write_text(plan_text(target, lab))
    return load_plan(tmp_path / "plan.toml")


def test_labgrid_targets_by_place_or_tags(tmp_path: Path) -> None:
    by_name = load(tmp_path, 'labgrid = "rpi5-1"\nidentity_file = "~/.ssh/lab"', 'coordinator = "lab:20408"')
    (t,) = by_name.targets
    assert t.labgrid == {"name": "rpi5-1"} and t.address == "labgrid://rpi5-1" and by_name.coordinator == "lab:20408"
    assert t.spec.kind == "ssh" and t.spec.options.identity_file == "~/.ssh/lab" and t.place_wait_s == 600
    by_tags = load(tmp_path, 'labgrid = {board = "rpi5", ram = "8g"}\nplace_wait_s = 5\ncooldown_s = 1')
    (t,) = by_tags.targets
    assert t.address == "labgrid://?board=rpi5&ram=8g" and t.place_wait_s == 5 and t.cooldown_s == 1
    assert by_tags.jobs()[0].key != by_name.jobs()[0].key  # the selector is part of a job's identity
    assert t.power_off_s is None  # labgrid's driver keeps its own off time
    with_off = 'labgrid = "rpi5-1"\nidentity_file = "~/.ssh/lab"\npower_off_s = 5'
    off = load(tmp_path, with_off, 'coordinator = "lab:20408"')
    assert off.targets[0].power_off_s == 5.0
    assert off.jobs()[0].key == by_name.jobs()[0].key  # how long a power cycle takes is not what a job measures


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("labgrid = 5", "labgrid must be a place name or a table of tags"),
        ('labgrid = ""', "labgrid must be a place name"),
        ('labgrid = {Board = "x"}', "lowercase letters, digits and _"),
        ('labgrid = "a"\nurl = "ssh://x"', "give url or labgrid, not both"),
        ('labgrid = "a"\nplace_wait_s = -1', "place_wait_s must be seconds"),
        ('labgrid = "a"\npower_off_s = 0', r"power_off_s \(how long a power cycle keeps the board off\) must be sec"),
        ('labgrid = "a"\npower_off_s = 601', "power_off_s .* more than 0 and at most 600, got 601"),
        ('labgrid = "a"\npower_off_s = "2"', "power_off_s .* got '2'"),
        ('labgrid = "a"\npower_off_s = true', "power_off_s .* got True"),
        ('labgrid = "a"\nnosuch = "/x"', "unknown target option 'nosuch'"),
        ('labgrid = "a"\nbenchmark_model = 5', "benchmark_model"),  # a phone's option: checked as adb's
        ('python = "x"', "needs url ="),
    ],
)
def test_bad_labgrid_targets_are_one_line_each(tmp_path: Path, target: str, message: str) -> None:
    with pytest.raises(LabError, match=message):
        load(tmp_path, target)


def test_bad_coordinator_setting(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"\[lab\] coordinator must be"):
        load(tmp_path, 'labgrid = "a"', "coordinator = 20408")


class _Job:
    def __init__(self, key: str) -> None:
        self.key, self.plan, self.target, self.artifact_sha256, self.repetition = key, "p", "pi", "0" * 64, 1
        self.threads = self.providers = self.engine = None


def test_claims_a_job_once_and_take_over_only_from_a_lab_that_is_gone(tmp_path: Path) -> None:
    store = LabStore(tmp_path / "lab.sqlite")
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        me = Ledger(store)
        alive = Me(me.me.host, other.pid, psutil.Process(other.pid).create_time())
        them, dead = Ledger(store, alive), Ledger(store, Me(me.me.host, gone.pid, 1.0))
        nobody = lambda place: None  # noqa: E731 - the coordinator says no one holds any place
        assert them.claim(_Job("a"), 1, "h/u", "p1", nobody) == "ok"
        assert me.claim(_Job("a"), 1, "h/u", "p2", nobody) == "taken"  # a live lab has it
        assert dead.claim(_Job("b"), 1, "h/u", "p1", nobody) == "ok"
        assert me.claim(_Job("b"), 1, "h/u", "p2", nobody) == "ok"  # its lab is gone: taken over
        assert me.claimed_by_others({"a", "b"}, nobody) == {"a": f"{me.me.host} pid {other.pid} on place p1"}
        # another host's claim lives while the coordinator says its place is acquired by its identity
        far = Ledger(store, Me("elsewhere", 4242, 1.0))
        assert far.claim(_Job("c"), 1, "elsewhere/u", "p3", nobody) == "ok"
        assert me.claim(_Job("c"), 1, "h/u", "p2", lambda place: "elsewhere/u") == "taken"
        assert me.claim(_Job("c"), 1, "h/u", "p2", nobody) == "ok"  # its place was let go: the claim lapsed
        me.unclaim(_Job("c"))
        run_id = store.begin_run("p", "plan.toml", 3, 0)
        store.record(run_id, _Job("c"), {"status": "ok", "overall": "pass"})  # the done-record
        assert me.claim(_Job("c"), 1, "h/u", "p2", nobody) == "done"
        assert them.claim(_Job("c"), 1, "h/u", "p1", nobody) == "done"
        # leases: only a gone process's are handed to the next run
        dead.lease("coord:1", "p1", "h/u", 1, "tok")
        them.lease("coord:1", "p2", "h/u", 1, None)
        assert [(o["place"], o["reservation"]) for o in me.orphaned_leases("coord:1")] == [("p1", "tok")]
        me.forget_lease("coord:1", "p1", gone.pid)
        assert [lease["place"] for lease in me.leases()] == ["p2"]
    finally:
        other.communicate(b"")
        store.close()
