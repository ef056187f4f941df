"""Multinomial NUTS with every chain in one batch."""

import math
import warnings

import pytest
import scipy.stats as st
import torch

from probcalc.core.errors import ConvergenceWarning
from probcalc.mcmc.diagnostics import mcse_mean
from probcalc.mcmc.integrator import batched_log_prob
from probcalc.mcmc.nuts import _checkpoint_range, nuts, nuts_transition
from probcalc.mcmc.warmup import State, mass_factor_of

D = 5


def _gaussian() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    a = torch.randn(D, D, generator=g)
    cov = a @ a.T / D + 0.3 * torch.eye(D)
    mean = torch.linspace(-1.0, 3.0, D)
    return mean, cov


def _log_prob(mean: torch.Tensor, cov: torch.Tensor):
    precision = torch.linalg.inv(cov)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        z = x - mean
        return -0.5 * z @ precision @ z

    return log_prob


def _assert_moments(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    """Means and covariance entries within 4.5 Monte Carlo standard errors (from the ESS)."""
    z_mean = (samples.mean(dim=(0, 1)) - mean) / mcse_mean(samples)
    centred = samples - mean
    products = centred.unsqueeze(-1) * centred.unsqueeze(-2)
    z_cov = (products.mean(dim=(0, 1)) - cov) / mcse_mean(products)
    assert z_mean.abs().max() < 4.5, z_mean
    assert z_cov.abs().max() < 4.5, z_cov


@pytest.mark.parametrize("mass_matrix", ["diag", "dense"])
def test_correlated_gaussian_moments(mass_matrix):
    mean, cov = _gaussian()
    result = nuts(
        _log_prob(mean, cov),
        torch.zeros(D),
        num_samples=400,
        num_warmup=300,
        seed=0,
        mass_matrix=mass_matrix,
    )
    assert result.samples.shape == (4, 400, D)
    assert result.tree_depth.shape == result.num_steps.shape == (4, 400)
    assert not result.divergences.any()
    _assert_moments(result.samples, mean, cov)
    # a doubling of depth j adds 2^(j-1) steps: 2^(depth-1) <= steps <= 2^depth - 1
    depth, steps = result.tree_depth, result.num_steps
    assert ((steps >= 2 ** (depth - 1)) & (steps <= 2**depth - 1)).all()


def test_checkpoints_cover_every_subtree_ending_at_a_leaf():
    """For each leaf n of a subtree, the checkpoints idx_min..idx_max hold the first leaves
    of exactly the aligned power-of-two blocks (size >= 2) that end at n."""
    for depth in range(1, 8):
        stored: dict[int, int] = {}
        for n in range(2**depth):
            idx_min, idx_max = _checkpoint_range(n)
            if n % 2 == 0:
                stored[idx_max] = n
                continue
            starts = {stored[k] for k in range(idx_min, idx_max + 1)}
            expected = {n + 1 - 2**m for m in range(1, depth + 1) if (n + 1) % 2**m == 0}
            assert starts == expected, (n, starts, expected)


@pytest.mark.parametrize("dense", [False, True])
def test_kernel_leaves_target_invariant(dense):
    """Chains started exactly from the target stay distributed as the target after one
    transition, each chain with its own tree: a non-Gaussian target (log Gamma draws)
    against scipy's loggamma, with a diagonal or a dense (correlated) metric."""
    a = torch.tensor([2.0, 0.5])

    def log_prob(y: torch.Tensor) -> torch.Tensor:
        return (a * y - torch.exp(y)).sum()

    chains = 4000
    g = torch.Generator().manual_seed(3)
    q = torch.log(torch._standard_gamma(a.expand(chains, 2).contiguous(), generator=g))
    potential = batched_log_prob(log_prob)
    if dense:
        inverse_mass = torch.tensor([[1.0, 0.6], [0.6, 2.0]]).expand(chains, 2, 2)
    else:
        inverse_mass = torch.tensor([0.7, 3.0]).expand(chains, 2)
    step_size = torch.rand(chains, generator=g) + 0.3  # per-chain step sizes
    value, gradient = potential(q)
    step = nuts_transition(potential, max_tree_depth=6)
    new, stats = step(
        State(q, value, gradient),
        step_size,
        inverse_mass,
        mass_factor_of(inverse_mass),
        torch.Generator().manual_seed(4),
    )
    assert (stats.tree_depth >= 1).all()
    assert len(set(stats.tree_depth.tolist())) > 1  # chains' trees differ
    assert not torch.equal(new.q, q)
    torch.testing.assert_close(new.log_prob, potential(new.q)[0])
    for i in range(2):
        target = st.loggamma(c=float(a[i]))
        assert st.kstest(new.q[:, i].numpy(), target.cdf).pvalue > 1e-3


def test_same_seed_same_draws_bit_for_bit():
    mean, cov = _gaussian()
    f = _log_prob(mean, cov)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        runs = [nuts(f, torch.zeros(D), num_samples=20, num_warmup=30, seed=s) for s in (5, 5, 6)]
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert torch.equal(runs[0].tree_depth, runs[1].tree_depth)
    assert not torch.equal(runs[0].samples, runs[2].samples)


def test_neals_funnel_flags_divergences():
    """The centred funnel v ~ N(0, 3^2), x_i ~ N(0, e^v): its neck defeats one step size,
    which shows as divergent transitions and a ConvergenceWarning that counts them."""

    def funnel(z: torch.Tensor) -> torch.Tensor:
        v, x = z[0], z[1:]
        return -(v**2) / 18.0 - 0.5 * (x**2).sum() * torch.exp(-v) - 0.5 * x.numel() * v

    with pytest.warns(ConvergenceWarning, match=r"\d+ of 400 transitions diverged"):
        result = nuts(
            funnel, torch.zeros(3), num_samples=100, num_warmup=150, seed=0, max_tree_depth=7
        )
    assert int(result.divergences.sum()) > 0
    assert result.divergences.dtype == torch.bool


def test_max_tree_depth_caps_the_trajectory():
    """A strongly correlated target with a diagonal metric needs long trajectories; a cap
    of 3 doublings is reached and never exceeded."""
    cov = torch.tensor([[1.0, 0.999], [0.999, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = nuts(
            _log_prob(torch.zeros(2), cov),
            torch.zeros(2),
            num_samples=20,
            num_warmup=60,
            seed=0,
            max_tree_depth=3,
        )
    assert result.tree_depth.max() == 3
    assert result.num_steps.max() <= 7


def test_outside_support_never_accepted():
    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[0] > 0, -0.5 * x[0] ** 2, -torch.inf)

    with pytest.warns(ConvergenceWarning, match="diverged"):
        result = nuts(log_prob, torch.tensor([1.0]), num_samples=500, num_warmup=150, seed=1)
    assert (result.samples > 0).all()
    z = (result.samples.mean() - math.sqrt(2 / math.pi)) / mcse_mean(result.samples)
    assert z.abs().max() < 4.5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_tree_depth": 0}, ValueError, "max_tree_depth"),
        ({"max_tree_depth": 2.5}, TypeError, "max_tree_depth"),
        ({"mass_matrix": "identity"}, ValueError, "mass_matrix"),
        ({"num_samples": 2}, ValueError, "num_samples"),
        ({"target_accept": 0.0}, ValueError, "target_accept"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    def never(x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("called before the arguments were checked")

    with pytest.raises(error, match=match):
        nuts(never, torch.zeros(2), **kwargs)


def test_summary_names_coordinates():
    mean, cov = _gaussian()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = nuts(_log_prob(mean, cov), torch.zeros(D), num_samples=10, num_warmup=10, seed=0)
    text = result.summary([f"theta{i}" for i in range(D)])
    assert all(f"theta{i}" in text for i in range(D))
    assert "x[0]" in result.summary()
