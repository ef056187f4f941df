"""expectation: E_dist[f(X)] by plain, antithetic or randomized quasi-Monte Carlo."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.distributions import (
    Cauchy,
    Distribution,
    Independent,
    Laplace,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    StudentT,
    Uniform,
)
from torch.func import vmap

from ..core.distributed import (
    Group,
    active_group,
    agreed,
    gather_moments,
    rank_seed,
    share,
    sum_across,
    world_size,
)
from ..core.options import Option
from ..core.results import Estimate
from ._sampling import (
    Seed,
    check_distribution,
    check_n,
    common_seed,
    draw,
    evaluate,
    integer_seed,
    seeded,
)

__all__ = ["MCMethod", "expectation"]

_DEFAULT_BATCH = 2**16
_SYMMETRIC = (Normal, MultivariateNormal, LowRankMultivariateNormal, Uniform, Laplace, StudentT,
              Cauchy)  # fmt: skip
_SOBOL_MAX_DIM = 21201


class MCMethod(Option):
    """The methods of :func:`expectation`."""

    MC = "mc"  # independent draws
    QMC = "qmc"  # scrambled Sobol points through the inverse CDF; stderr over scrambles
    ANTITHETIC = "antithetic"  # pairs (x, x') reflected about the centre, or u and 1 - u


class _Moments:
    """Running sum (with its graph), and a detached mean and M2 (Chan et al.'s parallel
    update), so memory stays bounded however many batches come."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, values: torch.Tensor) -> None:
        m = values.shape[0]
        batch_sum = values.sum(dim=0)
        self.total = batch_sum if self.total is None else self.total + batch_sum
        detached = values.detach()
        batch_mean = detached.mean(dim=0)
        batch_m2 = ((detached - batch_mean) ** 2).sum(dim=0)
        if self.mean is None:
            self.mean, self.m2, self.count = batch_mean, batch_m2, m
            return
        count = self.count + m
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * m / count
        self.m2 = self.m2 + batch_m2 + delta**2 * self.count * m / count
        self.count = count

    def estimate(self, group: Group | bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean with its graph, standard error of the mean), over every rank of ``group``:
        the sums are all-reduced (with their graph), the (count, mean, M2) merged exactly."""
        count, _, m2 = gather_moments(self.count, self.mean, self.m2, group)
        variance = m2 / (count - 1)
        return sum_across(self.total, group) / count, torch.sqrt(variance / count)


def _centre(dist: Distribution) -> torch.Tensor:
    base = dist.base_dist if isinstance(dist, Independent) else dist
    return base.loc if isinstance(base, StudentT | Cauchy | Laplace) else dist.mean


def _is_symmetric(dist: Distribution) -> bool:
    base = dist.base_dist if isinstance(dist, Independent) else dist
    return isinstance(base, _SYMMETRIC)


def _has_icdf(dist: Distribution) -> bool:
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if base.event_shape != torch.Size():
        return False
    try:
        base.icdf(torch.full(base.batch_shape, 0.5, dtype=base.mean.dtype))
    except NotImplementedError:
        return False
    return True


def _from_uniform(dist: Distribution, u: torch.Tensor) -> torch.Tensor:
    """Map uniforms u (m, d) to samples (m, *batch_shape, *event_shape) of ``dist``."""
    shape = dist.batch_shape + dist.event_shape
    if isinstance(dist, MultivariateNormal) and dist.batch_shape == torch.Size():
        return dist.loc + torch.special.ndtri(u) @ dist.scale_tril.T
    base = dist.base_dist if isinstance(dist, Independent) else dist
    return base.icdf(u.reshape((u.shape[0], *shape)))


def _dimension(dist: Distribution, method: MCMethod) -> int:
    if isinstance(dist, MultivariateNormal) and dist.batch_shape == torch.Size():
        return dist.event_shape.numel()
    if not _has_icdf(dist):
        raise TypeError(
            f"method={method.value!r} maps uniforms through an inverse CDF, which "
            f"{type(dist).__name__} lacks in torch (only univariate families with icdf and "
            f"MultivariateNormal qualify); use method='mc'"
        )
    return (dist.batch_shape + dist.event_shape).numel()


def expectation(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist: Distribution,
    n: int,
    *,
    method: str | MCMethod = "mc",
    seed: Seed = None,
    batch_size: int | None = None,
    batched: bool = True,
    scrambles: int = 16,
    group: Group | bool = None,
) -> Estimate:
    """``E[f(X)]`` for ``X ~ dist`` by Monte Carlo, with its standard error.

    - "mc": the mean of f over n independent draws; stderr = sd / √n.
    - "antithetic": n/2 pairs (x, x') with x' = 2c - x for distributions symmetric about c
      (Normal, MultivariateNormal, Uniform, Laplace, StudentT, Cauchy) or x' = F⁻¹(1 - u)
      for univariate families with an inverse CDF; stderr from the pair means.
    - "qmc": randomized quasi-Monte Carlo: ``scrambles`` independently scrambled Sobol
      sequences (torch.quasirandom.SobolEngine) of n/scrambles points each, through the
      inverse CDF (or the Cholesky factor for a MultivariateNormal); stderr from the spread
      of the scrambles' means.

    Draws are reparameterized where ``dist`` allows (``rsample``), so the value is
    differentiable with respect to the distribution's parameters (a pathwise gradient)
    and to parameters ``f`` closes over. Samples are evaluated ``batch_size`` at a time, so
    memory stays bounded for any n when nothing requires grad.

    Args:
        f: maps samples ``(m, *event_shape)`` (``(m, *batch_shape, *event_shape)`` for a
            batched distribution) to ``(m,)`` or ``(m, *out)``; with ``batched=False``, a
            function of one sample, vmapped.
        dist: a torch.distributions.Distribution.
        n: the number of evaluations of f (at least 2; even for "antithetic"; at least
            2·scrambles for "qmc").
        method: "mc", "qmc" or "antithetic".
        seed: an int or a torch.Generator; the same seed gives the same estimate. The
            caller's global random state is left untouched.
        batch_size: samples per evaluation of f (default 65,536).
        scrambles: the independent Sobol scrambles for "qmc".
        group: a torch.distributed process group; by default the default group when
            torch.distributed is initialized. The n evaluations are split across its ranks
            ("mc": each rank draws its own stream, seeded from ``seed`` by
            numpy.random.SeedSequence.spawn; "qmc": each rank takes a consecutive block of
            the same scrambled Sobol sequences, so the estimate equals the one-process
            estimate over the same n points), and every rank returns the same Estimate.
            Under an initialized group every rank must call it; ``group=False`` computes
            locally. A failure on one rank raises on every rank. Gradients follow
            DistributedDataParallel's convention: average the ranks' ``.grad``.

    Returns:
        Estimate(value, stderr, n).

    Raises:
        ValueError: n < 2 (or too small for the method), an unknown method, a bad batch size,
            or an output of f whose leading dimension is not the number of samples; under a
            process group, n smaller than twice the number of ranks, or "antithetic".
        TypeError: ``dist`` is not a Distribution, or the method cannot map uniforms into it.
        NonFiniteError: f is NaN or infinite at a sample (the message names it).

    Example:
        >>> import torch, probcalc as pc
        >>> dist = torch.distributions.Normal(torch.tensor(1.0), torch.tensor(2.0))
        >>> est = pc.mc.expectation(lambda x: x**2, dist, 100_000, seed=0)
        >>> abs(float(est.value) - 5.0) < 4 * float(est.stderr)
        True
    """
    method = MCMethod.parse(method, name="method")
    dist = check_distribution(dist)
    n = check_n(n)
    batch_size = _DEFAULT_BATCH if batch_size is None else check_n(batch_size, minimum=1)
    f = f if batched else vmap(f)
    device = dist.mean.device if dist.mean.numel() else torch.device("cpu")
    group = active_group(group)
    if group is not False:
        if n < 2 * world_size(group):
            raise ValueError(f"n = {n} is too small to split over {world_size(group)} ranks")
        if method is MCMethod.ANTITHETIC:
            raise ValueError("method='antithetic' does not run across processes; use 'mc'")
        seed = common_seed(seed, group)
    if method is MCMethod.MC:
        # across processes each rank draws its share with its own stream
        moments = _Moments()
        with seeded(seed if group is False else rank_seed(seed, group), device):
            _, count = share(n, group)
            with agreed(group):  # a failure raises on every rank
                for start in range(0, count, batch_size):
                    values, shape = evaluate(f, draw(dist, min(batch_size, count - start)))
                    moments.add(values)
        value, stderr = moments.estimate(group)
    else:
        with seeded(seed, device):
            if method is MCMethod.ANTITHETIC:
                value, stderr, shape, n = _antithetic(f, dist, n, batch_size)
            else:
                value, stderr, shape, n = _qmc(f, dist, n, batch_size, scrambles, seed, group)
    return Estimate(value.reshape(shape), stderr.reshape(shape), n)


def _antithetic(
    f: Callable, dist: Distribution, n: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Size, int]:
    if n % 2:
        raise ValueError(f"method='antithetic' needs an even n (pairs), got {n}")
    pairs = n // 2
    use_icdf = not _is_symmetric(dist)
    if use_icdf and not _has_icdf(dist):
        raise TypeError(
            f"method='antithetic' needs a distribution symmetric about its centre or with an "
            f"inverse CDF; {type(dist).__name__} has neither in torch. Use method='mc'"
        )
    moments = _Moments()
    centre = None if use_icdf else _centre(dist)
    shape = dist.batch_shape + dist.event_shape
    for start in range(0, pairs, max(1, batch_size // 2)):
        count = min(max(1, batch_size // 2), pairs - start)
        if use_icdf:
            u = torch.rand((count, *shape), dtype=dist.mean.dtype, device=dist.mean.device)
            x, mirror = _from_uniform(dist, u), _from_uniform(dist, 1 - u)
        else:
            x = draw(dist, count)
            mirror = 2 * centre - x
        values, out_shape = evaluate(f, torch.cat([x, mirror]))
        moments.add(0.5 * (values[:count] + values[count:]))
    value, stderr = moments.estimate()
    return value, stderr, out_shape, 2 * pairs


def _qmc(
    f: Callable, dist: Distribution, n: int, batch_size: int, scrambles: int, seed: Seed,
    group: Group | bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Size, int]:  # fmt: skip
    scrambles = check_n(scrambles)
    per_scramble = n // scrambles
    if per_scramble < 2:
        raise ValueError(f"method='qmc' needs n >= 2 * scrambles = {2 * scrambles}, got {n}")
    d = _dimension(dist, MCMethod.QMC)
    if d > _SOBOL_MAX_DIM:
        raise ValueError(f"Sobol sequences go up to {_SOBOL_MAX_DIM} dimensions, got {d}")
    base_seed = integer_seed(seed)
    if base_seed is None:
        base_seed = int(torch.randint(0, 2**31 - 1, (1,)))
    dtype, device = dist.mean.dtype, dist.mean.device
    tiny = torch.finfo(dtype).eps
    # under a process group each rank takes a consecutive block of every scrambled sequence
    if per_scramble < world_size(group):
        ranks = world_size(group)
        raise ValueError(f"method='qmc' over {ranks} ranks needs n >= {ranks * scrambles} "
                         f"({scrambles} scrambles), got {n}")  # fmt: skip
    offset, mine = share(per_scramble, group)
    totals = []
    with agreed(group):  # a failure raises on every rank
        for r in range(scrambles):
            engine = torch.quasirandom.SobolEngine(d, scramble=True, seed=base_seed + r)
            engine.fast_forward(offset)
            total = None
            for start in range(0, mine, batch_size):
                count = min(batch_size, mine - start)
                u = engine.draw(count, dtype=dtype).to(device).clamp(tiny, 1 - tiny)
                values, out_shape = evaluate(f, _from_uniform(dist, u))
                total = values.sum(dim=0) if total is None else total + values.sum(dim=0)
            totals.append(total)
    stacked = sum_across(torch.stack(totals), group) / per_scramble  # (R, B) scramble means
    value = stacked.mean(dim=0)
    stderr = stacked.detach().std(dim=0) / math.sqrt(scrambles)
    return value, stderr, out_shape, per_scramble * scrambles
