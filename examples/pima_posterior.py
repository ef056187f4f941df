"""The posterior of a Bayesian logistic regression three ways: Laplace, NUTS and Gaussian VI.

Pima diabetes data (532 women, 7 standardized covariates plus an intercept), prior N(0, 1) on
every coefficient, Bernoulli-logit likelihood. The posterior is fitted by

1. the Laplace approximation at the mode (pc.laplace.fit: Newton, then the Hessian);
2. NUTS (pc.mcmc.nuts, 4 chains, dense metric), the reference: its Monte Carlo error is
   shown next to every difference;
3. Gaussian variational inference (pc.vi.fit), mean-field and full-rank, with the Pareto
   k-hat that says how close q is to the posterior;

and then NUTS again after short warmups, from zero or from the Laplace fit (its draws as
starts, its covariance as the first metric), to show the warmup the fit saves.

The table gives each coefficient's posterior mean and sd by each method, then each method's
time, gradient evaluations, diagnostics and its largest distance from NUTS, in posterior sds.

Run:  bash .ci/venv python examples/pima_posterior.py    (prints the tables; about a minute)
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

import probcalc as pc

DATA = Path(__file__).resolve().parent / "data" / "pima_standardized.dat"
NAMES = [
    "intercept",
    "pregnancies",
    "glucose",
    "blood pressure",
    "skin fold",
    "BMI",
    "pedigree",
    "age",
]


def main() -> None:
    torch.set_default_dtype(torch.float64)
    # a 532 x 8 model: one thread is fastest (more spend the time synchronizing)
    torch.set_num_threads(1)
    data = torch.as_tensor(np.loadtxt(DATA))
    y, X = data[:, 0], torch.cat([torch.ones(len(data), 1), data[:, 1:]], dim=1)
    d = X.shape[1]

    def log_joint(w: torch.Tensor) -> torch.Tensor:
        """log p(y, w) up to a constant: N(0, I) prior, Bernoulli-logit likelihood."""
        return -0.5 * (w @ w) - pc.core.bernoulli_nll(y, X @ w)

    print(f"Bayesian logistic regression, Pima data: n = {len(y)}, d = {d}, prior N(0, 1)\n")
    rows = {}  # method -> (mean, sd, seconds, gradient evaluations, diagnostics)

    began = time.perf_counter()
    laplace = pc.laplace.fit(log_joint, torch.zeros(d))
    seconds = time.perf_counter() - began
    steps = laplace.optimize_result.nit
    rows["Laplace"] = (
        laplace.mode,
        laplace.marginal_variances().sqrt(),
        seconds,
        steps + 1,  # a gradient at the start and after each Newton step
        f"{steps} Newton steps, each with its 8x8 Hessian",
    )

    began = time.perf_counter()
    chains = pc.mcmc.nuts(
        log_joint,
        torch.zeros(d),
        num_samples=1000,
        num_warmup=500,
        seed=0,
        mass_matrix="dense",
    )
    seconds = time.perf_counter() - began
    draws = chains.samples
    nuts_mean, nuts_sd = draws.mean(dim=(0, 1)), draws.std(dim=(0, 1))
    rows["NUTS"] = (
        nuts_mean,
        nuts_sd,
        seconds,
        chains.n_grad_evals,
        f"min ESS {float(chains.ess_bulk.min()):.0f}, max R-hat {float(chains.rhat.max()):.3f}",
    )

    for family in ("meanfield", "fullrank"):
        began = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            # k-hat above 0.7 warns: expected of mean-field here, and shown in the table
            warnings.simplefilter("always", pc.ConvergenceWarning)
            vi = pc.vi.fit(log_joint, torch.zeros(d), family=family, seed=0)
        seconds = time.perf_counter() - began
        warned = " (> 0.7: warned)" if caught else ""
        q = vi.distribution
        rows[f"VI {family}"] = (
            q.mean,
            q.variance.sqrt(),
            seconds,
            vi.n_grad_evals,
            f"k-hat {float(vi.khat):.2f}{warned}",
        )

    width = 16
    print(f"{'coefficient':<16}" + "".join(f"{m:>{width}}" for m in rows))
    print(f"{'':<16}" + "".join(f"{'mean (sd)':>{width}}" for _ in rows))
    for i, name in enumerate(NAMES):
        cells = "".join(
            f"{f'{float(m[i]):.3f} ({float(s[i]):.3f})':>{width}}" for m, s, *_ in rows.values()
        )
        print(f"{name:<16}{cells}")

    # NUTS's own error in the same units, the largest over the coefficients: the Monte Carlo
    # standard error of each mean, and of each sd relative to it (delta method on the mean
    # of the squared deviations: se(sd) / sd = se(var) / (2 var))
    mcse = (pc.mcmc.mcse_mean(draws) / nuts_sd).max()
    sd_error = (pc.mcmc.mcse_mean((draws - nuts_mean) ** 2) / (2 * nuts_sd**2)).max()
    print(
        f"\n{'method':<14}{'seconds':>9}{'grad evals':>12}{'max|mean - NUTS|':>18}"
        f"{'max|sd/NUTS - 1|':>18}  diagnostics"
    )
    print(f"{'':<14}{'':>9}{'':>12}{'(NUTS sds)':>18}{'':>18}")
    for method, (mean, sd, seconds, grads, diagnostics) in rows.items():
        if method == "NUTS":
            mean_gap = f"(MC {float(mcse):.3f})"
            sd_gap = f"(MC {float(sd_error):.3f})"
        else:
            mean_gap = f"{float(((mean - nuts_mean).abs() / nuts_sd).max()):.3f}"
            sd_gap = f"{float((sd / nuts_sd - 1).abs().max()):.3f}"
        print(f"{method:<14}{seconds:>9.2f}{grads:>12,}{mean_gap:>18}{sd_gap:>18}  {diagnostics}")
    print(
        "\nMean-field VI ignores the correlations between the coefficients: its sds are too "
        "small,\nand its k-hat says q is a poor fit. The Laplace Gaussian is centred at the "
        "mode, not the mean."
    )

    warm_start(log_joint, laplace, d)


def warm_start(log_joint: object, laplace: object, d: int) -> None:
    """How much warmup a start from the Laplace fit saves: NUTS (dense metric, 4 chains x
    500 draws) after short warmups, started at zero with the identity metric, or from the
    fit's draws with its covariance as the first metric."""
    print(
        "\nWarmup needed: NUTS, 4 chains x 500 draws, dense metric; min bulk ESS, max R-hat "
        "and divergences\n"
        f"{'warmup':>7}  {'start':<26}{'seconds':>8}{'grad evals':>12}{'min ESS':>9}"
        f"{'max R-hat':>10}{'divergent':>10}"
    )
    for num_warmup in (25, 50, 100, 200):
        for label, init in (("zero, identity metric", torch.zeros(d)), ("Laplace fit", laplace)):
            began = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pc.ConvergenceWarning)  # shown in the table
                run = pc.mcmc.nuts(
                    log_joint,
                    init,
                    num_samples=500,
                    num_warmup=num_warmup,
                    seed=1,
                    mass_matrix="dense",
                )
            seconds = time.perf_counter() - began
            print(
                f"{num_warmup:>7}  {label:<26}{seconds:>8.2f}{run.n_grad_evals:>12,}"
                f"{float(run.ess_bulk.min()):>9.0f}{float(run.rhat.max()):>10.3f}"
                f"{int(run.divergences.sum()):>10}"
            )


if __name__ == "__main__":
    main()
