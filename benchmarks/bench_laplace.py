"""Laplace benchmark: probcalc.laplace against laplace-torch on the same models, one run.

Not a test:
    PROBCALC_EXTRAS=dev,bench bash .ci/venv python benchmarks/bench_laplace.py
Writes benchmarks/results/laplace.md.

1. Bayesian linear regression, n = 200, d = 10: the log evidence of both against the closed
   form, and the time.
2. An MLP 2-50-50-2 (2,802 parameters) classifier trained to its MAP on 1,000 two-moons
   points: the full-GGN fit plus the log evidence; the prior precision tuned by evidence
   (laplace-torch: 100 gradient steps of "marglik"; probcalc: Newton on the O(d) formula);
   the two libraries' evidences compared at the same prior precisions; laplace-torch's
   kron and diag fits for context.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import laplace as laplace_torch
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import probcalc as pc

RESULTS = Path(__file__).resolve().parent / "results" / "laplace.md"


def clock(fn: object) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def linear_regression(lines: list[str]) -> None:
    rng = np.random.default_rng(0)
    n, d, sigma, alpha = 200, 10, 0.5, 2.0
    X = torch.as_tensor(rng.normal(size=(n, d)))
    y = X @ torch.as_tensor(rng.normal(size=d)) + sigma * torch.as_tensor(rng.normal(size=n))
    precision = alpha * torch.eye(d) + X.T @ X / sigma**2
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.linalg.solve(precision, X.T @ y / sigma**2)[None, :])
    exact = float(
        torch.distributions.MultivariateNormal(
            torch.zeros(n), sigma**2 * torch.eye(n) + X @ X.T / alpha
        ).log_prob(y)
    )
    loader = DataLoader(TensorDataset(X, y[:, None]), batch_size=n)

    def theirs() -> float:
        la = laplace_torch.Laplace(
            model,
            "regression",
            subset_of_weights="all",
            hessian_structure="full",
            sigma_noise=sigma,
            prior_precision=alpha,
        )
        la.fit(loader)
        return float(la.log_marginal_likelihood())

    def ours() -> float:
        la = pc.laplace.fit_module(model, (X, y[:, None]), prior_precision=alpha, sigma_noise=sigma)
        return float(la.log_evidence)

    t_theirs, v_theirs = clock(theirs)
    t_ours, v_ours = clock(ours)
    lines += [
        f"\n**Bayesian linear regression, n = 200, d = 10 (closed-form evidence {exact:.6f})**\n",
        "| library | time (s) | × probcalc | abs error of log evidence |",
        "|---|---:|---:|---:|",
        f"| probcalc fit_module (full GGN) | {t_ours:.3f} | 1.0 | {abs(v_ours - exact):.1e} |",
        f"| laplace-torch Laplace(full) | {t_theirs:.3f} | {t_theirs / t_ours:.1f} | "
        f"{abs(v_theirs - exact):.1e} |",
    ]


def two_moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The two interleaved half circles (as scikit-learn's make_moons)."""
    half = n // 2
    angles_out, angles_in = np.linspace(0, np.pi, half), np.linspace(0, np.pi, n - half)
    outer = np.stack([np.cos(angles_out), np.sin(angles_out)], 1)
    inner = np.stack([1 - np.cos(angles_in), 1 - np.sin(angles_in) - 0.5], 1)
    X = np.concatenate([outer, inner]) + noise * rng.normal(size=(n, 2))
    y = np.concatenate([np.zeros(half, dtype=int), np.ones(n - half, dtype=int)])
    return X, y


def mlp_classifier(lines: list[str]) -> None:
    rng = np.random.default_rng(1)
    X_np, y_np = two_moons(1000, 0.1, rng)
    X, y = torch.as_tensor(X_np), torch.as_tensor(y_np)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh(), nn.Linear(50, 2)
    ).double()
    alpha = 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2000):  # full-batch MAP: cross-entropy sum + α/2 |θ|²
        optimizer.zero_grad()
        penalty = sum((p**2).sum() for p in model.parameters())
        loss = nn.functional.cross_entropy(model(X), y, reduction="sum") + 0.5 * alpha * penalty
        loss.backward()
        optimizer.step()
    d = sum(p.numel() for p in model.parameters())
    loader = DataLoader(TensorDataset(X, y), batch_size=1000)

    def theirs_fit() -> object:
        la = laplace_torch.Laplace(
            model,
            "classification",
            subset_of_weights="all",
            hessian_structure="full",
            prior_precision=alpha,
        )
        la.fit(loader)
        la.log_marginal_likelihood()
        return la

    def ours_fit() -> pc.laplace.ModuleLaplace:
        la = pc.laplace.fit_module(
            model, (X, y), likelihood="classification", prior_precision=alpha
        )
        la.log_evidence  # noqa: B018 (computed for the timing)
        return la

    t_theirs, la_theirs = clock(theirs_fit)
    t_ours, la_ours = clock(ours_fit)
    fresh = ours_fit()  # for the tuning timing: its eigendecomposition is not yet computed

    def ours_tune() -> float:
        tuned, _ = fresh.optimize_prior_precision()  # includes the one eigendecomposition
        return tuned.prior_precision

    t_ours_tune, alpha_ours = clock(ours_tune)
    agreement = []
    for a in (0.1, 1.0, 10.0):
        theirs_value = float(la_theirs.log_marginal_likelihood(prior_precision=torch.tensor(a)))
        ours_value = float(la_ours.log_evidence_at(a, 1.0))
        agreement.append(abs(theirs_value - ours_value) / abs(theirs_value))

    def theirs_tune() -> float:
        la_theirs.optimize_prior_precision(pred_type="glm", method="marglik", n_steps=100, lr=1e-1)
        return float(la_theirs.prior_precision)

    t_theirs_tune, alpha_theirs = clock(theirs_tune)
    evidence_at_theirs = float(la_ours.log_evidence_at(alpha_theirs, 1.0))
    evidence_at_ours = float(la_ours.log_evidence_at(alpha_ours, 1.0))
    structures = {}
    for structure in ("kron", "diag"):

        def other(structure: str = structure) -> None:
            la = laplace_torch.Laplace(
                model,
                "classification",
                subset_of_weights="all",
                hessian_structure=structure,
                prior_precision=alpha,
            )
            la.fit(loader)
            la.log_marginal_likelihood()

        structures[structure] = clock(other)[0]
    t_diag, _ = clock(
        lambda: pc.laplace.fit_module(
            model, (X, y), likelihood="classification", prior_precision=alpha, structure="diag"
        )
    )
    lines += [
        f"\n**MLP 2-50-50-2 ({d:,} parameters), 1,000 two-moons points, full GGN**\n",
        "| task | probcalc | laplace-torch | × |",
        "|---|---:|---:|---:|",
        f"| fit + log evidence (full GGN) | {t_ours:.2f} s | {t_theirs:.2f} s | "
        f"{t_theirs / t_ours:.1f} |",
        f"| tune the prior precision by evidence | {t_ours_tune:.2f} s (eigenvalues + Newton) | "
        f"{t_theirs_tune:.1f} s (100 steps) | {t_theirs_tune / t_ours_tune:.0f} |",
        f"| diag fit + log evidence | {t_diag:.2f} s | {structures['diag']:.2f} s | "
        f"{structures['diag'] / t_diag:.1f} |",
        f"| kron fit + log evidence (laplace-torch only) | | {structures['kron']:.2f} s | |",
        "",
        f"Evidences at the same prior precision (0.1, 1, 10) agree to "
        f"{max(agreement):.1e} relative. Tuned α: probcalc {alpha_ours:.4f} (log evidence "
        f"{evidence_at_ours:.4f}), laplace-torch {alpha_theirs:.4f} (log evidence there "
        f"{evidence_at_theirs:.4f}, by probcalc's formula).",
    ]


def main() -> None:
    torch.set_default_dtype(torch.float64)
    lines = [
        "## Laplace benchmark (benchmarks/bench_laplace.py)\n",
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"float64, one run.",
    ]
    linear_regression(lines)
    mlp_classifier(lines)
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
