#!/usr/bin/env python
"""Build the bundled ECG demo artifacts (edgerun/demo/ecg/) for the serial host.

Trains a small 1D CNN that classifies 4-second single-lead ECG windows at 250 Hz
(1000 samples, in mV) into three rhythms, on SIMULATED data only: every window
comes from ``edgerun.serialhost.ecgsim`` (the McSharry et al. 2003 dynamical ECG
model with normal sinus, AF-like and frequent-PVC rhythms; see that module).
Nothing is downloaded and no patient data is involved; the model says nothing
about real ECGs. Windows are independent simulated records (their own heart
rate, gain, noise, baseline wander), with disjoint seeds for train and test.

Writes, each model with a ``<file>.edgerun.json`` manifest (docs/manifest.md):

    ecg-fp32.onnx     torch.onnx.export, BatchNorm folded
    ecg-int8.onnx     onnxruntime static QDQ int8, per-channel weights, float IO
    ecg-fp32.tflite   litert-torch conversion
    ecg-int8.tflite   ai-edge-quantizer full-integer int8, int8 input and output (what an MCU runs)
    ecg-test.npz      60 raw test windows (x, mV) and labels (y): the manifests' samples

Every accuracy in a manifest is measured by running the exported file itself on
the 900-window simulated test split, with the manifest's pre-processing.
Export helpers (quantizers, converters, reproducible npz) come from the compression
toolkit (edgerun.compress), and every accuracy is measured through edgerun's own
runtime (``edgerun.load(path).run(window)``), as the toolkit's gate does. Needs the
``compress`` extra. About a minute on 2 cores:

    SOURCE_DATE_EPOCH=1795800000 python tools/build_ecg_demo.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import metadata
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")  # reproducible float reductions on a 2-core box

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import edgerun  # noqa: E402
from edgerun.artifact import Manifest, inspect_model, sha256_file, write_manifest  # noqa: E402
from edgerun.compress.export import ONNX_OPSET, created_utc, quiet, strip_onnx_noise, write_samples  # noqa: E402
from edgerun.compress.quantize import onnx_int8_static, tflite_int8  # noqa: E402
from edgerun.compress.train import seed_everything  # noqa: E402
from edgerun.serialhost.ecgsim import RHYTHMS, simulate_window  # noqa: E402

FS_HZ = 250
WINDOW_S = 4
N = FS_HZ * WINDOW_S
ARTIFACTS = ("ecg-fp32.onnx", "ecg-int8.onnx", "ecg-fp32.tflite", "ecg-int8.tflite")
SAMPLES_FILE = "ecg-test.npz"
TRAIN_PER_CLASS, TEST_PER_CLASS, SAMPLES_PER_CLASS = 1500, 300, 20
TEST_SEED0 = 1_000_000
N_CALIB = 300
SIGNAL = {"sample_rate_hz": FS_HZ, "window_samples": N, "channels": 1, "unit": "mV", "lead": "single lead"}
DATA = (
    "SIMULATED ECG, not clinical data: edgerun.serialhost.ecgsim (McSharry et al. 2003 dynamical model) "
    "rhythms normal sinus / AF-like / frequent PVCs; 4 s windows at 250 Hz; not for diagnosis"
)
REFERENCE_SET = (
    f"simulated test split: {TEST_PER_CLASS * 3} windows ({TEST_PER_CLASS} per rhythm, seeds from {TEST_SEED0})"
)

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def make_split(per_class: int, seed0: int) -> tuple[np.ndarray, np.ndarray]:
    """(per_class * 3, N) float32 mV windows and int64 labels; window i of class c uses seed seed0 + 3 i + c."""
    xs, ys = [], []
    for i in range(per_class):
        for c, rhythm in enumerate(RHYTHMS):
            xs.append(simulate_window(rhythm, WINDOW_S, FS_HZ, seed0 + 3 * i + c))
            ys.append(c)
    return np.stack(xs).astype(np.float32), np.asarray(ys, dtype=np.int64)


class ConvBN1d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, k, 2, k // 2, bias=False)
        self.bn = nn.BatchNorm1d(cout)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        s = self.bn.weight.detach() / torch.sqrt(self.bn.running_var + self.bn.eps)
        self.conv.weight = nn.Parameter(self.conv.weight.detach() * s[:, None, None])
        self.conv.bias = nn.Parameter(self.bn.bias.detach() - self.bn.running_mean * s)
        self.bn = nn.Identity()


# (cin, cout, kernel), each stride 2: 1000 -> 16 samples, receptive field about 1.5 s (two beats)
LAYERS = ((1, 8, 7), (8, 16, 7), (16, 24, 5), (24, 32, 5), (32, 32, 5), (32, 32, 3))


class EcgNet(nn.Module):
    """Six strided conv blocks, global average pooling, one linear layer: about 15k parameters."""

    def __init__(self, n_classes: int = len(RHYTHMS)):
        super().__init__()
        self.features = nn.Sequential(*[ConvBN1d(*spec) for spec in LAYERS])
        self.classifier = nn.Linear(LAYERS[-1][1], n_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=2))

    def fused(self) -> EcgNet:
        import copy

        m = copy.deepcopy(self).eval()
        for block in m.features:
            block.fuse()
        return m


def train(x: np.ndarray, y: np.ndarray, std: float, epochs: int, seed: int) -> EcgNet:
    rng = seed_everything(seed)
    model = EcgNet()
    bs, steps = 64, epochs * int(np.ceil(len(x) / 64))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    xt, yt = torch.from_numpy(model_input(x, std)[:, 0]), torch.from_numpy(y)
    for ep in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        total = 0.0
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(f"  epoch {ep + 1:2d}/{epochs}  loss {total / len(order):.4f}")
    return model.eval()


def model_input(raw: np.ndarray, std: float) -> np.ndarray:
    """The manifest's pre-processing, batched: (B, N) mV -> (B, 1, 1, N) float32 (each item is one feed)."""
    return (raw / np.float32(std))[:, None, None, :].astype(np.float32)


def export_all(fused: EcgNet, out: Path, calib: np.ndarray) -> dict[str, dict]:
    p = {name: out / name for name in ARTIFACTS}
    with quiet():
        torch.onnx.export(
            fused,
            (torch.zeros(1, 1, N),),
            str(p["ecg-fp32.onnx"]),
            input_names=["input"],
            output_names=["logits"],
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    strip_onnx_noise(p["ecg-fp32.onnx"])
    onnx_int8_static(p["ecg-fp32.onnx"], p["ecg-int8.onnx"], calib)
    with quiet():
        import litert_torch

        litert_torch.convert(fused.eval(), (torch.zeros(1, 1, N),)).export(str(p["ecg-fp32.tflite"]))
    tflite_int8(p["ecg-fp32.tflite"], p["ecg-int8.tflite"], calib)
    ort_v, aeq_v, lt_v = (metadata.version(k) for k in ("onnxruntime", "ai-edge-quantizer", "litert-torch"))
    calib_txt = f"{len(calib)} calibration windows from the simulated train split"
    return {
        "ecg-fp32.onnx": {"precision": "fp32", "parent": None, "recipe": f"torch {torch.__version__} onnx export"},
        "ecg-int8.onnx": {
            "precision": "int8",
            "parent": p["ecg-fp32.onnx"],
            "recipe": f"onnxruntime {ort_v} quantize_static QDQ, int8 per-channel weights, {calib_txt}; float IO",
        },
        "ecg-fp32.tflite": {"precision": "fp32", "parent": None, "recipe": f"litert-torch {lt_v} convert"},
        "ecg-int8.tflite": {
            "precision": "int8",
            "parent": p["ecg-fp32.tflite"],
            "recipe": f"ai-edge-quantizer {aeq_v} full-integer int8, int8 input and output, {calib_txt}",
        },
    }


def evaluate(arts: dict[str, dict], out: Path, raw: np.ndarray, y: np.ndarray) -> None:
    """Top-1 of each file through edgerun's runtime on the raw mV windows (manifest pre-processing included)."""
    for name, art in arts.items():
        rt = edgerun.load(out / name, threads=1)
        pred = np.array([rt.run(window).top[0].index for window in raw])
        art["measured_with"] = f"edgerun {edgerun.__version__} ({rt.load_info.engine} {rt.load_info.engine_version})"
        art["accuracy"], art["n"] = float((pred == y).mean()), len(y)
        log(f"  {name:18s} top1 {art['accuracy']:.4f}")


def write_one_manifest(path: Path, art: dict, std: float, seed: int) -> None:
    bare = inspect_model(path)  # IO specs (and int8 quant params) as the engine reads them from the file
    pre: list[dict] = [
        {"op": "cast", "dtype": "float32"},
        {"op": "normalize", "mean": [0.0], "std": [std]},
        {"op": "expand_dims", "axis": 0},
        {"op": "expand_dims", "axis": 0},
    ]
    post: list[dict] = [{"op": "softmax"}, {"op": "topk", "k": 3}]
    if bare.inputs[0].quant is not None:
        pre.append({"op": "quantize"})
    if bare.outputs[0].quant is not None:
        post.insert(0, {"op": "dequantize"})
    prov = {
        "source_model": f"EcgNet (1D CNN, {sum(p.numel() for p in EcgNet().parameters())} parameters), seed {seed}",
        "recipe": art["recipe"],
        "data": DATA,
        "signal": SIGNAL,
        "tool": "tools/build_ecg_demo.py",
        "created_utc": created_utc(),
    }
    if "accuracy" in art:  # absent on the first write: accuracy is measured through that manifest
        prov["accuracy"] = {
            "reference_set": REFERENCE_SET,
            "metric": "top1",
            "value": round(art["accuracy"], 4),
            "n": art["n"],
            "measured_with": art["measured_with"],
        }
    if art["parent"] is not None:
        prov["parent_sha256"] = sha256_file(art["parent"])
    fmt = bare.format
    manifest = Manifest(
        name=f"ecg-cnn-{path.stem.split('-', 1)[1]}-{fmt}",
        format=fmt,
        model_file=path.name,
        sha256=sha256_file(path),
        precision=art["precision"],
        inputs=bare.inputs,
        outputs=bare.outputs,
        raw_inputs=(type(bare.inputs[0])("ecg", (N,), "float32", None),),
        preprocess=tuple(pre),
        postprocess=tuple(post),
        labels=RHYTHMS,
        provenance=prov,
        samples=SAMPLES_FILE,
    )
    write_manifest(manifest, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "edgerun" / "demo" / "ecg")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log(f"1/5 simulate {TRAIN_PER_CLASS} train and {TEST_PER_CLASS} test windows per rhythm: {', '.join(RHYTHMS)}")
    x_train, y_train = make_split(TRAIN_PER_CLASS, 0)
    x_test, y_test = make_split(TEST_PER_CLASS, TEST_SEED0)
    std = round(float(x_train.std()), 4)
    log(f"  {time.perf_counter() - t0:.1f} s; normalize: divide by the train std {std} mV")
    log(f"2/5 train EcgNet, {args.epochs} epochs")
    fused = train(x_train, y_train, std, args.epochs, args.seed).fused()
    log("3/5 export and quantize")
    arts = export_all(fused, args.out, model_input(x_train[:N_CALIB], std))
    log("4/5 write manifests and samples")
    keep = np.concatenate([np.flatnonzero(y_test == c)[:SAMPLES_PER_CLASS] for c in range(len(RHYTHMS))])
    write_samples(args.out / SAMPLES_FILE, x_test[keep], y_test[keep])
    for name, art in arts.items():
        write_one_manifest(args.out / name, art, std, args.seed)
    log("5/5 evaluate every exported file through edgerun's runtime on the simulated test split")
    evaluate(arts, args.out, x_test, y_test)
    for name, art in arts.items():
        write_one_manifest(args.out / name, art, std, args.seed)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
