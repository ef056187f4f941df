"""Derivatives as function transforms, built on torch.func.

``grad(f)(x)``, ``hessian(f)(x)`` and friends follow torch.func's conventions (``argnums``,
``has_aux``, ``chunk_size``) and return functions. ``batch=True`` maps a transform of a
function of one point over a leading batch dimension with ``torch.func.vmap``.
``hvp(f, x, v)`` and ``hvp_operator(f, x)`` never form the Hessian, and
``finite_difference`` is the limit definition that the tests use to check the rest.

Functions of an ``nn.Module``'s parameters become functions of one flat vector through
:func:`functional_module`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, jacfwd, jacrev, vjp, vmap

from .errors import NonFiniteError
from .evaluation import check_callable
from .options import Option

__all__ = [
    "FunctionalModule",
    "HessianMode",
    "HessianVectorOperator",
    "JacobianMode",
    "finite_difference",
    "functional_module",
    "grad",
    "hessian",
    "hvp",
    "hvp_operator",
    "jacobian",
    "value_and_grad",
]

Argnums = int | tuple[int, ...]


class JacobianMode(Option):
    """How :func:`jacobian` accumulates derivatives."""

    REVERSE = "reverse"  # one vector-Jacobian product per output: best for few outputs
    FORWARD = "forward"  # one Jacobian-vector product per input: best for few inputs


def _is_integer(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _positions(argnums: object) -> tuple[int, ...]:
    """argnums as a tuple of positions; TypeError unless an int or a non-empty tuple of ints."""
    if _is_integer(argnums):
        return (int(argnums),)
    if isinstance(argnums, tuple) and argnums and all(_is_integer(a) for a in argnums):
        return tuple(int(a) for a in argnums)
    raise TypeError(f"argnums must be an int or a non-empty tuple of ints, got {argnums!r}")


def _finite_when_decidable(value: torch.Tensor) -> bool:
    """Whether every element is finite; True when that cannot be decided eagerly (``value``
    batched inside vmap, where data-dependent control flow is not allowed)."""
    try:
        return bool(torch.isfinite(value.detach()).all())
    except RuntimeError:
        return True


def _check_differentiable(args: tuple[Any, ...], positions: tuple[int, ...], batch: bool) -> None:
    """TypeError or ValueError, naming the position, for an argument that torch.func cannot
    differentiate with respect to: a position beyond the arguments, something other than a
    tensor, or a tensor that is neither floating point nor complex (0-d under ``batch``)."""
    for position in positions:
        if not -len(args) <= position < len(args):
            raise ValueError(
                f"argnums {position} is out of range: the function was called with "
                f"{len(args)} positional argument(s)"
            )
        arg = args[position]
        if not isinstance(arg, torch.Tensor):
            raise TypeError(
                f"the argument {position} to differentiate with respect to must be a "
                f"torch.Tensor, got {type(arg).__name__}; convert it with torch.as_tensor"
            )
        if not (arg.is_floating_point() or arg.is_complex()):
            raise TypeError(
                f"the argument {position} to differentiate with respect to must be floating "
                f"point, got {arg.dtype}; convert it (e.g. x.double())"
            )
        if batch and arg.dim() == 0:
            raise ValueError(
                f"batch=True maps over the leading dimension of argument {position}, which "
                f"is 0-d; pass a batch of shape (n, ...)"
            )


def _checked_arguments(
    fn: Callable[..., Any], positions: tuple[int, ...], batch: bool
) -> Callable[..., Any]:
    """``fn`` with its differentiated arguments checked first (see _check_differentiable)."""

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_differentiable(args, positions, batch)
        return fn(*args, **kwargs)

    return checked


def _scalar_output(f: Callable[..., Any], has_aux: bool) -> Callable[..., Any]:
    """Wrap ``f`` so that an output other than a real 0-d tensor raises a ValueError (a
    TypeError for a complex one) that says what to do."""

    @functools.wraps(f)
    def checked(*args: Any, **kwargs: Any) -> Any:
        out = f(*args, **kwargs)
        value = out[0] if has_aux else out
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"f must return a 0-d tensor (a scalar) to be differentiated with grad/hessian; "
                f"got {shape}. Reduce it (e.g. .sum()) or use jacobian for vector outputs."
            )
        if value.is_complex():
            raise TypeError(
                f"f must return a real 0-d tensor to be differentiated with grad/hessian, got "
                f"{value.dtype}; take .real, .abs() or another real function of it"
            )
        return out

    return checked


def _over_batch(fn: Callable[..., Any], argnums: Argnums, batch: bool) -> Callable[..., Any]:
    """``fn`` mapped with vmap over dim 0 of the differentiated arguments (``batch``), with
    those arguments checked before any work."""
    if not isinstance(batch, bool):
        raise TypeError(f"batch must be True or False, got {batch!r}")
    positions = _positions(argnums)
    if not batch:
        return _checked_arguments(fn, positions, batch=False)

    @functools.wraps(fn)
    def batched(*args: Any) -> Any:
        wrapped = {p % len(args) for p in positions}
        in_dims = tuple(0 if i in wrapped else None for i in range(len(args)))
        return vmap(fn, in_dims=in_dims)(*args)

    return _checked_arguments(batched, positions, batch=True)


def grad(
    f: Callable[..., Any], *, argnums: Argnums = 0, has_aux: bool = False, batch: bool = False
) -> Callable[..., Any]:
    """The gradient transform: ``grad(f)(x) = ∇f(x)``, the shape of ``x``.

    Args:
        f: a function returning a 0-d tensor (or ``(scalar, aux)`` with ``has_aux``).
        argnums: which positional argument(s) to differentiate with respect to.
        has_aux: ``f`` returns ``(value, aux)``; the transform returns ``(grad, aux)``.
        batch: the differentiated arguments carry a leading batch dimension and ``f`` (a
            function of one point) is mapped over it with vmap.

    Values are not checked: a NaN in ``x`` gives NaN in the gradient, as in torch.func (the
    transforms compose with vmap, where a check of the data cannot run).

    Returns:
        A function of ``f``'s arguments returning the gradient (a tuple of them for a tuple
        ``argnums``).

    Raises:
        TypeError: ``f`` not callable, ``argnums`` not an int or tuple of ints, a
            differentiated argument that is not a floating-point (or complex) tensor, or a
            complex output.
        ValueError: when ``f`` does not return a scalar, ``argnums`` is beyond the
            arguments, or ``batch=True`` meets a 0-d argument.

    Example:
        >>> import torch, probcalc as pc
        >>> pc.grad(lambda x: (x**3).sum())(torch.tensor([1.0, 2.0]))
        tensor([ 3., 12.])
    """
    check_callable(f, "f")
    _positions(argnums)
    inner = torch.func.grad(_scalar_output(f, has_aux), argnums=argnums, has_aux=has_aux)
    return _over_batch(inner, argnums, batch)


def value_and_grad(
    f: Callable[..., Any], *, argnums: Argnums = 0, has_aux: bool = False, batch: bool = False
) -> Callable[..., Any]:
    """``value_and_grad(f)(x) = (f(x), ∇f(x))`` in one pass; ``((f(x), aux), ∇f(x))`` with aux.

    Args:
        f: a function returning a 0-d tensor (or ``(scalar, aux)`` with ``has_aux``).
        argnums: which positional argument(s) to differentiate with respect to.
        has_aux: ``f`` returns ``(value, aux)``.
        batch: map over a leading batch dimension of the differentiated arguments.

    Returns:
        A function of ``f``'s arguments returning ``(value, gradient)``.

    Raises:
        TypeError: as for :func:`grad`.
        ValueError: as for :func:`grad`.
    """
    check_callable(f, "f")
    _positions(argnums)
    inner = grad_and_value(_scalar_output(f, has_aux), argnums=argnums, has_aux=has_aux)

    def swapped(*args: Any) -> Any:
        gradient, value = inner(*args)
        return value, gradient

    return _over_batch(swapped, argnums, batch)


def jacobian(
    f: Callable[..., Any],
    *,
    argnums: Argnums = 0,
    mode: str | JacobianMode = "reverse",
    has_aux: bool = False,
    chunk_size: int | None = None,
    batch: bool = False,
) -> Callable[..., Any]:
    """The Jacobian transform: ``J[i..., j...] = ∂f(x)[i...] / ∂x[j...]``.

    The result has shape ``f(x).shape + x.shape``.

    Args:
        f: a function of tensors returning a tensor (or ``(tensor, aux)`` with ``has_aux``).
        argnums: which positional argument(s) to differentiate with respect to.
        mode: "reverse" (torch.func.jacrev: one VJP per output, vectorized) or "forward"
            (torch.func.jacfwd: one JVP per input, vectorized).
        has_aux: ``f`` returns ``(value, aux)``; the transform returns ``(jacobian, aux)``.
        chunk_size: reverse mode only: how many VJPs to vectorize at once (memory bound).
        batch: map over a leading batch dimension of the differentiated arguments.

    Returns:
        A function of ``f``'s arguments returning the Jacobian.

    Raises:
        ValueError: for an unknown mode, a chunk_size that is not a positive integer, or a
            chunk_size with forward mode; otherwise as for :func:`grad`.
        TypeError: as for :func:`grad`.
    """
    mode = JacobianMode.parse(mode, name="jacobian mode")
    check_callable(f, "f")
    _positions(argnums)
    if chunk_size is not None and not (_is_integer(chunk_size) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if mode is JacobianMode.REVERSE:
        inner = jacrev(f, argnums=argnums, has_aux=has_aux, chunk_size=chunk_size)
    else:
        if chunk_size is not None:
            raise ValueError("chunk_size applies to mode='reverse' only")
        inner = jacfwd(f, argnums=argnums, has_aux=has_aux)
    return _over_batch(inner, argnums, batch)


class HessianMode(Option):
    """How :func:`hessian` takes the Jacobian of the gradient."""

    REVERSE_OVER_REVERSE = "reverse-over-reverse"  # jacrev of jacrev: d VJPs, vectorized
    FORWARD_OVER_REVERSE = "forward-over-reverse"  # jacfwd of jacrev: d JVPs, vectorized


def hessian(
    f: Callable[..., Any],
    *,
    argnums: Argnums = 0,
    mode: str | HessianMode = "reverse-over-reverse",
    batch: bool = False,
) -> Callable[..., Any]:
    """The Hessian transform ``H[i..., j...] = ∂²f / ∂x[i...] ∂x[j...]``, shape ``x.shape * 2``.

    Args:
        f: a function returning a 0-d tensor.
        argnums: which positional argument(s) to differentiate with respect to.
        mode: "reverse-over-reverse" (default) or "forward-over-reverse" (torch.func.hessian's
            choice). Both are exact; they differ in speed (see the benchmarks page):
            reverse-over-reverse is usually the faster on CPU, forward-over-reverse may win
            on accelerators.
        batch: map over a leading batch dimension of the differentiated arguments.

    Returns:
        A function of ``f``'s arguments returning the Hessian.

    Raises:
        ValueError: for an unknown mode; otherwise as for :func:`grad`.
        TypeError: as for :func:`grad`.
    """
    mode = HessianMode.parse(mode, name="hessian mode")
    check_callable(f, "f")
    _positions(argnums)
    outer = jacrev if mode is HessianMode.REVERSE_OVER_REVERSE else jacfwd
    inner = outer(jacrev(_scalar_output(f, False), argnums=argnums), argnums=argnums)
    return _over_batch(inner, argnums, batch)


def hvp(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """The Hessian-vector product ``∇²f(x) v`` without forming the Hessian.

    One product costs about two gradients. For many products at the same ``x`` (conjugate
    gradient, Lanczos) build :func:`hvp_operator` once instead.

    Args:
        f: a scalar function of one tensor.
        x: the point, any shape.
        v: the direction, the shape of ``x``.

    Returns:
        A tensor of the shape of ``x``.

    Raises:
        TypeError: ``f`` not callable, ``x`` not a floating-point tensor, ``v`` not a real
            tensor, or a complex output.
        ValueError: when ``v`` and ``x`` differ in shape, ``f`` is not scalar, or ``x`` or
            ``v`` holds a NaN or an infinity.
    """
    return hvp_operator(f, x)(v)


class HessianVectorOperator:
    """``v -> ∇²f(x) v`` at a fixed ``x``, with ``f(x)`` and ``∇f(x)`` from the same pass.

    Built by :func:`hvp_operator`. The gradient's graph is recorded once; each product is one
    reverse pass through it (the VJP of the gradient, which equals ``H v`` since H is
    symmetric). The forward-over-reverse ``jvp(grad(f))`` that torch.func suggests re-runs
    the forward and backward passes on every product, which is slower per product (see the
    benchmarks page) and matters inside a CG loop.

    Args:
        f: a scalar function of one tensor.
        x: the point, a finite floating-point tensor of any shape.

    Attributes:
        x: the point.
        value: ``f(x)``, a 0-d tensor.
        grad: ``∇f(x)``, the shape of ``x``.

    Raises:
        TypeError: ``f`` not callable, ``x`` not a floating-point tensor, or a complex
            output.
        ValueError: ``x`` not finite, or ``f`` not scalar.
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> None:
        check_callable(f, "f")
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"x must be a floating-point tensor, got {got}")
        if not _finite_when_decidable(x):
            raise ValueError(f"x must be finite, got {x.detach().tolist()}")
        self.x = x
        self.grad, self._vjp, self.value = vjp(
            grad_and_value(_scalar_output(f, False)), x, has_aux=True
        )

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``∇²f(x) v``, the shape of ``x``.

        Args:
            v: the direction, the shape of ``x``.

        Returns:
            The product, the shape of ``x``.

        Raises:
            TypeError: ``v`` is not a real tensor (floating point or integer).
            ValueError: ``v`` has another shape than ``x``, or holds a NaN or an infinity.
        """
        if not isinstance(v, torch.Tensor) or v.is_complex() or v.dtype is torch.bool:
            got = v.dtype if isinstance(v, torch.Tensor) else type(v).__name__
            raise TypeError(f"v must be a real tensor, got {got}")
        if v.shape != self.x.shape:
            raise ValueError(
                f"v must have the shape of x {tuple(self.x.shape)}, got {tuple(v.shape)}"
            )
        if not _finite_when_decidable(v):
            raise ValueError(f"v must be finite, got {v.detach().tolist()}")
        return self._vjp(v.to(dtype=self.grad.dtype))[0]


def hvp_operator(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> HessianVectorOperator:
    """The linear map ``v -> ∇²f(x) v`` at ``x``, reusable for many ``v`` (one pass each).

    Args:
        f: a scalar function of one tensor.
        x: the point, any shape.

    Returns:
        A :class:`HessianVectorOperator`, with ``value = f(x)`` and ``grad = ∇f(x)``.

    Raises:
        TypeError: as for :func:`hvp` (when it is built; those of ``v`` at each product).
        ValueError: as for :func:`hvp`.

    Example:
        >>> import torch, probcalc as pc
        >>> H = pc.hvp_operator(lambda x: (x**3).sum(), torch.tensor([1.0, 2.0]))
        >>> H(torch.tensor([1.0, 1.0])), H.grad
        (tensor([ 6., 12.]), tensor([ 3., 12.]))
    """
    return HessianVectorOperator(f, x)


def _default_step(x: torch.Tensor, order: int) -> torch.Tensor:
    """The step that balances truncation against rounding: eps^(1/(order+1)) * max(1, |x|)."""
    eps = torch.finfo(x.dtype).eps
    return eps ** (1.0 / (order + 1)) * torch.clamp(x.abs(), min=1.0)


# Central-difference stencils: offsets (in steps h) and weights, derivative = sum(w f(x+o h)) / h.
_STENCILS: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {
    2: ((1.0, -1.0), (0.5, -0.5)),
    4: ((2.0, 1.0, -1.0, -2.0), (-1.0 / 12.0, 8.0 / 12.0, -8.0 / 12.0, 1.0 / 12.0)),
}


def _evaluate_points(
    f: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor
) -> torch.Tensor:
    """f at every point along dim 0, by vmap (one call), or by a loop when f cannot be vmapped."""
    try:
        return vmap(f)(points)
    except (RuntimeError, ValueError, TypeError):
        # f does something vmap cannot trace (.item(), numpy, data-dependent control flow);
        # finite_difference is a checking tool, so a loop is acceptable here.
        return torch.stack([torch.as_tensor(f(point)) for point in points])


def finite_difference(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    h: float | torch.Tensor | None = None,
    order: int = 2,
    *,
    direction: torch.Tensor | None = None,
) -> torch.Tensor:
    """Central finite differences, the limit definition ``f'(x) ≈ (f(x+h) - f(x-h)) / 2h``.

    ``order=2`` uses the two-point stencil (error O(h²)), ``order=4`` the four-point stencil
    ``(-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h`` (error O(h⁴)). All perturbed points are
    evaluated in one vmapped call of ``f`` (a loop if ``f`` cannot be vmapped).

    Args:
        f: a function of one tensor returning a tensor (a scalar for a gradient).
        x: the point, any shape; floating point.
        h: the step, a float or a tensor broadcastable to ``x``; default
            ``eps^(1/(order+1)) * max(1, |x_i|)``, which balances truncation and rounding.
        order: 2 or 4.
        direction: if given (shape of ``x``), the directional derivative along it, computed
            with the scalar step ``h`` (default ``eps^(1/(order+1)) * max(1, max|x|)``).

    Returns:
        Without ``direction``: the Jacobian, shape ``f(x).shape + x.shape`` (the gradient for a
        scalar ``f``). With ``direction``: the derivative along it, shape ``f(x).shape``.

    Raises:
        ValueError: for an order other than 2 or 4, an ``x`` that is not floating point, is
            empty or holds a NaN or an infinity, a step that is not positive and finite or
            does not broadcast to ``x``, or a direction of the wrong shape or not finite.
        TypeError: ``f`` not callable, ``x``, ``h`` or ``direction`` not numbers, or a
            complex ``h`` or direction.
        NonFiniteError: when ``f`` is not finite at a perturbed point.
    """
    check_callable(f, "f")
    if isinstance(order, bool) or order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    x = _as_tensor(x, "x")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"x must have at least one element, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"x must be finite, got {x.detach().tolist()}")
    if h is not None:
        h = _real_tensor(h, "the step h", x.dtype)
        if not bool(((h > 0) & torch.isfinite(h)).all()):
            raise ValueError(f"the step h must be positive and finite, got {h.tolist()}")
    if direction is not None:
        direction = _real_tensor(direction, "direction", x.dtype).to(device=x.device)
        if direction.shape != x.shape:
            raise ValueError(
                f"direction must have the shape of x {tuple(x.shape)}, got {tuple(direction.shape)}"
            )
        if not bool(torch.isfinite(direction).all()):
            raise ValueError(f"direction must be finite, got {direction.tolist()}")
        if h is not None and h.numel() != 1:
            raise ValueError(
                f"with a direction the step h is one number, got shape {tuple(h.shape)}"
            )
    offsets, weights = _STENCILS[order]
    offsets_t = torch.tensor(offsets, dtype=x.dtype, device=x.device)
    weights_t = torch.tensor(weights, dtype=x.dtype, device=x.device)

    if direction is not None:
        if h is None:
            eps = torch.finfo(x.dtype).eps
            scale = max(1.0, float(x.abs().max())) if x.numel() else 1.0
            h = eps ** (1.0 / (order + 1)) * scale / max(float(direction.abs().max()), 1e-300)
        step = float(h)
        if not step > 0:
            raise ValueError(f"the step h must be positive, got {step}")
        points = x + (offsets_t * step).reshape((-1,) + (1,) * x.dim()) * direction
        values = _evaluate_points(f, points)
        _check_finite_values(values, points)
        return torch.tensordot(weights_t, values, dims=1) / step

    if h is None:
        steps = _default_step(x, order)
    else:
        try:
            steps = h.to(device=x.device).expand(x.shape)
        except RuntimeError:
            raise ValueError(
                f"the step h must broadcast to the shape of x {tuple(x.shape)}, "
                f"got shape {tuple(h.shape)}"
            ) from None
    steps = (x + steps) - x  # a step that is exactly representable at x
    n = x.numel()
    basis = torch.diag(steps.reshape(-1)).reshape((n, *x.shape))  # row i: h_i e_i
    points = x + offsets_t.reshape((-1, 1) + (1,) * x.dim()) * basis  # (k, n, *x.shape)
    values = _evaluate_points(f, points.reshape((-1, *x.shape)))
    _check_finite_values(values, points.reshape((-1, *x.shape)))
    values = values.reshape((len(offsets), n, *values.shape[1:]))
    derivative = torch.tensordot(weights_t, values, dims=1)  # (n, *out)
    derivative = derivative / steps.reshape((n,) + (1,) * (derivative.dim() - 1))
    out_shape = derivative.shape[1:]
    return derivative.movedim(0, -1).reshape(out_shape + x.shape)


def _as_tensor(value: object, name: str) -> torch.Tensor:
    """``value`` as a tensor (array-like accepted); TypeError naming ``name`` otherwise."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a tensor or array-like of numbers, got {type(value).__name__} "
            f"{value!r:.60}"
        ) from None


def _real_tensor(value: object, name: str, dtype: torch.dtype) -> torch.Tensor:
    """``value`` as a real tensor of ``dtype``; TypeError for non-numbers and complex numbers."""
    tensor = _as_tensor(value, name)
    if tensor.is_complex():
        raise TypeError(f"{name} must be real, got {tensor.dtype}")
    return tensor.detach().to(dtype)


def _check_finite_values(values: torch.Tensor, points: torch.Tensor) -> None:
    finite = torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise NonFiniteError(
            f"f is not finite at a finite-difference point: f = {values[i].tolist()} at "
            f"x = {points[i].tolist()}",
            value=values[i],
            where=str(points[i].tolist()),
        )


class FunctionalModule:
    """An ``nn.Module`` seen as a function of one flat parameter vector.

    ``fm = functional_module(model)``; ``fm(theta, *inputs)`` calls the model with its
    parameters replaced by ``theta`` (shape ``(d,)``) through ``torch.func.functional_call``,
    so every derivative transform applies: ``pc.hessian(lambda th: loss(fm(th, X), y))``.
    With ``names``, only those parameters are packed into theta; the rest keep their values.

    Args:
        module: the module.
        names: the parameters to pack (default: every trainable one).

    Attributes:
        params: the module's current parameters, flattened and detached, shape ``(d,)``.
        names: parameter names, in the order they are packed.
        shapes: their shapes.

    Raises:
        TypeError: ``module`` is not an nn.Module, or ``names`` is not a sequence of names.
        ValueError: ``names`` is empty or names parameters the module does not train, or the
            module has no trainable parameters.
    """

    def __init__(self, module: nn.Module, names: Sequence[str] | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if names is not None:
            if isinstance(names, str) or not isinstance(names, Sequence):
                raise TypeError(
                    f"names must be a sequence of parameter names such as ['weight'], got {names!r}"
                )
            if not names or not all(isinstance(name, str) for name in names):
                raise ValueError(f"names must hold one parameter name or more, got {names!r}")
            known = {name for name, _ in named}
            unknown = sorted(set(names) - known)
            if unknown:
                raise ValueError(
                    f"names: {type(module).__name__} has no trainable parameters {unknown}; "
                    f"it has {sorted(known)}"
                )
            named = [(name, p) for name, p in named if name in set(names)]
        if not named:
            raise ValueError(f"{type(module).__name__} has no parameters that require grad")
        self.module = module
        self.names: tuple[str, ...] = tuple(name for name, _ in named)
        self.shapes: tuple[torch.Size, ...] = tuple(p.shape for _, p in named)
        self._sizes = [math.prod(shape) for shape in self.shapes]
        self.params = torch.cat([p.detach().reshape(-1) for _, p in named])

    @property
    def dim(self) -> int:
        """The number of parameters d."""
        return int(self.params.numel())

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameter dictionary that ``theta`` packs.

        Args:
            theta: shape ``(d,)``.

        Returns:
            ``{name: tensor}`` with the parameters' shapes (views of ``theta``).

        Raises:
            ValueError: ``theta`` is not of shape ``(d,)``.
        """
        if theta.shape != (self.dim,):
            raise ValueError(f"theta must have shape ({self.dim},), got {tuple(theta.shape)}")
        pieces = torch.split(theta, self._sizes)
        return {n: p.reshape(s) for n, p, s in zip(self.names, pieces, self.shapes, strict=True)}

    def flatten(self, params: dict[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
        """The flat vector of a parameter dictionary (or sequence in ``names`` order).

        Args:
            params: ``{name: tensor}``, or the tensors in ``names`` order.

        Returns:
            The vector, shape ``(d,)``.
        """
        tensors = [params[n] for n in self.names] if isinstance(params, dict) else list(params)
        return torch.cat([t.reshape(-1) for t in tensors])

    def __call__(self, theta: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """The module's output with parameters ``theta``: ``module(*args, **kwargs)``."""
        return functional_call(self.module, self.unflatten(theta), args, kwargs)

    def load_into_module(self, theta: torch.Tensor) -> None:
        """Copy ``theta`` into the module's parameters in place.

        Args:
            theta: shape ``(d,)``.

        Raises:
            ValueError: ``theta`` is not of shape ``(d,)``.
        """
        values = self.unflatten(theta.detach())
        with torch.no_grad():
            for name, p in self.module.named_parameters():
                if name in values:
                    p.copy_(values[name])


def functional_module(module: nn.Module, names: Sequence[str] | None = None) -> FunctionalModule:
    """See ``module`` as a function ``(theta, *inputs) -> output`` of one flat vector theta
    (of all its trainable parameters, or of those in ``names``).

    Args:
        module: the module.
        names: the parameters to pack (default: every trainable one).

    Returns:
        A :class:`FunctionalModule`.

    Raises:
        TypeError: ``module`` is not an nn.Module, or ``names`` is not a sequence of names.
        ValueError: ``names`` is empty or names parameters the module does not train, or the
            module has no trainable parameters.

    Example:
        >>> import torch, probcalc as pc
        >>> fm = pc.functional_module(torch.nn.Linear(3, 1))
        >>> X = torch.randn(5, 3)
        >>> pc.grad(lambda th: fm(th, X).pow(2).sum())(fm.params).shape
        torch.Size([4])
    """
    return FunctionalModule(module, names)
