"""One thread rule (edgerun.threads): explicit > profile > usable CPUs, capped at the usable CPUs,
where usable CPUs = the affinity mask limited by a cgroup v2 / v1 CPU quota. Cgroup trees are
fixtures laid out as the kernel shows them (Documentation/admin-guide/cgroup-v2.rst: cpu.max;
cgroup-v1/cfs: cpu.cfs_quota_us, cpu.cfs_period_us); no timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgerun
from edgerun import threads
from edgerun.cli import main
from edgerun.demo import DEMO_DIR
from edgerun.threads import CpuLimit, cgroup_cpu_quota, cpu_limit, resolve_threads


def v2_tree(tmp: Path, own: str = "/", **cpu_max: str) -> tuple[Path, Path]:
    """A cgroup v2 mount at tmp/cg; ``cpu_max`` maps a folder ("" = the root) to its cpu.max."""
    root = tmp / "cg"
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    for folder, text in cpu_max.items():
        d = root / folder.replace("__", "/") if folder else root
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(text + "\n")
    proc = tmp / "proc_cgroup"
    proc.write_text(f"0::{own}\n")
    return root, proc


def v1_tree(tmp: Path, quota: str, period: str = "100000", own: str = "/", where: str = "") -> tuple[Path, Path]:
    root = tmp / "cg"
    mount = root / "cpu,cpuacct"
    d = mount / where if where else mount
    d.mkdir(parents=True)
    (root / "cpu").symlink_to("cpu,cpuacct")  # as systemd mounts it
    (d / "cpu.cfs_quota_us").write_text(quota + "\n")
    (d / "cpu.cfs_period_us").write_text(period + "\n")
    proc = tmp / "proc_cgroup"
    proc.write_text(f"12:memory:/x\n4:cpu,cpuacct:{own}\n3:cpuset:/\n0::/\n")
    return root, proc


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("100000 100000", 1)],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, text: str, cpus: int | None) -> None:
    root, proc = v2_tree(tmp_path, "/app", app=text)
    found = cgroup_cpu_quota(root, proc)
    assert (found[0] if found else None) == cpus
    if found:
        assert "cgroup v2" in found[1] and "cpu.max" in found[1] and text in found[1]


def test_cgroup_v2_a_parents_quota_binds_its_children(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path, "/kubepods/pod1/c1", kubepods__pod1="300000 100000", kubepods__pod1__c1="max 100000")
    assert cgroup_cpu_quota(root, proc)[0] == 3
    root2, proc2 = v2_tree(tmp_path / "b", "/a/b", a="400000 100000", a__b="100000 50000")
    assert cgroup_cpu_quota(root2, proc2)[0] == 2  # the tighter of 4 (parent) and 2 (own)


def test_cgroup_v2_in_a_namespace_reads_the_mounts_root(tmp_path: Path) -> None:
    # a container with its own cgroup namespace: /proc/self/cgroup says "/", the mount is its cgroup
    root, proc = v2_tree(tmp_path, "/", **{"": "200000 100000"})
    assert cgroup_cpu_quota(root, proc)[0] == 2


def test_a_path_the_mount_does_not_show_falls_back_to_its_root(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path, "/system.slice/docker-abc.scope", **{"": "100000 100000"})
    assert cgroup_cpu_quota(root, proc)[0] == 1
    root2, proc2 = v2_tree(tmp_path / "b", "/../../etc", **{"": "max 100000"})
    assert cgroup_cpu_quota(root2, proc2) is None


@pytest.mark.parametrize(
    ("quota", "period", "cpus"), [("-1", "100000", None), ("300000", "100000", 3), ("1", "0", None)]
)
def test_cgroup_v1_cfs_quota(tmp_path: Path, quota: str, period: str, cpus: int | None) -> None:
    root, proc = v1_tree(tmp_path, quota, period, own="/docker/abc", where="docker/abc")
    found = cgroup_cpu_quota(root, proc)
    assert (found[0] if found else None) == cpus
    if found:
        assert "cgroup v1" in found[1] and "cpu.cfs_quota_us" in found[1]


def test_cgroup_v1_host_path_not_in_the_container_mount(tmp_path: Path) -> None:
    root, proc = v1_tree(tmp_path, "200000", own="/docker/abc")  # quota on the mount's root only
    assert cgroup_cpu_quota(root, proc)[0] == 2


@pytest.mark.parametrize("text", ["", "garbage", "max", "1 2 3", "-5 100000", "\x00\xff"])
def test_unreadable_or_odd_files_are_no_limit(tmp_path: Path, text: str) -> None:
    root, proc = v2_tree(tmp_path, "/", **{"": "max 100000"})
    (root / "cpu.max").write_bytes(text.encode("latin-1"))
    assert cgroup_cpu_quota(root, proc) is None
    assert cgroup_cpu_quota(tmp_path / "absent", tmp_path / "absent-too") is None


def test_usable_cpus_is_the_smaller_of_affinity_and_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = v2_tree(tmp_path, "/", **{"": "200000 100000"})
    monkeypatch.setattr(threads, "_affinity", lambda: 8)
    limit = cpu_limit(root, proc)
    assert (limit.cpus, limit.affinity, limit.quota) == (2, 8, 2)
    assert "cpu.max" in limit.reason and "affinity mask: 8" in limit.reason
    monkeypatch.setattr(threads, "_affinity", lambda: 1)
    limit = cpu_limit(root, proc)
    assert (limit.cpus, limit.quota) == (1, 2) and "does not bind" in limit.reason


LIMIT = CpuLimit(cpus=2, affinity=8, quota=2, reason="2 CPUs: cgroup v2 cpu.max 200000 100000 (affinity mask: 8)")


@pytest.mark.parametrize(
    ("explicit", "profile", "threads_", "source", "capped"),
    [
        (1, 4, 1, "explicit", False),  # explicit wins over the profile
        (8, None, 2, "explicit", True),  # and is capped
        (None, 1, 1, "profile rpi", False),
        (None, 4, 2, "profile rpi", True),
        (None, None, 2, "usable CPUs", False),
    ],
)
def test_the_rule(explicit: int | None, profile: int | None, threads_: int, source: str, capped: bool) -> None:
    choice = resolve_threads(explicit, profile, "rpi", limit=LIMIT)
    assert (choice.threads, choice.source) == (threads_, source)
    assert ("capped" in choice.detail) == capped
    assert choice.to_dict() == {"threads": threads_, "source": source, "detail": choice.detail}


def test_zero_threads_is_refused() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        resolve_threads(0, limit=LIMIT)


@pytest.fixture
def quota_of_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process under a 1-CPU cgroup v2 quota, as far as edgerun can tell."""
    root, proc = v2_tree(tmp_path, "/", **{"": "100000 100000"})
    monkeypatch.setattr(threads, "CGROUP_ROOT", root)
    monkeypatch.setattr(threads, "PROC_SELF_CGROUP", proc)


@pytest.mark.parametrize("model", ["digits-fp32.onnx", "digits-fp32.tflite"])
def test_load_applies_the_rule_for_both_engines(quota_of_one: None, model: str) -> None:
    rt = edgerun.load(DEMO_DIR / model)  # before the rule: the engine's default (ORT: cores, LiteRT: 1)
    assert (rt.load_info.threads, rt.load_info.threads_source) == (1, "usable CPUs")
    assert "cpu.max" in rt.load_info.threads_detail
    rt = edgerun.load(DEMO_DIR / model, profile="raspberry-pi-5")
    assert rt.load_info.threads == 1 and rt.load_info.threads_source == "profile raspberry-pi-5"
    assert "capped" in rt.load_info.threads_detail


def test_run_json_says_how_many_threads_and_why(quota_of_one: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(DEMO_DIR / "digits-fp32.onnx"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["threads"] == 1 and doc["threads_source"].startswith("usable CPUs: 1 CPUs: cgroup v2")


def test_bench_caps_with_the_quota_and_reports_the_source(
    quota_of_one: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    fast = ["--runs", "20", "--min-seconds", "0", "--warmup", "1", "--warmup-seconds", "0", "--no-energy", "-q"]
    argv = ["bench", str(DEMO_DIR / "digits-fp32.onnx"), *fast, "--threads", "2", "--in-process", "--json", str(out)]
    main(argv)  # the verdict does not matter here (20 runs: p99 not valid)
    result = json.loads(out.read_text())["results"][0]
    assert result["engine"]["threads"] == 1
    # BenchConfig caps --threads first (with a warning), then load() applies the same rule
    assert result["engine"]["threads_source"] == "explicit: 1 (of 1 usable CPUs)"
    assert any("capped at 1" in w for w in result["config"]["warnings"] + result.get("warnings", []))
