"""The settings of an algorithm, read from its config dataclass
(:class:`probcalc.rl.config.PPOConfig`, ...): names, types and defaults.

One source for the agents (which check their keywords before anything is built) and for
the ``probcalc`` command (which checks a TOML file and ``--set`` flags against them).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["check_settings", "check_value", "config_class", "fits", "settings"]


def config_class(algorithm: type) -> type:
    """The config dataclass of ``algorithm`` (an agent class or a config class itself).

    Raises:
        TypeError: ``algorithm`` is neither.
    """
    if dataclasses.is_dataclass(algorithm):
        return algorithm
    found = getattr(algorithm, "Config", None)
    if not (isinstance(found, type) and dataclasses.is_dataclass(found)):
        raise TypeError(
            f"{getattr(algorithm, '__name__', algorithm)!r} is neither a "
            f"probcalc.rl algorithm nor its config class"
        )
    return found


@functools.cache
def _fields(config: type) -> dict[str, tuple[Any, Any]]:
    hints = typing.get_type_hints(config)
    found = {}
    for field in dataclasses.fields(config):
        default = field.default
        if default is dataclasses.MISSING:
            default = field.default_factory()
        found[field.name] = (hints[field.name], default)
    return found


def settings(algorithm: type) -> dict[str, tuple[Any, Any]]:
    """{name: (annotation, default)} of the settings of ``algorithm`` (PPO, or PPOConfig):
    the fields of its config dataclass, with the algorithm's defaults.

    Raises:
        TypeError: ``algorithm`` is not a probcalc.rl algorithm or config class.
    """
    return dict(_fields(config_class(algorithm)))


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


def check_value(owner: str, name: str, value: Any, annotation: Any) -> Any:
    """``value`` checked against ``annotation`` (an int passes for a float; a bool passes
    for neither) and, if a float, finite; a list given for a tuple is made a tuple (TOML
    and JSON have lists).

    Raises:
        TypeError: a value of the wrong type, named with ``owner`` and ``name``.
        ValueError: a float that is NaN or infinite.
    """
    if not fits(value, annotation):
        raise TypeError(
            f"{owner}: {name} must be {_describe(annotation)}, got {value!r} "
            f"({type(value).__name__})"
        )
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, numbers.Integral)
        and not math.isfinite(value)
    ):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    arms = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    if isinstance(value, list) and any(typing.get_origin(arm) is tuple for arm in arms):
        value = tuple(value)
    return value


def check_settings(
    algorithm: type, values: Mapping[str, Any], known: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Check setting names and values against ``settings(algorithm)`` (or the
    ``{name: annotation}`` of ``known``): every name must be a setting, every value of its
    annotated type (see :func:`check_value`). Returns the values with lists given for tuple
    settings made tuples.

    Raises:
        TypeError: an unknown name (with the closest valid name and the list of them), or a
            value of the wrong type.
        ValueError: a float setting that is NaN or infinite.
    """
    if known is None:
        known = {name: annotation for name, (annotation, _) in settings(algorithm).items()}
    owner = getattr(algorithm, "owner", None) if dataclasses.is_dataclass(algorithm) else None
    owner = owner or algorithm.__name__
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise _unknown(owner, name, sorted(known))
        checked[name] = check_value(owner, name, value, known[name])
    return checked
