"""``Frozen``: the base of edgerun's small immutable value classes on the run path.

``Manifest``, ``Artifact``, ``EngineOptions``, ``LoadInfo`` and ``Prediction`` were frozen
dataclasses. ``@dataclass`` writes six methods as source text and compiles them when the class
is created, ~0.5 ms of CPU per class plus ~0.7 ms to import ``dataclasses`` itself, at every
start of ``edgerun run`` (issue 13's start-up goal; ``python tools/bench_startup.py --imports``).
A subclass of ``Frozen`` lists its fields once, in ``__slots__``, and writes its ``__init__``;
the methods here, compiled once with this module, give it what the dataclass gave:

- equality field by field with an object of the same class (``NotImplemented`` otherwise),
  and the matching hash (a ``TypeError`` when a field is unhashable, e.g. a dict);
- ``repr`` as ``Name(field=value, ...)``;
- immutability: assigning or deleting an attribute raises ``FrozenInstanceError``
  (an ``AttributeError``, as ``dataclasses.FrozenInstanceError`` is);
- ``replace(**changes)``, a copy with some fields changed: what ``dataclasses.replace`` did;
- pickling and ``copy`` (the constructor called with the fields, in order);
- ``__match_args__`` for ``match`` statements.

No ``__dict__`` (slots only), so ``vars(obj)`` does not work; ``as_fields()`` gives the fields
as a dict. It lives in ``edgerun.formats``, the lowest layer, so that every layer can use it.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["Frozen", "FrozenInstanceError"]

F = TypeVar("F", bound="Frozen")


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
