"""Integration benchmark: probcalc.integrate against scipy.integrate and torchquad.

Not a test. Same machine, same run, same integrands; writes benchmarks/results/integrate.md:
    PROBCALC_EXTRAS=dev,bench bash .ci/venv python benchmarks/bench_integrate.py

1. A batch of 1,000 parametric integrals ∫_0^∞ exp(-a x²) cos(b x) dx = ½ √(π/a) e^(-b²/4a)
   at rtol 1e-10: probcalc.integrate.quad in one call (and its gradient with respect to all
   2,000 parameters), scipy.integrate.quad_vec, and a Python loop of scipy.integrate.quad
   over the same integrand written in torch.
2. The six Genz families at d = 1, 2, 3, 5 (closed-form integrals, tests/integrate/genz.py):
   probcalc.integrate.cubature against scipy.integrate.cubature (both adaptive, same rtol)
   and torchquad's GaussLegendre and VEGAS at a fixed budget of 10^6 points.
"""

from __future__ import annotations

import math
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import scipy.integrate
import torch

import probcalc as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integrate"))
from genz import FAMILIES, make_family  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "integrate.md"
SCIPY_TIME_LIMIT = 120.0  # seconds a scipy.integrate.cubature run may take before we stop it


def clock(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def parametric_batch(lines: list[str]) -> None:
    rng = np.random.default_rng(0)
    a_np, b_np = rng.uniform(0.5, 3.0, 1000), rng.uniform(0.0, 4.0, 1000)
    exact = 0.5 * np.sqrt(np.pi / a_np) * np.exp(-(b_np**2) / (4 * a_np))
    a, b = torch.as_tensor(a_np), torch.as_tensor(b_np)

    def ours() -> pc.core.IntegrationResult:
        return pc.integrate.quad(
            lambda x: torch.exp(-a * x[:, None] ** 2) * torch.cos(b * x[:, None]), 0, math.inf
        )

    def ours_with_gradient() -> torch.Tensor:
        a_, b_ = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        result = pc.integrate.quad(
            lambda x: torch.exp(-a_ * x[:, None] ** 2) * torch.cos(b_ * x[:, None]), 0, math.inf
        )
        return torch.autograd.grad(result.value.sum(), (a_, b_))

    def quad_vec() -> tuple:
        return scipy.integrate.quad_vec(
            lambda x: np.exp(-a_np * x**2) * np.cos(b_np * x),
            0,
            np.inf,
            epsrel=1e-10,
            norm="max",
            full_output=True,
        )

    def loop() -> tuple[np.ndarray, int]:
        values, evaluations = np.empty(1000), 0
        for i in range(1000):
            ai, bi = a[i], b[i]
            value, _, info = scipy.integrate.quad(
                lambda x, ai=ai, bi=bi: float(torch.exp(-ai * x**2) * torch.cos(bi * x)),
                0,
                np.inf,
                epsabs=0,
                epsrel=1e-10,
                full_output=True,
            )
            values[i] = value
            evaluations += info["neval"]
        return values, evaluations

    ours()  # warm-up
    t_ours, result = clock(ours)
    t_grad, _ = clock(ours_with_gradient)
    t_vec, (vec_value, _, vec_info) = clock(quad_vec)
    t_loop, (loop_values, loop_evals) = clock(loop)
    rel = lambda v: float(np.max(np.abs(v - exact) / np.abs(exact)))  # noqa: E731
    lines += [
        "\n**1,000 parametric integrals ∫_0^∞ exp(-a x²) cos(b x) dx at rtol 1e-10**\n",
        "| method | time (s) | × probcalc | max relative error | evaluations of x |",
        "|---|---:|---:|---:|---:|",
        f"| probcalc quad, one call | {t_ours:.3f} | 1.0 | {rel(result.value.numpy()):.1e} | "
        f"{result.n_evals} |",
        f"| probcalc quad + gradient w.r.t. all 2,000 (a, b) | {t_grad:.3f} | "
        f"{t_grad / t_ours:.1f} | | |",
        f"| scipy.integrate.quad_vec | {t_vec:.3f} | {t_vec / t_ours:.1f} | "
        f"{rel(vec_value):.1e} | {vec_info.neval} |",
        f"| Python loop of scipy.integrate.quad (torch integrand) | {t_loop:.2f} | "
        f"{t_loop / t_ours:.0f} | {rel(loop_values):.1e} | {loop_evals} |",
    ]


def genz_table(lines: list[str]) -> None:
    from torchquad import VEGAS, GaussLegendre, set_up_backend

    set_up_backend("torch", data_type="float64")
    lines += [
        "\n**Genz families on [0, 1]^d (closed forms): relative error / evaluations / seconds**\n",
        "rtol 1e-10 for the smooth families at d <= 3, 1e-8 at d = 5, 1e-6 for continuous and "
        "discontinuous. torchquad is not adaptive: it gets a fixed 10^6 points.\n",
        "| d | family | probcalc cubature | scipy cubature | torchquad GaussLegendre | "
        "torchquad VEGAS |",
        "|---|---|---|---|---|---|",
    ]
    for d in (1, 2, 3, 5):
        for name in FAMILIES:
            family = make_family(name, d, seed=1)
            if d == 5 and not family.smooth:
                continue
            exact = family.exact()
            rtol = (1e-10 if d <= 3 else 1e-8) if family.smooth else 1e-6
            cells = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t, r = clock(
                    lambda f=family, r=rtol, d=d: pc.integrate.cubature(
                        f, [0.0] * d, [1.0] * d, rtol=r
                    )
                )
            cells.append(_cell(float(r.value), exact, r.n_evals, t, r.converged))
            cells.append(_scipy_cell(family, d, rtol, exact))
            # torchquad's Gauss-Legendre diagonalizes a dense matrix: at most 10^4 nodes an axis
            points = min(round(1e6 ** (1 / d)), 1000) ** d
            t, value = clock(
                lambda f=family, d=d, n=points: GaussLegendre().integrate(
                    f, dim=d, N=n, integration_domain=[[0, 1]] * d
                )
            )
            cells.append(_cell(float(value), exact, points, t, True))
            t, value = clock(
                lambda f=family, d=d: VEGAS().integrate(
                    f, dim=d, N=1_000_000, integration_domain=[[0, 1]] * d, seed=0
                )
            )
            cells.append(_cell(float(value), exact, 1_000_000, t, True))
            lines.append(f"| {d} | {name} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)


def _cell(value: float, exact: float, evaluations: int, seconds: float, converged: bool) -> str:
    flag = "" if converged else " (not converged)"
    return f"{abs(value - exact) / abs(exact):.1e} / {evaluations:.2g} / {seconds:.2f}{flag}"


def _scipy_cell(family: object, d: int, rtol: float, exact: float) -> str:
    def f(x: np.ndarray) -> np.ndarray:
        return family(torch.as_tensor(x)).numpy()

    counter = {"points": 0}

    def counted(x: np.ndarray) -> np.ndarray:
        counter["points"] += len(x)
        if time.perf_counter() - start > SCIPY_TIME_LIMIT:
            raise TimeoutError
        return f(x)

    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = scipy.integrate.cubature(
                counted, [0.0] * d, [1.0] * d, rtol=rtol, max_subdivisions=100_000
            )
    except TimeoutError:
        return f"stopped after {SCIPY_TIME_LIMIT:.0f} s ({counter['points']:.2g} points)"
    seconds = time.perf_counter() - start
    return _cell(float(res.estimate), exact, counter["points"], seconds, res.status == "converged")


def main() -> None:
    torch.set_default_dtype(torch.float64)
    lines = [
        "## Integration benchmark (benchmarks/bench_integrate.py)\n",
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"scipy {scipy.__version__}, float64, one run.",
    ]
    warnings.filterwarnings("ignore", message="Error enabling CUDA")  # torchquad on a CPU
    parametric_batch(lines)
    print("\n".join(lines), flush=True)
    genz_table(lines)
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
