"""Cheap immutable value classes for the run path: ``Frozen`` (was: frozen dataclasses) and
``Record`` (was: ``typing.NamedTuple``).

Every ``edgerun run`` creates the classes of the modules it imports, and how a class is made costs
start-up CPU (issue 13's goal; ``python tools/bench_startup.py --imports``). ``@dataclass`` writes
six methods as source text and compiles them, ~0.5 ms per class plus ~0.7 ms to import
``dataclasses``; ``typing.NamedTuple`` compiles each string annotation into a ``ForwardRef`` and
``collections.namedtuple`` evals its ``__new__``, ~0.1-0.2 ms per class. A subclass of either base
here lists its fields once and writes its own constructor; the methods below, compiled once with
this module, give it the rest, ~0.01 ms per class.

``Frozen`` subclasses (``Manifest``, ``Artifact``, ``EngineOptions``, ``LoadInfo``, ``Prediction``)
behave as the frozen dataclasses they were:

- equality field by field with an object of the same class (``NotImplemented`` otherwise),
  and the matching hash (a ``TypeError`` when a field is unhashable, e.g. a dict);
- ``repr`` as ``Name(field=value, ...)``;
- immutability: assigning or deleting an attribute raises ``FrozenInstanceError``
  (an ``AttributeError``, as ``dataclasses.FrozenInstanceError`` is);
- ``replace(**changes)``, a copy with some fields changed: what ``dataclasses.replace`` did;
- pickling and ``copy`` (the constructor called with the fields, in order);
- ``__match_args__`` for ``match`` statements.

No ``__dict__`` (slots only), so ``vars(obj)`` does not work; ``as_fields()`` gives the fields
as a dict.

``Record`` subclasses (``TensorSpec``, ``Quant``, ``ModelInfo``, the pipeline ops, the thread
choice) are tuples, as the ``NamedTuple`` classes they were: fields by name and by index,
unpacking, tuple equality and hash, ``repr`` as ``Name(field=value, ...)``, ``_fields``,
``_field_defaults``, ``_replace``, ``_asdict``, ``_make``, pickling, ``__match_args__``.

Both live in ``edgerun.formats``, the lowest layer, so that every layer can use them.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, ClassVar, TypeVar

__all__ = ["Frozen", "FrozenInstanceError", "Record"]

F = TypeVar("F", bound="Frozen")
R = TypeVar("R", bound="Record")


class FrozenInstanceError(AttributeError):
    """An attempt to assign to or delete a field of a frozen object."""


class Frozen:
    """Base class: subclasses set ``__slots__`` to their field names, in constructor order, and
    assign each field in ``__init__`` with ``object.__setattr__`` (or ``_set_fields``)."""

    __slots__: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__match_args__ = cls.__slots__  # type: ignore[attr-defined,misc]  # as a dataclass has

    def _set_fields(self, *values: Any) -> None:
        """Assign ``values`` to the fields in ``__slots__`` order (for ``__init__``)."""
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def as_fields(self) -> dict[str, Any]:
        """The fields by name, in order (shallow: values are not copied)."""
        return {name: getattr(self, name) for name in self.__slots__}

    def replace(self: F, **changes: Any) -> F:
        """A copy with ``changes`` applied (through ``__init__``, so its checks run again)."""
        return type(self)(**{**self.as_fields(), **changes})

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({inner})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), self._values()


class Record(tuple):  # type: ignore[type-arg]  # a tuple of any fields, as a NamedTuple is
    """Base class: a subclass sets ``__slots__ = ()`` and ``_fields`` (the names, in order), annotates
    each field for readers and type checkers, and writes ``__new__`` returning
    ``tuple.__new__(cls, (field, ...))``; each field becomes a read-only property here."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _field_defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for i, name in enumerate(cls._fields):
            setattr(cls, name, property(itemgetter(i), doc=f"Alias for field number {i}"))
        defaults = cls.__new__.__defaults__ or ()
        cls._field_defaults = dict(zip(cls._fields[len(cls._fields) - len(defaults) :], defaults))
        cls.__match_args__ = cls._fields  # type: ignore[attr-defined,misc]  # as a NamedTuple has

    @classmethod
    def _make(cls: type[R], iterable: Any) -> R:
        """A record from a sequence of its fields, in order (through ``__new__``)."""
        return cls(*iterable)

    def _replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` applied (an unknown field name is a TypeError from ``__new__``)."""
        return type(self)(**{**self._asdict(), **changes})

    def _asdict(self) -> dict[str, Any]:
        return dict(zip(self._fields, self))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self))
        return f"{type(self).__name__}({inner})"

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self)
