"""``struct``: the dataclass the core builds on its hot path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def struct(cls: type[_T]) -> type[_T]:
    """Class decorator: a slotted dataclass, frozen for the type checker (``mypy --strict``
    refuses any assignment to a field) but built with a plain ``__init__``: a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``, four times slower,
    and the hot path builds several of these per request. Equal and hashable by value, like a
    frozen dataclass."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
