"""Poisson regression with a group random effect, marginalized INLA-style by nested_laplace:
the notebook recipe for "a GLMM's hyperparameter posterior without MCMC".

    y_ij ~ Poisson(exp(b0 + b1 x_ij + u_j)),  u_j ~ N(0, s^2),  b ~ N(0, 10^2 I),  s ~ half-N(0, 1)

theta = (b0, b1, u_1..u_J) is integrated by Laplace at each quadrature node of h = log s; the
hyperparameter's marginal posterior, the coefficients' posterior moments and the evidence
come out, and importance sampling over the full joint (theta, h) checks the evidence.
Synthetic data (seeded), J = 12 groups of 15 counts.

Run:  bash .ci/venv python examples/random_effects_poisson.py    (prints a table, saves a PNG)
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Normal, Poisson

import probcalc as pc

OUTPUT = Path(__file__).resolve().parent / "output"
GROUPS, PER_GROUP = 12, 15


def simulate(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(GROUPS), PER_GROUP)
    x = rng.normal(size=GROUPS * PER_GROUP)
    effects = 0.6 * rng.normal(size=GROUPS)  # the true s is 0.6
    counts = rng.poisson(np.exp(0.5 + 0.8 * x + effects[group]))
    return torch.as_tensor(x), torch.as_tensor(group), torch.as_tensor(counts, dtype=torch.float64)


def main() -> None:
    torch.set_default_dtype(torch.float64)
    OUTPUT.mkdir(exist_ok=True)
    x, group, y = simulate()

    def log_hyperprior(h: torch.Tensor) -> torch.Tensor:  # half-normal(1) on s = exp(h), + h
        return math.log(2.0) + Normal(0.0, 1.0).log_prob(torch.exp(h)) + h

    def log_joint(theta: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        b, u = theta[:2], theta[2:]
        rate = torch.exp(b[0] + b[1] * x + u[group])
        return (
            Normal(0.0, 10.0).log_prob(b).sum()
            + Normal(0.0, torch.exp(h[0])).log_prob(u).sum()
            + Poisson(rate).log_prob(y).sum()
            + log_hyperprior(h[0])
        )

    start = time.perf_counter()
    result = pc.nested_laplace(log_joint, torch.zeros(2 + GROUPS), hyper_bounds=[(-4.0, 1.5)])
    seconds = time.perf_counter() - start
    grid, density = result.hyper_grid[0], result.hyper_density[0]
    _, weights = pc.integrate.gauss_legendre(len(grid))
    weights = weights * (1.5 + 4.0) / 2
    s_mean = float((weights * density * torch.exp(grid)).sum())
    print(
        f"nested Laplace over log s ({len(grid)} nodes, {seconds:.1f} s): "
        f"log evidence {float(result.log_evidence):.4f}"
    )
    print(f"posterior mean of s: {s_mean:.3f} (simulated with 0.6)")
    for name, index, truth in (("b0", 0, 0.5), ("b1", 1, 0.8)):
        mean, sd = float(result.theta_mean[index]), math.sqrt(float(result.theta_var[index]))
        print(f"{name}: {mean:.3f} ± {sd:.3f} (simulated with {truth})")

    # a check of the evidence: importance sampling over the full joint (theta, log s)
    def full(params: torch.Tensor) -> torch.Tensor:
        return log_joint(params[:-1], params[-1:])

    theta0 = torch.cat([result.theta_mean, torch.tensor([math.log(s_mean)])])
    check = pc.evidence(full, method="mc", theta0=theta0, n_samples=40_000, seed=0)
    print(
        f"importance sampling over all {theta0.numel()} parameters: "
        f"{float(check.log_evidence):.4f} ± {float(check.error):.4f} (k-hat "
        f"{check.diagnostics['khat']:.2f}); Laplace over all of them: "
        f"{float(pc.evidence(full, method='laplace', theta0=theta0).log_evidence):.4f}"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    axis.plot(torch.exp(grid), density / torch.exp(grid), "o-", markersize=3)
    axis.axvline(0.6, color="k", linestyle=":", label="simulated s")
    axis.set_xlabel("s (random-effect scale)")
    axis.set_ylabel("p(s | y)")
    axis.set_xlim(0, 2)
    axis.set_title("Poisson GLMM: marginal posterior of the random-effect scale")
    axis.legend()
    figure.tight_layout()
    path = OUTPUT / "random_effects_poisson.png"
    figure.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
