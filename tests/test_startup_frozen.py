"""edgerun.formats.frozen: the run path's value classes behave as the frozen dataclasses and the
``NamedTuple`` classes they replaced (issue 13's start-up: ``dataclasses`` is no longer imported by a
remembered run, and each class is ~10x cheaper to create).

The reference is the standard library itself: for each class a frozen dataclass (``Frozen``) or a
``collections.namedtuple`` (``Record``) with the same fields is made here, and equality, hash, repr,
``replace`` and pickling are held to it.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import inspect
import pickle
from pathlib import Path
from typing import Any

import pytest

from edgerun.artifact import Artifact
from edgerun.engines import EngineOptions
from edgerun.errors import UsageError
from edgerun.formats.frozen import Frozen, FrozenInstanceError, Record
from edgerun.formats.manifest import Manifest
from edgerun.formats.spec import ModelInfo, Quant, TensorSpec
from edgerun.pipeline_ops import (
    Cast,
    Dequantize,
    ExpandDims,
    Layout,
    Normalize,
    PostOps,
    Prediction,
    Quantize,
    Resize,
    Scale,
    Softmax,
    TopK,
)
from edgerun.runtime import LoadInfo
from edgerun.threads import CpuLimit, ThreadChoice

SPEC = TensorSpec("x", (1, 28, 28), "float32", Quant(0.5, 3))
MANIFEST = Manifest("m", "onnx", "m.onnx", "ab" * 32, "fp32", (SPEC,), (SPEC,), labels=("a", "b"))
EXAMPLES: list[Frozen] = [
    Prediction(3, "three", 0.25),
    EngineOptions(threads=2, providers=("CPU",)),
    LoadInfo(1, 2, "onnx", "1.20", ("CPUExecutionProvider",), 2, "explicit", "2 (explicit)"),
    MANIFEST,
    Artifact(Path("m.onnx"), "onnx", "fp32", (SPEC,), (SPEC,), "ab" * 32, 10, MANIFEST, Path("m.onnx.edgerun.json")),
]


def reference(obj: Frozen) -> Any:
    """The frozen dataclass ``obj``'s class was, holding the same values."""
    cls = dataclasses.make_dataclass(
        type(obj).__qualname__, [(name, Any) for name in obj.__slots__], frozen=True, eq=True
    )
    return cls(*(getattr(obj, name) for name in obj.__slots__))


@pytest.mark.parametrize("obj", EXAMPLES, ids=lambda o: type(o).__name__)
def test_repr_equality_and_hash_are_the_dataclass_ones(obj: Frozen) -> None:
    ref = reference(obj)
    assert repr(obj) == repr(ref)
    twin = type(obj)(*(getattr(obj, name) for name in obj.__slots__))
    assert twin == obj and twin is not obj
    assert not (twin != obj)  # noqa: SIM202 (__ne__ comes from __eq__, checked on its own)
    assert obj != ref  # another class is never equal, as between two dataclasses
    if isinstance(obj, Manifest | Artifact):  # a dict field (provenance): unhashable, as the dataclass is
        with pytest.raises(TypeError):
            hash(ref)
        with pytest.raises(TypeError):
            hash(obj)
    else:
        assert hash(obj) == hash(twin) == hash(ref)


@pytest.mark.parametrize("obj", EXAMPLES, ids=lambda o: type(o).__name__)
def test_fields_cannot_be_assigned_or_deleted(obj: Frozen) -> None:
    name = obj.__slots__[0]
    with pytest.raises(FrozenInstanceError, match=f"cannot assign to field '{name}'"):
        setattr(obj, name, 1)
    with pytest.raises(AttributeError):  # FrozenInstanceError is one, as dataclasses' is
        delattr(obj, name)
    with pytest.raises(AttributeError):  # slots only: no new attributes either
        obj.not_a_field = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("obj", EXAMPLES, ids=lambda o: type(o).__name__)
def test_replace_pickle_copy_and_match(obj: Frozen) -> None:
    first = obj.__slots__[0]
    changed = obj.replace(**{first: getattr(obj, first)})
    assert changed == obj and changed is not obj
    assert repr(dataclasses.replace(reference(obj), **{first: 7})) == repr(obj.replace(**{first: 7}))
    assert pickle.loads(pickle.dumps(obj)) == obj
    assert copy.deepcopy(obj) == obj and copy.copy(obj) == obj
    assert getattr(type(obj), "__match_args__") == obj.__slots__  # noqa: B009 (mypy does not know it)
    ref = reference(obj)
    assert obj.as_fields() == {f.name: getattr(ref, f.name) for f in dataclasses.fields(ref)}


def test_the_constructors_keep_the_dataclass_signatures() -> None:
    """Positional order and defaults as the dataclasses had them (callers pass both ways)."""
    params = inspect.signature(Manifest).parameters
    assert list(params) == list(Manifest.__slots__)
    assert params["raw_inputs"].default is None and params["labels"].default == ()
    assert list(inspect.signature(Artifact).parameters) == list(Artifact.__slots__)
    assert list(inspect.signature(LoadInfo).parameters) == list(LoadInfo.__slots__)
    assert EngineOptions() == EngineOptions(None, "all", (), False)
    # default_factory=dict: each manifest its own provenance
    a = Manifest("m", "onnx", "m.onnx", "s", "fp32", (), ())
    b = Manifest("m", "onnx", "m.onnx", "s", "fp32", (), ())
    assert a.provenance == {} and a.provenance is not b.provenance


def test_engine_options_still_checks_on_make_and_on_replace() -> None:
    with pytest.raises(UsageError, match="threads must be >= 1"):
        EngineOptions(threads=0)
    with pytest.raises(UsageError, match="graph_optimization must be one of"):
        EngineOptions().replace(graph_optimization="most")
    with pytest.raises(TypeError):  # an unknown field, as dataclasses.replace says
        EngineOptions().replace(thread=2)


RECORDS: list[Record] = [
    Quant(0.5, 3),
    SPEC,
    TensorSpec("y", (None, 10), "int8"),
    ModelInfo("onnx", "fp32", (SPEC,), (SPEC,), 10, {"float32": 10}, {"Conv": 1}, {"ir_version": 9}),
    CpuLimit(2, 8, 2, "2 CPUs: cgroup v2 cpu.max 200000 100000 (affinity mask: 8)"),
    ThreadChoice(2, "explicit", "explicit: 2 (of 2 usable CPUs)"),
    Resize((28, 28)),
    Cast("float32"),
    Scale(1 / 16),
    Normalize((0.3,), (0.3,)),
    Layout("HWC", "CHW"),
    ExpandDims(0),
    Quantize(Quant(0.5, 3), "int8"),
    Dequantize(Quant(0.5, 3)),
    Softmax(),
    TopK(3, ("a", "b")),
    PostOps((Softmax(),), TopK(1, ())),
]


def named_tuple_of(rec: Record) -> Any:
    """The ``collections.namedtuple`` (what ``typing.NamedTuple`` builds) ``rec``'s class was, same values."""
    defaults = tuple(rec._field_defaults.values())
    cls = collections.namedtuple(type(rec).__name__, rec._fields, defaults=defaults or None)  # type: ignore[misc]
    return cls(*rec)


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: type(r).__name__)
def test_records_behave_as_the_named_tuples_they_were(rec: Record) -> None:
    ref = named_tuple_of(rec)
    assert repr(rec) == repr(ref)
    assert rec == ref and tuple(rec) == tuple(ref) and len(rec) == len(ref)  # tuple equality, as before
    assert rec._fields == ref._fields and rec._field_defaults == ref._field_defaults
    assert rec._asdict() == ref._asdict()
    assert all(getattr(rec, name) == rec[i] for i, name in enumerate(rec._fields))
    first = rec._fields[0]
    assert rec._replace(**{first: "z"}) == ref._replace(**{first: "z"})
    assert type(rec)._make(list(rec)) == rec
    if not isinstance(rec, ModelInfo):  # dict fields: unhashable, as the named tuple is
        assert hash(rec) == hash(ref)
    assert pickle.loads(pickle.dumps(rec)) == rec and type(pickle.loads(pickle.dumps(rec))) is type(rec)
    assert copy.deepcopy(rec) == rec and getattr(type(rec), "__match_args__") == rec._fields  # noqa: B009
    with pytest.raises(AttributeError):
        setattr(rec, first, 1)
    with pytest.raises(AttributeError):  # no __dict__, as a named tuple has none
        rec.not_a_field = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_a_field'"):
        rec._replace(not_a_field=1)


def test_a_record_constructor_says_what_is_missing() -> None:
    with pytest.raises(TypeError, match="missing 2 required positional arguments: 'shape' and 'dtype'"):
        TensorSpec("x")  # type: ignore[call-arg]
    assert TensorSpec("x", (1,), "float32").quant is None and Softmax().axis == -1
