"""Renamed arguments and fields keep working for one release, with a DeprecationWarning
that names the replacement."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["deprecated_field", "renamed"]

F = TypeVar("F", bound=Callable[..., Any])


def renamed(old: str, new: str) -> Callable[[F], F]:
    """Decorate a function (or method) whose keyword ``old`` is now ``new``: a call with
    ``old=`` warns DeprecationWarning and passes the value on as ``new=``.

    Raises:
        TypeError: a call that gives both ``old`` and ``new``.
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(
                        f"{function.__qualname__}() got both {old!r} and its new name {new!r}"
                    )
                warnings.warn(
                    f"{function.__qualname__}({old}=...) is deprecated: use {new}=",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def deprecated_field(old: str, new: str) -> property:
    """A read-only property ``old`` on a (frozen) dataclass that returns the field ``new``
    and warns DeprecationWarning."""

    def getter(self: object) -> Any:
        warnings.warn(
            f"{type(self).__name__}.{old} is deprecated: use .{new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(self, new)

    return property(getter, doc=f"Deprecated alias of ``{new}``.")
