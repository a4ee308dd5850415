"""Fold a recipe's static pre-processing into the exported model (``fold_preprocessing = true``).

The manifest's trailing ``scale`` / ``normalize`` ops are one per-element affine map,
``model_input = z * a + b`` (``z``: the sample after the ops that stay). An export with
``fold_preprocessing`` moves that map into the network before it is exported, so every format
gets it (ONNX, TFLite, ``.pte``, Core ML), and the manifest keeps only the ops that cannot fold
(``cast``, ``resize``, ``layout``, ``expand_dims``, and any affine op before a ``cast`` or
``resize``: index ops only move elements, so an affine op before them folds with ``a``, ``b``
moved the same way). ``edgerun run`` then skips the affine pass on every call.

Where the map goes (``fold_into``), found on the ``torch.export`` graph of the model:

- into the first layer's weights and bias when that is exact: the input (through flatten /
  view only) feeds one ``linear`` (``W' = W * a``, ``bias' = bias + W @ b``, per input
  element), or one ``conv1d/2d/3d`` with ``groups = 1`` whose ``a`` and ``b`` are constant
  per input channel and whose zero padding pads zeros either way (no padding, or ``b = 0``:
  a padded border of the raw input is not the padded border of the normalized one);
- otherwise as explicit ``x * a + b`` ops at the head of the graph (``Affine``): the same
  arithmetic the runtime would do, one kernel of the engine instead of a numpy pass.

The result is checked, not assumed: the runner measures the folded file against the same
export without folding on the test split (``FoldCheck``: max |difference| of the first output,
top-1 of both, samples whose top-1 moved) and refuses the folded file when top-1 moved by more
than the export's ``max_drop_points``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgerun.compress.data import Dataset
from edgerun.errors import CompressError

Op = dict[str, Any]
AFFINE_OPS = ("scale", "normalize")
INDEX_OPS = ("layout", "expand_dims")  # move elements only: an affine op before them still folds
_VIEWS = ("aten.flatten.using_ints", "aten.view.default", "aten.reshape.default", "aten._unsafe_view.default")
_CONVS = ("aten.conv1d.default", "aten.conv2d.default", "aten.conv3d.default")


@dataclass(frozen=True)
class Folding:
    """The pre-processing split in two: ``kept`` stays in the manifest, ``folded`` goes into the model
    as ``x * a + b`` (``a``, ``b`` float64, broadcastable to one model input sample)."""

    kept: tuple[Op, ...]
    folded: tuple[Op, ...]
    a: np.ndarray
    b: np.ndarray

    def dataset(self, data: Dataset) -> Dataset:
        """``data`` as the folded model sees it: the kept ops make its model input."""
        from edgerun.compress.preprocess import _batch

        return dataclasses.replace(data, pre_ops=self.kept, prepare=_batch(self.kept), augment=None, _cache={})


def split(pre_ops: Sequence[Op], where: str, raw_sample: np.ndarray) -> Folding:
    """Fold the trailing run of ``scale`` / ``normalize`` ops; the index ops among them (``layout``,
    ``expand_dims``) stay in the manifest, in their order, and move ``a`` and ``b`` as they move the sample.

    ``raw_sample``: one raw sample, to know the rank of the tensor the run starts from."""
    start = len(pre_ops)
    while start > 0 and pre_ops[start - 1]["op"] in (*AFFINE_OPS, *INDEX_OPS):
        start -= 1
    run = list(pre_ops[start:])
    folded = tuple(op for op in run if op["op"] in AFFINE_OPS)
    if not folded:
        last = pre_ops[-1]["op"] if pre_ops else "nothing"
        raise CompressError(
            f"{where}: fold_preprocessing: nothing to fold; the pre-processing ends in {last!r} "
            f"(scale / normalize ops at its end fold, after any cast, resize or layout)"
        )
    kept = tuple(pre_ops[:start]) + tuple(op for op in run if op["op"] in INDEX_OPS)
    from edgerun.compress.preprocess import apply_ops

    ndim = apply_ops(list(pre_ops[:start]), raw_sample[None]).ndim - 1
    a, b = np.ones((1,) * ndim), np.zeros((1,) * ndim)
    for op in run:  # in the coordinates of the current sample, as edgerun.pipeline_ops applies them
        if op["op"] == "scale":
            a, b = a * op["factor"], b * op["factor"]
        elif op["op"] == "normalize":
            a, b = _normalize(a, b, op)
        elif op["op"] == "layout":  # as edgerun.pipeline_ops.Layout transposes the sample
            perm = [op["from"].index(c) for c in op["to"]]
            a, b = a.transpose(perm), b.transpose(perm)
        else:
            a, b = np.expand_dims(a, op["axis"]), np.expand_dims(b, op["axis"])
    return Folding(kept, folded, a, b)


def _normalize(a: np.ndarray, b: np.ndarray, op: Op) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(op["mean"], np.float32).astype(np.float64)
    std = np.asarray(op["std"], np.float32).astype(np.float64)
    if mean.size > 1:  # along ``axis`` of the sample, as edgerun.pipeline_ops.Normalize broadcasts
        shape = [1] * a.ndim
        shape[int(op.get("axis", -1))] = mean.size
        mean, std = mean.reshape(shape), std.reshape(shape)
    return a / std, (b - mean) / std


class Affine(nn.Module):
    """``x * a + b`` ahead of ``model``: the folded pre-processing as explicit graph ops."""

    a: torch.Tensor
    b: torch.Tensor

    def __init__(self, model: nn.Module, a: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("a", torch.from_numpy(a.astype(np.float32))[None])
        self.register_buffer("b", torch.from_numpy(b.astype(np.float32))[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.a + self.b)


def fold_into(model: nn.Module, folding: Folding, input_shape: tuple[int, ...]) -> tuple[nn.Module, str]:
    """A copy of ``model`` that takes the kept ops' output; and how the map went in (for the manifest)."""
    shape = tuple(int(d) for d in input_shape)
    a = np.broadcast_to(folding.a.reshape((1,) * (len(shape) - folding.a.ndim) + folding.a.shape), shape)
    b = np.broadcast_to(folding.b.reshape((1,) * (len(shape) - folding.b.ndim) + folding.b.shape), shape)
    model = copy.deepcopy(model).eval()
    layer, why = _first_layer(model, shape)
    if layer is not None:
        kind, name, weight_name, viewed = layer
        module: Any = model.get_submodule(weight_name.rpartition(".")[0])
        if kind == "linear":
            why = _fold_linear(module, a, b, viewed)
        else:
            why = _fold_conv(module, a, b)
        if not why:
            return model, f"into the weights and bias of {name} ({type(module).__name__}), the first layer"
    return Affine(model, np.ascontiguousarray(a), np.ascontiguousarray(b)), f"as Mul/Add ops ahead of the model: {why}"


def _first_layer(model: nn.Module, shape: tuple[int, ...]) -> tuple[tuple[str, str, str, bool] | None, str]:
    """(kind, module name, weight parameter name, through a view) of the one layer the input feeds, or why not."""
    try:
        ep = torch.export.export(model, (torch.zeros(1, *shape),))
    except Exception as exc:  # noqa: BLE001 (any tracing failure means: fold as explicit ops)
        return None, f"torch.export could not trace the model ({type(exc).__name__})"
    sig = ep.graph_signature
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == sig.user_inputs[0])
    viewed = False
    while len(node.users) == 1 and str(next(iter(node.users)).target) in _VIEWS:
        node, viewed = next(iter(node.users)), True
    users = list(node.users)
    if len(users) != 1:
        return None, f"the input feeds {len(users)} operations, not one layer"
    use = users[0]
    target = str(use.target)
    if target != "aten.linear.default" and (target not in _CONVS or viewed):
        return None, f"the input's first operation is {target}, not a linear or convolution layer"
    w = use.args[1]
    param = sig.inputs_to_parameters.get(getattr(w, "name", ""), "")
    if not param or len(w.users) != 1 or use.args[0] is not node:
        return None, "the first layer's weight is not a parameter of its own"
    if target in _CONVS:
        padding = use.args[4] if len(use.args) > 4 else 0
        groups = use.args[6] if len(use.args) > 6 else 1
        if groups != 1:
            return None, f"the first convolution is grouped (groups = {groups})"
        pads = [padding] if isinstance(padding, (int, str)) else list(padding)
        kind = "conv-padded" if any(p not in (0, "valid") for p in pads) else "conv"
    else:
        kind = "linear"
    return (kind, param.rpartition(".")[0], param, viewed), ""


def _fold_linear(module: Any, a: np.ndarray, b: np.ndarray, viewed: bool) -> str:
    w = module.weight
    if w.shape[1] != a.size or (not viewed and a.ndim != 1):
        return f"the first linear layer takes {w.shape[1]} features of a {list(a.shape)} input"
    af, bf = (torch.from_numpy(v.reshape(-1).astype(np.float64)) for v in (a, b))
    with torch.no_grad():
        w64 = w.double()
        shift = w64 @ bf
        _set_bias(module, shift)
        w.copy_((w64 * af[None, :]).to(w.dtype))
    return ""


def _fold_conv(module: Any, a: np.ndarray, b: np.ndarray) -> str:
    per_c = [v.reshape(v.shape[0], -1) for v in (a, b)]  # (channels, positions)
    if any(np.ptp(v, axis=1).any() for v in per_c):
        return "the map is not constant per input channel"
    ac, bc = per_c[0][:, 0].copy(), per_c[1][:, 0].copy()
    if any(p != 0 for p in _pads(module)) and bc.any():
        return (
            f"the first layer pads its input with zeros and the shift is non-zero: folded into its weights, "
            f"the padded border would change ({type(module).__name__} padding {module.padding})"
        )
    w = module.weight
    expand = (1, -1) + (1,) * (w.ndim - 2)
    with torch.no_grad():
        w64 = w.double()
        shift = (w64 * torch.from_numpy(bc).reshape(expand)).sum(dim=tuple(range(1, w.ndim)))
        _set_bias(module, shift)
        w.copy_((w64 * torch.from_numpy(ac).reshape(expand)).to(w.dtype))
    return ""


def _pads(module: Any) -> list[int]:
    p = module.padding
    if isinstance(p, str):
        return [0] if p == "valid" else [1]
    return list(p)


def _set_bias(module: Any, shift: torch.Tensor) -> None:
    if module.bias is None:
        module.bias = nn.Parameter(shift.to(module.weight.dtype))
    else:
        module.bias.copy_((module.bias.double() + shift).to(module.bias.dtype))


@dataclass(frozen=True)
class FoldCheck:
    """The folded file against the same export unfolded, both through edgerun's runtime on the test split."""

    unfolded_file: str
    n: int
    max_abs_diff: float  # of the first model output, over all n samples
    top1: float
    top1_unfolded: float
    top1_moved: int  # samples whose top-1 class differs

    @property
    def change_points(self) -> float:
        return abs(self.top1 - self.top1_unfolded) * 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "against": self.unfolded_file,
            "reference_set_n": self.n,
            "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
            "top1": round(self.top1, 4),
            "top1_unfolded": round(self.top1_unfolded, 4),
            "top1_moved_samples": self.top1_moved,
            "measured_with": "edgerun runtime, 1 thread",
        }


def check(folded: Path, unfolded: Path, raw_x: np.ndarray, y: np.ndarray) -> FoldCheck:
    """Run both files on every raw test sample: the largest output difference and both top-1s."""
    import edgerun

    rts = [edgerun.load(p, threads=1) for p in (folded, unfolded)]
    diff, moved, correct = 0.0, 0, [0, 0]
    for x, label in zip(raw_x, y):
        res = [rt.run(x) for rt in rts]
        outs = [next(iter(r.outputs.values())).astype(np.float64) for r in res]
        diff = max(diff, float(np.max(np.abs(outs[0] - outs[1]))))
        tops = [r.top[0].index for r in res]
        moved += int(tops[0] != tops[1])
        correct = [c + int(t == label) for c, t in zip(correct, tops)]
    n = len(y)
    return FoldCheck(unfolded.name, n, diff, correct[0] / n, correct[1] / n, moved)


def gate_fold(verdict: Any, result: FoldCheck, log: Any, file_name: str) -> Any:
    """The export's verdict, failed when folding moved top-1 by more than its ``max_drop_points``
    against the same export unfolded (``verdict``: a gate.GateVerdict)."""
    log(
        f"  {file_name}: folded vs {result.unfolded_file}: top-1 {result.top1:.2%} vs {result.top1_unfolded:.2%} "
        f"({result.top1_moved} of {result.n} samples moved), max |diff| {result.max_abs_diff:.3g}"
    )
    if result.change_points <= verdict.max_drop_points + 1e-9:
        return verdict
    why = (
        f"folding the pre-processing moved top-1 by {result.change_points:.2f} points against {result.unfolded_file} "
        f"({result.top1:.2%} vs {result.top1_unfolded:.2%}); the gate allows {verdict.max_drop_points:g}"
    )
    reason = f"{verdict.reason}; {why}" if not verdict.passed else why
    return dataclasses.replace(verdict, passed=False, reason=reason)
