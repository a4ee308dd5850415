"""FP32 export of a trained torch model (ONNX, TFLite) and the edgerun manifest beside it.

Exports are batch 1 with BatchNorm folded: what an edge device runs. The manifest
(docs/manifest.md) carries the pre/post-processing that edgerun's runtime applies, and
provenance: the recipe, the parent model, and every metric the run measured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgerun.artifact import Manifest, TensorSpec, inspect_model, model_sha256, write_manifest
from edgerun.compress.data import Dataset, manifest_pipeline
from edgerun.errors import CompressError

ONNX_OPSET = 17
# The model's tensor names in every export: ONNX's input_names / output_names; a .pte holds no names,
# so its manifest carries these (``build_manifest``); TFLite keeps the converter's signature names.
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Mute the converters' Python warnings, INFO/WARNING records and tqdm bars / prints."""
    logging.disable(logging.WARNING)
    try:
        with (
            warnings.catch_warnings(),
            open(os.devnull, "w") as null,
            contextlib.redirect_stdout(null),
            contextlib.redirect_stderr(null),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """TorchScript exporter (dynamo=False): a plain opset-17 graph, fixed batch 1.

    ``input_shape`` is one pre-processed sample's shape (the data's ``input_shape``): (1, 64, 64)
    for a digit, (30,) for a row of features, (1, 256) for a one-channel signal."""
    sample = torch.zeros(1, *input_shape)
    with quiet():
        torch.onnx.export(
            model.eval(),
            (sample,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    strip_onnx_noise(path)
    return path


def strip_onnx_noise(path: Path) -> None:
    """Drop exporter metadata that varies between runs, so rebuilds are byte-stable."""
    import onnx

    m = onnx.load(str(path))
    m.producer_version = ""
    del m.metadata_props[:]
    onnx.save(m, str(path))


def export_tflite(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """litert-torch conversion (it lays the graph out NHWC internally)."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # our own progress lines report it
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO lines bypass Python logging
    with quiet():
        try:
            import litert_torch
        except ImportError as exc:  # its litert-converter has wheels for Linux x86-64 and macOS arm64 only
            raise CompressError(
                "TFLite export needs litert-torch, whose converter has wheels for Linux x86-64 and macOS arm64 "
                f"only ({exc}); build on one of those or leave the tflite [[export]] out of the recipe"
            ) from exc

        edge = litert_torch.convert(model.eval(), (torch.zeros(1, *input_shape),))
        edge.export(str(path))
    return path


def created_utc() -> str:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible builds convention)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_manifest(
    path: Path, name: str, data: Dataset, provenance: dict[str, Any], samples: str | None, precision: str = ""
) -> Manifest:
    """A manifest for the model file at ``path``: IO specs (and precision, unless given) read from the file.

    ``precision`` is passed by the producer: a ``mixed`` INT8/FP32 graph reads as int8 from the file alone.
    """
    info = inspect_model(path)
    inputs, outputs = info.inputs, info.outputs
    if info.format == "pte" and len(inputs) == len(outputs) == 1:  # the file's input_0 / output_0 are placeholders
        inputs = (inputs[0]._replace(name=INPUT_NAME),)  # TensorSpec is a NamedTuple (formats/spec.py)
        outputs = (outputs[0]._replace(name=OUTPUT_NAME),)
    pre, post = manifest_pipeline(data)
    if info.inputs[0].quant is not None:
        pre.append({"op": "quantize"})
    if info.outputs[0].quant is not None:
        post.insert(0, {"op": "dequantize"})
    return Manifest(
        name=name,
        format=info.format,
        model_file=path.name,
        sha256=model_sha256(path, info.format)[0],  # the file's, or with its external data (docs/manifest.md)
        precision=precision or info.precision,
        inputs=inputs,
        outputs=outputs,
        raw_inputs=(raw_spec(data),),
        preprocess=tuple(pre),
        postprocess=tuple(post),
        labels=data.labels,
        provenance=provenance,
        samples=samples,
    )


def raw_spec(data: Dataset) -> TensorSpec:
    """One raw sample as the user's data has it: what ``edgerun run`` is given."""
    return TensorSpec(data.raw_name, tuple(int(d) for d in data.train_x.shape[1:]), str(data.train_x.dtype))


def save_manifest(manifest: Manifest, model_path: Path) -> Path:
    return write_manifest(manifest, model_path)


def write_samples(path: Path, x: Any, y: Any) -> None:
    """The manifests' ``samples``: an .npz of raw inputs ``x`` (their own dtype) and labels ``y``, byte-stable."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, arr in (("x", x), ("y", y.astype(np.int64))):  # x as the raw spec declares it
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
