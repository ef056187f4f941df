"""Model comparison by the evidence on two classic real data sets (Friel & Wyse, 2012).

1. Radiata pine (Williams 1959): maximum compression strength y against density x (model 1)
   or resin-adjusted density z (model 2), y_i ~ N(b0 + b1 (c_i - mean c), 1/lambda),
   (b0, b1) | lambda ~ N((3000, 185), (lambda diag(0.06, 6))^-1), lambda ~ Gamma(3, rate 2*300^2).
   The normal-gamma evidence has a closed form, so each method's error shows.
2. Pima diabetes (532 women): logistic regression on {NP, PGC, BMI, DP} with or without AGE,
   prior N(0, 1/tau) on every coefficient, tau = 0.01 and 1: evidence three ways, Bayes
   factors, and a posterior predictive probability.

Run:  bash .ci/venv python examples/model_comparison.py    (prints tables, saves a PNG)
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Gamma, MultivariateNormal, Normal

import probcalc as pc

DATA = Path(__file__).resolve().parent / "data"
OUTPUT = Path(__file__).resolve().parent / "output"
METHODS = (
    ("quadrature", {"rtol": 1e-6}),
    ("mc", {"n_samples": 20_000, "seed": 0}),
    ("laplace", {}),
)


def radiata_models() -> dict[str, tuple]:
    data = np.loadtxt(DATA / "radiata_pine.dat")
    y = torch.as_tensor(data[:, 1])
    models = {}
    for name, column in (("model 1 (density x)", 2), ("model 2 (resin-adjusted z)", 3)):
        c = torch.as_tensor(data[:, column])
        X = torch.stack([torch.ones_like(c), c - c.mean()], dim=1)
        models[name] = (X, y)
    return models


PRIOR_MEAN = torch.tensor([3000.0, 185.0], dtype=torch.float64)
PRIOR_PRECISION = torch.diag(torch.tensor([0.06, 6.0], dtype=torch.float64))
SHAPE, RATE = 3.0, 2 * 300.0**2


def radiata_closed_form(X: torch.Tensor, y: torch.Tensor) -> float:
    """log p(y) of the normal-gamma regression (conjugate: Gamma-Normal posterior)."""
    n = len(y)
    precision_n = PRIOR_PRECISION + X.T @ X
    mean_n = torch.linalg.solve(precision_n, PRIOR_PRECISION @ PRIOR_MEAN + X.T @ y)
    shape_n = SHAPE + n / 2
    rate_n = RATE + 0.5 * float(
        y @ y + PRIOR_MEAN @ PRIOR_PRECISION @ PRIOR_MEAN - mean_n @ precision_n @ mean_n
    )
    return (
        math.lgamma(shape_n)
        - math.lgamma(SHAPE)
        + SHAPE * math.log(RATE)
        - shape_n * math.log(rate_n)
        + 0.5 * float(torch.logdet(PRIOR_PRECISION))
        - 0.5 * float(torch.logdet(precision_n))
        - 0.5 * n * math.log(2 * math.pi)
    )


def radiata_log_joint(X: torch.Tensor, y: torch.Tensor):
    """log p(y, b0, b1, log lambda), the log-Jacobian of lambda = exp(phi) included."""

    def log_joint(params: torch.Tensor) -> torch.Tensor:
        b, log_lam = params[:2], params[2]
        lam = torch.exp(log_lam)
        # validate_args=False: the symmetry check is data-dependent, which vmap cannot trace
        prior_b = MultivariateNormal(
            PRIOR_MEAN, precision_matrix=lam * PRIOR_PRECISION, validate_args=False
        )
        likelihood = Normal(X @ b, torch.rsqrt(lam)).log_prob(y).sum()
        return prior_b.log_prob(b) + Gamma(SHAPE, RATE).log_prob(lam) + log_lam + likelihood

    return log_joint


def pima_models() -> dict[str, tuple]:
    data = np.loadtxt(DATA / "pima_standardized.dat")
    y = torch.as_tensor(data[:, 0])
    base = [1, 2, 5, 6]  # NP, PGC, BMI, DP
    models = {}
    for tau in (0.01, 1.0):
        for label, columns in (("NP PGC BMI DP", base), ("NP PGC BMI DP AGE", [*base, 7])):
            X = torch.cat([torch.ones(len(y), 1), torch.as_tensor(data[:, columns])], dim=1)
            models[f"{label}, tau = {tau:g}"] = (X, y, tau)
    return models


def pima_log_joint(X: torch.Tensor, y: torch.Tensor, tau: float):
    d = X.shape[1]

    def log_joint(w: torch.Tensor) -> torch.Tensor:
        log_prior = -0.5 * tau * (w @ w) + 0.5 * d * math.log(tau / (2 * math.pi))
        return log_prior - pc.core.bernoulli_nll(y, X @ w)

    return log_joint


def evidence_row(log_joint: object, theta0: torch.Tensor) -> dict[str, tuple]:
    laplace = pc.laplace.fit(log_joint, theta0)
    row = {}
    for method, options in METHODS:
        start = time.perf_counter()
        result = pc.evidence(log_joint, method=method, laplace=laplace, **options)
        row[method] = (
            float(result.log_evidence),
            float(result.error),
            time.perf_counter() - start,
            result.diagnostics,
        )
    return row


def main() -> None:
    torch.set_default_dtype(torch.float64)
    OUTPUT.mkdir(exist_ok=True)
    plotted = {}

    print("Radiata pine: log evidence by method (closed form for reference)\n")
    print(f"{'model':<28}{'closed form':>13}" + "".join(f"{m:>24}" for m, _ in METHODS))
    radiata = {}
    for name, (X, y) in radiata_models().items():
        exact = radiata_closed_form(X, y)
        theta0 = torch.tensor([3000.0, 185.0, math.log(1 / 300.0**2)])
        row = evidence_row(radiata_log_joint(X, y), theta0)
        radiata[name] = (exact, row)
        cells = "".join(
            f"{value:>13.4f} ({abs(value - exact):.0e})" + " " * 2 for value, *_ in row.values()
        )
        print(f"{name:<28}{exact:>13.4f}{cells}")
        plotted[f"radiata {name.split(' (')[0]}"] = (exact, row)
    (e1, r1), (e2, r2) = radiata.values()
    by_laplace = r2["laplace"][0] - r1["laplace"][0]
    print(
        f"\nBayes factor model 2 : model 1 = exp({e2 - e1:.3f}) = {math.exp(e2 - e1):.1f} "
        f"(closed form); by Laplace exp({by_laplace:.3f})\n"
    )

    print("Pima diabetes, logistic regression: log evidence by method\n")
    print(
        f"{'covariates, prior':<28}" + "".join(f"{m:>22}" for m, _ in METHODS) + f"{'mc k-hat':>10}"
    )
    pima = {}
    for name, (X, y, tau) in pima_models().items():
        row = evidence_row(pima_log_joint(X, y, tau), torch.zeros(X.shape[1]))
        pima[name] = row
        cells = ""
        for value, error, seconds, _ in row.values():
            err = f"±{error:.0e}" if math.isfinite(error) else "      "
            cells += f"{value:>12.4f} {err:>6} {seconds:>2.0f}s"
        print(f"{name:<28}{cells}{row['mc'][3]['khat']:>10.2f}")
        plotted[f"pima {name}"] = (None, row)
    for tau in ("0.01", "1"):
        without = pima[f"NP PGC BMI DP, tau = {tau}"]["quadrature"][0]
        with_age = pima[f"NP PGC BMI DP AGE, tau = {tau}"]["quadrature"][0]
        print(
            f"tau = {tau}: Bayes factor (without AGE : with AGE) = exp({without - with_age:.3f})"
            f" = {math.exp(without - with_age):.2f}"
        )

    # posterior predictive: p(diabetes) for an average woman with high glucose (+1.5 sd)
    X, y, tau = pima_models()["NP PGC BMI DP, tau = 1"]
    la = pc.laplace.fit(pima_log_joint(X, y, tau), torch.zeros(X.shape[1]))
    patient = torch.tensor([1.0, 0.0, 1.5, 0.0, 0.0])
    predictive = pc.integrate.expect_normal(
        lambda w: torch.sigmoid(w @ patient), la.mode, la.covariance
    )
    print(
        f"\np(diabetes | glucose +1.5 sd, others average) = {float(predictive.value):.4f} "
        f"(Gauss-Hermite under the Laplace posterior; plug-in at the mode "
        f"{float(torch.sigmoid(patient @ la.mode)):.4f})"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for axis, prefix in zip(axes, ("radiata", "pima"), strict=True):
        names = [k for k in plotted if k.startswith(prefix)]
        for offset, (method, _) in enumerate(METHODS):
            reference = [
                plotted[k][0] if plotted[k][0] is not None else plotted[k][1]["quadrature"][0]
                for k in names
            ]
            values = [
                plotted[k][1][method][0] - ref for k, ref in zip(names, reference, strict=True)
            ]
            axis.bar(np.arange(len(names)) + 0.25 * (offset - 1), values, width=0.25, label=method)
        axis.set_xticks(
            range(len(names)),
            [k.removeprefix(prefix + " ") for k in names],
            rotation=15,
            fontsize=7,
        )
        axis.axhline(0, color="k", linewidth=0.5)
        axis.set_ylabel("log evidence - reference")
        axis.set_title(
            f"{prefix}: reference = {'closed form' if prefix == 'radiata' else 'quadrature'}"
        )
        axis.legend(fontsize=8)
    figure.tight_layout()
    path = OUTPUT / "model_comparison.png"
    figure.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
