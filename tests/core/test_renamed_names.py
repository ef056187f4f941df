"""The dialect's renames in core and mc: each new name works, and each old one still works
for a release with a DeprecationWarning that names its replacement and gives the same
value."""

import warnings

import pytest
import torch
from torch.distributions import Normal

import probcalc as pc


def _quadratic(x):
    return ((x - torch.tensor([1.0, -2.0])) ** 2).sum() + (x[0] * x[1]) ** 2


@pytest.fixture(scope="module")
def optimized():
    return pc.minimize(_quadratic, torch.zeros(2), method="newton")


@pytest.mark.parametrize(("old", "new"), [("nfev", "n_evals"), ("success", "converged")])
def test_optimize_result_fields(optimized, old, new):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        value = getattr(optimized, new)
    with pytest.warns(
        DeprecationWarning, match=rf"OptimizeResult\.{old} is deprecated: use \.{new}"
    ):
        assert getattr(optimized, old) == value
    assert optimized.converged is True and optimized.n_evals >= optimized.nit + 1


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_n_evals_counts_the_objectives_calls(method):
    calls = []

    def counted(x):
        calls.append(1)
        return _quadratic(x)

    options = {"lr": 0.05} if method == "adam" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pc.ConvergenceWarning)
        result = pc.minimize(counted, torch.zeros(2), method=method, max_iter=30, options=options)
    assert result.n_evals == len(calls) > 0


def _estimate():
    return pc.mc.expectation(
        lambda x: x**2, Normal(torch.tensor(0.0), torch.tensor(1.0)), 64, seed=0
    )


def _importance_estimate():
    proposal = Normal(torch.tensor(0.0), torch.tensor(1.5))
    result = pc.mc.importance_sampling(lambda x: -0.5 * x**2, proposal, 32, seed=0)
    return result.expectation(lambda x: x**2)


@pytest.mark.parametrize("make", [_estimate, _importance_estimate])
def test_estimate_n_is_n_evals(make):
    estimate = make()
    assert estimate.n_evals in (64, 32)
    with pytest.warns(DeprecationWarning, match=r"Estimate\.n is deprecated: use \.n_evals"):
        assert estimate.n == estimate.n_evals


def test_importance_result_counts_its_evaluations():
    calls = []

    def log_target(x):
        calls.append(len(x))
        return -0.5 * x**2

    proposal = Normal(torch.tensor(0.0), torch.tensor(1.5))
    result = pc.mc.importance_sampling(log_target, proposal, 40, seed=0)
    assert result.n_evals == sum(calls) == 40


def _normal():
    return Normal(torch.tensor(0.4), torch.tensor(1.1))


def _grad_of(estimator):
    def run(**count):
        mu = torch.tensor(0.4, requires_grad=True)
        value = estimator(lambda x: x**2, Normal(mu, torch.tensor(1.1)), seed=2, **count)
        return torch.stack([value.detach(), torch.autograd.grad(value, mu)[0]])

    return run


SAMPLE_COUNTS = {
    "expectation": lambda **count: (
        pc.mc.expectation(lambda x: x**2, _normal(), seed=2, **count).value
    ),
    "expectation(qmc)": lambda **count: (
        pc.mc.expectation(lambda x: x**2, _normal(), method="qmc", seed=2, **count).value
    ),
    "importance_sampling": lambda **count: (
        pc.mc.importance_sampling(lambda x: -0.5 * x**2, _normal(), seed=2, **count).log_evidence
    ),
    "score_function_grad": _grad_of(pc.mc.score_function_grad),
    "pathwise_grad": _grad_of(pc.mc.pathwise_grad),
}


@pytest.mark.parametrize("name", sorted(SAMPLE_COUNTS))
def test_n_samples_is_the_sample_count_and_n_still_works(name):
    run = SAMPLE_COUNTS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = run(n_samples=64)
    with pytest.warns(DeprecationWarning, match=r"\(n=\.\.\.\) is deprecated: use n_samples="):
        old = run(n=64)
    assert torch.equal(old, new)
    assert not torch.equal(run(n_samples=128), new)  # the count is used
    with pytest.raises(TypeError, match="both 'n' and its new name 'n_samples'"):
        run(n=64, n_samples=64)


def test_a_sample_count_passed_by_position_still_works():
    by_position = pc.mc.expectation(lambda x: x**2, _normal(), 64, seed=2)
    by_keyword = pc.mc.expectation(lambda x: x**2, _normal(), n_samples=64, seed=2)
    assert torch.equal(by_position.value, by_keyword.value)


@pytest.mark.parametrize("bad", [1, 1.5, "64", None])
def test_a_bad_sample_count_is_named_n_samples(bad):
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        pc.mc.expectation(lambda x: x**2, _normal(), bad)
