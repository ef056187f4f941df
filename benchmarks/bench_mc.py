"""Monte Carlo benchmark: error against n for mc, antithetic and qmc, and throughput against
plain NumPy/SciPy implementations of the same estimators. Not a test:
    PROBCALC_EXTRAS=dev,bench bash .ci/venv python benchmarks/bench_mc.py
Writes benchmarks/results/mc.md and benchmarks/results/mc_error.png.
"""

from __future__ import annotations

import itertools
import math
import platform
import resource
import time
from pathlib import Path

import matplotlib
import numpy as np
import scipy
import scipy.stats
import torch
from torch.distributions import MultivariateNormal, Normal

import probcalc as pc

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"
A = torch.tensor([0.3, -0.2, 0.25, 0.1, -0.15], dtype=torch.float64)


def integrands() -> dict[str, tuple]:
    """name: (distribution, f, exact, numpy f)"""
    a_np = A.numpy()
    return {
        "smooth 5-D: E[exp(a'x)], x ~ N(0, I_5)": (
            MultivariateNormal(torch.zeros(5, dtype=A.dtype), torch.eye(5, dtype=A.dtype)),
            lambda x: torch.exp(x @ A),
            math.exp(0.5 * float(A @ A)),
            lambda x: np.exp(x @ a_np),
        ),
        "discontinuous 2-D: P(x_1 + x_2 > 1), x ~ N(0, I_2)": (
            MultivariateNormal(torch.zeros(2, dtype=A.dtype), torch.eye(2, dtype=A.dtype)),
            lambda x: (x.sum(1) > 1).double(),
            float(scipy.stats.norm.sf(1 / math.sqrt(2))),
            lambda x: (x.sum(1) > 1).astype(float),
        ),
    }


def error_curves(lines: list[str]) -> None:
    sizes = [2**k for k in range(8, 19, 2)]
    methods = ["mc", "antithetic", "qmc"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    lines += [
        "\n**Root-mean-square error over 10 seeds against n**\n",
        "| integrand | method | "
        + " | ".join(f"n = 2^{int(math.log2(n))}" for n in sizes)
        + " | slope |",
        "|---|---|" + "---:|" * (len(sizes) + 1),
    ]
    for axis, (name, (dist, f, exact, _)) in zip(axes, integrands().items(), strict=True):
        for method in methods:
            rmse = []
            for n in sizes:
                errors = [
                    float(pc.mc.expectation(f, dist, n, method=method, seed=s).value) - exact
                    for s in range(10)
                ]
                rmse.append(math.sqrt(np.mean(np.square(errors))))
            slope = np.polyfit(np.log(sizes), np.log(rmse), 1)[0]
            axis.loglog(sizes, rmse, "o-", label=f"{method} (slope {slope:.2f})")
            lines.append(
                f"| {name} | {method} | "
                + " | ".join(f"{e:.1e}" for e in rmse)
                + f" | {slope:.2f} |"
            )
        axis.loglog(sizes, [rmse[0] * (sizes[0] / n) ** 0.5 for n in sizes], "k:", label="n^-1/2")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("n (evaluations)")
        axis.set_ylabel("RMSE")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(RESULTS / "mc_error.png", dpi=110)


def _numpy_mc(f_np: object, n: int, d: int, rng: np.random.Generator) -> tuple[float, float]:
    values = f_np(rng.standard_normal((n, d)))
    return values.mean(), values.std(ddof=1) / math.sqrt(n)


def _numpy_antithetic(f_np: object, n: int, d: int, rng: np.random.Generator) -> tuple:
    x = rng.standard_normal((n // 2, d))
    pairs = 0.5 * (f_np(x) + f_np(-x))
    return pairs.mean(), pairs.std(ddof=1) / math.sqrt(n // 2)


def _scipy_qmc(f_np: object, n: int, d: int, rng: np.random.Generator) -> tuple:
    """One scrambled Sobol sequence of n points; stderr from its 8 blocks (probcalc's rule)."""
    u = scipy.stats.qmc.Sobol(d, scramble=True, seed=rng).random(n)
    means = f_np(scipy.stats.norm.ppf(u)).reshape(8, -1).mean(1)
    return float(means.mean()), float(means.std(ddof=1) / math.sqrt(8))


def _correlated_problems() -> dict[str, tuple]:
    """name: (mean, cov, numpy f, torch f, exact) for smooth Gaussian expectations under a
    correlated N(m, Σ): E[exp(a'x)] = exp(a'm + a'Σa/2), with a'Σa = 1/4, and
    E[Π cos x_i] = 2^-d Σ_s cos(s'm) exp(-s'Σs/2) over the sign vectors s."""
    problems = {}
    for d in (4, 5):
        rng = np.random.default_rng(d)
        root = rng.normal(size=(d, d)) / math.sqrt(d)
        mean, cov = 0.5 * rng.normal(size=d), root @ root.T + 0.3 * np.eye(d)
        a = np.random.default_rng(10 + d).normal(size=d)
        a *= 0.5 / math.sqrt(a @ cov @ a)
        a_torch = torch.tensor(a)
        exact = math.exp(a @ mean + 0.5 * a @ cov @ a)
        problems[f"E[exp(a'x)], d = {d}"] = (
            mean,
            cov,
            lambda x, a=a: np.exp(x @ a),
            lambda x, a=a_torch: torch.exp(x @ a),
            exact,
        )
        signs = np.array(list(itertools.product([1.0, -1.0], repeat=d)))
        quadratic = np.einsum("si,ij,sj->s", signs, cov, signs)
        exact = float(np.mean(np.cos(signs @ mean) * np.exp(-0.5 * quadratic)))
        problems[f"E[prod cos x_i], d = {d}"] = (
            mean,
            cov,
            lambda x: np.cos(x).prod(1),
            lambda x: torch.cos(x).prod(1),
            exact,
        )
    return problems


def _qmc_errors(
    f: object, dist: MultivariateNormal, exact: float, n: int, seeds: int, scrambles: int
) -> tuple[float, float]:
    """(RMSE, fraction of |error| < 1.96 stderr) of probcalc's qmc over seeds."""
    errors, stderrs = [], []
    for seed in range(seeds):
        estimate = pc.mc.expectation(f, dist, n, method="qmc", seed=seed, scrambles=scrambles)
        errors.append(float(estimate.value) - exact)
        stderrs.append(float(estimate.stderr))
    errors, stderrs = np.array(errors), np.array(stderrs)
    return math.sqrt(np.mean(errors**2)), float(np.mean(np.abs(errors) < 1.96 * stderrs))


def qmc_against_one_scipy_sequence(lines: list[str], seeds: int = 200) -> None:
    """RMSE over seeds of probcalc's qmc (one sequence; and 16 independent scrambles of
    n/16) over that of one scipy.stats.qmc.Sobol sequence of the same n, and the fraction
    of seeds with |error| < 1.96 stderr."""
    lines += [
        f"\n**QMC against one scipy Sobol sequence of the same n** (RMSE over {seeds} seeds, "
        "as a ratio to scipy's; coverage: the fraction of seeds with |error| < 1.96 stderr)\n",
        "| integrand | n | scipy RMSE | one sequence | coverage | 16 scrambles | coverage |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (mean, cov, f_np, f_torch, exact) in _correlated_problems().items():
        root = np.linalg.cholesky(cov)
        dist = MultivariateNormal(torch.tensor(mean), torch.tensor(cov))
        for n in [2**12, 2**14, 2**16]:
            reference = []
            for seed in range(seeds):
                u = scipy.stats.qmc.Sobol(len(mean), scramble=True, seed=seed).random(n)
                reference.append(f_np(mean + scipy.stats.norm.ppf(u) @ root.T).mean() - exact)
            scipy_rmse = math.sqrt(np.mean(np.square(reference)))
            row = f"| {name} | 2^{int(math.log2(n))} | {scipy_rmse:.1e} |"
            for scrambles in (1, 16):
                rmse, coverage = _qmc_errors(f_torch, dist, exact, n, seeds, scrambles)
                row += f" {rmse / scipy_rmse:.2f}x | {coverage:.3f} |"
            lines.append(row)


def throughput(lines: list[str]) -> None:
    n = 2**20
    dist, f, exact, f_np = next(iter(integrands().values()))
    peers = {"mc": _numpy_mc, "antithetic": _numpy_antithetic, "qmc": _scipy_qmc}
    lines += [
        "\n**Throughput at n = 2^20 on the smooth 5-D integrand (samples per second)**\n",
        "| method | probcalc | NumPy/SciPy | × |",
        "|---|---:|---:|---:|",
    ]
    for method, peer in peers.items():
        pc.mc.expectation(f, dist, n, method=method, seed=0)  # warm-up
        start = time.perf_counter()
        pc.mc.expectation(f, dist, n, method=method, seed=0)
        ours = n / (time.perf_counter() - start)
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        value, _ = peer(f_np, n, 5, rng)
        theirs = n / (time.perf_counter() - start)
        assert abs(value - exact) < 0.01
        lines.append(f"| {method} | {ours:.3g} | {theirs:.3g} | {ours / theirs:.2f} |")


def hundred_million(lines: list[str]) -> None:
    dist = Normal(torch.tensor(0.0), torch.tensor(1.0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    estimate = pc.mc.expectation(lambda x: x**2, dist, 10**8, seed=0)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines += [
        f"\n**n = 10^8** (E[x²] = 1 under N(0, 1), batches of 65,536): "
        f"{float(estimate.value):.6f} ± {float(estimate.stderr):.1e} in {seconds:.1f} s; "
        f"peak resident memory {after:.0f} MB (before: {before:.0f} MB)."
    ]


def main() -> None:
    torch.set_default_dtype(torch.float64)
    lines = [
        "## Monte Carlo benchmark (benchmarks/bench_mc.py)\n",
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, float64, one run.",
    ]
    hundred_million(lines)
    error_curves(lines)
    qmc_against_one_scipy_sequence(lines)
    throughput(lines)
    text = "\n".join(lines) + "\n"
    (RESULTS / "mc.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
