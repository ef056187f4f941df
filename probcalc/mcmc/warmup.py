"""Stan's windowed warmup for every chain at once, and the loop that runs a sampler's
transition through warmup and sampling.

Step size: dual averaging (Hoffman & Gelman 2014, section 3.2) of log(step size) towards
the target acceptance statistic, gamma = 0.05, t0 = 10, kappa = 0.75, mu = log(10 eps0),
restarted after each mass-matrix update from a step size found by Stan's doubling/halving
heuristic. Mass matrix: estimated per chain from the draws of Stan's slow windows (a 75-draw
initial buffer, windows of 25, 50, 100, ... draws, a 50-draw terminal buffer; 15% / 75% /
10% of a warmup shorter than 150), regularized as Stan does, (n/(n+5)) Sigma + 1e-3 (5/(n+5)) I.
Written here because torch has no HMC warmup; the schedule and constants are Stan's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core.random import Seed, generator
from ..laplace.approximation import LaplaceApproximation
from .integrator import (
    Potential,
    kinetic_energy,
    leapfrog,
    sample_momentum,
)
from .result import MCMCResult, build_result, check_arguments
from .support import Constraints
from .target import prepare_target

__all__ = [
    "DualAveraging",
    "State",
    "Stats",
    "Transition",
    "adaptation_windows",
    "estimate_inverse_mass",
    "find_reasonable_step_size",
    "run_chains",
]

GAMMA = 0.05
T0 = 10.0
KAPPA = 0.75
MAX_ENERGY_ERROR = 1000.0  # an energy error above this is a divergence (Stan, NumPyro)
INIT_BUFFER = 75
TERM_BUFFER = 50
BASE_WINDOW = 25


@dataclass(frozen=True)
class State:
    """Every chain's position (chains, d), log density (chains,) and gradient (chains, d)."""

    q: torch.Tensor
    log_prob: torch.Tensor
    gradient: torch.Tensor


@dataclass(frozen=True)
class Stats:
    """What one transition reports per chain: the acceptance statistic, whether it
    diverged, the leapfrog steps taken, and the tree depth (NUTS; None for HMC)."""

    accept_prob: torch.Tensor
    diverging: torch.Tensor
    num_steps: torch.Tensor
    tree_depth: torch.Tensor | None = None


# (state, step_size (chains,), inverse_mass, mass_factor, generator) -> (state, stats)
Transition = Callable[
    [State, torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], tuple[State, Stats]
]


class DualAveraging:
    """Per-chain dual averaging of log(step size) (Hoffman & Gelman 2014, Algorithm 5):
    h_t = (1 - 1/(t + t0)) h_{t-1} + (delta - alpha_t)/(t + t0);
    log eps_t = mu - sqrt(t)/gamma h_t; log eps_bar_t = t^-kappa log eps_t
    + (1 - t^-kappa) log eps_bar_{t-1}."""

    def __init__(self, step_size: torch.Tensor, target_accept: float) -> None:
        self.target = target_accept
        self.restart(step_size)

    def restart(self, step_size: torch.Tensor) -> None:
        """Start again from ``step_size`` (chains,), with mu = log(10 step_size)."""
        self.mu = torch.log(10.0 * step_size)
        self.h_bar = torch.zeros_like(step_size)
        self.log_eps_bar = torch.zeros_like(step_size)
        self.log_eps = torch.log(step_size)
        self.t = 0

    def update(self, accept_prob: torch.Tensor) -> torch.Tensor:
        """One update from the chains' acceptance statistics (chains,); returns the step
        size to use next."""
        self.t += 1
        t = float(self.t)
        eta = 1.0 / (t + T0)
        alpha = torch.nan_to_num(accept_prob, nan=0.0).clamp(0.0, 1.0)
        self.h_bar = (1.0 - eta) * self.h_bar + eta * (self.target - alpha)
        self.log_eps = self.mu - math.sqrt(t) / GAMMA * self.h_bar
        weight = t**-KAPPA
        self.log_eps_bar = weight * self.log_eps + (1.0 - weight) * self.log_eps_bar
        return torch.exp(self.log_eps)

    def final(self) -> torch.Tensor:
        """The averaged step size exp(log eps_bar) that sampling uses."""
        return torch.exp(self.log_eps_bar)


def adaptation_windows(num_warmup: int) -> list[tuple[int, int]]:
    """Stan's slow windows [start, end) of warmup iterations whose draws estimate the mass
    matrix; empty for a warmup under 20 iterations (step size only).

    Args:
        num_warmup: the warmup length.

    Returns:
        The windows, in order; the last one ends where the terminal buffer starts.
    """
    if num_warmup < 20:
        return []
    init_buffer, term_buffer, base = INIT_BUFFER, TERM_BUFFER, BASE_WINDOW
    if init_buffer + base + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        base = num_warmup - (init_buffer + term_buffer)
    end_slow = num_warmup - term_buffer
    windows = []
    start, size = init_buffer, base
    while start < end_slow:
        end = min(start + size, end_slow)
        if windows and end + 2 * size >= end_slow:
            end = end_slow
        windows.append((start, end))
        start, size = end, 2 * size
    return windows


def estimate_inverse_mass(draws: torch.Tensor, dense: bool) -> torch.Tensor:
    """Each chain's inverse mass matrix from its window draws (chains, n, d): the variance
    (diagonal, (chains, d)) or covariance (dense, (chains, d, d)), shrunk as Stan does,
    (n/(n+5)) Sigma + 1e-3 (5/(n+5)) I. A dense window of fewer than 2d draws gives the
    diagonal of that matrix only."""
    n = draws.shape[1]
    centred = draws - draws.mean(dim=1, keepdim=True)
    shrink, ridge = n / (n + 5.0), 1e-3 * 5.0 / (n + 5.0)
    if not dense:
        return shrink * (centred**2).sum(dim=1) / (n - 1) + ridge
    d = draws.shape[-1]
    eye = torch.eye(d, dtype=draws.dtype, device=draws.device)
    if n < 2 * d:
        # A covariance from fewer than 2d draws is rank-deficient or nearly so, and the
        # 1e-3 ridge then sets a tiny inverse mass along the missing directions (a 25-draw
        # window in 100-D stalls the chains); such a window estimates the variances only.
        variances = shrink * (centred**2).sum(dim=1) / (n - 1) + ridge
        return torch.diag_embed(variances)
    covariance = torch.einsum("cni,cnj->cij", centred, centred) / (n - 1)
    return shrink * covariance + ridge * eye


def mass_factor_of(inverse_mass: torch.Tensor) -> torch.Tensor:
    """L with L L^T = M = (M^{-1})^{-1}: 1/sqrt (diagonal) or the Cholesky factor of the
    inverse (dense)."""
    if inverse_mass.dim() == 2:
        return inverse_mass.rsqrt()
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(inverse_mass)))


def find_reasonable_step_size(
    potential: Potential,
    state: State,
    step_size: torch.Tensor,
    inverse_mass: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Stan's initial step size per chain: double (or halve) the step size until one
    leapfrog step's acceptance exp(-Delta H) crosses 0.8.

    Args:
        potential: the batched log density and gradient.
        state: where the chains are.
        step_size: the starting step sizes (chains,).
        inverse_mass: the metric.
        generator: draws the momenta.

    Returns:
        The step sizes (chains,), within [1e-10, 1e7].
    """
    factor = mass_factor_of(inverse_mass)
    log_target = math.log(0.8)

    def delta_h(eps: torch.Tensor) -> torch.Tensor:
        p = sample_momentum(factor, state.q.shape, generator)
        h0 = -state.log_prob + kinetic_energy(p, inverse_mass)
        _, p1, value, _ = leapfrog(potential, state.q, p, state.gradient, eps, inverse_mass)
        out = h0 - (-value + kinetic_energy(p1, inverse_mass))
        return torch.nan_to_num(out, nan=-torch.inf)

    eps = step_size.clone()
    direction = torch.where(delta_h(eps) > log_target, 1.0, -1.0).to(eps.dtype)
    active = torch.ones_like(eps, dtype=torch.bool)
    for _ in range(100):
        change = torch.where(direction > 0, 2.0 * eps, 0.5 * eps).clamp(1e-10, 1e7)
        eps = torch.where(active, change, eps)
        dh = delta_h(eps)
        crossed = torch.where(direction > 0, dh <= log_target, dh >= log_target)
        active = active & ~crossed & (eps > 1e-10) & (eps < 1e7)
        if not bool(active.any()):
            break
    return eps


class _ProgressBar:
    """A tqdm bar over warmup and sampling iterations that shows the phase, the chains'
    mean step size and acceptance statistic, and the divergences so far (warmup's and
    sampling's counted apart). The figures refresh every ``every`` iterations."""

    def __init__(self, name: str, num_warmup: int, num_samples: int, every: int = 10) -> None:
        from tqdm.auto import tqdm

        self.name = name
        self.every = every
        self.phase = "warmup" if num_warmup > 0 else "sampling"
        self.divergences = {"warmup": 0, "sampling": 0}
        self.accept_sum = 0.0
        self.count = 0
        self.bar = tqdm(total=num_warmup + num_samples, desc=f"{name} {self.phase}")

    def update(self, step_size: torch.Tensor, stats: Stats) -> None:
        """One iteration of every chain, with the step size it used and its statistics."""
        self.divergences[self.phase] += int(stats.diverging.sum())
        self.accept_sum += float(stats.accept_prob.nan_to_num(0.0).mean())
        self.count += 1
        self.bar.update(1)
        if self.count % self.every == 0:
            self.bar.set_postfix(
                step_size=f"{float(step_size.mean()):.3g}",
                accept=f"{self.accept_sum / self.count:.2f}",
                divergences=self.divergences[self.phase],
                refresh=False,
            )

    def start_sampling(self) -> None:
        """Switch the label to the sampling phase and restart the running figures."""
        self.phase = "sampling"
        self.accept_sum, self.count = 0.0, 0
        self.bar.set_description(f"{self.name} sampling")

    def close(self) -> None:
        self.bar.close()


def run_chains(
    potential: Potential,
    transition: Transition,
    q0: torch.Tensor,
    *,
    num_samples: int,
    num_warmup: int,
    target_accept: float,
    dense: bool,
    generator: torch.Generator,
    progress_bar: bool,
    name: str,
    inverse_mass: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Warm every chain up (step size and mass matrix), then draw ``num_samples``.

    Args:
        potential: the batched log density and gradient.
        transition: one HMC or NUTS transition of every chain.
        q0: the starting points (chains, d), where the log density is finite.
        num_samples, num_warmup: draws kept and warmup iterations.
        target_accept: the acceptance statistic dual averaging aims for.
        dense: estimate a dense mass matrix (else diagonal).
        generator: every draw's generator.
        progress_bar: show a tqdm bar with the phase, the mean step size, the mean
            acceptance statistic and the running count of divergences.
        name: the bar's label.
        inverse_mass: the first inverse mass matrix, (chains, d) for a diagonal metric or
            (chains, d, d) for a dense one; None for the identity. A given one is kept
            through a warmup shorter than 150 iterations (only the step size adapts), and
            a given dense one through windows of fewer than 2d draws.

    Returns:
        samples (chains, num_samples, d), log_prob, accept_prob, divergences, num_steps,
        tree_depth (chains, num_samples), step_size (chains,) and inverse_mass_matrix.
    """
    chains, d = q0.shape
    dtype, device = q0.dtype, q0.device
    value, gradient = potential(q0)
    state = State(q0, value, gradient)
    inverse_mass_given = inverse_mass is not None
    if inverse_mass is not None:
        inverse_mass = inverse_mass.to(dtype=dtype, device=device)
    elif dense:
        inverse_mass = torch.eye(d, dtype=dtype, device=device).expand(chains, d, d).clone()
    else:
        inverse_mass = torch.ones(chains, d, dtype=dtype, device=device)
    factor = mass_factor_of(inverse_mass)
    step_size = torch.ones(chains, dtype=dtype, device=device)
    if num_warmup > 0:
        step_size = find_reasonable_step_size(potential, state, step_size, inverse_mass, generator)
    adapter = DualAveraging(step_size, target_accept)
    windows = adaptation_windows(num_warmup)
    if inverse_mass_given and num_warmup < INIT_BUFFER + BASE_WINDOW + TERM_BUFFER:
        # Stan's windows shrink below 150 iterations to a few draws each, whose metric is
        # worse than a given one (a Laplace fit's covariance): keep it, adapt the step size.
        windows = []
    window_ends = {end: start for start, end in windows}
    warmup_draws = torch.empty(chains, max(num_warmup, 1), d, dtype=dtype, device=device)

    keys = ("log_prob", "accept_prob", "divergences", "num_steps", "tree_depth")
    samples = torch.empty(chains, num_samples, d, dtype=dtype, device=device)
    out = {
        "log_prob": torch.empty(chains, num_samples, dtype=dtype, device=device),
        "accept_prob": torch.empty(chains, num_samples, dtype=dtype, device=device),
        "divergences": torch.zeros(chains, num_samples, dtype=torch.bool, device=device),
        "num_steps": torch.zeros(chains, num_samples, dtype=torch.long, device=device),
        "tree_depth": torch.zeros(chains, num_samples, dtype=torch.long, device=device),
    }
    bar = _ProgressBar(name, num_warmup, num_samples) if progress_bar else None
    try:
        for i in range(num_warmup):
            state, stats = transition(state, step_size, inverse_mass, factor, generator)
            if bar is not None:
                bar.update(step_size, stats)
            step_size = adapter.update(stats.accept_prob)
            warmup_draws[:, i] = state.q
            if i + 1 in window_ends and not (
                dense and inverse_mass_given and i + 1 - window_ends[i + 1] < 2 * d
            ):
                # (a dense window of fewer than 2d draws would give only the variances:
                # a given metric, a Laplace fit's covariance, is better kept)
                start = window_ends[i + 1]
                inverse_mass = estimate_inverse_mass(warmup_draws[:, start : i + 1], dense)
                factor = mass_factor_of(inverse_mass)
                step_size = find_reasonable_step_size(
                    potential, state, step_size, inverse_mass, generator
                )
                adapter.restart(step_size)
        if num_warmup > 0:
            step_size = adapter.final()
        if bar is not None:
            bar.start_sampling()
        for i in range(num_samples):
            state, stats = transition(state, step_size, inverse_mass, factor, generator)
            samples[:, i] = state.q
            out["log_prob"][:, i] = state.log_prob
            out["accept_prob"][:, i] = stats.accept_prob
            out["divergences"][:, i] = stats.diverging
            out["num_steps"][:, i] = stats.num_steps
            if stats.tree_depth is not None:
                out["tree_depth"][:, i] = stats.tree_depth
            if bar is not None:
                bar.update(step_size, stats)
    finally:
        if bar is not None:
            bar.close()
    result = {key: out[key] for key in keys}
    result["samples"] = samples
    result["step_size"] = step_size
    result["inverse_mass_matrix"] = inverse_mass
    return result


def sample_chains(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor | LaplaceApproximation,
    make_transition: Callable[[Potential], Transition],
    *,
    name: str,
    num_samples: int,
    num_warmup: int,
    chains: int,
    seed: Seed,
    target_accept: float,
    mass_matrix: str,
    constraints: Constraints,
    progress_bar: bool,
    compile: bool = False,
) -> MCMCResult:
    """What every sampler does around its transition: check the arguments, the supports and
    the start points before any work, move ``log_prob`` to the unconstrained space and batch
    it over the chains (counting its evaluations), run warmup and sampling with
    ``make_transition(potential)``, and build the result on the constrained scale.

    Raises:
        TypeError, ValueError: a bad argument (named in the message).
        NonFiniteError: log_prob or its gradient is not finite at a start.
    """
    init, num_samples, num_warmup, chains, dense = check_arguments(
        log_prob,
        init,
        num_samples=num_samples,
        num_warmup=num_warmup,
        chains=chains,
        seed=seed,
        target_accept=target_accept,
        mass_matrix=mass_matrix,
        progress_bar=progress_bar,
    )
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be a bool, got {type(compile).__name__}")
    device = init.mode.device if isinstance(init, LaplaceApproximation) else init.device
    source = generator(seed, device)
    target = prepare_target(
        log_prob, init, constraints, chains=chains, dense=dense, source=source, compile=compile
    )
    raw = run_chains(
        target.potential,
        make_transition(target.potential),
        target.start,
        num_samples=num_samples,
        num_warmup=num_warmup,
        target_accept=float(target_accept),
        dense=dense,
        generator=source,
        progress_bar=progress_bar,
        name=name,
        inverse_mass=target.inverse_mass,
    )
    raw["samples"] = target.space.to_constrained(raw["samples"])
    return build_result(raw, target.potential.n_evals, nuts=name == "nuts", name=name)
