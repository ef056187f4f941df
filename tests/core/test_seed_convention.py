"""Every function in core, integrate and mc that draws follows one seed convention: an int
gives the same numbers on every call, a torch.Generator is drawn from (the same state gives
the same numbers, and it advances), None gives fresh entropy, and torch's global random
state never moves."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, MultivariateNormal, Normal

import probcalc as pc


def _normal():
    return Normal(torch.tensor(0.3), torch.tensor(1.2))


def _expectation(method, n_samples):
    def draw(seed):
        return pc.mc.expectation(lambda x: x**2, _normal(), n_samples, method=method, seed=seed)

    return draw


def _qmc_mvn(seed):
    dist = MultivariateNormal(torch.zeros(2), torch.eye(2))
    return pc.mc.expectation(lambda x: torch.exp(x.sum(1) / 4), dist, 64, method="qmc", seed=seed)


def _importance(seed):
    proposal = Normal(torch.tensor(0.0), torch.tensor(1.5))
    return pc.mc.importance_sampling(lambda x: -0.5 * x**2, proposal, 64, seed=seed)


def _score(seed):
    mu = torch.tensor(0.5, requires_grad=True)
    value = pc.mc.score_function_grad(lambda x: x**2, Normal(mu, torch.tensor(1.0)), 16, seed=seed)
    return value.detach(), torch.autograd.grad(value, mu)[0]


def _score_discrete(seed):
    p = torch.tensor(0.3, requires_grad=True)
    value = pc.mc.score_function_grad(lambda x: x - 0.3, Bernoulli(p), 16, seed=seed)
    return value.detach(), torch.autograd.grad(value, p)[0]


def _pathwise(seed):
    mu = torch.tensor(0.5, requires_grad=True)
    value = pc.mc.pathwise_grad(lambda x: x**2, Normal(mu, torch.tensor(1.0)), 16, seed=seed)
    return value.detach(), torch.autograd.grad(value, mu)[0]


def _cubature_qmc(seed):
    with pytest.warns(pc.ConvergenceWarning):  # a budget too small to converge: fast
        return pc.integrate.cubature(
            lambda x: torch.cos(x.sum(1)),
            [0.0, 0.0],
            [1.0, 1.0],
            rule="qmc",
            seed=seed,
            max_evals=2**12,
        )


def _log_integral_qmc(seed):
    with pytest.warns(pc.ConvergenceWarning):
        return pc.integrate.log_integral(
            lambda x: -(x**2).sum(1),
            [-2.0, -2.0],
            [2.0, 2.0],
            rule="qmc",
            seed=seed,
            max_evals=2**12,
        )


DRAWING = {
    "mc.expectation(mc)": _expectation("mc", 32),
    "mc.expectation(antithetic)": _expectation("antithetic", 32),
    "mc.expectation(qmc)": _expectation("qmc", 64),
    "mc.expectation(qmc, MultivariateNormal)": _qmc_mvn,
    "mc.importance_sampling": _importance,
    "mc.score_function_grad": _score,
    "mc.score_function_grad(Bernoulli)": _score_discrete,
    "mc.pathwise_grad": _pathwise,
    "integrate.cubature(qmc)": _cubature_qmc,
    "integrate.log_integral(qmc)": _log_integral_qmc,
}


def _numbers(result):
    """The tensors of a result, flattened, to compare two results exactly."""
    if isinstance(result, tuple):
        parts = result
    elif isinstance(result, pc.mc.ImportanceResult):
        parts = (result.log_evidence, result.stderr, result.log_weights, result.samples)
    elif isinstance(result, pc.core.Estimate):
        parts = (result.value, result.stderr)
    else:
        parts = (result.value, result.error)
    return torch.cat([torch.as_tensor(part).detach().reshape(-1) for part in parts])


def _same(first, second):
    return torch.equal(_numbers(first), _numbers(second))


@pytest.fixture(params=sorted(DRAWING), ids=sorted(DRAWING))
def draw(request):
    return DRAWING[request.param]


def test_an_int_seed_gives_the_same_numbers_and_another_int_other_numbers(draw):
    assert _same(draw(3), draw(3))
    assert not _same(draw(3), draw(4))


def test_seed_none_gives_fresh_numbers_on_every_call(draw):
    assert not _same(draw(None), draw(None))


def test_a_generator_is_drawn_from_and_advanced(draw):
    first = draw(torch.Generator().manual_seed(11))
    assert _same(draw(torch.Generator().manual_seed(11)), first)  # the same state
    source = torch.Generator().manual_seed(11)
    draw(source)
    assert not _same(draw(source), first)  # advanced by the first call


def test_the_global_random_state_does_not_move(draw):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    for seed in (None, 5, torch.Generator().manual_seed(5)):
        draw(seed)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("seed", [True, 1.5, "0", torch.tensor(3), -1, 2**64])
def test_a_bad_seed_is_named_before_the_function_is_called(seed):
    calls = []

    def f(x):
        calls.append(1)
        return x**2

    for call in (
        lambda: pc.mc.expectation(f, _normal(), 32, seed=seed),
        lambda: pc.mc.importance_sampling(lambda x: f(x) * 0, _normal(), 32, seed=seed),
        lambda: pc.mc.pathwise_grad(f, _normal(), 8, seed=seed),
        lambda: pc.mc.score_function_grad(f, _normal(), 8, seed=seed),
        lambda: pc.integrate.cubature(lambda x: f(x).sum(1), [0.0], [1.0], rule="qmc", seed=seed),
        lambda: pc.integrate.log_integral(lambda x: -f(x), 0.0, 1.0, seed=seed),
    ):
        with pytest.raises((TypeError, ValueError), match="seed"):
            call()
    assert not calls


def test_a_numpy_integer_seed_is_an_int_seed():
    np = pytest.importorskip("numpy")
    assert _same(_importance(np.int64(7)), _importance(7))
    assert _same(_cubature_qmc(np.uint32(7)), _cubature_qmc(7))


def test_seed_none_still_estimates_what_it_should():
    """Fresh entropy is a seed like any other: E[X²] = μ² + σ² within 5 standard errors."""
    estimate = pc.mc.expectation(lambda x: x**2, _normal(), 4096, seed=None)
    assert abs(float(estimate.value) - (0.3**2 + 1.2**2)) < 5 * float(estimate.stderr)
    assert math.isfinite(float(estimate.stderr))
