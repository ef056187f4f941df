"""String options as Enums: plain strings work, and a bad one lists the valid choices."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

__all__ = ["Option"]

OptionT = TypeVar("OptionT", bound="Option")


class Option(StrEnum):
    """Base class of probcalc's string options (``method=``, ``mode=``, ``reduction=``).

    Members compare equal to their string values, so ``method="newton"`` and
    ``method=Method.NEWTON`` are the same choice.
    """

    @classmethod
    def parse(cls: type[OptionT], value: str | OptionT, *, name: str = "option") -> OptionT:
        """The member whose value is ``value``; ValueError listing the valid values otherwise."""
        if isinstance(value, cls):
            return value
        for member in cls:
            if member.value == value:
                return member
        valid = ", ".join(repr(member.value) for member in cls)
        raise ValueError(f"unknown {name} {value!r}; valid choices are {valid}")
