"""Core benchmark: Hessians, Hessian-vector products and newton-cg against their peers.

Best-of-N wall times in one run on this machine, reported as ratios to probcalc. Not a test:
    bash .ci/venv python benchmarks/bench_core.py        (writes benchmarks/results/core.md)

1. Full Hessian of a d = 1000 function: probcalc.hessian (reverse-over-reverse, the default,
   and forward-over-reverse), torch.autograd.functional.hessian, and a Python loop of d
   gradient rows (double backward, graph kept).
2. Hessian-vector products at d = 100,000, as a conjugate-gradient loop needs them: one
   product from probcalc.hvp_operator (graph built once) against torch.func's
   jvp(grad(f)) and torch.autograd.functional.hvp, which redo the forward pass every time.
3. newton-cg on a d = 10,000 L2-regularized logistic regression against
   scipy.optimize.minimize(method="Newton-CG") given hand-written numpy gradient and
   Hessian-vector product (scipy's best case).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.optimize
import torch
from scipy.special import expit
from torch.func import grad, jvp

import probcalc as pc

RESULTS = Path(__file__).resolve().parent / "results" / "core.md"


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up, in seconds (as timeit advises:
    on a shared 2-core machine the slower runs measure the neighbours, not the code)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def hessian_benchmark(lines: list[str]) -> None:
    d = 1000
    generator = torch.Generator().manual_seed(0)
    A = torch.randn(2000, d, generator=generator) / d**0.5
    x = 0.1 * torch.randn(d, generator=generator)
    functions = {
        "log-sum-exp of A x (dense A, 2000 x 1000) + ||x||²/2": lambda z: (
            torch.logsumexp(A @ z, 0) + 0.5 * (z * z).sum()
        ),
        "Rosenbrock": lambda z: (100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2).sum(),
        "elementwise: Σ exp(sin x) x³ + log(1 + x²)": lambda z: (
            (torch.exp(torch.sin(z)) * z**3).sum() + torch.log1p(z**2).sum()
        ),
    }

    def loop_of_gradients(f: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor):
        z = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(z), z, create_graph=True)
        rows = [torch.autograd.grad(g[i], z, retain_graph=True)[0] for i in range(d)]
        return torch.stack(rows)

    for name, f in functions.items():
        reference = pc.hessian(f)(x)
        contenders = {
            "probcalc.hessian (reverse-over-reverse, default)": lambda f=f: pc.hessian(f)(x),
            "probcalc.hessian (forward-over-reverse)": lambda f=f: pc.hessian(
                f, mode="forward-over-reverse"
            )(x),
            "torch.autograd.functional.hessian": lambda f=f: torch.autograd.functional.hessian(
                f, x
            ),
            "torch.autograd.functional.hessian(vectorize=True)": lambda f=f: (
                torch.autograd.functional.hessian(f, x, vectorize=True)
            ),
            "Python loop of 1000 gradient rows": lambda f=f: loop_of_gradients(f, x),
        }
        for other in contenders.values():
            assert torch.allclose(other(), reference, atol=1e-10)
        times = {label: timed(fn, repeats=7) for label, fn in contenders.items()}
        base = times["probcalc.hessian (reverse-over-reverse, default)"]
        lines += [
            f"\n**Full Hessian, d = {d}: {name}**\n",
            "| method | time (ms) | × probcalc |",
            "|---|---:|---:|",
        ]
        lines += [f"| {label} | {1e3 * t:.1f} | {t / base:.2f} |" for label, t in times.items()]


def hvp_benchmark(lines: list[str]) -> None:
    d = 100_000
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(d, generator=generator) + 1
    x, v = torch.randn(d, generator=generator), torch.randn(d, generator=generator)

    def f(z: torch.Tensor) -> torch.Tensor:
        return 0.5 * (a * z * z).sum() + torch.log1p((z[1:] - z[:-1]) ** 2).sum()

    operator = pc.hvp_operator(f, x)
    reference = operator(v)
    contenders = {
        "probcalc.hvp_operator(f, x)(v), per product": lambda: operator(v),
        "probcalc.hvp(f, x, v), one-off": lambda: pc.hvp(f, x, v),
        "torch.func jvp(grad(f)) (forward-over-reverse)": lambda: jvp(grad(f), (x,), (v,))[1],
        "torch.autograd.functional.hvp": lambda: torch.autograd.functional.hvp(f, x, v)[1],
    }
    for other in contenders.values():
        assert torch.allclose(other(), reference, atol=1e-10)
    times = {label: timed(fn, repeats=20) for label, fn in contenders.items()}
    base = times["probcalc.hvp_operator(f, x)(v), per product"]
    lines += [
        f"\n**Hessian-vector product, d = {d:,} (chain-coupled function)**\n",
        "| method | time (ms) | × probcalc |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {1e3 * t:.2f} | {t / base:.2f} |" for label, t in times.items()]


def newton_cg_benchmark(lines: list[str]) -> None:
    n, d, prior_precision = 2000, 10_000, 1.0
    rng = np.random.default_rng(2)
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    w_true = rng.normal(size=d)
    y = (rng.uniform(size=n) < expit(X @ w_true)).astype(float)

    def f_np(w: np.ndarray) -> float:
        z = X @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * prior_precision * w @ w)

    def grad_np(w: np.ndarray) -> np.ndarray:
        return X.T @ (expit(X @ w) - y) + prior_precision * w

    def hessp_np(w: np.ndarray, p: np.ndarray) -> np.ndarray:
        s = expit(X @ w)
        return X.T @ (s * (1 - s) * (X @ p)) + prior_precision * p

    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def f_torch(w: torch.Tensor) -> torch.Tensor:
        return pc.core.bernoulli_nll(yt, Xt @ w) + 0.5 * prior_precision * w @ w

    runs: dict[str, tuple[float, np.ndarray, int]] = {}

    def ours() -> None:
        result = pc.minimize(f_torch, torch.zeros(d), method="newton-cg", tol=1e-8)
        runs["probcalc newton-cg (autograd HVPs)"] = (0.0, result.x.numpy(), result.nit)

    def theirs() -> None:
        result = scipy.optimize.minimize(
            f_np,
            np.zeros(d),
            jac=grad_np,
            hessp=hessp_np,
            method="Newton-CG",
            options={"xtol": 1e-10},
        )
        runs["scipy Newton-CG (hand-written gradient and hessp)"] = (0.0, result.x, result.nit)

    times = {
        "probcalc newton-cg (autograd HVPs)": timed(ours, repeats=3),
        "scipy Newton-CG (hand-written gradient and hessp)": timed(theirs, repeats=3),
    }
    base = times["probcalc newton-cg (autograd HVPs)"]
    lines += [
        f"\n**newton-cg, L2-regularized logistic regression, n = {n}, d = {d:,}**\n",
        "| method | time (s) | × probcalc | iterations | max abs grad at the end |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, t in times.items():
        _, w, nit = runs[label]
        lines.append(
            f"| {label} | {t:.2f} | {t / base:.2f} | {nit} | {np.abs(grad_np(w)).max():.1e} |"
        )


def main() -> None:
    torch.set_default_dtype(torch.float64)
    lines = [
        "## Core benchmark (benchmarks/bench_core.py)\n",
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, scipy {scipy.__version__}, float64; "
        "best of 7 (Hessians), 20 (HVPs), 3 (newton-cg) wall times.",
    ]
    hessian_benchmark(lines)
    hvp_benchmark(lines)
    newton_cg_benchmark(lines)
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
