"""Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry, 2024).

The largest importance weights are replaced by the expected order statistics of a
generalized Pareto distribution fitted to them; the fitted shape k-hat diagnoses the
weights: below 0.5 the estimate is reliable, 0.5-0.7 usable, above 0.7 not to be trusted.
The fit is Zhang & Stephens's (2009) empirical-Bayes estimator with the weakly informative
prior on k that the PSIS authors add. No well-kept PyTorch library offers PSIS (ArviZ does,
for numpy), so it is written here from the papers.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import torch

__all__ = ["KHAT_THRESHOLD", "fit_generalized_pareto", "psis", "smooth_tail", "tail_size"]

KHAT_THRESHOLD = 0.7  # above it the PSIS authors advise against trusting the estimate


def fit_generalized_pareto(exceedances: np.ndarray) -> tuple[float, float]:
    """(k, sigma) of a generalized Pareto fitted to positive exceedances (sorted ascending).

    Zhang & Stephens (2009): a posterior mean of theta = -k/sigma over a grid, with the
    profile likelihood as weights; then k is shrunk toward 0.5 with the weight of 10
    observations, as in PSIS.
    """
    x = np.asarray(exceedances, dtype=float)
    n = x.size
    grid_size = 30 + int(math.sqrt(n))
    quartile = x[max(int(n / 4 + 0.5) - 1, 0)]
    theta = 1.0 / x[-1] + (1.0 - np.sqrt(grid_size / (np.arange(1, grid_size + 1) - 0.5))) / (
        3.0 * quartile
    )
    k = np.log1p(-theta[:, None] * x).mean(axis=1)  # the profile k for each theta
    log_likelihood = n * (np.log(-theta / k) - k - 1.0)
    weights = scipy.special.softmax(log_likelihood)  # the normalized profile likelihood
    keep = weights >= 10 * np.finfo(float).eps
    weights, theta = weights[keep] / weights[keep].sum(), theta[keep]
    theta_hat = float(np.sum(theta * weights))
    k_hat = float(np.log1p(-theta_hat * x).mean())
    sigma = -k_hat / theta_hat
    k_hat = (n * k_hat + 10 * 0.5) / (n + 10)
    return k_hat, sigma


def _generalized_pareto_quantiles(k: float, sigma: float, p: np.ndarray) -> np.ndarray:
    """F⁻¹(p) = σ/k ((1 - p)^(-k) - 1), and its limit -σ log(1 - p) as k -> 0."""
    if abs(k) < 1e-8:
        return -sigma * np.log1p(-p)
    return sigma / k * np.expm1(-k * np.log1p(-p))


def psis(log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pareto-smoothed log importance weights and the diagnostic k-hat.

    The M = ceil(min(n / 5, 3 sqrt(n))) largest weights are replaced by the quantiles
    ``F⁻¹((i - 1/2) / M)`` of a generalized Pareto fitted to their excess over the
    (M+1)-th largest, capped at the largest raw weight.

    Args:
        log_weights: shape ``(n,)``, n >= 10, a real tensor or array-like; -inf (zero
            weight) is allowed.

    Returns:
        (smoothed_log_weights, khat): the same shape, dtype and device (unnormalized, on the
        scale of the input; float64 for array-like input), and a 0-d tensor. khat is -inf
        when the tail is flat.

    Raises:
        ValueError: for a shape other than (n,), n < 10, NaN or +inf weights, or every
            weight -inf.
        TypeError: log_weights that are not real numbers.
    """
    if not isinstance(log_weights, torch.Tensor):
        try:
            log_weights = torch.as_tensor(np.asarray(log_weights, dtype=np.float64))
        except (TypeError, ValueError):
            raise TypeError(
                f"log_weights must be a tensor or array-like of real numbers, "
                f"got {type(log_weights).__name__}"
            ) from None
    if log_weights.is_complex():
        raise TypeError(f"log_weights must be real, got {log_weights.dtype}")
    if log_weights.dim() != 1:
        raise ValueError(f"log_weights must have shape (n,), got {tuple(log_weights.shape)}")
    n = log_weights.numel()
    if n < 10:
        raise ValueError(f"psis needs at least 10 log_weights to fit a tail, got {n}")
    values = log_weights.detach().cpu().double().numpy()
    if np.isnan(values).any() or np.isposinf(values).any():
        raise ValueError("log_weights must not contain NaN or +inf")
    tail = tail_size(n)
    order = np.argsort(values)
    if not np.isfinite(values[order[-1]]):
        raise ValueError("every one of the log_weights is -inf: nothing to smooth")
    top = values[order[::-1][: tail + 1]]  # the tail + 1 largest, descending
    replaced, k = smooth_tail(top)
    if replaced is None:
        return log_weights.clone(), torch.tensor(-math.inf, dtype=log_weights.dtype)
    smoothed = values.copy()
    smoothed[order[::-1][:tail]] = replaced
    out = torch.as_tensor(smoothed, dtype=log_weights.dtype, device=log_weights.device)
    return out, torch.tensor(k, dtype=log_weights.dtype)


def tail_size(n: int) -> int:
    """M = ceil(min(n / 5, 3 sqrt(n))): how many of n weights PSIS smooths."""
    return math.ceil(min(0.2 * n, 3 * math.sqrt(n)))


def smooth_tail(top: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The smoothing of the M largest log weights from the M + 1 largest, in descending order
    (all that PSIS needs, so that processes can share only their tails).

    Returns the M smoothed log weights (descending, matching ``top[:M]``) and k-hat, or
    (None, -inf) when the tail is flat.
    """
    tail = len(top) - 1
    largest = top[0]
    scaled = np.exp(top - largest)
    cutoff = scaled[tail]
    exceedances = scaled[:tail][::-1] - cutoff  # ascending, as the fit wants
    if exceedances[-1] <= 0 or np.count_nonzero(exceedances) < 5:
        return None, -math.inf
    k, sigma = fit_generalized_pareto(exceedances)
    quantiles = _generalized_pareto_quantiles(k, sigma, (np.arange(1, tail + 1) - 0.5) / tail)
    replaced = np.minimum(cutoff + quantiles, 1.0)  # 1.0 is the largest raw weight
    return (np.log(replaced) + largest)[::-1].copy(), k
