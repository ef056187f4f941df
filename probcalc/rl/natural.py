"""Second-order policy optimization: the natural policy gradient and TRPO, on the core's
Hessian-vector products and conjugate gradient (the same ones the Laplace fit uses).

The Fisher information of the policy, F = E_s E_(a~π) [∇log π ∇log πᵀ], is the Hessian at
θ_old of the mean KL divergence KL(π_old(·|s) ‖ π_θ(·|s)), so F v is ``probcalc.hvp_operator``
of that KL (one reverse pass per product, its graph recorded once per update), and the
natural gradient F⁻¹ g is ``probcalc.conjugate_gradient`` on those products, damped:
(F + λ I) x = g. The step s = sqrt(2 δ / xᵀ(F + λI)x) x has KL ≈ δ under the quadratic
model. NaturalPG takes it; TRPO backtracks along it until the true mean KL is at most δ and
the surrogate E[π_θ/π_old A] improves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ..core.derivatives import FunctionalModule, functional_module, grad, hvp_operator
from ..core.errors import NonFiniteError
from ..core.optim import conjugate_gradient
from .actor_critic import ActorCritic
from .policies import GaussianPolicy

__all__ = ["TRPO", "NaturalPG", "fisher_operator", "gaussian_kl"]


def gaussian_kl(
    mean_old: torch.Tensor, log_std_old: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean_old, σ_old²) ‖ N(mean, σ²)) of diagonal Gaussians, summed over the last
    axis: Σ log σ/σ_old + (σ_old² + (mean_old - mean)²) / 2σ² - 1/2. Also the KL of two
    tanh-squashed policies (an invertible map leaves the KL unchanged)."""
    ratio = torch.exp(2 * (log_std_old - log_std))
    gap = (mean_old - mean) * torch.exp(-log_std)
    return (log_std - log_std_old + 0.5 * (ratio + gap**2) - 0.5).sum(-1)


def fisher_operator(
    policy: GaussianPolicy, obs: torch.Tensor, damping: float = 0.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (F + damping I) v, F the Fisher information of ``policy`` averaged over the
    observations (batch, obs_dim): the Hessian of the mean KL(π_current ‖ π_θ) at the
    current parameters. Vectors are flat over the policy's trainable parameters, in the
    order of ``probcalc.functional_module(policy)``."""
    module, mean_kl = _kl_from_current(policy, obs)
    return _damped_hessian(mean_kl, module.params, damping)


def _kl_from_current(
    policy: GaussianPolicy, obs: torch.Tensor, union_count: int | None = None
) -> tuple[FunctionalModule, Callable[[torch.Tensor], torch.Tensor]]:
    """The policy as a function of its flat parameters, and θ -> Σ_s KL(π_current ‖ π_θ) / n,
    n the number of observations (or ``union_count``, across processes: this rank's share
    of the union's mean)."""
    module = functional_module(policy)
    with torch.no_grad():
        mean_old, log_std_old = policy(obs)
    count = obs.shape[0] if union_count is None else union_count

    def mean_kl(theta: torch.Tensor) -> torch.Tensor:
        mean, log_std = module(theta, obs)
        return gaussian_kl(mean_old, log_std_old, mean, log_std).sum() / count

    return module, mean_kl


def _damped_hessian(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    damping: float,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda v: v,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> reduce(∇²f(x) v) + damping v (reduce: the sum over the ranks' shares)."""
    hessian_times = hvp_operator(f, x)
    return lambda v: (reduce(hessian_times(v).detach()) + damping * v).detach()


class NaturalPG(ActorCritic):
    """The natural policy gradient (Kakade, 2001) with a KL-normalized step (Rajeswaran et
    al., 2017): θ ← θ + sqrt(2δ / gᵀF⁻¹g) F⁻¹g, g the gradient of the surrogate
    E[π_θ/π_old A] (the score-function estimator of ∇E[return]) with GAE advantages, F⁻¹g by
    ``cg_iterations`` steps of conjugate gradient on damped Fisher-vector products. The critic
    is trained by ``critic_epochs`` passes of minibatch regression on the λ-returns with Adam.

    Defaults are sb3-contrib TRPO's (δ = 0.01, 15 CG steps, damping 0.1, 10 critic epochs of
    batches of 128, critic learning rate 1e-3, 2048 transitions per update). With
    lr_schedule="linear" both the critic's learning rate and δ decay to 0.

    Args:
        env, **options: as for :class:`ActorCritic` and :class:`OnPolicyAgent`
            (``learning_rate`` is the critic's).
        max_kl: δ, the KL radius of a step.
        step_size: if given, the step is step_size F⁻¹g instead (Kakade's natural gradient
            with a learning rate): it shrinks with the gradient, so with lr_schedule="linear"
            the iterates settle, where a KL-normalized step keeps its length in the noise.
        cg_iterations, cg_damping: the conjugate-gradient budget and the damping λ.
        critic_epochs, critic_batch_size: the critic's regression.
    """

    defaults: ClassVar[dict[str, Any]] = {"n_envs": 8, "n_steps": 256, "learning_rate": 1e-3,
                                          "max_grad_norm": None}  # fmt: skip
    line_search = False

    def __init__(
        self,
        env: Any,
        *,
        max_kl: float = 0.01,
        step_size: float | None = None,
        cg_iterations: int = 15,
        cg_damping: float = 0.1,
        critic_epochs: int = 10,
        critic_batch_size: int = 128,
        **options: Any,
    ) -> None:
        if (
            max_kl <= 0
            or cg_damping < 0
            or cg_iterations < 1
            or (step_size is not None and step_size <= 0)
        ):
            raise ValueError("max_kl and step_size must be positive, cg_damping >= 0 and "
                             "cg_iterations >= 1")  # fmt: skip
        if critic_batch_size < 2:
            raise ValueError(f"critic_batch_size must be at least 2, got {critic_batch_size}")
        super().__init__(env, **{**self.defaults, **options})
        self.config.update(max_kl=max_kl, step_size=step_size, cg_iterations=cg_iterations,
                           cg_damping=cg_damping, critic_epochs=critic_epochs,
                           critic_batch_size=critic_batch_size)  # fmt: skip
        self.max_kl, self.cg_iterations, self.cg_damping = max_kl, cg_iterations, cg_damping
        self.step_size = step_size
        self.critic_epochs, self.critic_batch_size = critic_epochs, critic_batch_size
        self._kl_scale = 1.0

    def _optimized_networks(self) -> list[str]:
        return ["value"]  # the policy moves by natural-gradient steps, not by the optimizer

    def _set_learning_rate(self, fraction_left: float) -> float:
        self._kl_scale = fraction_left if self.lr_schedule == "linear" else 1.0
        return super()._set_learning_rate(fraction_left)

    def _line_search(
        self, theta: torch.Tensor, step: torch.Tensor, surrogate: Callable, mean_kl: Callable,
        max_kl: float,
    ) -> tuple[torch.Tensor, float]:  # fmt: skip
        """NaturalPG takes the whole step; TRPO overrides this with its backtracking."""
        return theta + step, 1.0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return self.optimize(self.flatten(batch))

    def optimize(self, flat: dict[str, torch.Tensor]) -> dict[str, float]:
        """One natural-gradient step and the critic's regression on the flat transitions of
        a rollout (this rank's part of the union: across processes the policy gradient,
        the Fisher-vector products, the KL and the surrogate are sums of the ranks' shares).
        """
        obs, actions, old_log_prob = flat["obs"], flat["actions"], flat["old_log_prob"]
        advantages = flat["advantages"]
        counts = self.union_counts(advantages.shape[0])
        union = int(counts.sum())
        if union == 0:  # autoreset steps alone: nothing to learn from
            return {}
        if self.normalize_advantage and union > 1:
            advantages = self.standardize(advantages, union)
        module, local_kl = _kl_from_current(self.policy, obs, union)
        theta = current = module.params

        def local_surrogate(params: torch.Tensor) -> torch.Tensor:
            mean, log_std = module(params, obs)
            log_prob = self.policy.log_prob_given(mean, log_std, actions)
            return (torch.exp(log_prob - old_log_prob) * advantages).sum() / union

        def surrogate(params: torch.Tensor) -> torch.Tensor:
            return self.sum_over_ranks(local_surrogate(params))

        def mean_kl(params: torch.Tensor) -> torch.Tensor:
            return self.sum_over_ranks(local_kl(params))

        gradient = self.sum_over_ranks(grad(local_surrogate)(theta).detach())
        max_kl = self.max_kl * self._kl_scale
        figures: dict[str, float] = {"cg_iterations": 0.0, "step_fraction": 0.0}
        if float(gradient.norm()) > 0 and max_kl > 0:
            fisher = _damped_hessian(local_kl, theta, self.cg_damping, self.sum_over_ranks)
            solve = conjugate_gradient(fisher, gradient, max_iter=self.cg_iterations,
                                       truncated=True)  # fmt: skip
            direction = solve.x.detach()
            curvature = float(direction @ fisher(direction))
            if not math.isfinite(curvature) or curvature <= 0:
                raise NonFiniteError(f"the natural-gradient step's curvature x'Fx = {curvature}")
            if self.step_size is None:  # KL-normalized: ½ sᵀ(F + λI)s = δ
                step = math.sqrt(2 * max_kl / curvature) * direction
            else:
                step = self.step_size * self._kl_scale * direction
            with torch.no_grad():
                current, fraction = self._line_search(theta, step, surrogate, mean_kl, max_kl)
            module.load_into_module(current)
            figures = {"cg_iterations": float(solve.nit), "step_fraction": fraction,
                       "expected_improvement": float(gradient @ step) * fraction}  # fmt: skip
        with torch.no_grad():
            figures["kl"] = float(mean_kl(current))
        figures["value_loss"] = self._fit_critic(flat, counts)
        figures["explained_variance"] = self.union_explained_variance(
            flat["old_values"], flat["returns"]
        )
        figures["std"] = float(self.policy.log_std.detach().exp().mean())
        return figures

    def _fit_critic(self, flat: dict[str, torch.Tensor], counts: torch.Tensor) -> float:
        """Minibatch regression of V on the λ-returns (``counts``: every rank's number of
        transitions); the mean loss of the last epoch."""
        n = flat["obs"].shape[0]
        generator = self.minibatch_generator()
        slices = self.minibatch_slices(counts, self.critic_batch_size)
        losses = []
        for _ in range(self.critic_epochs):
            order = torch.randperm(n, generator=generator)
            obs, returns = flat["obs"][order], flat["returns"][order]
            losses = []
            for where, union in slices:
                predicted = self.value(obs[where]).squeeze(-1)
                # this rank's share of the union minibatch's mean
                loss = ((predicted - returns[where]) ** 2).sum() / union
                self.optimizer.zero_grad()
                loss.backward()
                self.reduce_gradients()
                if self.max_grad_norm is not None:
                    self.clip_gradients()
                self.optimizer.step()
                losses.append(loss.detach())
        if not losses:
            return math.nan
        return float(self.sum_over_ranks(torch.stack(losses)).mean())


class TRPO(NaturalPG):
    """Trust region policy optimization (Schulman et al., 2015): the natural-gradient step
    of :class:`NaturalPG`, shrunk by ``backtrack_factor`` up to ``backtrack_steps`` times
    until the mean KL is at most δ and the surrogate improves; no step if none does.
    Defaults as sb3-contrib's TRPO (0.8, 10).

    Args:
        env, **options: as for :class:`NaturalPG`.
        backtrack_factor, backtrack_steps: the line search.
    """

    line_search = True

    def __init__(
        self, env: Any, *, backtrack_factor: float = 0.8, backtrack_steps: int = 10,
        **options: Any,
    ) -> None:  # fmt: skip
        if not 0 < backtrack_factor < 1 or backtrack_steps < 1:
            raise ValueError("backtrack_factor must lie in (0, 1) and backtrack_steps be >= 1")
        super().__init__(env, **options)
        self.config.update(backtrack_factor=backtrack_factor, backtrack_steps=backtrack_steps)
        self.backtrack_factor, self.backtrack_steps = backtrack_factor, backtrack_steps

    def _line_search(
        self, theta: torch.Tensor, step: torch.Tensor, surrogate: Callable, mean_kl: Callable,
        max_kl: float,
    ) -> tuple[torch.Tensor, float]:  # fmt: skip
        start = float(surrogate(theta))
        fraction = 1.0
        for _ in range(self.backtrack_steps):
            candidate = theta + fraction * step
            kl, value = float(mean_kl(candidate)), float(surrogate(candidate))
            if math.isfinite(value) and kl <= max_kl and value > start:
                return candidate, fraction
            fraction *= self.backtrack_factor
        return theta, 0.0
