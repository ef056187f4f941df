"""MultivariateStudentT against scipy.stats.multivariate_t."""

import numpy as np
import pytest
import scipy.stats
import torch

from probcalc.mc.proposals import MultivariateStudentT


def test_log_prob_matches_scipy_and_samples_have_the_right_covariance():
    rng = np.random.default_rng(0)
    loc = torch.as_tensor(rng.normal(size=3))
    A = torch.as_tensor(rng.normal(size=(3, 3)))
    cov = A @ A.T + torch.eye(3)
    dist = MultivariateStudentT(5.0, loc, torch.linalg.cholesky(cov))
    x = torch.as_tensor(rng.normal(size=(10, 3)) * 2)
    reference = scipy.stats.multivariate_t(loc=loc.numpy(), shape=cov.numpy(), df=5.0)
    np.testing.assert_allclose(dist.log_prob(x).numpy(), reference.logpdf(x.numpy()), rtol=1e-12)
    torch.manual_seed(0)
    samples = dist.sample((400_000,))
    # the covariance of t_ν is ν/(ν-2) Σ; 5% is generous for 400,000 draws (heavy tails)
    assert torch.allclose(torch.cov(samples.T), 5 / 3 * cov, rtol=0.05, atol=0.05)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shape"):
        MultivariateStudentT(4.0, torch.zeros(3), torch.eye(2))
