"""PointMass and the pathwise estimator at it: the deterministic gradient ∇_φ f(loc(φ))
against finite differences; batched squashed Gaussians against quadrature."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

import probcalc as pc


def test_a_point_mass_draws_its_location_with_its_gradient():
    loc = torch.tensor([[0.3, -1.2], [2.0, 0.5]], requires_grad=True)
    dist = pc.mc.PointMass(loc, event_dim=1)
    assert dist.batch_shape == (2,) and dist.event_shape == (2,)
    draws = dist.rsample((3,))
    assert draws.shape == (3, 2, 2) and torch.equal(draws[1], loc)
    draws.sum().backward()
    assert torch.equal(loc.grad, torch.full_like(loc, 3.0))
    assert torch.equal(dist.log_prob(loc.detach()), torch.zeros(2))
    other = loc.detach().clone()
    other[1, 0] += 1e-3
    assert dist.log_prob(other).tolist() == [0.0, -math.inf]
    assert torch.equal(dist.variance, torch.zeros(2, 2)) and torch.equal(dist.mean, loc)
    assert dist.entropy().shape == (2,)
    assert pc.mc.PointMass(torch.tensor(1.5)).expand((4,)).sample().tolist() == [1.5] * 4


def test_bad_locations_are_named():
    with pytest.raises(TypeError, match="floating-point"):
        pc.mc.PointMass(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="floating-point"):
        pc.mc.PointMass([1.0, 2.0])
    with pytest.raises(ValueError, match="event_dim"):
        pc.mc.PointMass(torch.zeros(3), event_dim=2)


def test_the_pathwise_estimate_at_a_point_mass_is_the_deterministic_gradient():
    """pathwise_grad(f, PointMass(g(φ)), 1) has the value f(g(φ)) and the gradient of
    φ -> f(g(φ)), checked by central differences (the deterministic policy gradient)."""
    phi = torch.tensor([0.4, -0.7, 1.1], dtype=torch.float64, requires_grad=True)

    def location(p):
        return torch.stack([torch.tanh(p[0] + p[1]), p[2] ** 2 - p[0]])

    def f(x):  # (1, 2) -> (1,)
        return torch.sin(x[:, 0]) * x[:, 1] + x[:, 1] ** 3

    estimate = pc.mc.pathwise_grad(f, pc.mc.PointMass(location(phi), event_dim=1), 1, seed=0)
    (gradient,) = torch.autograd.grad(estimate, phi)

    def value(p):
        return float(f(location(torch.as_tensor(p))[None]))

    step = 1e-6
    expected = [
        (value(phi.detach().numpy() + step * e) - value(phi.detach().numpy() - step * e))
        / (2 * step)
        for e in np.eye(3)
    ]
    assert estimate.item() == pytest.approx(value(phi.detach().numpy()), rel=1e-12)
    np.testing.assert_allclose(gradient.numpy(), expected, rtol=1e-7)


def test_one_draw_per_state_of_a_batched_squashed_gaussian_is_unbiased():
    """d/dμ E[tanh(μ + σ ε)] for four states (one draw each per call, averaged over 4,000
    calls) against quadrature of d/dμ: E[(1 - tanh²(μ + σ ε))], within 5 standard errors."""
    mu = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.3, 1.0, 0.7, 0.5], dtype=torch.float64)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mu, sigma), [torch.distributions.TanhTransform(cache_size=1)]
    )
    generator = torch.Generator().manual_seed(0)
    grads = []
    for _ in range(4_000):
        estimate = pc.mc.pathwise_grad(lambda a: a.sum(-1), dist, 1, seed=generator)
        grads.append(torch.autograd.grad(estimate, mu)[0])
    grads = torch.stack(grads).numpy()
    for i in range(4):
        exact = integrate.quad(
            lambda e, i=i: (
                (1 - math.tanh(mu[i].item() + sigma[i].item() * e) ** 2)
                * math.exp(-0.5 * e * e)
                / math.sqrt(2 * math.pi)
            ),
            -math.inf,
            math.inf,
        )[0]
        error = grads[:, i].std() / math.sqrt(len(grads))
        assert abs(grads[:, i].mean() - exact) < 5 * error
