#!/usr/bin/env python
"""Build the bundled edgerun demo artifacts (edgerun/demo/).

Trains a small MobileNet-style CNN on scikit-learn's digits dataset (ships inside
scikit-learn, so nothing is downloaded), then exports five artifacts, each with a
``<model file name>.edgerun.json`` manifest beside it (schema: docs/manifest.md), plus
``digits-test.npz``, the 450 raw test images and labels every manifest names as its
``samples``:

    digits-fp32.onnx     torch.onnx.export, BatchNorm folded
    digits-int8.onnx     onnxruntime static QDQ int8, per-channel weights
    digits-int4.onnx     onnxruntime MatMulNBits 4-bit weight-only (pointwise + classifier)
    digits-fp32.tflite   litert-torch conversion
    digits-int8.tflite   ai-edge-quantizer full-integer int8, int8 input and output

Every accuracy in a manifest is measured by running the exported file itself
(onnxruntime / ai-edge-litert), on the numpy pre-processing the manifest describes.

Needs the ``compress`` extra (torch==2.13.0, onnx, onnx-ir, scikit-learn,
litert-torch, ai-edge-quantizer). Rebuild with:

    python tools/build_demo.py --out edgerun/demo --epochs 20 --seed 0

Set SOURCE_DATE_EPOCH to pin the manifests' ``created_utc``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

# Fix the thread count before numpy/torch start their pools: the build is meant to
# be reproducible on a 2-core box, and float reductions depend on the thread split.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # our own log() reports progress

import numpy as np  # noqa: E402

RAW_HW = 8  # sklearn digits are 8x8, values 0..16
SIZE = 64  # model input is 1x1x64x64
SCALE = 1.0 / 16.0
N_CALIB = 200
LABELS = [str(i) for i in range(10)]
REFERENCE_SET = "sklearn digits test split (25%, stratified, seed 0)"
SOURCE_MODEL = "DigitsNet (MobileNet-style CNN, depthwise-separable), PyTorch, seed {seed}"
ARTIFACTS = ("digits-fp32.onnx", "digits-int8.onnx", "digits-int4.onnx", "digits-fp32.tflite", "digits-int8.tflite")
ONNX_OPSET = 17
SAMPLES_FILE = "digits-test.npz"

_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------- data


def load_split(seed: int = 0):
    """Digits as float32 (N, 8, 8) in [0, 16], stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32)
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) interpolation matrix, half-pixel centres.

    Same index maths as torch's upsample_bilinear2d with align_corners=False
    (source coordinate clamped at 0, upper neighbour clamped at n_in - 1), so the
    runtime's numpy resize and the training pipeline agree.
    """
    m = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        frac = src - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    return m.astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes (..., H, W) -> (..., h, w)."""
    rh = _bilinear_matrix(x.shape[-2], size[0])
    rw = _bilinear_matrix(x.shape[-1], size[1])
    # Separable: rows then columns. float32 throughout, like the runtime.
    return np.einsum("ih,...hw,jw->...ij", rh, x.astype(np.float32), rw).astype(np.float32)


def to_scaled(raw: np.ndarray) -> np.ndarray:
    """Steps cast -> resize -> scale of the manifest pipeline, batched (N, 64, 64)."""
    return resize_bilinear(raw.astype(np.float32), (SIZE, SIZE)) * np.float32(SCALE)


def preprocess(raw: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Whole manifest pipeline on a batch: (N, 8, 8) -> (N, 1, 1, 64, 64) float32.

    Each item is one model-ready (1, 1, 64, 64) tensor, because the models have a
    fixed batch of 1.
    """
    x = (to_scaled(raw) - np.float32(mean)) / np.float32(std)
    return x[:, None, None, :, :].astype(np.float32)


def check_resize_against_torch() -> float:
    """Max |numpy - torch interpolate| over random 8x8 images (should be ~1e-6)."""
    import torch
    import torch.nn.functional as F

    x = np.random.default_rng(123).uniform(0, 16, size=(16, RAW_HW, RAW_HW)).astype(np.float32)
    ref = F.interpolate(
        torch.from_numpy(x)[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=False
    )[:, 0].numpy()
    return float(np.abs(resize_bilinear(x, (SIZE, SIZE)) - ref).max())


def norm_stats(train_raw: np.ndarray) -> tuple[float, float]:
    """Single mean/std of the train split after resize+scale, rounded to 4 dp."""
    s = to_scaled(train_raw).astype(np.float64)
    return round(float(s.mean()), 4), round(float(s.std()), 4)


def shift_augment(raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random +-1 pixel shift of each 8x8 image (zero fill), before the resize."""
    pad = np.pad(raw, ((0, 0), (1, 1), (1, 1)))
    off = rng.integers(0, 3, size=(len(raw), 2))
    return np.stack([pad[i, dy : dy + RAW_HW, dx : dx + RAW_HW] for i, (dy, dx) in enumerate(off)])


# -------------------------------------------------------------------------- model

import torch  # noqa: E402
from torch import nn  # noqa: E402


def _fold_bn(layer: nn.Module, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the preceding conv/linear (out axis 0)."""
    s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    w = layer.weight.detach()
    b = layer.bias.detach() if layer.bias is not None else torch.zeros_like(bn.running_mean)
    layer.weight = nn.Parameter(w * s.reshape(-1, *([1] * (w.dim() - 1))))
    layer.bias = nn.Parameter((b - bn.running_mean) * s + bn.bias.detach())


class ConvBN(nn.Module):
    """Conv (stem or depthwise 3x3) + BatchNorm + ReLU6."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU6()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        _fold_bn(self.conv, self.bn)
        self.bn = nn.Identity()


class Pointwise(nn.Module):
    """1x1 conv written as a Linear over the channel axis of an NHWC view.

    Why: ONNX export then gives MatMul (not Conv), and MatMul is the only op that
    onnxruntime's MatMulNBits int4 weight-only quantizer handles. Numerically it is
    the same as a 1x1 convolution.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fc = nn.Linear(cin, cout, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU6()

    def forward(self, x):
        x = self.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.act(self.bn(x))

    def fuse(self) -> None:
        _fold_bn(self.fc, self.bn)
        self.bn = nn.Identity()


# (cin, cout, stride) of the depthwise-separable blocks; the stem halves 64 -> 32, the
# blocks go 32 -> 16 -> 8. Widths are picked for ~270k parameters and ~35M MACs: about
# a millisecond per fp32 inference on one desktop core, so latency budgets are visible.
BLOCKS = ((32, 64, 1), (64, 128, 1), (128, 128, 2), (128, 256, 1), (256, 256, 2), (256, 512, 1))


class DigitsNet(nn.Module):
    """MobileNet-v1-style CNN for 1x1x64x64 digits."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [ConvBN(1, BLOCKS[0][0], stride=2)]
        for cin, cout, stride in BLOCKS:
            layers += [ConvBN(cin, cin, stride, groups=cin), Pointwise(cin, cout)]
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.2)
        self.classifier = nn.Linear(BLOCKS[-1][1], n_classes)

    def forward(self, x):
        x = self.features(x).mean(dim=(2, 3))
        # (N, 1, C) keeps the classifier a MatMul+Add in ONNX (a 2-D Linear becomes Gemm,
        # which the int4 quantizer skips); the reshape back is free.
        x = self.classifier(self.drop(x).unsqueeze(1))
        return x.reshape(x.shape[0], -1)

    def fused(self) -> DigitsNet:
        """An eval-mode copy with every BatchNorm folded into its conv/linear."""
        m = copy.deepcopy(self).eval()
        for layer in m.features:
            layer.fuse()
        return m


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameters split by where they end up: MatMul (int4-able) vs conv."""
    mm = sum(p.numel() for n, p in model.named_parameters() if ".fc." in n or "classifier" in n)
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "matmul": mm, "conv": total - mm}


# ----------------------------------------------------------------------- training


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    return np.random.default_rng(seed)


def train(train_raw, train_y, mean, std, epochs: int, seed: int) -> DigitsNet:
    """Adam + one-cycle schedule, +-1 px shift augmentation, label smoothing."""
    rng = seed_everything(seed)
    model = DigitsNet()
    bs = 64
    steps = epochs * int(np.ceil(len(train_raw) / bs))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    y_all = torch.from_numpy(train_y)
    for ep in range(epochs):
        model.train()
        x_all = torch.from_numpy(preprocess(shift_augment(train_raw, rng), mean, std)[:, 0])
        order = torch.from_numpy(rng.permutation(len(train_raw)))
        total = 0.0
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            loss = loss_fn(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(f"  epoch {ep + 1:2d}/{epochs}  loss {total / len(order):.4f}")
    return model.eval()


@torch.no_grad()
def torch_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.eval()(torch.from_numpy(x[:, 0]))
    return float((logits.argmax(1).numpy() == y).mean())


# ------------------------------------------------------------------------- export


def export_onnx_fp32(fused: DigitsNet, path: Path) -> None:
    """TorchScript exporter (dynamo=False): plain opset-17 graph, fixed batch 1."""
    sample = torch.zeros(1, 1, SIZE, SIZE)
    with warnings_quiet():
        torch.onnx.export(
            fused,
            (sample,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    _strip_onnx_noise(path)


def _strip_onnx_noise(path: Path) -> None:
    """Drop exporter metadata that varies between runs, so rebuilds are byte-stable."""
    import onnx

    m = onnx.load(str(path))
    m.producer_version = ""
    del m.metadata_props[:]
    onnx.save(m, str(path))


class _CalibReader:
    """onnxruntime CalibrationDataReader over preprocessed train images."""

    def __init__(self, input_name: str, calib: np.ndarray):
        self._it = iter([{input_name: x} for x in calib])

    def get_next(self):
        return next(self._it, None)


def export_onnx_int8(fp32: Path, path: Path, calib: np.ndarray) -> None:
    """Static QDQ int8: per-channel int8 weights, int8 activations (MinMax)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        quantize_static(
            str(pre),
            str(path),
            _CalibReader("input", calib),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
    _strip_onnx_noise(path)


def export_onnx_int4(fp32: Path, path: Path) -> int:
    """MatMulNBits 4-bit weight-only (symmetric, block 32) on every MatMul.

    Convs (stem, depthwise) are not touched by this quantizer and stay fp32.
    Returns the number of weight elements that ended up int4.
    """
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # The quantizer logs one INFO line per node; keep the build output readable.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    q = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=4, block_size=32, is_symmetric=True)
    q.process()
    q.model.save_model_to_file(str(path), use_external_data_format=False)
    _strip_onnx_noise(path)
    return _onnx_int4_elements(path)


def _onnx_int4_elements(path: Path) -> int:
    """Weight elements stored packed as 4-bit (the K x N of every MatMulNBits)."""
    import onnx

    total = 0
    for node in onnx.load(str(path)).graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            total += attrs["K"] * attrs["N"]
    return total


@contextlib.contextmanager
def warnings_quiet():
    """Mute Python warnings and INFO/WARNING log records from the converters."""
    import logging
    import warnings

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def export_tflite_fp32(fused: DigitsNet, path: Path) -> None:
    """litert-torch conversion (it lays the graph out NHWC internally)."""
    with warnings_quiet():
        import litert_torch

        edge = litert_torch.convert(fused.eval(), (torch.zeros(1, 1, SIZE, SIZE),))
    edge.export(str(path))


def export_tflite_int8(fp32: Path, path: Path, calib: np.ndarray) -> None:
    """ai-edge-quantizer static int8: int8 activations, per-channel int8 weights.

    With a static (activation) config on every op, the quantizer also quantizes the
    graph's input and output tensors, so the file takes and returns int8.
    """
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(str(fp32))
    q.add_static_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    sig, in_name = _tflite_signature(fp32)
    with warnings_quiet(), _quiet_stdio():
        qsv = q.calibrate({sig: [{in_name: x} for x in calib]}, num_threads=2)
        result = q.quantize(qsv, enable_progress_report=False)
    path.unlink(missing_ok=True)
    result.export_model(str(path))
    path.chmod(0o644)  # the quantizer writes it executable; keep git's view clean


def _tflite_signature(path: Path) -> tuple[str, str]:
    """(signature key, its single input name) of a converted model."""
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_path=str(path)).get_signature_list()
    key = next(iter(sigs))
    return key, sigs[key]["inputs"][0]


@contextlib.contextmanager
def _quiet_stdio():
    """Silence tqdm bars / prints from third-party calibration code."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


# --------------------------------------------------------------------- evaluation


def onnx_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    # One intra-op thread: deterministic sums, and the edge-device-like number.
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def tflite_interpreter(path: Path, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    return it


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """The manifest's `quantize` op: clip(round(x / scale) + zp) to dtype's range."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def run_onnx(path: Path, xs: np.ndarray) -> np.ndarray:
    """Logits of every (1,1,64,64) item of xs, through onnxruntime."""
    sess = onnx_session(path)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x})[0] for x in xs])


def run_tflite(path: Path, xs: np.ndarray) -> np.ndarray:
    """Logits (dequantized when the output is int8) of every item, through LiteRT."""
    it = tflite_interpreter(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    logits = []
    for x in xs:
        if np.issubdtype(inp["dtype"], np.integer):
            x = quantize(x, *inp["quantization"], inp["dtype"])
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"]).astype(np.float32)
        if np.issubdtype(out["dtype"], np.integer):
            scale, zp = out["quantization"]
            y = scale * (y - zp)
        logits.append(y)
    return np.concatenate(logits)


def bench_ms(path: Path, threads: int = 1, iters: int = 300, warmup: int = 30) -> float:
    """Median ms of one bare engine call (no pre/post-processing), batch 1."""
    if path.suffix == ".onnx":
        sess = onnx_session(path, threads)
        feed = {sess.get_inputs()[0].name: np.zeros((1, 1, SIZE, SIZE), np.float32)}

        def call():
            sess.run(None, feed)
    else:
        it = tflite_interpreter(path, threads)
        inp = it.get_input_details()[0]
        x = np.zeros(inp["shape"], inp["dtype"])

        def call():
            it.set_tensor(inp["index"], x)
            it.invoke()

    times = []
    for i in range(warmup + iters):
        t = time.perf_counter()
        call()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


# ----------------------------------------------------------------------- manifest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def onnx_specs(path: Path) -> tuple[list[dict], list[dict]]:
    """Input/output TensorSpecs as the ONNX graph declares them (float IO: no quant)."""
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {i.name for i in graph.initializer}

    def spec(vi) -> dict:
        t = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        return {"name": vi.name, "shape": shape, "dtype": dtype, "quant": None}

    return [spec(v) for v in graph.input if v.name not in inits], [spec(v) for v in graph.output]


def tflite_specs(path: Path) -> tuple[list[dict], list[dict]]:
    """TensorSpecs as the LiteRT interpreter reports them, quant params included."""
    it = tflite_interpreter(path)

    def spec(d: dict) -> dict:
        scale, zp = d["quantization"]
        quant = {"scale": float(scale), "zero_point": int(zp)} if scale else None
        return {
            "name": d["name"],
            "shape": [int(s) for s in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quant": quant,
        }

    return [spec(d) for d in it.get_input_details()], [spec(d) for d in it.get_output_details()]


def pipeline(inputs: list[dict], outputs: list[dict], mean: float, std: float):
    """preprocess / postprocess op lists; quantize/dequantize only for int8 IO."""
    pre = [
        {"op": "cast", "dtype": "float32"},
        {"op": "resize", "size": [SIZE, SIZE], "method": "bilinear", "layout": "HW"},
        {"op": "scale", "factor": SCALE},
        {"op": "normalize", "mean": [mean], "std": [std]},
        {"op": "expand_dims", "axis": 0},
        {"op": "expand_dims", "axis": 0},
    ]
    post = [{"op": "softmax"}, {"op": "topk", "k": 3}]
    if inputs[0]["quant"] is not None:
        pre.append({"op": "quantize"})
    if outputs[0]["quant"] is not None:
        post.insert(0, {"op": "dequantize"})
    return pre, post


def write_samples(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """The manifests' `samples`: an .npz with raw inputs `x` and labels `y`.

    Written by hand rather than np.savez so the zip entries carry a fixed timestamp
    and the file is byte-identical across rebuilds.
    """
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, arr in (("x", x.astype(np.float32)), ("y", y.astype(np.int64))):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def created_utc() -> str:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible builds convention)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_manifest(path: Path, art: dict, mean: float, std: float, seed: int) -> dict:
    """Write <model file name>.edgerun.json beside the model (docs/manifest.md, v1)."""
    fmt = "onnx" if path.suffix == ".onnx" else "tflite"
    inputs, outputs = (onnx_specs if fmt == "onnx" else tflite_specs)(path)
    pre, post = pipeline(inputs, outputs, mean, std)
    prov = {"source_model": SOURCE_MODEL.format(seed=seed), "recipe": art["recipe"]}
    if art.get("parent"):
        prov["parent_sha256"] = sha256(art["parent"])
    prov |= {
        "tool": "tools/build_demo.py",
        "created_utc": created_utc(),
        "accuracy": {
            "reference_set": REFERENCE_SET,
            "metric": "top1",
            "value": round(art["accuracy"], 4),
            "n": art["n"],
            "measured_with": art["measured_with"],
        },
        "agreement_with_fp32": round(art["agreement"], 4),
    }
    manifest = {
        "schema": "edgerun.manifest",
        "schema_version": 1,
        "name": f"digits-cnn-{path.stem.split('-', 1)[1]}-{fmt}",
        "format": fmt,
        "model_file": path.name,
        "sha256": sha256(path),
        "precision": art["precision"],
        "inputs": inputs,
        "outputs": outputs,
        "raw_inputs": [{"name": "image", "shape": [RAW_HW, RAW_HW], "dtype": "float32", "quant": None}],
        "preprocess": pre,
        "postprocess": post,
        "labels": LABELS,
        "provenance": prov,
        "samples": SAMPLES_FILE,
    }
    mpath = path.with_name(path.name + ".edgerun.json")
    mpath.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --------------------------------------------------------------------------- main


def ver(pkg: str) -> str:
    return metadata.version(pkg)


def export_all(fused: DigitsNet, out: Path, calib: np.ndarray) -> dict[str, dict]:
    """Write the five model files; return each one's precision / recipe / lineage."""
    p = {name: out / name for name in ARTIFACTS}
    n_total = count_params(fused)["total"]
    ort_v, aeq_v, lt_v = ver("onnxruntime"), ver("ai-edge-quantizer"), ver("litert-torch")
    log("4/8 export digits-fp32.onnx")
    export_onnx_fp32(fused, p["digits-fp32.onnx"])
    log("5/8 quantize digits-int8.onnx, digits-int4.onnx")
    export_onnx_int8(p["digits-fp32.onnx"], p["digits-int8.onnx"], calib)
    n4 = export_onnx_int4(p["digits-fp32.onnx"], p["digits-int4.onnx"])
    log("6/8 convert digits-fp32.tflite, quantize digits-int8.tflite")
    export_tflite_fp32(fused, p["digits-fp32.tflite"])
    export_tflite_int8(p["digits-fp32.tflite"], p["digits-int8.tflite"], calib)
    int4_share = n4 / n_total
    calib_txt = f"{len(calib)} calibration images from the train split"
    return {
        "digits-fp32.onnx": dict(
            precision="fp32",
            parent=None,
            recipe=(
                f"torch {torch.__version__} torch.onnx.export (TorchScript exporter, opset "
                f"{ONNX_OPSET}), batch 1, BatchNorm folded; 1x1 convs are MatMuls over the "
                f"channel axis (NHWC)"
            ),
        ),
        "digits-int8.onnx": dict(
            precision="int8",
            parent=p["digits-fp32.onnx"],
            recipe=(
                f"onnxruntime {ort_v} quant_pre_process + quantize_static, QDQ, int8 "
                f"activations (MinMax, per-tensor), int8 symmetric per-channel weights, "
                f"{calib_txt}; float32 input/output"
            ),
        ),
        "digits-int4.onnx": dict(
            precision="int4" if int4_share > 0.5 else "mixed",
            parent=p["digits-fp32.onnx"],
            recipe=(
                f"onnxruntime {ort_v} MatMulNBitsQuantizer, weight-only 4-bit symmetric, "
                f"block 32: {n4} of {n_total} parameters ({100 * int4_share:.1f}%, all "
                f"pointwise and classifier MatMuls) are int4; the stem and depthwise "
                f"convs and all biases ({n_total - n4} parameters) stay fp32; "
                f"activations fp32"
            ),
        ),
        "digits-fp32.tflite": dict(
            precision="fp32",
            parent=None,
            recipe=(f"litert-torch {lt_v} convert of the same BatchNorm-folded torch weights as digits-fp32.onnx"),
        ),
        "digits-int8.tflite": dict(
            precision="int8",
            parent=p["digits-fp32.tflite"],
            recipe=(
                f"ai-edge-quantizer {aeq_v} static full-integer quantization of "
                f"digits-fp32.tflite: int8 activations (asymmetric per-tensor), int8 symmetric "
                f"per-channel weights, int32 biases, int8 input and output; {calib_txt}"
            ),
        ),
    }


def evaluate_all(arts: dict[str, dict], out: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Top-1 of each exported file on the test split, and top-1 agreement with fp32.

    Agreement is against the artifact's fp32 parent (digits-fp32.tflite for the int8
    TFLite, digits-fp32.onnx for everything else).
    """
    preds = {}
    for name, art in arts.items():
        path = out / name
        if path.suffix == ".onnx":
            logits, art["measured_with"] = run_onnx(path, x), f"onnxruntime {ver('onnxruntime')}"
        else:
            logits = run_tflite(path, x)
            art["measured_with"] = f"ai-edge-litert {ver('ai-edge-litert')}"
        preds[name] = art["pred"] = logits.argmax(1)
        art["accuracy"], art["n"] = float((preds[name] == y).mean()), len(y)
        ref = art["parent"].name if art["parent"] else "digits-fp32.onnx"
        art["agreement"] = float((preds[name] == preds[ref]).mean())
        log(f"  {name:20s} top1 {art['accuracy']:.4f}  agreement {art['agreement']:.4f}")


def cross_check_runtime(arts: dict[str, dict], out: Path, raw: np.ndarray, y: np.ndarray):
    """Optional: run raw 8x8 images through edgerun.load(...).run(), which applies the
    manifest's pre/post-processing itself; its top-1 should match ours image by image."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import edgerun

        for name, art in arts.items():
            rt = edgerun.load(out / name)
            pred = np.array([rt.run(img).top[0].index for img in raw])
            log(
                f"  edgerun {name:20s} top1 {np.mean(pred == y):.4f}  "
                f"same top-1 as the direct engine run: {np.mean(pred == art['pred']):.4f}"
            )
    except Exception as exc:  # the runtime is optional here and may be mid-rewrite
        log(f"  (edgerun runtime cross-check skipped: {type(exc).__name__}: {exc})")


def print_table(arts: dict[str, dict], out: Path, n_params: int, bench: bool) -> None:
    head = f"{'artifact':20s} {'KB':>8s} {'params':>8s} {'precision':>9s} {'top1':>7s} {'agree':>7s} {'ms/inf':>7s}"
    print("\n" + head + "\n" + "-" * len(head))
    for name, art in arts.items():
        path = out / name
        ms = f"{bench_ms(path):7.3f}" if bench else f"{'-':>7s}"
        print(
            f"{name:20s} {path.stat().st_size / 1024:8.1f} {n_params:8d} "
            f"{art['precision']:>9s} {art['accuracy']:7.4f} {art['agreement']:7.4f} {ms}"
        )
    if bench:
        print("ms/inf: median of 300 bare engine calls, batch 1, 1 thread, no pre/post")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "edgerun" / "demo",
        help="output folder (default: edgerun/demo)",
    )
    ap.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    ap.add_argument("--no-bench", action="store_true", help="skip the latency column")
    ap.add_argument(
        "--check-runtime", action="store_true", help="also cross-check accuracy through edgerun.load(...).run()"
    )
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log("1/8 data: sklearn digits, stratified 75/25 split (seed 0)")
    err = check_resize_against_torch()
    log(f"  numpy bilinear resize vs torch interpolate: max abs diff {err:.2e}")
    if err > 1e-5:
        raise SystemExit("numpy resize disagrees with torch; pre-processing would drift")
    train_raw, test_raw, train_y, test_y = load_split(0)
    mean, std = norm_stats(train_raw)
    log(f"  train {len(train_raw)}, test {len(test_raw)}, normalize mean {mean} std {std}")
    log(f"2/8 train DigitsNet, {args.epochs} epochs, seed {args.seed}, 2 threads")
    model = train(train_raw, train_y, mean, std, args.epochs, args.seed)
    fused = model.fused()
    x_test = preprocess(test_raw, mean, std)
    n_params = count_params(fused)["total"]
    log(f"3/8 folded BatchNorm: {n_params} parameters, torch top1 {torch_accuracy(fused, x_test, test_y):.4f}")
    arts = export_all(fused, args.out, preprocess(train_raw[:N_CALIB], mean, std))
    log("7/8 evaluate every exported file on the 450 test images")
    evaluate_all(arts, args.out, x_test, test_y)
    log(f"8/8 write manifests and {SAMPLES_FILE}")
    write_samples(args.out / SAMPLES_FILE, test_raw, test_y)
    for name, art in arts.items():
        write_manifest(args.out / name, art, mean, std, args.seed)
    if args.check_runtime:
        cross_check_runtime(arts, args.out, test_raw, test_y)
    print_table(arts, args.out, n_params, not args.no_bench)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
