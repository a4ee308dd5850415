"""The manifest schema (docs/manifest.md) as pydantic models, and the one function that applies it.

``validate_manifest(data, where)`` checks every field of a parsed manifest (types, required
keys, enums, finite numbers, positive shapes, the limits of ``edgerun.formats.limits``) and
returns ``edgerun.formats.manifest.Manifest`` (re-exported by edgerun.artifact); the first
problem is an ``ArtifactError`` of one line:

    m.json: preprocess[1].size[0]: expected an integer <= 8192; got 1000000000

Types are strict, as JSON is: ``"64"`` is not an integer, ``true`` is not a number, ``1.5`` is
not an int. Unknown keys are refused (a typo such as ``"postprocesss"`` would otherwise drop
the softmax without a word). Op dicts are kept as written (no defaults filled in), so a tool
that reads and rewrites a manifest writes the same bytes.

Imported only when a manifest is parsed (``edgerun.artifact.parse_manifest``): building these
models costs tens of milliseconds that ``import edgerun`` does not pay.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)

from edgerun.errors import ArtifactError
from edgerun.formats.manifest import FORMATS, PRECISIONS, Manifest
from edgerun.schema import limits as L
from edgerun.schema.manifest_cache import build_manifest

DTYPES = (
    "float32",
    "float16",
    "float64",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "bool",
)
PRE_OPS = ("cast", "resize", "scale", "normalize", "layout", "expand_dims", "quantize")
POST_OPS = ("dequantize", "softmax", "argmax", "topk")


def _utf8(value: str) -> str:
    """JSON's ``"\\ud800"`` escape yields a lone surrogate: a str that cannot be printed or written as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"a string with an unpaired surrogate at character {exc.start}; expected UTF-8 text") from None
    return value


def _text(max_chars: int, min_chars: int = 0) -> Any:
    return Annotated[str, Field(min_length=min_chars, max_length=max_chars), AfterValidator(_utf8)]


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("a path with a NUL character; expected a file name")
    return value


if TYPE_CHECKING:  # built by a function call, which a static checker cannot read as a type
    Name = str
    FileName = str
else:
    Name = _text(L.MAX_NAME_CHARS)
    FileName = Annotated[_text(L.MAX_PATH_CHARS, 1), AfterValidator(_no_nul)]
# Strict float takes JSON ints too, never bools or strings ("nan"); allow_inf_nan=False refuses NaN/inf.
Finite = StrictFloat
Dtype = Literal[DTYPES]  # type: ignore[valid-type]
Axis = Annotated[StrictInt, Field(ge=-L.MAX_RANK - 1, le=L.MAX_RANK)]
Dim = Annotated[StrictInt, Field(ge=1, le=L.MAX_TENSOR_ELEMENTS)]


class _Strict(BaseModel):
    # JSON types as written, no coercion; unknown keys are errors; NaN/Infinity never pass.
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class QuantModel(_Strict):
    scale: Annotated[Finite, Field(gt=0)]
    zero_point: Annotated[StrictInt, Field(ge=-(1 << 31), lt=1 << 31)]


class TensorSpecModel(_Strict):
    name: Name
    shape: Annotated[list[Dim | None], Field(max_length=L.MAX_RANK)]
    dtype: Dtype
    quant: QuantModel | None = None

    @model_validator(mode="after")
    def _bounded(self) -> TensorSpecModel:
        count = math.prod(d for d in self.shape if d is not None)
        if count > L.MAX_TENSOR_ELEMENTS:
            raise ValueError(
                f"shape {self.shape} has {count} elements; expected at most {L.MAX_TENSOR_ELEMENTS} (2**28)"
            )
        return self


# --- pre-processing ops ---------------------------------------------------------------


class CastOp(_Strict):
    op: Literal["cast"]
    dtype: Dtype


class ResizeOp(_Strict):
    op: Literal["resize"]
    size: Annotated[list[Annotated[StrictInt, Field(ge=1, le=L.MAX_RESIZE_SIDE)]], Field(min_length=2, max_length=2)]
    method: Literal["bilinear", "nearest"] = "bilinear"
    layout: Literal["HW", "HWC", "CHW"] = "HWC"


class ScaleOp(_Strict):
    op: Literal["scale"]
    factor: Finite


class NormalizeOp(_Strict):
    op: Literal["normalize"]
    mean: Annotated[list[Finite], Field(min_length=1, max_length=L.MAX_CHANNELS)]
    std: Annotated[list[Finite], Field(min_length=1, max_length=L.MAX_CHANNELS)]
    axis: Axis = -1

    @model_validator(mode="after")
    def _matching(self) -> NormalizeOp:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values and std {len(self.std)}; expected equal lengths")
        if any(s == 0 for s in self.std):
            raise ValueError("std has a 0; expected non-zero values (it divides)")
        return self


Letters = Annotated[str, Field(min_length=1, max_length=L.MAX_RANK, pattern=r"^[A-Z]+$")]


class LayoutOp(_Strict):
    model_config = ConfigDict(populate_by_name=False)
    op: Literal["layout"]
    src: Letters = Field(alias="from")
    dst: Letters = Field(alias="to")

    @model_validator(mode="after")
    def _permutation(self) -> LayoutOp:
        if len(set(self.src)) != len(self.src) or sorted(self.src) != sorted(self.dst):
            raise ValueError(f"layout {self.src!r} -> {self.dst!r}; expected two orders of the same distinct letters")
        return self


class ExpandDimsOp(_Strict):
    op: Literal["expand_dims"]
    axis: Axis


class QuantizeOp(_Strict):
    op: Literal["quantize"]


PreOp = Annotated[
    CastOp | ResizeOp | ScaleOp | NormalizeOp | LayoutOp | ExpandDimsOp | QuantizeOp, Field(discriminator="op")
]


# --- post-processing ops --------------------------------------------------------------


class DequantizeOp(_Strict):
    op: Literal["dequantize"]


class SoftmaxOp(_Strict):
    op: Literal["softmax"]
    axis: Axis = -1


class ArgmaxOp(_Strict):
    op: Literal["argmax"]


class TopKOp(_Strict):
    op: Literal["topk"]
    k: Annotated[StrictInt, Field(ge=1, le=L.MAX_TOPK)]


PostOp = Annotated[DequantizeOp | SoftmaxOp | ArgmaxOp | TopKOp, Field(discriminator="op")]


# --- provenance -----------------------------------------------------------------------


def _walk(value: Any, depth: int = 0) -> Iterator[tuple[Any, int]]:
    """Every value nested in ``value`` with its depth, iteratively (a deep document must not recurse)."""
    stack = [(value, depth)]
    while stack:
        item, d = stack.pop()
        yield item, d
        if isinstance(item, dict):
            stack.extend((k, d + 1) for k in item)
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)


def _bounded_json(value: Any) -> Any:
    for item, depth in _walk(value):
        if depth > L.MAX_PROVENANCE_DEPTH:
            raise ValueError(f"nested deeper than {L.MAX_PROVENANCE_DEPTH} levels; expected a shallower object")
        if isinstance(item, str):
            if len(item) > L.MAX_TEXT_CHARS:
                raise ValueError(f"a string of {len(item)} characters; expected at most {L.MAX_TEXT_CHARS}")
            _utf8(item)
    return value


class AccuracyModel(_Strict):
    model_config = ConfigDict(extra="allow")
    value: Finite | None = None
    n: Annotated[StrictInt, Field(ge=0)] | None = None


class SignalModel(_Strict):
    """What the serial host checks a device stream against (docs/serial-protocol.md)."""

    model_config = ConfigDict(extra="allow")
    sample_rate_hz: Annotated[Finite, Field(gt=0)] | None = None
    window_samples: Annotated[StrictInt, Field(ge=1, le=L.MAX_TENSOR_ELEMENTS)] | None = None
    channels: Annotated[StrictInt, Field(ge=1, le=L.MAX_CHANNELS)] | None = None


class ProvenanceModel(_Strict):
    """Free-form (every field optional, any key), bounded; the fields edgerun computes with are typed."""

    model_config = ConfigDict(extra="allow")
    accuracy: AccuracyModel | None = None
    signal: SignalModel | None = None


class ManifestModel(_Strict):
    schema_: Literal["edgerun.manifest"] = Field(alias="schema")
    schema_version: StrictInt
    name: _text(L.MAX_NAME_CHARS, 1)  # type: ignore[valid-type]
    format: Literal[FORMATS]  # type: ignore[valid-type]
    model_file: FileName
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
    precision: Literal[PRECISIONS]  # type: ignore[valid-type]
    inputs: Annotated[list[TensorSpecModel], Field(min_length=1, max_length=L.MAX_TENSORS)]
    outputs: Annotated[list[TensorSpecModel], Field(min_length=1, max_length=L.MAX_TENSORS)]
    raw_inputs: Annotated[list[TensorSpecModel], Field(min_length=1, max_length=L.MAX_TENSORS)] | None = None
    # null for the lists and provenance means "none", as edgerun has always read it.
    preprocess: Annotated[list[PreOp], Field(max_length=L.MAX_OPS)] | None = None
    postprocess: Annotated[list[PostOp], Field(max_length=L.MAX_OPS)] | None = None
    labels: Annotated[list[_text(L.MAX_LABEL_CHARS)], Field(max_length=L.MAX_LABELS)] | None = None  # type: ignore[valid-type]
    provenance: Annotated[ProvenanceModel, BeforeValidator(_bounded_json)] | None = None
    samples: FileName | None = None


# --- errors ---------------------------------------------------------------------------

_EXPECTED = {  # pydantic's error type -> what a manifest author should write instead
    "missing": "a required key is missing",
    "extra_forbidden": "an unknown key; expected only the keys docs/manifest.md lists",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "string_type": "expected a string",
    "string_unicode": "expected UTF-8 text (a string with an unpaired surrogate)",
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "finite_number": "expected a finite number",
    "union_tag_not_found": "an op without an 'op' key; expected {{'op': NAME, ...}}",
    "greater_than_equal": "expected a value >= {ge}",
    "less_than_equal": "expected a value <= {le}",
    "greater_than": "expected a value > {gt}",
    "less_than": "expected a value < {lt}",
    "too_short": "expected at least {min_length} item(s)",
    "too_long": "expected at most {max_length} item(s)",
    "string_too_short": "expected at least {min_length} character(s)",
    "string_too_long": "expected at most {max_length} characters",
    "string_pattern_mismatch": "expected a string matching {pattern}",
}
_PATTERNS = {
    "sha256": "expected 64 hexadecimal digits (the model file's sha256)",
    "from": "expected capital letters such as 'HWC'",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        # A discriminated union puts the op's tag in the path: preprocess[1].resize.size -> preprocess[1].size
        if i == 2 and loc[0] in ("preprocess", "postprocess") and part in PRE_OPS + POST_OPS:
            continue
        if part == "schema_":
            part = "schema"
        elif part in ("src", "dst") and i == 3:
            part = {"src": "from", "dst": "to"}[str(part)]
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"


def _message(err: Mapping[str, Any], path: str) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "union_tag_invalid":
        kinds = PRE_OPS if path.startswith("preprocess") else POST_OPS
        return f"unknown op {ctx.get('tag')!r}; expected one of {', '.join(kinds)}"
    if kind == "string_pattern_mismatch":
        last = path.rsplit(".", 1)[-1]
        return _PATTERNS.get("from" if last == "to" else last, _EXPECTED[kind].format(**ctx))
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in _EXPECTED:
        return _EXPECTED[kind].format(**ctx)
    return "expected " + err["msg"].replace("Input should be ", "")


def _error(where: str, exc: ValidationError) -> ArtifactError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = _path(tuple(first["loc"]))
    value = first.get("input")
    # A whole object would repeat what the path already names; a missing key has no value.
    got = "" if first["type"] == "missing" or isinstance(value, dict) else f"; got {_shown(value)}"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    text = f"{where}: {path}: {_message(first, path)}{got}{more}"
    return ArtifactError(" ".join(text.split()))  # one line, whatever the value held


def validate_manifest(data: Any, where: str) -> Manifest:
    """A checked ``edgerun.formats.manifest.Manifest`` from a parsed manifest document, or ArtifactError."""
    try:
        ManifestModel.model_validate(data)
    except ValidationError as exc:
        raise _error(where, exc) from None
    except RecursionError:  # nested past what the validator walks
        raise ArtifactError(f"{where}: nested too deep to validate; expected a manifest (docs/manifest.md)") from None
    # Strict validation coerces nothing, so the document's own values are the checked ones; the
    # Manifest is built from them by the builder a remembered pass uses too.
    return build_manifest(data)
