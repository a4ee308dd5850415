"""The size limits every boundary shares, in one place (no third-party imports).

Each limit sits far above anything a real edge artifact needs and far below what would
let a typo allocate gigabytes: a ``resize`` to 1e9 x 1e9, a tensor spec of 2**40
elements, a samples file that is a whole disk image.
"""

from __future__ import annotations

MiB = 1 << 20

#: ``resize`` target, per side. 8192 px covers whole-slide tiles and 8K frames.
MAX_RESIZE_SIDE = 8192
#: Elements of one tensor (known dims multiplied): 2**28 float32 values are 1 GiB.
MAX_TENSOR_ELEMENTS = 1 << 28
#: Dimensions of one tensor (numpy itself stops at 32, 64 in numpy 2).
MAX_RANK = 16
#: Inputs or outputs of one model.
MAX_TENSORS = 1024
#: Ops in ``preprocess`` or ``postprocess``.
MAX_OPS = 64
#: Channels in a ``normalize`` op's mean / std.
MAX_CHANNELS = 4096
#: Class labels, and the length of one label.
MAX_LABELS = 100_000
MAX_LABEL_CHARS = 256
#: ``topk``'s k.
MAX_TOPK = MAX_LABELS
#: Names (the artifact's, a tensor's) and file names in a manifest.
MAX_NAME_CHARS = 1024
MAX_PATH_CHARS = 4096
#: Any other string (provenance notes, recipes), and how deep provenance may nest.
MAX_TEXT_CHARS = 64 * 1024
MAX_PROVENANCE_DEPTH = 32
#: A samples .npz beside the manifest (``samples``): real inputs for bench and run, not a data set.
MAX_SAMPLES_BYTES = 1024 * MiB
#: An ONNX file edgerun's own reader inspects: protobuf itself cannot hold a message past 2 GiB.
MAX_ONNX_INSPECT_BYTES = 2048 * MiB
#: An ONNX dimension edgerun reports as a number; past it (or negative) it is shown as unknown.
MAX_DIM = (1 << 31) - 1
#: Parameters an ONNX initializer may declare (2**40: a terabyte model is not an edge model).
MAX_INITIALIZER_ELEMENTS = 1 << 40
