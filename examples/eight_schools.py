"""Eight schools (Rubin 1981; Gelman et al., BDA3, section 5.5): the marginal posterior of the
between-school scale tau by quadrature and by nested Laplace, and the evidence three ways.

    y_j ~ N(theta_j, sigma_j^2),  theta_j ~ N(mu, tau^2),  mu ~ N(0, 5^2),  tau ~ half-Cauchy(0, 5)

With the theta_j integrated out, y_j ~ N(mu, sigma_j^2 + tau^2): a 2-parameter model in
(mu, log tau) whose evidence probcalc computes by quadrature, importance sampling and Laplace;
a reference comes from integrating mu out exactly and log tau by scipy.integrate.quad.

Run:  bash .ci/venv python examples/eight_schools.py    (prints a table, saves a PNG)
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import scipy.integrate
import scipy.stats
import torch
from torch.distributions import Normal

import probcalc as pc

OUTPUT = Path(__file__).resolve().parent / "output"
Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)
MU_SCALE, TAU_SCALE = 5.0, 5.0


def log_hyperprior(log_tau: torch.Tensor) -> torch.Tensor:
    """log p(log tau): the half-Cauchy density of tau times the Jacobian tau."""
    tau = torch.exp(log_tau)
    return math.log(2 / (math.pi * TAU_SCALE)) - torch.log1p((tau / TAU_SCALE) ** 2) + log_tau


def log_joint_marginalized(params: torch.Tensor) -> torch.Tensor:
    """log p(y, mu, log tau) with the school effects integrated out."""
    mu, log_tau = params[0], params[1]
    scale = torch.sqrt(SIGMA**2 + torch.exp(2 * log_tau))
    return (
        Normal(0.0, MU_SCALE).log_prob(mu)
        + Normal(mu, scale).log_prob(Y).sum()
        + log_hyperprior(log_tau)
    )


def log_joint_full(theta: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """log p(y, mu, theta_1..8, log tau) for nested Laplace: theta = (mu, theta_1..8)."""
    mu, effects = theta[0], theta[1:]
    return (
        Normal(0.0, MU_SCALE).log_prob(mu)
        + Normal(mu, torch.exp(h[0])).log_prob(effects).sum()
        + Normal(effects, SIGMA).log_prob(Y).sum()
        + log_hyperprior(h[0])
    )


def reference_density(log_tau: float) -> float:
    """p(y, log tau) with mu integrated out exactly: y ~ N(0, diag(sigma^2 + tau^2) + 25 11')."""
    cov = np.diag(SIGMA.numpy() ** 2 + math.exp(2 * log_tau)) + MU_SCALE**2
    log_marginal = scipy.stats.multivariate_normal(np.zeros(8), cov).logpdf(Y.numpy())
    return math.exp(log_marginal + float(log_hyperprior(torch.tensor(log_tau))))


def main() -> None:
    torch.set_default_dtype(torch.float64)
    OUTPUT.mkdir(exist_ok=True)
    bounds = (-6.0, 5.0)
    reference, _ = scipy.integrate.quad(
        reference_density, -30, 10, epsabs=0, epsrel=1e-12, limit=200
    )
    print(
        f"Eight schools: log evidence, reference (scipy quad over log tau): "
        f"{math.log(reference):.6f}\n"
    )
    print(f"{'method':<34}{'log evidence':>14}{'error':>10}{'|diff|':>10}{'seconds':>9}")
    start = torch.tensor([5.0, 1.0])
    for method, options in (
        ("quadrature", {}),
        ("mc", {"n_samples": 40_000, "seed": 0}),
        ("laplace", {}),
    ):
        began = time.perf_counter()
        result = pc.evidence(log_joint_marginalized, method=method, theta0=start, **options)
        seconds = time.perf_counter() - began
        error = f"{float(result.error):.1e}" if math.isfinite(result.error) else ""
        diff = abs(float(result.log_evidence) - math.log(reference))
        extra = f" (k-hat {result.diagnostics['khat']:.2f})" if method == "mc" else ""
        print(
            f"{method + extra:<34}{float(result.log_evidence):>14.6f}{error:>10}{diff:>10.1e}"
            f"{seconds:>9.2f}"
        )
    began = time.perf_counter()
    nested = pc.nested_laplace(log_joint_full, torch.zeros(9), hyper_bounds=[bounds])
    seconds = time.perf_counter() - began
    diff = abs(float(nested.log_evidence) - math.log(reference))
    print(
        f"{'nested Laplace (40 nodes of log tau)':<34}{float(nested.log_evidence):>14.6f}"
        f"{'':>10}{diff:>10.1e}{seconds:>9.2f}"
    )

    # the marginal posterior of log tau: quadrature over mu at each grid point (one call)
    grid = torch.linspace(*bounds, 200)

    def joint_on_grid(mu: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, 200)
        params = torch.stack(torch.broadcast_tensors(mu[:, None], grid[None, :]), dim=-1)
        return torch.exp(torch.vmap(torch.vmap(log_joint_marginalized))(params) + 40.0)

    density = pc.integrate.quad(joint_on_grid, -math.inf, math.inf, rtol=1e-8).value
    density = density / torch.trapezoid(density, grid)
    # the reference density normalized over the same bounds as the grids
    within, _ = scipy.integrate.quad(reference_density, *bounds, epsabs=0, epsrel=1e-12)
    exact = np.array([reference_density(float(h)) for h in grid]) / within
    exact_nodes = np.array([reference_density(float(h)) for h in nested.hyper_grid[0]]) / within
    print(
        f"\nmarginal density of log tau on [{bounds[0]}, {bounds[1]}]: max |quadrature - "
        f"reference| = {np.abs(density.numpy() - exact).max():.1e} (trapezoid "
        f"normalization on 200 points); nested Laplace at its nodes: "
        f"{np.abs(nested.hyper_density[0].numpy() - exact_nodes).max():.1e}"
    )
    print(
        "(nested Laplace integrates log tau over the bounds only: the mass below "
        f"{bounds[0]} is its evidence gap)"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    axis.plot(grid.exp(), density / grid.exp(), label="quadrature over mu (probcalc)")
    axis.plot(
        nested.hyper_grid[0].exp(),
        nested.hyper_density[0] / nested.hyper_grid[0].exp(),
        "o",
        markersize=3,
        label="nested Laplace nodes",
    )
    axis.set_xlim(0, 30)
    axis.set_xlabel("tau")
    axis.set_ylabel("p(tau | y)")
    axis.set_title("Eight schools: marginal posterior of tau")
    axis.legend()
    figure.tight_layout()
    path = OUTPUT / "eight_schools.png"
    figure.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
