"""Generalized state-dependent exploration (gSDE; Raffin, Kober and Stulp 2021), as
Stable-Baselines3's ``use_sde``.

The exploration noise of an action is a linear function of the policy's last hidden features
φ(s): a = μ(s) + φ(s) W, with W (features, act_dim) drawn elementwise from N(0, σ²) and held
for several steps, so that within that time the noise is a smooth function of the state
rather than white noise. σ = exp(log_std) is a trained (features, act_dim) matrix. For a
fresh W the action is Gaussian with the state-dependent variance
Var(a_k | s) = Σ_j φ_j(s)² σ_jk², which gives the log-probabilities and entropies the
losses use; as Stable-Baselines3, 1e-6 is added to that variance to keep it positive where
φ(s) = 0.

Written here because neither torch nor gymnasium has it.
"""

from __future__ import annotations

import torch

__all__ = [
    "SDE_VARIANCE_FLOOR",
    "HeldExploration",
    "draw_exploration_matrices",
    "draws_at",
    "held_noise",
    "sde_log_std",
]

SDE_VARIANCE_FLOOR = 1e-6  # Stable-Baselines3's epsilon


def sde_log_std(features: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log sd(a | s) = ½ log(φ(s)² exp(2 log_std) + 1e-6), shape (batch, act_dim), from
    features (batch, n_features) and log_std (n_features, act_dim)."""
    variance = (features**2) @ torch.exp(2 * log_std)
    return 0.5 * torch.log(variance + SDE_VARIANCE_FLOOR)


def draws_at(step: int, sample_freq: int) -> bool:
    """Whether fresh matrices are drawn before ``step`` (counted from 0) of a rollout or of
    a round: at its start, and every ``sample_freq`` steps of it (-1: only at the start)."""
    return step == 0 or (sample_freq > 0 and step % sample_freq == 0)


def draw_exploration_matrices(
    count: int, log_std: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """``count`` matrices W (count, n_features, act_dim), elementwise N(0, exp(2 log_std)),
    drawn with ``generator``, outside autograd."""
    with torch.no_grad():
        shape = (count, *log_std.shape)
        return torch.randn(shape, generator=generator, dtype=log_std.dtype) * log_std.exp()


def held_noise(features: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """φ(s_i) W_i for every row i, shape (batch, act_dim), from features (batch, n_features)
    and matrices (batch, n_features, act_dim)."""
    return torch.bmm(features.unsqueeze(1), matrices).squeeze(1)


class HeldExploration:
    """The exploration matrices a gSDE policy holds between resamplings: one per
    environment, set by :meth:`reset_noise`. A mixin of the gSDE policies (``log_std`` is
    their (n_features, act_dim) parameter)."""

    log_std: torch.Tensor
    #: the held matrices (n_envs, n_features, act_dim), or None before the first reset
    exploration_matrices: torch.Tensor | None = None

    def reset_noise(self, count: int, generator: torch.Generator | None = None) -> None:
        """Draws ``count`` fresh exploration matrices (one per environment) with
        ``generator``: the noise of :meth:`sample` until the next reset.

        Raises:
            RuntimeError: the policy was built without gSDE.
        """
        if not isinstance(self.log_std, torch.Tensor):
            raise RuntimeError(
                f"this {type(self).__name__} was built without use_sde: it holds no "
                f"exploration matrices"
            )
        self.exploration_matrices = draw_exploration_matrices(
            count, self.log_std.detach(), generator
        )

    def exploration_noise(
        self, features: torch.Tensor, log_std: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The noise added to the mean (batch, act_dim): φ(s_i) W_i with the held matrices
        when there is one per row, else a draw from N(0, exp(2 log_std)) with ``generator``
        (what a fresh matrix per row gives)."""
        held = self.exploration_matrices
        if held is not None and features.dim() == 2 and held.shape[0] == features.shape[0]:
            return held_noise(features, held)
        noise = torch.randn(log_std.shape, generator=generator, dtype=log_std.dtype)
        return torch.exp(log_std) * noise
