#!/usr/bin/env python3
"""How long the TUF side of a model update takes: init, publish, and fetch_release from a folder (a
device with no earlier metadata, then one with it) and over loopback HTTP, for one bundled demo release.

Wall time with time.perf_counter, N rounds, each in a fresh temporary folder; median [min, max]. The
first round includes importing tuf, securesystemslib and cryptography. Nothing here is a target or a
gate: it says what an update costs next to the acceptance benchmark that follows it (seconds).

    python tools/bench_update.py                 # digits-int8.onnx, 5 rounds
    python tools/bench_update.py --rounds 20 --artifact edgerun/demo/ecg/ecg-int8.onnx
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _round(artifact: Path, times: dict[str, list[float]]) -> None:
    from edgerun.artifact import load_artifact
    from edgerun.update.fetch import fetch_release
    from edgerun.update.repo import init_repo, publish

    name = load_artifact(artifact).name
    base = Path(tempfile.mkdtemp(prefix="bench-update-"))
    try:

        def timed(label: str, call: functools.partial) -> None:  # type: ignore[type-arg]
            t0 = time.perf_counter()
            call()
            times[label].append(time.perf_counter() - t0)

        repo, keys, cache = base / "r", base / "k", base / "c"
        timed("init", functools.partial(init_repo, repo, keys))
        timed("publish", functools.partial(publish, artifact, repo, keys, version="1"))
        fetch = functools.partial(fetch_release, name=name, trusted_root=repo / "metadata" / "root.json")
        timed("fetch, folder, first", functools.partial(fetch, str(repo), dest_dir=base / "s1", cache_dir=cache))
        timed("fetch, folder, again", functools.partial(fetch, str(repo), dest_dir=base / "s2", cache_dir=cache))
        handler = functools.partial(_Quiet, directory=str(base / "r"))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            timed(
                "fetch, loopback http, first",
                functools.partial(fetch, url, dest_dir=base / "s3", cache_dir=base / "c3", allow_network=True),
            )
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--artifact", type=Path, default=DEMO / "digits-int8.onnx", help="model file with a manifest")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each in a fresh folder (default 5)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: expected >= 1")
    labels = ("init", "publish", "fetch, folder, first", "fetch, folder, again", "fetch, loopback http, first")
    times: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(args.rounds):
        _round(args.artifact, times)
    from edgerun.artifact import load_artifact

    art = load_artifact(args.artifact)
    files = [art.path, art.manifest_path]
    if art.manifest is not None and art.manifest.samples and art.manifest_path is not None:
        files.append(art.manifest_path.parent / art.manifest.samples)
    size_kb = sum(p.stat().st_size for p in files if p is not None and p.is_file()) / 1e3
    print(
        f"{args.artifact.name} release ({len(files)} files, {size_kb:.0f} kB): wall time, n={args.rounds} rounds, "
        "median [min, max], measured on this machine (round 1 includes the imports)"
    )
    for label, values in times.items():
        ms = [v * 1e3 for v in values]
        print(f"  {label:30s} {statistics.median(ms):8.1f} ms  [{min(ms):.1f}, {max(ms):.1f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
