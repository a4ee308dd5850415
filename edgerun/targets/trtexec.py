"""TensorRT's ``trtexec`` as the native runner of an SSH target (a Jetson): its command line.

``ssh://jetson?runner=native&trtexec=/usr/src/tensorrt/bin/trtexec&trtexec_precision=fp16``
benchmarks an ONNX artifact with ``trtexec --onnx=MODEL``: TensorRT builds an engine from it
(the cold start, seconds to minutes; ``Engine built in X sec.``), then times queries. The
output is parsed by ``edgerun.targets.trtexec_parse``; the result is built like the other
native binaries' (``edgerun.targets.native_result``).

Flags (samples/trtexec/README.md and samples/common/sampleOptions.cpp in NVIDIA/TensorRT):
``--iterations=N`` (at least N queries), ``--duration=S`` (at least S seconds, whole seconds:
TensorRT 7/8 parse an int), ``--warmUp=MS``, ``--fp16`` / ``--int8`` (let TensorRT pick FP16 /
INT8 kernels; an INT8 Q/DQ ONNX model needs ``--int8`` before TensorRT 10). ``--useSpinWait``
is not passed: trtexec's defaults are what users compare with.
"""

from __future__ import annotations

import math

from edgerun.errors import TargetSetupError
from edgerun.targets.base import Target
from edgerun.targets.options import BenchOptions
from edgerun.targets.staging import StagedArtifact

__all__ = ["trtexec_argv"]


def trtexec_argv(target: Target, staged: StagedArtifact, options: BenchOptions) -> list[str]:
    """The ``trtexec`` command line for a staged ONNX artifact; TargetSetupError when it cannot run one."""
    o = target.spec.options
    if staged.format != "onnx":
        raise TargetSetupError(
            f"{target.spec.label}: the native runner of ssh targets is trtexec, which takes ONNX models; "
            f"{staged.name} is {staged.format} (leave runner=native out to benchmark it with the device's edgerun)"
        )
    if not o.trtexec:
        raise TargetSetupError(
            f"{target.spec.label}: runner=native needs trtexec=PATH in the target options "
            "(JetPack installs it as /usr/src/tensorrt/bin/trtexec)"
        )
    argv = [o.trtexec, f"--onnx={staged.remote_model}", f"--iterations={options.runs}"]
    argv += [f"--duration={max(0, math.ceil(options.min_seconds))}", f"--warmUp={round(options.warmup_seconds * 1000)}"]
    for flag in (o.trtexec_precision or "").split(","):
        if flag:
            argv.append(f"--{flag}")
    return argv
