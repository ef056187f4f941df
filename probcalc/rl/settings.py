"""The settings of an algorithm, read from its constructors: names, types and defaults.

One source for the agents (which check their keywords before anything is built) and for
the ``probcalc`` command (which checks a TOML file and ``--set`` flags against them).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["check_settings", "fits", "settings"]


@functools.cache
def _constructor_settings(algorithm: type) -> dict[str, tuple[Any, Any]]:
    found: dict[str, tuple[Any, Any]] = {}
    for klass in reversed(algorithm.__mro__):
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        hints = typing.get_type_hints(init)
        for name, parameter in inspect.signature(init).parameters.items():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                found[name] = (hints.get(name, Any), parameter.default)
    return found


def settings(algorithm: type) -> dict[str, tuple[Any, Any]]:
    """{name: (annotation, default)} of the settings of ``algorithm``: the keyword-only
    arguments of the constructors along its MRO (PPO -> ActorCritic -> OnPolicyAgent), the
    defaults overridden by the class's ``defaults`` (as the constructors apply them).

    Raises:
        KeyError: ``defaults`` names a setting that no constructor takes.
    """
    found = dict(_constructor_settings(algorithm))
    for name, value in getattr(algorithm, "defaults", {}).items():
        found[name] = (found[name][0], value)
    return found


def fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits ``annotation``: an int fits a float, a bool fits neither, a
    list or tuple of the element type fits a tuple; annotations this check does not read
    (Any, typing constructs other than unions, tuples and dicts) accept anything."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arm) for arm in typing.get_args(annotation))
    if annotation is None or annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool | np.bool_)
    if annotation is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
    if annotation is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if origin is tuple:
        arguments = typing.get_args(annotation)
        if not isinstance(value, list | tuple):
            return False
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return all(fits(item, arguments[0]) for item in value)
        return len(value) == len(arguments) and all(
            fits(item, argument) for item, argument in zip(value, arguments, strict=True)
        )
    if origin is dict:
        return isinstance(value, Mapping)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(annotation))
    if annotation is None or annotation is type(None):
        return "None"
    if origin is tuple:
        arguments = typing.get_args(annotation)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return f"a tuple of {getattr(arguments[0], '__name__', arguments[0])}s"
        return f"a tuple ({', '.join(getattr(a, '__name__', str(a)) for a in arguments)})"
    if origin is dict:
        return "a dict"
    name = getattr(annotation, "__name__", str(annotation))
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def _unknown(owner: str, name: str, valid: list[str]) -> TypeError:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(f"{owner} has no setting {name!r}{hint}; valid settings: {', '.join(valid)}")


def check_settings(
    algorithm: type, values: Mapping[str, Any], known: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Check setting names and values against ``settings(algorithm)`` (or the
    ``{name: annotation}`` of ``known``): every name must be a setting, every value of its
    annotated type (an int passes for a float; a bool passes for neither), and every float
    finite. Returns the values with lists given for tuple settings made tuples (TOML and
    JSON have lists).

    Raises:
        TypeError: an unknown name (with the closest valid name and the list of them), or a
            value of the wrong type.
        ValueError: a float setting that is NaN or infinite.
    """
    if known is None:
        known = {name: annotation for name, (annotation, _) in settings(algorithm).items()}
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise _unknown(algorithm.__name__, name, sorted(known))
        annotation = known[name]
        if not fits(value, annotation):
            raise TypeError(
                f"{algorithm.__name__}: {name} must be {_describe(annotation)}, got {value!r} "
                f"({type(value).__name__})"
            )
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and \
                not math.isfinite(value):  # fmt: skip
            raise ValueError(f"{algorithm.__name__}: {name} must be finite, got {value!r}")
        arms = typing.get_args(annotation) if typing.get_origin(annotation) in (
            typing.Union, types.UnionType) else (annotation,)  # fmt: skip
        if isinstance(value, list) and any(typing.get_origin(arm) is tuple for arm in arms):
            value = tuple(value)
        checked[name] = value
    return checked
