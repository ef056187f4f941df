"""The machinery of the malformed-input suite: a table of public functions, each with a
builder of one valid call and, per argument slot, strategies of values to put in it.

A value in a slot is either the value itself or an :class:`Edit` of the slot's valid value
(one element made NaN, another dtype, an extra dimension, ...), so that one strategy serves
every tensor argument. Each slot's values fall in one of three kinds:

- ``bad``: must be rejected, before any work, by a ``ProbcalcError`` or a ValueError /
  TypeError that probcalc raises itself (the last frame of the traceback is in probcalc)
  and whose message names the argument; the user's functions are called at most ``calls``
  times (once: the check of their first evaluation);
- ``unusual``: valid though unusual (a list where array-like is documented, an integer
  where a float is wanted): must not raise, and what comes back must be finite;
- ``either``: may be rejected as ``bad`` values are, or accepted as ``unusual`` ones are
  (float16 inputs, whose precision a function may or may not support);
- ``passthrough``: NaN or infinity in a parameter of an elementwise function (a loss, a
  KL) must not raise, whatever comes back: inside an objective, a parameter may overflow at
  an optimizer's trial point, and the optimizer backtracks from the non-finite value.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import math
import re
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import probcalc as pc

NAN, INF = math.nan, math.inf
NONFINITE = (NAN, INF, -INF)

# what the suite ran: (target, slot, kind) -> examples; printed in the terminal summary
COUNTS: collections.Counter[tuple[str, str, str]] = collections.Counter()

_REPOSITORY = Path(pc.__file__).resolve().parents[1]
_OWN_CODE = (_REPOSITORY / "probcalc", _REPOSITORY / "envs")


# ---------------------------------------------------------------------- edits of a value
class Edit(abc.ABC):
    """A change to a slot's valid value; ``repr`` is what hypothesis prints."""

    @abc.abstractmethod
    def apply(self, valid: Any) -> Any:
        """The edited value."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{v!r}" for v in vars(self).values())
        return f"{type(self).__name__}({fields})"


class Poison(Edit):
    """One element (at ``where`` in [0, 1) of the flat index range) set to ``value``."""

    def __init__(self, value: float, where: float = 0.0) -> None:
        self.value, self.where = value, where

    def apply(self, valid: Any) -> Any:
        if isinstance(valid, int | float):
            return self.value
        tensor = torch.as_tensor(valid).clone()
        flat = tensor.reshape(-1)
        flat[min(int(self.where * flat.numel()), flat.numel() - 1)] = self.value
        return tensor if isinstance(valid, torch.Tensor) else tensor.tolist()


class AsDtype(Edit):
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def apply(self, valid: Any) -> Any:
        tensor = torch.as_tensor(valid)
        if self.dtype is torch.bool:
            return tensor != 0
        if not self.dtype.is_floating_point and not self.dtype.is_complex:
            return (
                torch.round(tensor).to(self.dtype)
                if tensor.is_floating_point()
                else tensor.to(self.dtype)
            )
        return tensor.to(self.dtype)


class Unsqueeze(Edit):
    """An extra leading dimension of size 1."""

    def apply(self, valid: Any) -> Any:
        return torch.as_tensor(valid)[None]


class Stack(Edit):
    """An extra leading dimension of size 2 (two copies)."""

    def apply(self, valid: Any) -> Any:
        tensor = torch.as_tensor(valid)
        return torch.stack([tensor, tensor])


class First(Edit):
    """The first element alone, as a 0-d tensor (a scalar where a vector is wanted)."""

    def apply(self, valid: Any) -> Any:
        return torch.as_tensor(valid).reshape(-1)[0]


class DropLast(Edit):
    """One element fewer along the first dimension (mismatched lengths)."""

    def apply(self, valid: Any) -> Any:
        return torch.as_tensor(valid)[:-1]


class AppendOne(Edit):
    """One element more along the first dimension (mismatched lengths)."""

    def apply(self, valid: Any) -> Any:
        tensor = torch.as_tensor(valid)
        return torch.cat([tensor, tensor[:1]])


class Empty(Edit):
    """No elements along the first dimension."""

    def apply(self, valid: Any) -> Any:
        return torch.as_tensor(valid)[:0]


class AsList(Edit):
    def apply(self, valid: Any) -> Any:
        return torch.as_tensor(valid).tolist()


class AsNumpy(Edit):
    def apply(self, valid: Any) -> Any:
        return torch.as_tensor(valid).numpy().copy()


class Scaled(Edit):
    """The valid value times ``factor`` (a negative or zero scale, a flipped interval)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def apply(self, valid: Any) -> Any:
        if isinstance(valid, int | float):
            return valid * self.factor
        return torch.as_tensor(valid) * self.factor


def f64(data: Any, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A tensor for a table built at import, when the default dtype is not yet float64."""
    return torch.tensor(data, dtype=dtype)


def resolve(value: Any, valid: Any) -> Any:
    return value.apply(valid) if isinstance(value, Edit) else value


# ---------------------------------------------------------------------- strategies
def nonfinite_elements() -> st.SearchStrategy[Edit]:
    """One element made NaN, +inf or -inf, anywhere in the tensor."""
    return st.builds(Poison, st.sampled_from(NONFINITE), st.floats(0.0, 0.999))


WRONG_DTYPES = (AsDtype(torch.int64), AsDtype(torch.bool), AsDtype(torch.complex128))
SHAPES = (Unsqueeze(), First(), DropLast(), AppendOne(), Empty())


def one_of(*parts: Any) -> st.SearchStrategy[Any]:
    """Values from strategies and plain values alike."""
    strategies = [p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts]
    return st.one_of(strategies)


def values(*items: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(items)


def bad_tensor(
    *,
    nonfinite: bool = True,
    dtypes: Iterable[Edit] = WRONG_DTYPES,
    shapes: Iterable[Edit] = SHAPES,
    extra: Iterable[Any] = (),
) -> st.SearchStrategy[Any]:
    """The usual malformations of a floating tensor argument."""
    parts: list[Any] = [values(*dtypes), values(*shapes)] if shapes else [values(*dtypes)]
    if nonfinite:
        parts.append(nonfinite_elements())
    extra = tuple(extra)
    if extra:
        parts.append(values(*extra))
    return one_of(*parts)


def unknown_strings() -> st.SearchStrategy[Any]:
    """Strings (and non-strings) that no Option accepts."""
    return one_of(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_ ", min_size=0, max_size=12).filter(
            lambda s: s not in _ALL_OPTION_VALUES
        ),
        values(None, 1, 2.5, ["mc"], "MC ", "Newton", "REVERSE"),
    )


def _option_values() -> set[str]:
    found: set[str] = set()
    stack: list[type] = [pc.core.Option]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        found.update(member.value for member in cls)
    return found


_ALL_OPTION_VALUES = _option_values() | {
    "sync",
    "async",
    "mlp",
    "linear",
    "tanh",
    "relu",
    "float32",
    "float64",
    "constant",
    "rmsprop",
    "adam",
    "real",
    "positive",
    "unit",
    "newton",
    "lbfgs",
}


# ---------------------------------------------------------------------- the table
@dataclasses.dataclass(frozen=True)
class Slot:
    """One argument and the values to try in it.

    Attributes:
        name: the keyword the target's ``call`` takes.
        bad, unusual, either, passthrough: strategies of values of each kind (see the
            module doc).
        words: how an error message may name the argument (default: ``name``); matched as
            whole words, case-insensitively.
        calls: the most calls of the user's functions allowed before a rejection.
        base: the value that edits apply to when the valid call leaves the argument out.
    """

    name: str
    bad: st.SearchStrategy[Any] | None = None
    unusual: st.SearchStrategy[Any] | None = None
    either: st.SearchStrategy[Any] | None = None
    passthrough: st.SearchStrategy[Any] | None = None
    words: tuple[str, ...] = ()
    calls: int = 1
    base: Callable[[], Any] | None = None

    def named_by(self, message: str, value: Any = None) -> bool:
        """Whether the message names the argument, or quotes the string received."""
        if isinstance(value, str) and len(value) >= 3 and value in message:
            return True
        words = self.words or (self.name,)
        return any(
            re.search(rf"(?<![\w.]){re.escape(w)}(?![\w])", message, re.IGNORECASE) for w in words
        )


@dataclasses.dataclass(frozen=True)
class Target:
    """One public function (or constructor, or method) and how to call it.

    Attributes:
        name: the dotted public name.
        call: ``call(**arguments)`` makes the call.
        valid: builds the arguments of one valid call (fresh objects every time).
        slots: the arguments to malform.
        user: the arguments that are the user's functions; they are wrapped to count calls.
        finite: what of a result must be finite (default: every tensor and float in it).
    """

    name: str
    call: Callable[..., Any]
    valid: Callable[[], dict[str, Any]]
    slots: tuple[Slot, ...]
    user: tuple[str, ...] = ()
    finite: Callable[[Any], Iterable[Any]] | None = None


@dataclasses.dataclass(frozen=True)
class Case:
    """One (target, slot, kind): a parametrization of the suite's test."""

    target: Target
    slot: Slot
    kind: str  # "bad", "unusual", "either" or "passthrough"

    @property
    def id(self) -> str:
        return f"{self.target.name}:{self.slot.name}:{self.kind}"

    @property
    def strategy(self) -> st.SearchStrategy[Any]:
        return getattr(self.slot, self.kind)


def cases(targets: Iterable[Target]) -> list[Case]:
    found = []
    for target in targets:
        for slot in target.slots:
            for kind in KINDS:
                if getattr(slot, kind) is not None:
                    found.append(Case(target, slot, kind))
    return found


KINDS = ("bad", "unusual", "either", "passthrough")


# ---------------------------------------------------------------------- running a case
def _counted(fn: Any, counter: list[int]) -> Any:
    if not callable(fn):
        return fn

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return fn(*args, **kwargs)

    return wrapper


def numbers_in(result: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every tensor, float and numpy array in a result (dataclass fields, tuples, dicts)."""
    if depth > 3:
        return
    if isinstance(result, torch.Tensor):
        if result.is_floating_point() or result.is_complex():
            yield "", result
    elif isinstance(result, float | np.ndarray | np.floating):
        yield "", result
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        for field in dataclasses.fields(result):
            for where, value in numbers_in(getattr(result, field.name), depth + 1):
                yield f".{field.name}{where}", value
    elif isinstance(result, tuple | list):
        for i, item in enumerate(result):
            for where, value in numbers_in(item, depth + 1):
                yield f"[{i}]{where}", value
    elif isinstance(result, dict):
        for key, item in result.items():
            for where, value in numbers_in(item, depth + 1):
                yield f"[{key!r}]{where}", value


def _finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value.detach()).all())
    return bool(np.all(np.isfinite(np.asarray(value, dtype=complex))))


def _raised_by_probcalc(error: BaseException) -> str | None:
    """Where the error was raised, when that is outside probcalc's own code (else None)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "no traceback"
    last = Path(frames[-1].filename).resolve()
    if any(last.is_relative_to(root) for root in _OWN_CODE):
        return None
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def run_case(case: Case, value: Any) -> None:
    """Call the target with ``value`` in the case's slot and check the outcome."""
    COUNTS[(case.target.name, case.slot.name, case.kind)] += 1
    target = case.target
    arguments = target.valid()
    valid = arguments.get(case.slot.name)
    if valid is None and case.slot.base is not None:
        valid = case.slot.base()
    arguments[case.slot.name] = resolve(value, valid)
    calls = [0]
    for name in target.user:
        if name in arguments:
            arguments[name] = _counted(arguments[name], calls)
    try:
        result = target.call(**arguments)
    except Exception as error:  # what was raised is the subject of the test
        if case.kind == "unusual":
            raise AssertionError(
                f"{case.id}: a valid input {value!r} was rejected: {type(error).__name__}: {error}"
            ) from error
        _check_rejection(case, value, error, calls[0])
        return
    if case.kind == "bad":
        raise AssertionError(f"{case.id}: {value!r} was accepted (returned {result!r:.200})")
    if case.kind != "passthrough":
        _check_finite_result(case, value, result)


def _check_rejection(case: Case, value: Any, error: Exception, calls: int) -> None:
    what = f"{case.id}: {value!r} raised {type(error).__name__}: {error}"
    if not isinstance(error, pc.ProbcalcError | ValueError | TypeError):
        raise AssertionError(
            f"{what}; expected a ProbcalcError, ValueError or TypeError"
        ) from error
    outside = _raised_by_probcalc(error)
    if outside is not None:
        raise AssertionError(f"{what}; raised outside probcalc, at {outside}") from error
    if not isinstance(error, pc.ProbcalcError) and not case.slot.named_by(str(error), value):
        words = case.slot.words or (case.slot.name,)
        raise AssertionError(f"{what}; the message does not name the argument {words}") from error
    if calls > case.slot.calls:
        raise AssertionError(
            f"{what}; only after {calls} calls of the user's function (at most "
            f"{case.slot.calls} allowed: the check of its first evaluation)"
        ) from error


def _check_finite_result(case: Case, value: Any, result: Any) -> None:
    pick = case.target.finite
    numbers = [("", v) for v in pick(result)] if pick is not None else numbers_in(result)
    for where, number in numbers:
        if not _finite(number):
            raise AssertionError(
                f"{case.id}: {value!r} returned a non-finite result{where}: {number!r:.200}"
            )


def run_valid(target: Target) -> None:
    """The target's valid call: must not raise, and gives a finite result."""
    result = target.call(**target.valid())
    case = Case(target, Slot("(valid call)"), "unusual")
    _check_finite_result(case, "(valid arguments)", result)
