"""``edgerun update``, ``edgerun rollback`` and ``edgerun models``: the device's side of model updates.

``update`` fetches a release through TUF (edgerun.update.fetch), benchmarks it on this device
against the profile's budgets and, only when every verdict passes, makes it current
(edgerun.update.accept, edgerun.update.store). ``rollback`` swaps current and previous;
``models`` lists the store. Registered through ``edgerun.cli.COMMAND_MODULES``; nothing heavy
(tuf, numpy, an engine) is imported at module level.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgerun.cli.types import existing_file, finite_float, name_or_path, whole_int
from edgerun.exitcodes import EXIT_PASS

__all__ = ["register"]

_STORE_HELP = "the model store (default: $EDGERUN_MODELS, else ~/.local/share/edgerun/models)"


def register(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser(
        "update",
        help="fetch a signed model release (TUF), accept it on this device, then switch to it",
        description="Fetch release NAME from a TUF repository (SOURCE: a local folder such as a USB "
        "stick, or an https:// URL with --allow-network), verified from the root this device trusts. "
        "The new model is then benchmarked here, in a worker process, with the profile's budgets "
        "(and checked on its manifest's reference samples); only if every verdict passes does it "
        "become NAME@current, the old current staying as NAME@previous for `edgerun rollback`. "
        "A refused update changes nothing and exits 1 naming the failed verdicts or the attack "
        "TUF detected.",
    )
    u.add_argument("source", metavar="SOURCE", help="repository: a local folder, or an https:// URL")
    u.add_argument("name", metavar="NAME", help="the release's name in the repository")
    u.add_argument(
        "--version", dest="release_version", metavar="V", help="this version (default: the highest published)"
    )
    u.add_argument(
        "--trusted-root",
        required=True,
        type=existing_file,
        metavar="FILE",
        help="the repository's root.json this device trusts (provisioned out of band)",
    )
    u.add_argument("--store", type=name_or_path, metavar="DIR", help=_STORE_HELP)
    u.add_argument(
        "--profile",
        type=name_or_path,
        metavar="P",
        help="device profile name or TOML whose budgets acceptance judges (default: detected)",
    )
    u.add_argument(
        "--allow-network",
        action="store_true",
        help="let SOURCE be a URL (https; plain http only to this machine); off by default",
    )
    u.add_argument("--ca-file", type=existing_file, metavar="F", help="pin this CA bundle for an https SOURCE")
    u.add_argument(
        "--tolerance-points",
        type=finite_float(0, 100),
        default=1.0,
        metavar="X",
        help="reference-sample top-1 may fall this many points under the manifest's (default 1)",
    )
    u.add_argument("--json", action="store_true", help="machine-readable output")
    u.set_defaults(func=cmd_update)
    r = sub.add_parser(
        "rollback",
        help="make the previous model version current again",
        description="Swap NAME@current and NAME@previous in the model store (atomically; the previous "
        "version's sha256 is verified first).",
    )
    r.add_argument("name", metavar="NAME")
    r.add_argument("--store", type=name_or_path, metavar="DIR", help=_STORE_HELP)
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(func=cmd_rollback)
    m = sub.add_parser(
        "models",
        help="list the model store: versions, current and previous",
        description="List each model in the store with its versions (accepted or not), current and "
        "previous; with NAME, also its last update events (history.jsonl). With --prune --keep N, first "
        "remove old versions of NAME (or of every model): current, previous and the N highest other "
        "accepted versions stay.",
    )
    m.add_argument("name", metavar="NAME", nargs="?")
    m.add_argument("--store", type=name_or_path, metavar="DIR", help=_STORE_HELP)
    m.add_argument("--prune", action="store_true", help="remove old versions (needs --keep); never current or previous")
    m.add_argument(
        "--keep",
        type=whole_int(0, 10_000),
        metavar="N",
        help="with --prune: how many accepted versions to keep besides current and previous (0 or more)",
    )
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=cmd_models)


def cmd_update(args: argparse.Namespace) -> int:
    from edgerun.detection import detect
    from edgerun.errors import UpdateRefused, UsageError
    from edgerun.profiles import load_profile
    from edgerun.update import store as st
    from edgerun.update.accept import install
    from edgerun.update.fetch import fetch_release

    st.check_part(args.name, "model name")
    profile = load_profile(args.profile) if args.profile else detect().profile  # before any download
    root = st.store_root(args.store)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"--store {root}: cannot make the model store there ({exc.strerror}); expected a folder"
        ) from exc
    # The TUF metadata this device trusts, one cache per bootstrap root: it is what lets the next
    # update detect a rollback or freeze, so it lives with the store, not in a temporary folder.
    root_id = hashlib.sha256(Path(args.trusted_root).read_bytes()).hexdigest()[:16]
    cache = root / ".tuf" / root_id
    _remove_abandoned_downloads(root)
    download = Path(tempfile.mkdtemp(prefix=f".download-{os.getpid()}-", dir=root))
    try:
        if not args.json:
            print(f"fetching {args.name} from {args.source} (TUF) ...", file=sys.stderr)
        release = fetch_release(
            args.source,
            args.name,
            args.release_version,
            trusted_root=args.trusted_root,
            dest_dir=download,
            cache_dir=cache,
            allow_network=args.allow_network,
            ca_file=args.ca_file,
        )
        if not args.json:
            print(
                f"accepting {release.name} {release.version} on this device (benchmark in a worker) ...",
                file=sys.stderr,
            )
        try:
            done = install(release, root, profile, tolerance_points=args.tolerance_points)
        except UpdateRefused as exc:
            if args.json:
                print(
                    json.dumps(
                        {"name": release.name, "version": release.version, "status": "refused", "reason": str(exc)},
                        indent=1,
                    )
                )
            raise
    finally:
        shutil.rmtree(download, ignore_errors=True)
    doc = _installed_doc(done)
    if args.json:
        print(json.dumps(doc, indent=1))
    elif done.status == "already-current":
        print(f"{done.name} {done.version} is already current in {root}; nothing changed")
    else:
        print(f"{done.name}@current is now {done.version} (previous: {done.previous or 'none'}) in {root}")
        for kind, v in doc["verdicts"].items():
            print(f"  {kind:<20} {v['status']:<9} {v['reason']}")
    return EXIT_PASS


def _remove_abandoned_downloads(root: Path) -> None:
    """Remove the download folders of updates whose process is gone (a cut or a kill mid-fetch)."""
    for folder in root.glob(".download-*-*"):
        try:
            os.kill(int(folder.name.split("-")[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, OSError):  # not ours, or another user's process: leave it
            continue


def _installed_doc(done: Any) -> dict[str, Any]:
    acc = done.acceptance
    return {
        "name": done.name,
        "version": done.version,
        "status": done.status,
        "previous": done.previous,
        "folder": str(done.folder),
        "summary": acc.summary if acc else None,
        "verdicts": acc.verdicts if acc else {},
    }


def cmd_rollback(args: argparse.Namespace) -> int:
    from edgerun.update import store as st

    old, back = st.rollback(args.store, args.name)
    if args.json:
        print(json.dumps({"name": args.name, "from": old, "to": back}))
    else:
        print(f"{args.name}@current is now {back} (was {old}; {old} is now previous)")
    return EXIT_PASS


def cmd_models(args: argparse.Namespace) -> int:
    from edgerun.errors import ArtifactError
    from edgerun.update import store as st

    root = st.store_root(args.store)
    pruned = _prune(args, root) if args.prune or args.keep is not None else None
    models = st.list_models(root)
    if args.name is not None:
        models = [m for m in models if m["name"] == args.name]
        if not models:
            raise ArtifactError(f"no model {args.name!r} in the model store {root}")
        models[0]["history"] = st.read_history(root, args.name, limit=20)
    if args.json:
        print(json.dumps({"store": str(root), "models": models, **({"pruned": pruned} if pruned else {})}, indent=1))
        return EXIT_PASS
    for item in pruned or []:
        gone = ", ".join(item["removed"]) or "nothing"
        print(f"{item['name']}: removed {gone}; kept {', '.join(item['kept']) or 'nothing'}")
    if not models:
        print(f"no models in {root}")
    for m in models:
        print(f"{m['name']}  current={m['current'] or '-'}  previous={m['previous'] or '-'}")
        for v in m["versions"]:
            mark = "*" if v["version"] == m["current"] else " "
            print(f"  {mark} {v['version']:<16} {'accepted' if v['accepted'] else v['reason']}")
        for event in m.get("history", []):
            what = {k: v for k, v in event.items() if k not in ("utc", "event", "summary")}
            print(f"    {event.get('utc')} {event.get('event')} {json.dumps(what, sort_keys=True)}")
    return EXIT_PASS


def _prune(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """``models --prune --keep N``: prune NAME, or every model in the store."""
    from edgerun.errors import UsageError
    from edgerun.update import store as st

    if not args.prune or args.keep is None:
        raise UsageError("--prune and --keep N go together: `edgerun models [NAME] --prune --keep N`")
    names = [args.name] if args.name is not None else [m["name"] for m in st.list_models(root)]
    return [{"name": n, **st.prune(root, n, args.keep)} for n in names]
