"""What the labgrid lab costs per place: reserve -> allocated -> acquire -> release, through edgerun's
client (labgrid's ClientSession, one connection) and through the ``labgrid-client`` program (one
process per call), measured side by side on the same coordinator.

    python tools/bench_labgrid.py                  # starts its own coordinator + exporter on loopback
    python tools/bench_labgrid.py --cycles 20 --json out.json

A private ``labgrid-coordinator`` (127.0.0.1, ephemeral port, in a temporary folder) and one
``labgrid-exporter`` with one NetworkService place are started and killed at the end; nothing
is contacted over the network. Prints the median and the range of each step in milliseconds
with the number of cycles (measured on this machine: a loaded CI box reads slower). The lab
pays these once per place and run, not per job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _start(argv: list[str], cwd: Path, ready: str) -> tuple[subprocess.Popen[str], re.Match[str]]:
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    found: list[re.Match[str]] = []
    event = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not found and (m := re.search(ready, line)):
                found.append(m)
                event.set()
        event.set()

    threading.Thread(target=drain, daemon=True).start()
    if not event.wait(60) or not found:
        os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit(f"{argv[0]} did not start")
    return proc, found[0]


def _stats(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"median_ms": round(statistics.median(ms), 2), "min_ms": round(min(ms), 2), "max_ms": round(max(ms), 2),
            "n": len(ms)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=10, help="reserve/acquire/release cycles per client (default 10)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    from edgerun.targets.labgrid_client import LabgridClient

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "exp.yaml").write_text("bench-1:\n  NetworkService:\n    address: 127.0.0.1\n    username: x\n")
        procs = []
        try:
            coord, m = _start([str(BIN / "labgrid-coordinator"), "-l", "127.0.0.1:0"], root, r"listening on \S+:(\d+)")
            procs.append(coord)
            address = f"127.0.0.1:{m.group(1)}"
            exp, _ = _start([str(BIN / "labgrid-exporter"), "-c", address, "--name", "exp", str(root / "exp.yaml")],
                            root, "Exporter ready")  # fmt: skip
            procs.append(exp)
            t0 = time.perf_counter()
            client = LabgridClient(address)
            connect = time.perf_counter() - t0
            from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

            client.rpc("AddPlace", pb.AddPlaceRequest(name="bench-1"), "create")
            client.rpc("AddPlaceMatch", pb.AddPlaceMatchRequest(placename="bench-1", pattern="*/bench-1/*"), "match")
            steps: dict[str, list[float]] = {"reserve_to_allocated": [], "acquire": [], "release_and_cancel": []}
            for _ in range(args.cycles):
                t0 = time.perf_counter()
                res = client.reserve({"name": "bench-1"})
                while (res := client.poll(res.token)).state != "allocated":
                    time.sleep(0.01)
                t1 = time.perf_counter()
                client.acquire("bench-1")
                t2 = time.perf_counter()
                client.release("bench-1")
                client.cancel(res.token)
                t3 = time.perf_counter()
                for key, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2)):
                    steps[key].append(value)
            client.close()
            env = {**os.environ, "LG_COORDINATOR": address}
            cli: dict[str, list[float]] = {"labgrid-client acquire": [], "labgrid-client release": []}
            for _ in range(args.cycles):
                for verb, key in (("acquire", "labgrid-client acquire"), ("release", "labgrid-client release")):
                    t0 = time.perf_counter()
                    subprocess.run([str(BIN / "labgrid-client"), "-p", "bench-1", verb], env=env, check=True,
                                   capture_output=True)  # fmt: skip
                    cli[key].append(time.perf_counter() - t0)
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    out = {
        "provenance": "measured on this machine, loopback coordinator and exporter (labgrid "
        + __import__("labgrid").__version__
        + ")",
        "connect_ms": round(connect * 1000, 2),
        "library": {k: _stats(v) for k, v in steps.items()},
        "cli": {k: _stats(v) for k, v in cli.items()},
    }
    print(f"{out['provenance']}; {args.cycles} cycles each")
    print(f"  edgerun client: connect {out['connect_ms']} ms (once per lab run)")
    for group in ("library", "cli"):
        for key, s in out[group].items():
            print(f"  {key:<28} median {s['median_ms']:>8.2f} ms  [{s['min_ms']:.2f}, {s['max_ms']:.2f}]  n={s['n']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
