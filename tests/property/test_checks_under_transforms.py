"""The input checks hold for data and stay out of the way of transforms and optimizers.

The surrogate losses check that their data is finite, but not a tensor being
differentiated; the likelihoods propagate a parameter that overflowed at an optimizer's
trial point (the optimizer backtracks); no check of values runs on tensors batched by
vmap, where data-dependent control flow is not allowed. Each test compares against an
independent computation.
"""

import math

import pytest
import torch
from torch.func import vmap

import probcalc as pc


def test_a_surrogate_rejects_non_finite_data_but_not_a_differentiated_log_prob():
    log_prob = torch.tensor([-1.0, -0.5])
    with pytest.raises(ValueError, match="weight must be finite"):
        pc.core.score_function_surrogate(log_prob, torch.tensor([math.nan, 1.0]))
    # a log_prob that requires grad, or that torch.func.grad traces, is not checked
    traced = torch.tensor([math.nan, -0.5], requires_grad=True)
    weight = torch.tensor([2.0, 1.0])
    value = pc.core.score_function_surrogate(traced, weight)
    assert math.isnan(float(value.detach()))
    gradient = pc.grad(lambda lp: pc.core.score_function_surrogate(lp, weight))(
        torch.tensor([math.nan, -0.5])
    )
    torch.testing.assert_close(gradient, weight / 2, rtol=0.0, atol=0.0)


def test_a_likelihood_propagates_a_parameter_that_overflowed():
    # exp(log_rate) = inf: the loss is inf, as the formula says, and no error is raised
    y = torch.tensor([0.0, 3.0])
    loss = pc.core.poisson_nll(y, torch.tensor([800.0, 0.0]))
    assert loss == math.inf
    # an optimizer's trial point far out: minimize backtracks from the infinite value
    x = torch.linspace(0.0, 1.0, 20)
    counts = torch.poisson(torch.exp(1.0 + 2.0 * x), generator=torch.Generator().manual_seed(0))
    seen = []

    def nll(theta):
        value = pc.core.poisson_nll(counts, theta[0] + theta[1] * x)
        if not torch._C._functorch.is_functorch_wrapped_tensor(value):
            seen.append(bool(torch.isfinite(value)))
        return value

    result = pc.minimize(nll, torch.tensor([-10.0, 0.0]), method="newton")
    assert not all(seen)  # some trial points overflowed
    assert result.converged
    rate = torch.exp(result.x[0] + result.x[1] * x)  # the score X'(y - rate) vanishes
    score = torch.stack([(counts - rate).sum(), ((counts - rate) * x).sum()])
    assert float(score.abs().max()) < 1e-6 * float(counts.sum())


def test_losses_and_hessian_vector_products_run_under_vmap():
    y = torch.tensor([0.5, 1.0, -0.3])
    means = torch.randn(4, 3)
    batched = vmap(lambda m: pc.core.gaussian_nll(y, m, 1.5))(means)
    looped = torch.stack([pc.core.gaussian_nll(y, m, 1.5) for m in means])
    torch.testing.assert_close(batched, looped, rtol=1e-14, atol=0.0)

    def f(x):
        return (x**3).sum() + x[0] * x[1]

    x = torch.tensor([1.0, 2.0, -0.5])
    H = pc.hessian(f)(x)
    directions = torch.randn(5, 3)
    products = vmap(pc.hvp_operator(f, x))(directions)
    torch.testing.assert_close(products, directions @ H.T, rtol=1e-12, atol=1e-12)


def test_transforms_check_their_arguments_inside_vmap_without_touching_values():
    # the argument checks read dtypes and shapes only, so they hold for batched tensors
    points = torch.randn(6, 2)
    gradients = vmap(pc.grad(lambda x: (x**2).sum() * x[0]))(points)
    expected = torch.stack(
        [2 * points[:, 0] * points[:, 0] + (points**2).sum(1), 2 * points[:, 1] * points[:, 0]],
        dim=1,
    )
    torch.testing.assert_close(gradients, expected, rtol=1e-12, atol=1e-12)
