"""What HMC and NUTS return: every chain's draws with the sampler's statistics and the
convergence diagnostics, and the checks both samplers make of their arguments."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..core.errors import ConvergenceWarning
from ..core.evaluation import check_callable
from ..core.random import check_seed
from ..laplace.approximation import LaplaceApproximation
from .diagnostics import ess_bulk, ess_tail, rhat, summary_table

if TYPE_CHECKING:
    import arviz

__all__ = ["MCMCResult"]

MASS_MATRICES = ("diag", "dense")
MIN_SAMPLES = 4  # the diagnostics need 4 draws per chain
RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100


@dataclass(frozen=True)
class MCMCResult:
    """Draws of every chain and what the sampler did.

    Attributes:
        samples: the draws, (chains, num_samples, d).
        log_prob: the log density the chains sampled at each draw, (chains, num_samples):
            log_prob itself, plus log|det dx/dz| with ``constraints`` (Stan's lp__).
        divergences: whether the transition to each draw diverged (an energy error above
            1000 or a non-finite log density on the trajectory), (chains, num_samples) bool.
        accept_prob: each transition's acceptance statistic (HMC: min(1, exp(-Delta H));
            NUTS: its mean over the trajectory's points), (chains, num_samples).
        num_steps: leapfrog steps of each transition, (chains, num_samples) int.
        tree_depth: NUTS's tree depth of each transition, (chains, num_samples) int;
            None for HMC.
        step_size: each chain's step size after warmup, (chains,).
        inverse_mass_matrix: each chain's inverse mass matrix after warmup, (chains, d)
            (diagonal) or (chains, d, d) (dense); on the unconstrained scale with
            ``constraints`` (a simplex of k coordinates has k - 1 there).
        n_grad_evals: points at which log_prob and its gradient were evaluated, all chains
            and warmup included.
        rhat: rank-normalized split R-hat per coordinate, (d,) (NaN for one chain).
        ess_bulk: bulk effective sample size per coordinate, (d,).
        ess_tail: tail effective sample size per coordinate, (d,).
    """

    samples: torch.Tensor
    log_prob: torch.Tensor
    divergences: torch.Tensor
    accept_prob: torch.Tensor
    num_steps: torch.Tensor
    tree_depth: torch.Tensor | None
    step_size: torch.Tensor
    inverse_mass_matrix: torch.Tensor
    n_grad_evals: int
    rhat: torch.Tensor
    ess_bulk: torch.Tensor
    ess_tail: torch.Tensor

    def summary(self, names: list[str] | None = None) -> str:
        """A table of each coordinate's mean, sd, quantiles, ESS and R-hat.

        Args:
            names: one name per coordinate; ``x[0]``, ``x[1]``, ... when None.

        Returns:
            The table as text.
        """
        if names is None:
            names = [f"x[{i}]" for i in range(self.samples.shape[-1])]
        return summary_table(self.samples, names)

    def to_arviz(self, names: Sequence[str] | None = None) -> arviz.InferenceData:
        """The draws and the sampler's statistics as ArviZ data (needs arviz); see
        :func:`probcalc.mcmc.to_inference_data`."""
        from .export import to_inference_data  # export imports this module

        return to_inference_data(self, names)


def build_result(
    raw: dict[str, torch.Tensor], n_grad_evals: int, *, nuts: bool, name: str
) -> MCMCResult:
    """The result from the run's tensors, warning (ConvergenceWarning) with the figures
    when an R-hat exceeds 1.01, a bulk ESS is below 100 per chain, or a transition
    diverged."""
    samples = raw["samples"]
    chains = samples.shape[0]
    r = rhat(samples)
    bulk = ess_bulk(samples)
    tail = ess_tail(samples)
    problems = []
    worst_rhat = float(torch.nan_to_num(r, nan=-math.inf).max())
    if worst_rhat > RHAT_LIMIT:
        problems.append(f"max R-hat {worst_rhat:.3f} > {RHAT_LIMIT}")
    worst_ess = float(bulk.min())
    if worst_ess < ESS_PER_CHAIN * chains:
        problems.append(
            f"min bulk ESS {worst_ess:.0f} < {ESS_PER_CHAIN} per chain ({chains} chains)"
        )
    n_divergent = int(raw["divergences"].sum())
    if n_divergent:
        problems.append(
            f"{n_divergent} of {raw['divergences'].numel()} transitions diverged "
            f"(raise target_accept or reparametrize)"
        )
    if problems:
        warnings.warn(ConvergenceWarning(f"{name}: " + "; ".join(problems)), stacklevel=4)
    return MCMCResult(
        samples=samples,
        log_prob=raw["log_prob"],
        divergences=raw["divergences"],
        accept_prob=raw["accept_prob"],
        num_steps=raw["num_steps"],
        tree_depth=raw["tree_depth"] if nuts else None,
        step_size=raw["step_size"],
        inverse_mass_matrix=raw["inverse_mass_matrix"],
        n_grad_evals=n_grad_evals,
        rhat=r,
        ess_bulk=bulk,
        ess_tail=tail,
    )


def check_int(value: object, name: str, low: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def check_arguments(
    log_prob: object,
    init: object,
    *,
    num_samples: object,
    num_warmup: object,
    chains: object,
    seed: object,
    target_accept: object,
    mass_matrix: object,
    progress_bar: object,
) -> tuple[torch.Tensor | LaplaceApproximation, int, int, int, bool]:
    """Refuse bad arguments before any work, naming them.

    Returns:
        ``(init as (chains, d) or the Laplace fit, num_samples, num_warmup, chains,
        dense)``.

    Raises:
        TypeError, ValueError: as described in each message.
        NonFiniteError: log_prob or its gradient is not finite at a chain's start.
    """
    check_callable(log_prob, "log_prob")
    num_samples = check_int(num_samples, "num_samples", MIN_SAMPLES)
    num_warmup = check_int(num_warmup, "num_warmup", 0)
    chains = check_int(chains, "chains", 1)
    check_seed(seed)
    if (
        not isinstance(target_accept, numbers.Real)
        or isinstance(target_accept, bool)
        or not 0.0 < float(target_accept) < 1.0
    ):
        raise ValueError(f"target_accept must be a number in (0, 1), got {target_accept!r}")
    if mass_matrix not in MASS_MATRICES:
        raise ValueError(f"mass_matrix must be one of {MASS_MATRICES}, got {mass_matrix!r}")
    if not isinstance(progress_bar, bool):
        raise TypeError(f"progress_bar must be a bool, got {type(progress_bar).__name__}")
    if isinstance(init, LaplaceApproximation):
        return init, num_samples, num_warmup, chains, mass_matrix == "dense"
    if not isinstance(init, torch.Tensor):
        raise TypeError(
            f"init must be a floating-point torch.Tensor of shape (d,) or (chains, d), or a "
            f"Laplace fit (probcalc.laplace.fit), got {type(init).__name__}"
        )
    if not init.is_floating_point():
        raise TypeError(f"init must be a floating-point tensor, got dtype {init.dtype}")
    if init.dim() == 1 and init.numel() > 0:
        init = init.detach().expand(chains, -1).clone()
    elif init.dim() == 2 and init.shape[1] > 0:
        if init.shape[0] != chains:
            raise ValueError(
                f"init of shape (chains, d) must have chains = {chains} rows, got shape "
                f"{tuple(init.shape)}; pass chains={init.shape[0]} or one (d,) start"
            )
        init = init.detach().clone()
    else:
        raise ValueError(
            f"init must have shape (d,) or (chains, d) with d >= 1, got {tuple(init.shape)}"
        )
    return init, num_samples, num_warmup, chains, mass_matrix == "dense"
