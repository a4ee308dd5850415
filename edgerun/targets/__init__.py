"""Device targets: where a benchmark runs. One small protocol, three transports.

    from edgerun.targets import open_target, parse_target
    target = open_target(parse_target("ssh://pi@pi5.local"))
    target.push(Path("model.onnx"), "artifacts/model.onnx")
    done = target.run(["uname", "-a"], timeout_s=10)

- ``local``: this machine (``edgerun.targets.local``)
- ``ssh://[user@]host[:port]``: Raspberry Pi, Jetson, any Linux box over OpenSSH (``.ssh``)
- ``adb://[serial]``: Android over the adb client (``.adb``)

Failures are ``TargetUnreachable``, ``TargetAuthError``, ``TargetTimeout`` or
``TargetSetupError`` (``edgerun.errors``); nothing here waits without a deadline.
``edgerun.targets.bench`` runs ``edgerun bench`` on a target, ``.native`` runs the native
Android benchmark binaries, ``.setup`` prepares a device. labgrid places: ``.labgrid_client``
(the coordinator link) and ``.labgrid_resources`` (a place's SSH board, phone, serial and power
ports); they sit here, below both the lab (which reserves places) and the serial host (which opens a
``labgrid://PLACE`` serial port), so neither needs the other for them.
"""

from __future__ import annotations

from edgerun.targets.base import Completed, Target, command_runner
from edgerun.targets.spec import TargetOptions, TargetSpec, parse_target

__all__ = ["Completed", "Target", "TargetOptions", "TargetSpec", "command_runner", "open_target", "parse_target"]


def open_target(spec: TargetSpec) -> Target:
    """The transport for ``spec`` (nothing is contacted yet)."""
    if spec.kind == "ssh":
        from edgerun.targets.ssh import SshTarget

        return SshTarget(spec)
    if spec.kind == "adb":
        from edgerun.targets.adb import AdbTarget

        return AdbTarget(spec)
    from edgerun.targets.local import LocalTarget

    return LocalTarget(spec)
