"""MCMC benchmark: probcalc's NUTS against Pyro's and NumPyro's NUTS on the same models, one run.

Not a test. Needs pyro-ppl, numpyro and jax[cpu] beside probcalc (CPU torch), the bench extra:
    PROBCALC_EXTRAS=dev,bench bash .ci/venv python benchmarks/bench_mcmc.py    # the full run
    ... python benchmarks/bench_mcmc.py --quick          # 200 warmup + 200 draws: a smoke test
    ... python benchmarks/bench_mcmc.py --models eight_schools --libraries probcalc --seeds 0 1
Writes benchmarks/results/mcmc.md (and prints it).

Every library: 4 chains x (1000 warmup + 1000 draws), multinomial NUTS with a diagonal mass
matrix adapted in warmup, target acceptance 0.8, max tree depth 10, starts uniform in (-2, 2) on
the unconstrained scale, float64, ONE thread (the thread variables below are set before torch
and jax are imported). probcalc and NumPyro ("vectorized") run the 4 chains as one batch; Pyro's
multi-chain MCMC runs one process per chain, i.e. 4 cores, so here its 4 chains run one after
the other in this process and their times are added.

Effective samples per second = min over coordinates of the bulk ESS (probcalc.mcmc.ess_bulk,
equal to ArviZ's, on every library's draws mapped to the same unconstrained coordinates) /
wall time of warmup + draws (for NumPyro including JAX's tracing and XLA compilation, which is
also reported on its own: the union of the intervals of jax.monitoring's tracing, lowering and
compilation events).

Gradient evaluations per effective sample: probcalc result.n_grad_evals (warmup included) and
its num_steps (draws only); NumPyro the sum of num_steps from extra_fields (draws), its warmup
count from a second, untimed warmup with the same key and collect_warmup=True; Pyro exposes no
step counts, so pyro.ops.integrator.potential_grad (one call per gradient) is wrapped with a
counter, split at the end of warmup by MCMC's hook_fn.

Models (the same parameterization and priors in all three):
1. eight schools, non-centred, 10-D: mu ~ N(0, 5), tau ~ HalfCauchy(5) (sampled as log tau),
   eta_j ~ N(0, 1), y_j ~ N(mu + tau eta_j, sigma_j).
2. Bayesian logistic regression on the Pima data (examples/data/pima_standardized.dat, 532
   rows), intercept + 7 standardized features, w ~ N(0, I_8).
3. 100-D Gaussian, zero mean, AR(1) covariance Sigma_ij = 0.9^|i-j|.
4. random effects, non-centred, 54-D: 50 groups simulated with numpy seed 2024 (3 to 20 points
   each), y_ij ~ N(mu + tau eta_j + beta x_ij, sigma), mu, beta ~ N(0, 5), tau, sigma ~
   HalfNormal(1) (sampled as logs), eta_j ~ N(0, 1).
"""

from __future__ import annotations

import os

# one thread everywhere, set before numpy, torch and jax load their thread pools
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_variable] = "1"
# XLA's CPU client: one device, no multi-threaded Eigen (a bare "intra_op_parallelism_threads=1"
# is a TensorFlow option that XLA ignores)
os.environ["XLA_FLAGS"] = (
    "--xla_force_host_platform_device_count=1 --xla_cpu_multi_thread_eigen=false"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.distributions import (  # noqa: E402
    Bernoulli,
    HalfCauchy,
    HalfNormal,
    MultivariateNormal,
    Normal,
    biject_to,
    constraints,
)

import probcalc as pc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "mcmc.md"
LIBRARIES = ("probcalc", "probcalc-compile", "numpyro", "pyro")
CHAINS = 4
INIT_RADIUS = 2.0  # Pyro's and NumPyro's default start: uniform in (-2, 2), unconstrained
POSITIVE = biject_to(constraints.positive)  # exp, as in Pyro and NumPyro


def clock(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall and CPU seconds (all threads of this process) of fn(), and its value."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def positive(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x = exp(z) > 0 and log|dx/dz|, by torch.distributions' transform of the positive reals."""
    x = POSITIVE(z)
    return x, POSITIVE.log_abs_det_jacobian(z, x)


# ----------------------------------------------------------------------------------------
# models: each is a torch log density of the unconstrained vector, a Pyro model and a NumPyro
# model, and its sites in the order of that vector (name, size, positive?)


@dataclass
class Model:
    name: str
    title: str
    sites: list[tuple[str, int, bool]]
    log_prob: Callable[[torch.Tensor], torch.Tensor]
    pyro_model: Callable[[], None]
    numpyro_model: Callable[[], None]
    checks: list[tuple[str, int]]  # (label, coordinate) whose means are compared
    d: int = field(init=False)

    def __post_init__(self) -> None:
        self.d = sum(size for _, size, _ in self.sites)


def eight_schools() -> Model:
    import numpyro
    import numpyro.distributions as ndist
    import pyro
    import pyro.distributions as pdist
    from jax import numpy as jnp

    y_np = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma_np = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    y, sigma = torch.as_tensor(y_np), torch.as_tensor(sigma_np)
    y_j, sigma_j = jnp.asarray(y_np), jnp.asarray(sigma_np)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        mu, eta = x[0], x[2:]
        tau, log_jacobian = positive(x[1])
        return (
            Normal(0.0, 5.0).log_prob(mu)
            + HalfCauchy(5.0).log_prob(tau)
            + log_jacobian
            + Normal(0.0, 1.0).log_prob(eta).sum()
            + Normal(mu + tau * eta, sigma).log_prob(y).sum()
        )

    def pyro_model() -> None:
        mu = pyro.sample("mu", pdist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", pdist.HalfCauchy(5.0))
        with pyro.plate("schools", 8):
            eta = pyro.sample("eta", pdist.Normal(0.0, 1.0))
            pyro.sample("y", pdist.Normal(mu + tau * eta, sigma), obs=y)

    def numpyro_model() -> None:
        mu = numpyro.sample("mu", ndist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", ndist.HalfCauchy(5.0))
        with numpyro.plate("schools", 8):
            eta = numpyro.sample("eta", ndist.Normal(0.0, 1.0))
            numpyro.sample("y", ndist.Normal(mu + tau * eta, sigma_j), obs=y_j)

    return Model(
        "eight_schools",
        "eight schools, non-centred",
        [("mu", 1, False), ("tau", 1, True), ("eta", 8, False)],
        log_prob,
        pyro_model,
        numpyro_model,
        [("mu", 0), ("log tau", 1)],
    )


def pima() -> Model:
    """Logistic regression with the prior the examples and tests use: N(0, 1/tau), tau = 1."""
    import numpyro
    import numpyro.distributions as ndist
    import pyro
    import pyro.distributions as pdist
    from jax import numpy as jnp

    data = np.loadtxt(ROOT / "examples" / "data" / "pima_standardized.dat")
    X_np = np.hstack([np.ones((len(data), 1)), data[:, 1:]])
    X, y = torch.as_tensor(X_np), torch.as_tensor(data[:, 0])
    X_j, y_j = jnp.asarray(X_np), jnp.asarray(data[:, 0])
    d = X_np.shape[1]

    def log_prob(w: torch.Tensor) -> torch.Tensor:
        return Normal(0.0, 1.0).log_prob(w).sum() + Bernoulli(logits=X @ w).log_prob(y).sum()

    def pyro_model() -> None:
        w = pyro.sample("w", pdist.Normal(torch.zeros(d), 1.0).to_event(1))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", pdist.Bernoulli(logits=X @ w), obs=y)

    def numpyro_model() -> None:
        w = numpyro.sample("w", ndist.Normal(jnp.zeros(d), 1.0).to_event(1))
        with numpyro.plate("rows", len(y_j)):
            numpyro.sample("y", ndist.Bernoulli(logits=X_j @ w), obs=y_j)

    return Model(
        "pima",
        "logistic regression, Pima",
        [("w", d, False)],
        log_prob,
        pyro_model,
        numpyro_model,
        [("intercept", 0), ("glucose", 2)],
    )


def ar1_gaussian() -> Model:
    import numpyro
    import numpyro.distributions as ndist
    import pyro
    import pyro.distributions as pdist
    from jax import numpy as jnp

    d, rho = 100, 0.9
    index = np.arange(d)
    cov = rho ** np.abs(index[:, None] - index[None, :])
    L_np = np.linalg.cholesky(cov)
    L = torch.as_tensor(L_np)
    L_j = jnp.asarray(L_np)
    target = MultivariateNormal(torch.zeros(d, dtype=torch.float64), scale_tril=L)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return target.log_prob(x)

    def pyro_model() -> None:
        pyro.sample("x", pdist.MultivariateNormal(torch.zeros(d), scale_tril=L))

    def numpyro_model() -> None:
        numpyro.sample("x", ndist.MultivariateNormal(jnp.zeros(d), scale_tril=L_j))

    return Model(
        "ar1_gaussian",
        "Gaussian, AR(1) rho = 0.9",
        [("x", d, False)],
        log_prob,
        pyro_model,
        numpyro_model,
        [("x_1 (exact 0)", 0), ("x_100 (exact 0)", d - 1)],
    )


def random_effects() -> Model:
    import numpyro
    import numpyro.distributions as ndist
    import pyro
    import pyro.distributions as pdist
    from jax import numpy as jnp

    rng = np.random.default_rng(2024)
    groups = 50
    sizes = rng.integers(3, 21, size=groups)
    group_np = np.repeat(np.arange(groups), sizes)
    x_np = rng.normal(size=len(group_np))
    effects = 0.6 * rng.normal(size=groups)
    y_np = 1.5 + effects[group_np] - 0.7 * x_np + 0.8 * rng.normal(size=len(group_np))
    group, x, y = (torch.as_tensor(a) for a in (group_np, x_np, y_np))
    group_j, x_j, y_j = (jnp.asarray(a) for a in (group_np, x_np, y_np))

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        mu, beta, eta = z[0], z[1], z[4:]
        tau, jacobian_tau = positive(z[2])
        sigma, jacobian_sigma = positive(z[3])
        mean = mu + tau * eta[group] + beta * x
        return (
            Normal(0.0, 5.0).log_prob(mu)
            + Normal(0.0, 5.0).log_prob(beta)
            + HalfNormal(1.0).log_prob(tau)
            + jacobian_tau
            + HalfNormal(1.0).log_prob(sigma)
            + jacobian_sigma
            + Normal(0.0, 1.0).log_prob(eta).sum()
            + Normal(mean, sigma).log_prob(y).sum()
        )

    def pyro_model() -> None:
        mu = pyro.sample("mu", pdist.Normal(0.0, 5.0))
        beta = pyro.sample("beta", pdist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", pdist.HalfNormal(1.0))
        sigma = pyro.sample("sigma", pdist.HalfNormal(1.0))
        with pyro.plate("groups", groups):
            eta = pyro.sample("eta", pdist.Normal(0.0, 1.0))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", pdist.Normal(mu + tau * eta[group] + beta * x, sigma), obs=y)

    def numpyro_model() -> None:
        mu = numpyro.sample("mu", ndist.Normal(0.0, 5.0))
        beta = numpyro.sample("beta", ndist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", ndist.HalfNormal(1.0))
        sigma = numpyro.sample("sigma", ndist.HalfNormal(1.0))
        with numpyro.plate("groups", groups):
            eta = numpyro.sample("eta", ndist.Normal(0.0, 1.0))
        with numpyro.plate("rows", len(y_j)):
            mean = mu + tau * eta[group_j] + beta * x_j
            numpyro.sample("y", ndist.Normal(mean, sigma), obs=y_j)

    return Model(
        "random_effects",
        f"random effects, {groups} groups, non-centred",
        [
            ("mu", 1, False),
            ("beta", 1, False),
            ("tau", 1, True),
            ("sigma", 1, True),
            ("eta", groups, False),
        ],
        log_prob,
        pyro_model,
        numpyro_model,
        [("mu", 0), ("beta", 1), ("log tau", 2)],
    )


MODELS = {
    "eight_schools": eight_schools,
    "pima": pima,
    "ar1_gaussian": ar1_gaussian,
    "random_effects": random_effects,
}


# ----------------------------------------------------------------------------------------
# one run of each library


@dataclass
class Run:
    samples: np.ndarray  # (chains, draws, d), unconstrained coordinates
    wall: float  # seconds, warmup + draws (+ NumPyro's compilation)
    cpu: float  # CPU seconds of this process over the same span
    grad_total: float | None  # gradient evaluations, warmup included
    grad_draws: float | None  # gradient evaluations of the kept draws
    divergences: int  # among the kept draws
    compile: float | None = None  # NumPyro: tracing + lowering + XLA compilation, seconds
    note: str = ""


def flatten(model: Model, draws: dict[str, np.ndarray]) -> np.ndarray:
    """Site draws (chains, draws, *shape) on the constrained scale -> (chains, draws, d) on the
    unconstrained scale of the torch log density (log of the positive sites)."""
    blocks = []
    for name, size, is_positive in model.sites:
        value = np.asarray(draws[name], dtype=np.float64)
        value = value.reshape(value.shape[0], value.shape[1], size)
        blocks.append(np.log(value) if is_positive else value)
    return np.concatenate(blocks, axis=-1)


def run_probcalc(model: Model, warmup: int, draws: int, seed: int, compile: bool = False) -> Run:
    """probcalc's NUTS; with ``compile`` the batched potential is torch.compile'd, and the
    wall time includes that compilation."""
    rng = np.random.default_rng(seed)
    init = torch.as_tensor(rng.uniform(-INIT_RADIUS, INIT_RADIUS, size=(CHAINS, model.d)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.ConvergenceWarning)  # its figures are in the table
        wall, cpu, result = clock(
            lambda: pc.mcmc.nuts(
                model.log_prob,
                init,
                chains=CHAINS,
                num_warmup=warmup,
                num_samples=draws,
                seed=seed,
                mass_matrix="diag",
                compile=compile,
            )
        )
    return Run(
        samples=result.samples.numpy(),
        wall=wall,
        cpu=cpu,
        grad_total=float(result.n_grad_evals),
        grad_draws=float(result.num_steps.sum()),
        divergences=int(result.divergences.sum()),
    )


class CompileTimer:
    """JAX's tracing, lowering and XLA compilation time, from jax.monitoring's duration events.

    Nested jits send nested events (tracing an outer function traces the inner ones), so the
    events are kept as intervals [end - duration, end] and measured by the length of their
    union, not their sum."""

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        import jax.monitoring

        self.intervals: list[tuple[float, float]] = []
        jax.monitoring.register_event_duration_secs_listener(self)

    def __call__(self, event: str, duration: float, **_: object) -> None:
        if event in self.EVENTS:
            end = time.perf_counter()
            self.intervals.append((end - duration, end))

    def seconds_since(self, start: float) -> float:
        """Length of the union of the intervals that ended after ``start``."""
        total, reach = 0.0, start
        for low, high in sorted(i for i in self.intervals if i[1] > start):
            low = max(low, reach)
            if high > low:
                total += high - low
                reach = high
        return total


_COMPILE_TIMER: CompileTimer | None = None


def run_numpyro(model: Model, warmup: int, draws: int, seed: int) -> Run:
    global _COMPILE_TIMER
    import jax
    from numpyro.infer import MCMC, NUTS

    if _COMPILE_TIMER is None:
        _COMPILE_TIMER = CompileTimer()

    def make() -> MCMC:
        return MCMC(
            NUTS(model.numpyro_model),
            num_warmup=warmup,
            num_samples=draws,
            num_chains=CHAINS,
            chain_method="vectorized",
            progress_bar=False,
        )

    mcmc = make()

    def sample() -> dict:
        mcmc.run(jax.random.PRNGKey(seed), extra_fields=("num_steps", "diverging"))
        return jax.block_until_ready(mcmc.get_samples(group_by_chain=True))

    start = time.perf_counter()
    wall, cpu, samples = clock(sample)
    compiled = _COMPILE_TIMER.seconds_since(start)
    fields = mcmc.get_extra_fields()
    grad_draws = float(np.asarray(fields["num_steps"]).sum())
    divergences = int(np.asarray(fields["diverging"]).sum())
    # warmup's gradient count: NumPyro keeps extra fields of the draws only, so a second,
    # untimed warmup with the same key collects them
    counter = make()
    counter.warmup(jax.random.PRNGKey(seed), extra_fields=("num_steps",), collect_warmup=True)
    grad_warmup = float(np.asarray(counter.get_extra_fields()["num_steps"]).sum())
    return Run(
        samples=flatten(model, {k: np.asarray(v) for k, v in samples.items()}),
        wall=wall,
        cpu=cpu,
        grad_total=grad_warmup + grad_draws,
        grad_draws=grad_draws,
        divergences=divergences,
        compile=min(compiled, wall),
    )


def run_pyro(model: Model, warmup: int, draws: int, seed: int) -> Run:
    import pyro
    import pyro.infer.mcmc.hmc
    import pyro.infer.mcmc.nuts
    import pyro.infer.mcmc.util
    import pyro.ops.integrator
    from pyro.infer import MCMC, NUTS

    # Pyro reports no step counts: count the calls of potential_grad (one per gradient) in
    # every module that calls it
    count = [0]
    original = pyro.ops.integrator.potential_grad

    def counted(potential_fn: Callable, z: dict) -> tuple:
        count[0] += 1
        return original(potential_fn, z)

    modules = (pyro.ops.integrator, pyro.infer.mcmc.hmc, pyro.infer.mcmc.nuts, pyro.infer.mcmc.util)
    for module in modules:
        module.potential_grad = counted
    end_of_warmup = [0]

    def hook(kernel: object, params: object, stage: str, i: int) -> None:
        if stage == "Warmup":
            end_of_warmup[0] = count[0]

    per_chain, wall, cpu, grad_total, grad_draws, divergences = [], 0.0, 0.0, 0, 0, 0
    try:
        for chain in range(CHAINS):
            pyro.set_rng_seed(1000 * seed + chain)
            pyro.clear_param_store()
            count[0] = end_of_warmup[0] = 0
            mcmc = MCMC(
                NUTS(model.pyro_model),
                num_samples=draws,
                warmup_steps=warmup,
                num_chains=1,
                disable_progbar=True,
                hook_fn=hook,
            )
            seconds, cpu_seconds, _ = clock(mcmc.run)
            wall, cpu = wall + seconds, cpu + cpu_seconds
            grad_total += count[0]
            grad_draws += count[0] - end_of_warmup[0]
            divergences += len(mcmc.diagnostics()["divergences"]["chain 0"])
            chain_draws = mcmc.get_samples(group_by_chain=True)
            per_chain.append(flatten(model, {k: v.numpy() for k, v in chain_draws.items()}))
    finally:
        for module in modules:
            module.potential_grad = original
    return Run(
        samples=np.concatenate(per_chain, axis=0),
        wall=wall,
        cpu=cpu,
        grad_total=float(grad_total),
        grad_draws=float(grad_draws),
        divergences=divergences,
        note="4 chains one after the other, times added",
    )


RUNNERS = {
    "probcalc": run_probcalc,
    "probcalc-compile": lambda model, warmup, draws, seed: run_probcalc(
        model, warmup, draws, seed, compile=True
    ),
    "numpyro": run_numpyro,
    "pyro": run_pyro,
}


# ----------------------------------------------------------------------------------------
# report


@dataclass
class Row:
    model: Model
    library: str
    seed: int
    run: Run
    ess: np.ndarray  # bulk ESS per coordinate
    rhat: np.ndarray
    mcse: np.ndarray
    means: np.ndarray

    @property
    def min_ess(self) -> float:
        return float(self.ess.min())

    @property
    def ess_per_second(self) -> float:
        return self.min_ess / self.run.wall


def diagnose(model: Model, library: str, seed: int, run: Run) -> Row:
    draws = torch.as_tensor(run.samples)
    return Row(
        model,
        library,
        seed,
        run,
        ess=pc.mcmc.ess_bulk(draws).numpy(),
        rhat=pc.mcmc.rhat(draws).numpy(),
        mcse=pc.mcmc.mcse_mean(draws).numpy(),
        means=run.samples.mean(axis=(0, 1)),
    )


def per_ess(value: float | None, ess: float) -> str:
    return "n/a" if value is None else f"{value / ess:.1f}"


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| model | d | library | seed | wall s (compile s) | CPU s / wall s | min bulk ESS | "
        "ESS/s | ESS/s excl. compile | grad evals / ESS (warmup + draws) | "
        "grad evals / ESS (draws) | max R-hat | divergences |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        run = row.run
        compiled = f" ({run.compile:.1f})" if run.compile is not None else ""
        sampling = None
        if run.compile is not None and run.wall > run.compile:
            sampling = row.min_ess / (run.wall - run.compile)
        lines.append(
            f"| {row.model.title} | {row.model.d} | {row.library} | {row.seed} | "
            f"{run.wall:.1f}{compiled} | {run.cpu / run.wall:.2f} | {row.min_ess:.0f} | "
            f"{row.ess_per_second:.1f} | {'' if sampling is None else f'{sampling:.0f}'} | "
            f"{per_ess(run.grad_total, row.min_ess)} | {per_ess(run.grad_draws, row.min_ess)} | "
            f"{float(np.nanmax(row.rhat)):.3f} | {run.divergences} |"
        )
    return lines


def agreement(rows: list[Row]) -> list[str]:
    """Posterior means of the check coordinates side by side, each ± its MCSE; a pair of
    libraries agrees when the difference is within 4 combined MCSEs."""
    lines = []
    keys = list(dict.fromkeys((row.model.name, row.seed) for row in rows))  # in run order
    for name, seed in keys:
        group = [row for row in rows if row.model.name == name and row.seed == seed]
        model = group[0].model
        for label, index in model.checks:
            cells = [
                f"{row.library} {row.means[index]:.3f} ± {row.mcse[index]:.3f}" for row in group
            ]
            worst = 0.0
            for a in range(len(group)):
                for b in range(a + 1, len(group)):
                    difference = abs(group[a].means[index] - group[b].means[index])
                    combined = math.hypot(group[a].mcse[index], group[b].mcse[index])
                    worst = max(worst, difference / combined)
            verdict = "agree" if worst <= 4 else "DIFFER"
            lines.append(
                f"- {model.title}, seed {seed}, mean of {label}: {'; '.join(cells)} "
                f"(largest gap {worst:.1f} combined MCSEs: {verdict})"
            )
    return lines


def targets(rows: list[Row]) -> list[str]:
    """probcalc's ESS/s against the targets: >= 5x Pyro's and >= 0.5x NumPyro's."""
    lines = []
    for row in rows:
        if not row.library.startswith("probcalc"):
            continue
        for library, factor in (("pyro", 5.0), ("numpyro", 0.5)):
            other = [
                r
                for r in rows
                if r.library == library and r.model.name == row.model.name and r.seed == row.seed
            ]
            if not other:
                continue
            ratio = row.ess_per_second / other[0].ess_per_second
            met = "met" if ratio >= factor else "NOT met"
            lines.append(
                f"- {row.model.title}, seed {row.seed}: {row.library} / {library} ESS/s = "
                f"{ratio:.2f} (target >= {factor:g}): {met}"
            )
    return lines


def machine() -> str:
    import jax
    import numpyro
    import pyro

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # no /proc/cpuinfo: keep platform's name
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = os.environ["XLA_FLAGS"]
    return (
        f"{cpu}, {os.cpu_count()} cores, one thread per library (torch "
        f'{torch.get_num_threads()} thread, OMP_NUM_THREADS=1, XLA_FLAGS="{flags}"), '
        f"torch {torch.__version__}, pyro {pyro.__version__}, jax {jax.__version__}, numpyro "
        f"{numpyro.__version__}, Python {platform.python_version()}, float64."
    )


def report(rows: list[Row], args: argparse.Namespace, warmup: int, draws: int) -> str:
    lines = [
        "## MCMC benchmark (benchmarks/bench_mcmc.py)\n",
        machine(),
        "",
        f"{CHAINS} chains x ({warmup} warmup + {draws} draws){' (--quick)' if args.quick else ''}"
        f", NUTS with a diagonal mass matrix, target acceptance 0.8, max tree depth 10, each "
        "library's default warmup, starts uniform in (-2, 2) on the unconstrained scale, "
        f"seeds {' '.join(map(str, args.seeds))}, one run.",
        "",
        "ESS/s = min over coordinates of the bulk ESS (probcalc.mcmc.ess_bulk, equal to "
        "ArviZ's, for all three libraries) / wall time of warmup and draws; NumPyro's wall time "
        "includes JAX's tracing and compilation (in brackets; `ESS/s excl. compile` leaves it "
        "out). probcalc and NumPyro run the 4 chains as one batch; Pyro runs them one after the "
        "other in one process (its multi-chain mode takes one process per chain) and the times "
        "are added. Gradient evaluations, warmup + draws: probcalc's n_grad_evals (every "
        "evaluation of the batch, chains whose trajectory has already stopped included), "
        "NumPyro's num_steps (its warmup's from a second, untimed warmup with the same key), "
        "Pyro's counted calls of potential_grad; draws only: each chain's leapfrog steps "
        "(probcalc's and NumPyro's num_steps, Pyro's counted calls). CPU s / wall s near 1 "
        "shows one busy thread.",
        "",
        *table(rows),
        "",
        "**Targets** (probcalc >= 5x Pyro's ESS/s, >= 0.5x NumPyro's)\n",
        *(targets(rows) or ["- (needs probcalc and another library in the same run)"]),
        "",
        "**Posterior means** (± MCSE; unconstrained coordinates), as a check that the "
        "libraries sample the same posterior\n",
        *(agreement(rows) if len(args.libraries) > 1 else ["- (one library only)"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 warmup + 200 draws per chain (a smoke test)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="the markdown written")
    args = parser.parse_args()
    warmup = draws = 200 if args.quick else 1000

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    import jax

    jax.config.update("jax_enable_x64", True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        model = MODELS[name]()
        for seed in args.seeds:
            for library in args.libraries:
                print(f"{model.title} (d = {model.d}), {library}, seed {seed} ...", flush=True)
                run = RUNNERS[library](model, warmup, draws, seed)
                row = diagnose(model, library, seed, run)
                rows.append(row)
                print(
                    f"    {run.wall:.1f} s, min bulk ESS {row.min_ess:.0f}, "
                    f"{row.ess_per_second:.1f} ESS/s",
                    flush=True,
                )
                args.out.write_text(report(rows, args, warmup, draws))  # what is done so far
    print(args.out.read_text())


if __name__ == "__main__":
    main()
