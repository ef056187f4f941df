"""Second-order policy optimization: the natural policy gradient and TRPO, on the core's
conjugate gradient (the one the Laplace fit and newton-cg use).

The Fisher information of the policy, F = E_s E_(a~π) [∇log π ∇log πᵀ], is computed in its
Gauss-Newton form F = E_s [J_sᵀ M J_s]: J_s the Jacobian of the policy's outputs (mean,
log std) at state s with respect to the parameters, M = diag(1/σ², 2) the Fisher of a
Gaussian in (mean, log std). F equals the Hessian at θ_old of the mean KL divergence
KL(π_old(·|s) ‖ π_θ(·|s)), but each product F v = Jᵀ(M (J v)) (two reverse passes through
graphs recorded once per update, in float64 whatever the networks' dtype) is positive
semi-definite by construction, where products of the KL's Hessian in float32 lose
definiteness to rounding once observations are large. The natural gradient F⁻¹ g is
``probcalc.conjugate_gradient`` on those products, damped: (F + λ I) x = g, stopped at the
first direction of non-positive curvature (which only rounding at extreme observations can
produce), where it warns and keeps the iterate so far. The step s = sqrt(2 δ / xᵀ(F + λI)x) x
has KL ≈ δ under the quadratic model. NaturalPG takes it; TRPO backtracks along it until the
true mean KL is at most δ and the surrogate E[π_θ/π_old A] improves. A solve that yields no
usable step (a non-finite gradient or product, no positive curvature) leaves the policy
unchanged for that update and warns (ConvergenceWarning) with the figure that failed.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import ClassVar

import torch

from ..core.derivatives import FunctionalModule, functional_module, grad
from ..core.errors import ConvergenceWarning, NonFiniteError
from ..core.losses import _check_broadcast, _floating, _tensor
from ..core.optim import conjugate_gradient
from .actor_critic import ActorCritic
from .config import NaturalPGConfig, TRPOConfig
from .policies import GaussianPolicy
from .rollout import Rollout
from .schedules import schedule_factor

__all__ = ["TRPO", "NaturalPG", "fisher_operator", "gaussian_kl"]

# The precision of the Fisher-vector products and the conjugate-gradient solve: a product's
# rounding error is about eps ‖F‖ ‖v‖, and ‖F‖ grows as |obs|² / σ², so float32 products
# lose the damping λ = 0.1 to rounding from |obs| ≈ 50 at σ = 0.05; float64 from ≈ 10⁶.
_SOLVE_DTYPE = torch.float64


def gaussian_kl(
    mean_old: torch.Tensor, log_std_old: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean_old, σ_old²) ‖ N(mean, σ²)) of diagonal Gaussians, summed over the last
    axis: Σ log σ/σ_old + (σ_old² + (mean_old - mean)²) / 2σ² - 1/2. Also the KL of two
    tanh-squashed policies (an invertible map leaves the KL unchanged).

    Shapes broadcast; integer inputs become floating point. NaN and infinity propagate, as
    in any elementwise function: TRPO's line search rejects a step whose KL is not finite.

    Raises:
        TypeError: inputs that are not tensors (or array-likes) of real numbers.
        ValueError: shapes that do not broadcast.
    """
    names = ("mean_old", "log_std_old", "mean", "log_std")
    tensors = dict(zip(names, (mean_old, log_std_old, mean, log_std), strict=True))
    tensors = {name: _tensor(value, name) for name, value in tensors.items()}
    dtype = _floating(*tensors.values())
    tensors = {n: t if t.is_floating_point() else t.to(dtype) for n, t in tensors.items()}
    _check_broadcast(**tensors)
    mean_old, log_std_old, mean, log_std = tensors.values()
    ratio = torch.exp(2 * (log_std_old - log_std))
    gap = (mean_old - mean) * torch.exp(-log_std)
    return (log_std - log_std_old + 0.5 * (ratio + gap**2) - 0.5).sum(-1)


def _non_negative(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def fisher_operator(
    policy: GaussianPolicy, obs: torch.Tensor, damping: float = 0.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (F + damping I) v with F = (1/n) Σ_s J_sᵀ M_s J_s, the Fisher information of
    ``policy`` averaged over the n observations ``obs`` (n, obs_dim): J_s the Jacobian of the
    policy's (mean, log std) at s with respect to its trainable parameters, M_s =
    diag(1/σ², 2) the Fisher of the Gaussian in (mean, log std). This equals the Hessian of
    the mean KL(π_current ‖ π_θ) at the current parameters and is positive semi-definite by
    construction. Vectors v are flat, shape (d,), over the policy's trainable parameters in
    the order of ``probcalc.functional_module(policy)``; the product is computed in float64
    and returned in v's dtype.

    Raises:
        TypeError: ``policy`` is not a GaussianPolicy; ``obs``, ``damping`` or v are not
            real numbers.
        ValueError: when ``obs`` holds no observation, is not (n, obs_dim) or not finite, a
            negative or non-finite damping, or a v that is not of shape (d,) or not finite.
    """
    if not isinstance(policy, GaussianPolicy):
        raise TypeError(f"policy must be a probcalc.rl.GaussianPolicy, got {type(policy).__name__}")
    damping = _non_negative(damping, "damping")
    if not isinstance(obs, torch.Tensor) or obs.is_complex() or obs.dtype is torch.bool:
        got = obs.dtype if isinstance(obs, torch.Tensor) else type(obs).__name__
        raise TypeError(f"obs must be a tensor of real numbers, got {got}")
    if obs.ndim != 2 or obs.shape[0] == 0:
        raise ValueError(f"obs must be (n, obs_dim) with n >= 1, got {tuple(obs.shape)}")
    share = _fisher_share(policy, obs, obs.shape[0])

    def product(v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or v.is_complex() or v.dtype is torch.bool:
            got = v.dtype if isinstance(v, torch.Tensor) else type(v).__name__
            raise TypeError(f"v must be a tensor of real numbers, got {got}")
        if not bool(torch.isfinite(v).all()):
            raise ValueError("v must be finite")
        wide = v.to(_SOLVE_DTYPE)
        return (share(wide) + damping * wide).to(v.dtype)

    return product


def _fisher_share(
    policy: GaussianPolicy, obs: torch.Tensor, union_count: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> Σ_s J_sᵀ M_s J_s v / union_count over these observations, in float64, at the
    policy's current parameters (across processes: this rank's share of the union's mean,
    ``union_count`` the union's number of observations).

    The graphs are recorded once: u -> Jᵀu (a reverse pass kept differentiable in u), so that
    J v is the reverse pass of that map (linear in u, its vector-Jacobian product with v is
    J v), and Jᵀ(M J v) a second reverse pass. Two reverse passes per product measured half
    the time of a forward-mode jvp (which re-runs the forward) and a reverse pass.
    """
    module = functional_module(policy)
    theta = module.params.to(_SOLVE_DTYPE).requires_grad_(True)
    states = obs.to(_SOLVE_DTYPE)
    with torch.enable_grad():
        mean, log_std = module(theta, states)  # log_std: float32 if frozen in a float32 policy
        log_std = log_std.to(_SOLVE_DTYPE).expand_as(mean)
        weights = [
            torch.exp(-2 * log_std.detach()) / union_count,  # 1/σ²: the mean's Fisher
            torch.full_like(log_std, 2.0 / union_count),
        ]  # 2: log σ's Fisher
        # only outputs that depend on θ (a frozen log std does not)
        outputs = [
            (out, w) for out, w in zip((mean, log_std), weights, strict=True) if out.requires_grad
        ]
        probes = [torch.zeros_like(out, requires_grad=True) for out, _ in outputs]
        (pulled,) = torch.autograd.grad(
            [out for out, _ in outputs],
            theta,
            probes,
            create_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )

    def product(v: torch.Tensor) -> torch.Tensor:
        if v.shape != theta.shape:
            raise ValueError(f"v must have shape {tuple(theta.shape)}, got {tuple(v.shape)}")
        if not pulled.requires_grad:  # no observations on this rank
            return torch.zeros_like(v)
        tangents = torch.autograd.grad(
            pulled, probes, v, retain_graph=True, allow_unused=True, materialize_grads=True
        )  # J v, per output
        (result,) = torch.autograd.grad(
            [out for out, _ in outputs],
            theta,
            [w * tangent for (_, w), tangent in zip(outputs, tangents, strict=True)],
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        return result

    return product


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


class NaturalPG(ActorCritic):
    """The natural policy gradient (Kakade, 2001) with a KL-normalized step (Rajeswaran et
    al., 2017): θ ← θ + sqrt(2δ / gᵀF⁻¹g) F⁻¹g, g the gradient of the surrogate
    E[π_θ/π_old A] (the score-function estimator of ∇E[return]) with GAE advantages, F⁻¹g by
    ``cg_iterations`` steps of conjugate gradient on damped Fisher-vector products. The critic
    is trained by ``critic_epochs`` passes of minibatch regression on the λ-returns with Adam.

    Defaults are sb3-contrib TRPO's (:class:`~probcalc.rl.config.NaturalPGConfig`: δ = 0.01,
    15 CG steps, damping 0.1, 10 critic epochs of batches of 128, critic learning rate 1e-3,
    2048 transitions per update). With lr_schedule="linear" both the critic's learning rate
    and δ decay to 0. With ``step_size`` the step is step_size F⁻¹g instead (Kakade's
    natural gradient with a learning rate): it shrinks with the gradient, so with
    lr_schedule="linear" the iterates settle, where a KL-normalized step keeps its length
    in the noise.

    Args:
        env: as for :class:`OnPolicyAgent`.
        config: a :class:`~probcalc.rl.config.NaturalPGConfig` (``learning_rate`` is the
            critic's).
        seed: as for :class:`OnPolicyAgent`.
        group: as for :class:`OnPolicyAgent`.
        **settings: fields of NaturalPGConfig.

    Raises:
        TypeError: before any environment is made, a setting of the wrong type; and as
            :class:`OnPolicyAgent`.
        ValueError: before any environment is made, when max_kl or step_size is not > 0,
            cg_damping not >= 0, cg_iterations not >= 1, critic_epochs not >= 0, or
            critic_batch_size not >= 2; and as :class:`OnPolicyAgent`.
    """

    Config: ClassVar[type[NaturalPGConfig]] = NaturalPGConfig

    def _optimized_networks(self) -> list[str]:
        return ["value"]  # the policy moves by natural-gradient steps, not by the optimizer

    def _schedule(self) -> float:
        """The factor of δ (and of step_size) under ``lr_schedule`` at this point of the run."""
        return schedule_factor(self.config.lr_schedule, self._progress_remaining)

    def _line_search(
        self,
        theta: torch.Tensor,
        step: torch.Tensor,
        surrogate: Callable,
        mean_kl: Callable,
        max_kl: float,
    ) -> tuple[torch.Tensor, float]:
        """NaturalPG takes the whole step; TRPO overrides this with its backtracking."""
        return theta + step, 1.0

    def update(self, rollout: Rollout) -> dict[str, float]:
        return self.optimize(self.flatten(rollout))

    def optimize(self, flat: dict[str, torch.Tensor]) -> dict[str, float]:
        """One natural-gradient step and the critic's regression on the flat transitions of
        a rollout (this rank's part of the union: across processes the policy gradient,
        the Fisher-vector products, the KL and the surrogate are sums of the ranks' shares).
        """
        obs, actions, old_log_prob = flat["obs"], flat["actions"], flat["old_log_prob"]
        advantages = flat["advantages"]
        counts = self.union_counts(advantages.shape[0])
        union_count = int(counts.sum())
        if union_count == 0:  # autoreset steps alone: nothing to learn from
            return {}
        if self.config.normalize_advantage and union_count > 1:
            advantages = self.standardize(advantages, union_count)
        module, local_kl = _kl_from_current(self.policy, obs, union_count)
        theta = current = module.params

        def local_surrogate(params: torch.Tensor) -> torch.Tensor:
            mean, log_std = module(params, obs)
            log_prob = self.policy.log_prob_given(mean, log_std, actions)
            return (torch.exp(log_prob - old_log_prob) * advantages).sum() / union_count

        def surrogate(params: torch.Tensor) -> torch.Tensor:
            return self.sum_over_ranks(local_surrogate(params))

        def mean_kl(params: torch.Tensor) -> torch.Tensor:
            return self.sum_over_ranks(local_kl(params))

        gradient = self.sum_over_ranks(grad(local_surrogate)(theta).detach())
        max_kl = self.config.max_kl * self._schedule()
        metrics = {"cg_iterations": 0.0, "step_fraction": 0.0, "expected_improvement": 0.0}
        if max_kl > 0 and bool(gradient.any()):
            step, cg_iterations = self._natural_step(obs, union_count, gradient, max_kl)
            metrics["cg_iterations"] = float(cg_iterations)
            if step is not None:
                step = step.to(theta.dtype)
                with torch.no_grad():
                    current, fraction = self._line_search(theta, step, surrogate, mean_kl, max_kl)
                module.load_into_module(current)
                metrics["step_fraction"] = fraction
                metrics["expected_improvement"] = float(gradient @ step) * fraction
        with torch.no_grad():
            metrics["kl"] = float(mean_kl(current))
        metrics["value_loss"] = self._fit_critic(flat, counts)
        metrics["explained_variance"] = self.union_explained_variance(
            flat["old_values"], flat["returns"]
        )
        metrics["std"] = float(self.policy.log_std.detach().exp().mean())
        return metrics

    def _natural_step(
        self, obs: torch.Tensor, union_count: int, gradient: torch.Tensor, max_kl: float
    ) -> tuple[torch.Tensor | None, int]:
        """The natural-gradient step (float64) from the summed policy gradient, and the
        number of CG iterations; None for the step, with a ConvergenceWarning naming the
        figure, when the solve gives no usable one (every rank decides alike: the products
        and the gradient are sums over the ranks)."""
        share = _fisher_share(self.policy, obs, union_count)
        damping = self.config.cg_damping

        def fisher(v: torch.Tensor) -> torch.Tensor:
            return self.sum_over_ranks(share(v)) + damping * v

        def warn(found: str, outcome: str) -> None:
            largest = float(obs.abs().max()) if obs.numel() else 0.0
            warnings.warn(
                ConvergenceWarning(
                    f"{type(self).__name__}: {found} (largest |observation| {largest:.3g}); "
                    f"{outcome}"
                ),
                stacklevel=4,
            )

        unchanged = "the policy is left unchanged in this update"
        g = gradient.to(_SOLVE_DTYPE)
        if not bool(torch.isfinite(g).all()):
            warn("the policy gradient is not finite", unchanged)
            return None, 0
        try:
            solve = conjugate_gradient(
                fisher,
                g,
                max_iter=self.config.cg_iterations,
                truncated=True,
                stop_on_negative_curvature=True,
            )
        except NonFiniteError as error:  # a product, p'Ap or a residual that is not finite
            warn(f"conjugate gradient on the damped Fisher stopped: {error}", unchanged)
            return None, 0
        if solve.negative_curvature:
            found = (
                f"conjugate gradient on the damped Fisher met p'(F + λI)p / p'p = "
                f"{solve.curvature:.3g} at iteration {solve.nit}, where exact arithmetic gives "
                f"at least λ = {damping:g}"
            )
            if solve.nit == 0:
                warn(found, unchanged)
                return None, 0
            warn(found, f"the step follows the iterate of iteration {solve.nit}")
        direction = solve.x
        curvature = float(direction @ fisher(direction))
        if not math.isfinite(curvature) or curvature <= 0:
            warn(f"the step's curvature x'(F + λI)x = {curvature:.3g} is not positive", unchanged)
            return None, solve.nit
        if self.config.step_size is None:  # KL-normalized: ½ sᵀ(F + λI)s = δ
            step = math.sqrt(2 * max_kl / curvature) * direction
        else:
            step = self.config.step_size * self._schedule() * direction
        if not bool(torch.isfinite(step.to(gradient.dtype)).all()):
            warn(
                f"the step is not finite in {gradient.dtype} (x'(F + λI)x = {curvature:.3g})",
                unchanged,
            )
            return None, solve.nit
        return step, solve.nit

    def _fit_critic(self, flat: dict[str, torch.Tensor], counts: torch.Tensor) -> float:
        """Minibatch regression of V on the λ-returns (``counts``: every rank's number of
        transitions); the mean loss of the last epoch."""
        n = flat["obs"].shape[0]
        generator = self.minibatch_generator()
        minibatches = self.minibatch_slices(counts, self.config.critic_batch_size)
        losses = []
        for _ in range(self.config.critic_epochs):
            order = torch.randperm(n, generator=generator)
            obs, returns = flat["obs"][order], flat["returns"][order]
            losses = []
            for rows, union_count in minibatches:
                predicted = self.value(obs[rows]).squeeze(-1)
                # this rank's share of the union minibatch's mean
                loss = ((predicted - returns[rows]) ** 2).sum() / union_count
                self.optimizer.zero_grad()
                loss.backward()
                self.reduce_gradients()
                if self.config.max_grad_norm is not None:
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
    Defaults as sb3-contrib's TRPO (0.8, 10): :class:`~probcalc.rl.config.TRPOConfig`.

    Args:
        env: as for :class:`OnPolicyAgent`.
        config: a :class:`~probcalc.rl.config.TRPOConfig`.
        seed: as for :class:`OnPolicyAgent`.
        group: as for :class:`OnPolicyAgent`.
        **settings: fields of TRPOConfig.

    Raises:
        TypeError: before any environment is made, a setting of the wrong type; and as
            :class:`NaturalPG`.
        ValueError: before any environment is made, when backtrack_factor is not in (0, 1)
            or backtrack_steps not >= 1; others as for :class:`NaturalPG`.
    """

    Config: ClassVar[type[TRPOConfig]] = TRPOConfig

    def _line_search(
        self,
        theta: torch.Tensor,
        step: torch.Tensor,
        surrogate: Callable,
        mean_kl: Callable,
        max_kl: float,
    ) -> tuple[torch.Tensor, float]:
        start = float(surrogate(theta))
        fraction = 1.0
        for _ in range(self.config.backtrack_steps):
            candidate = theta + fraction * step
            kl, value = float(mean_kl(candidate)), float(surrogate(candidate))
            if math.isfinite(value) and kl <= max_kl and value > start:
                return candidate, fraction
            fraction *= self.config.backtrack_factor
        return theta, 0.0
