"""The reference-sample check of an acceptance: the manifest's top-1 accuracy, held on this device.

Where the manifest names samples with labels (an .npz with ``x`` and ``y``) and
``provenance.accuracy`` gives a ``top1`` value, every sample is run through the runtime and the
update is refused when even the 99.9% upper Wilson score bound of the measured accuracy is below
the manifest's value minus ``tolerance_points``. A bound, not a bare comparison: a manifest may
quote its accuracy on a larger set than the samples it ships (the ECG demo: 900 windows measured,
60 shipped), and 1 miss in 60 is no evidence against 99.9%. Wilson's interval (E. B. Wilson,
"Probable inference, the law of succession, and statistical inference", JASA 22(158), 1927)
stays inside [0, 1] and behaves at 0 and n successes, where the normal approximation does not.

Runs inside the acceptance worker (edgerun.update.accept), never in the updater itself.
"""

from __future__ import annotations

import math
from typing import Any

#: z of the one-sided 99.9% bound used to judge reference-sample accuracy.
WILSON_Z = 3.090


def wilson_upper(correct: int, n: int, z: float = WILSON_Z) -> float:
    """Upper end of the Wilson score interval for ``correct`` of ``n`` (one-sided at ``z``)."""
    p, z2 = correct / n, z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z2 / n))


def reference_check(path: str, tolerance_points: float) -> dict[str, Any] | None:
    """A Verdict-shaped dict for the manifest's top-1 accuracy on its bundled samples, or None
    when the manifest names no labelled samples or no top1 accuracy to hold them to."""
    import numpy as np

    import edgerun

    rt = edgerun.load(path, threads=1)
    man = rt.artifact.manifest
    acc = (man.provenance or {}).get("accuracy") if man else None
    if man is None or man.samples is None or not isinstance(acc, dict) or acc.get("value") is None:
        return None
    assert rt.artifact.manifest_path is not None
    with np.load(rt.artifact.manifest_path.parent / man.samples) as data:
        if "y" not in data:
            return None
        x, y = data["x"], data["y"]
    expected = float(acc["value"])
    if acc.get("metric", "top1") != "top1" or not len(y):
        reason = f"metric {acc.get('metric')!r} is not top1: not checked"
        return {
            "kind": "reference_accuracy",
            "status": "skipped",
            "measured": None,
            "limit": expected,
            "unit": "top1",
            "reason": reason,
            "n": 0,
        }
    correct = sum(int(_top1(rt.run(x[i])) == int(y[i])) for i in range(len(y)))
    upper, floor = wilson_upper(correct, len(y)), expected - tolerance_points / 100
    status = "pass" if upper >= floor else "fail"
    reason = (
        f"top-1 {correct}/{len(y)} = {correct / len(y):.4f} on the bundled samples (99.9% upper bound "
        f"{upper:.4f}) {'>=' if status == 'pass' else '<'} the manifest's {expected:.4f} - {tolerance_points:g} points"
    )
    return {
        "kind": "reference_accuracy",
        "status": status,
        "measured": correct / len(y),
        "limit": floor,
        "unit": "top1",
        "reason": reason,
        "n": len(y),
    }


def _top1(res: Any) -> int:
    """The top class: the manifest's top-k if it asks for one, else the first output's argmax."""
    import numpy as np

    if res.top:
        return int(res.top[0].index)
    return int(np.argmax(next(iter(res.outputs.values())).reshape(-1)))
