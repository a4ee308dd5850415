"""``edgerun publish``: the build host's side of signed model updates (edgerun/update/repo.py).

    edgerun publish --init --repo DIR --keys DIR [--threshold ROLE=N ...]   a new repository and its keys
    edgerun publish ARTIFACT --repo DIR --keys DIR --version V [--name N]   add a release, sign the new state
    edgerun publish --refresh --repo DIR --keys DIR                        re-sign with new expiries
    edgerun publish --rotate ROLE --repo DIR --keys DIR                    new keys for ROLE, a new root

Nothing heavy is imported at module level: tuf and securesystemslib load inside the command.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgerun.cli.types import finite_float
from edgerun.exitcodes import EXIT_PASS

__all__ = ["register"]

_EPILOG = """\
examples:
  edgerun publish --init --repo updates/ --keys keys/ --threshold root=2
  edgerun publish edgerun/demo/digits-int8.onnx --repo updates/ --keys keys/ --version 1.0.0
  edgerun publish --refresh --repo updates/ --keys keys/ --expires-days 1   # from cron, daily
  edgerun publish --rotate timestamp --repo updates/ --keys keys/          # a key was stolen (needs root keys)

The repository folder is what devices read (`edgerun update updates/ NAME --trusted-root ...`,
or an https:// URL serving it). Devices pin updates/metadata/root.json. After --init, move the
root-*.pem keys offline: publishing needs only the targets, snapshot and timestamp keys.
See docs/update.md.
"""


def _threshold(text: str) -> tuple[str, int]:
    from edgerun.update.repo import MAX_KEYS_PER_ROLE, ROLES

    role, sep, count = text.partition("=")
    if not sep or role not in ROLES or not count.isdigit() or not 1 <= int(count) <= MAX_KEYS_PER_ROLE:
        raise argparse.ArgumentTypeError(
            f"expected ROLE=N with ROLE one of {', '.join(ROLES)} and N in 1..{MAX_KEYS_PER_ROLE}; got {text!r}"
        )
    return role, int(count)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="sign model releases into a TUF update repository (build host)",
        description=(
            "Put an artifact (model, manifest, reference samples) into a TUF repository as release\n"
            "NAME/VERSION, signed with ed25519 keys for the roles root, targets, snapshot and timestamp\n"
            "(python-tuf). Devices fetch it with `edgerun update`, which refuses expired, rolled-back,\n"
            "mixed or tampered metadata and files."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artifact", metavar="ARTIFACT", nargs="?", help="model file or its manifest (not with --init)")
    p.add_argument("--repo", required=True, metavar="DIR", help="the repository folder (metadata/, targets/)")
    p.add_argument("--keys", required=True, metavar="DIR", help="the signing keys' folder (<role>-<n>.pem)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--init", action="store_true", help="make a new, empty repository and its keys")
    mode.add_argument(
        "--refresh", action="store_true", help="re-sign targets, snapshot and timestamp with new expiries only"
    )
    mode.add_argument(
        "--rotate",
        choices=("root", "targets", "snapshot", "timestamp"),
        metavar="ROLE",
        help="replace ROLE's keys (root, targets, snapshot or timestamp) and sign a new root; needs the root keys",
    )
    p.add_argument("--version", dest="release_version", metavar="V", help="the release's version (required to publish)")
    p.add_argument("--name", metavar="NAME", help="the release's name (default: the manifest's name)")
    p.add_argument(
        "--expires-days",
        type=finite_float(0, 3650, low_open=True),
        default=None,
        metavar="D",
        help="days until the new snapshot and timestamp expire (default 7); devices refuse them afterwards",
    )
    p.add_argument(
        "--threshold",
        type=_threshold,
        action="append",
        default=[],
        metavar="ROLE=N",
        help="with --init: N keys for ROLE, all N needed to sign it (default 1 each; repeatable); "
        "with --rotate: the new key count of the rotated role (default: its threshold)",
    )
    p.add_argument(
        "--root-expires-days",
        type=finite_float(0, 3650, low_open=True),
        default=365.0,
        metavar="D",
        help="with --init or --rotate: days until the root metadata expires (default 365)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_publish, publish_parser=p)


def cmd_publish(args: argparse.Namespace) -> int:
    from edgerun.update import repo

    parser: argparse.ArgumentParser = args.publish_parser
    mode = "init" if args.init else "refresh" if args.refresh else "rotate" if args.rotate else "publish"
    if mode != "publish" and (args.artifact or args.release_version or args.name):
        parser.error(f"--{mode} takes no ARTIFACT, --version or --name")
    if mode not in ("init", "rotate") and args.threshold:
        parser.error("--threshold is only for --init and --rotate")
    if mode == "rotate" and any(role != args.rotate for role, _ in args.threshold):
        parser.error(f"with --rotate {args.rotate}, --threshold may name only {args.rotate}")
    if mode == "publish" and not (args.artifact and args.release_version):
        parser.error("publishing needs ARTIFACT and --version (or use --init / --refresh)")
    days = args.expires_days if args.expires_days is not None else repo.DEFAULT_EXPIRES_DAYS["snapshot"]
    data: dict[str, Any]
    if mode == "init":
        if args.expires_days is not None:
            parser.error("--expires-days is for publishing and --refresh; --init takes --root-expires-days")
        root = repo.init_repo(
            args.repo, args.keys, thresholds=dict(args.threshold), root_expires_days=args.root_expires_days
        )
        data = {"repo": args.repo, "keys": args.keys, "trusted_root": str(root)}
        text = (
            f"new repository {args.repo}, keys in {args.keys}\n"
            f"  devices pin {root}\n"
            f"  move {args.keys}/root-*.pem offline now: publishing needs only the targets, snapshot and "
            "timestamp keys"
        )
    elif mode == "rotate":
        count = dict(args.threshold).get(args.rotate)
        done = repo.rotate_keys(
            args.repo, args.keys, args.rotate, count=count, expires_days=days, root_expires_days=args.root_expires_days
        )
        data = done.to_dict() | {"rotated": args.rotate}
        text = (
            f"new {args.rotate} keys in {args.keys} (the old ones in {args.keys}/retired/); devices move to the new "
            f"root on their next update; timestamp v{done.timestamp_version}"
            + f"\n  move {args.keys}/root-*.pem offline again"
        )
    elif mode == "refresh":
        done = repo.refresh(args.repo, args.keys, expires_days=days)
        data = done.to_dict()
        text = f"re-signed {args.repo}: timestamp v{done.timestamp_version}, expires {done.timestamp_expires}"
    else:
        done = repo.publish(
            args.artifact, args.repo, args.keys, args.name, version=args.release_version, expires_days=days
        )
        data = done.to_dict()
        head = (
            f"published {done.name} {done.version} in {args.repo} (targets v{done.targets_version}, "
            f"timestamp v{done.timestamp_version}, expires {done.timestamp_expires})"
        )
        text = "\n".join([head] + [f"  {path}" for path in done.targets])
    print(json.dumps(data, indent=1) if args.json else text)
    if mode != "init" and not args.json:
        _warn_root_expiry(data["root_expires"])
    return EXIT_PASS


def _warn_root_expiry(root_expires: str, warn_days: float = 30.0) -> None:
    """Say so when root expires soon: after it, every device refuses every update until root is renewed."""
    import sys
    from datetime import datetime, timezone

    left_days = (datetime.fromisoformat(root_expires) - datetime.now(timezone.utc)).total_seconds() / 86400
    if left_days < warn_days:
        print(
            f"edgerun: warning: the repository's root expires {root_expires} (in {left_days:.1f} days); devices "
            "then refuse every update: renew it with --rotate root (needs the root keys)",
            file=sys.stderr,
        )
