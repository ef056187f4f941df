"""laplace.fit checks that its Gaussian fits the posterior: along the flattest axes, at one
standard deviation from the mode, the log joint must fall by about 1/2, as the Gaussian's
does. Where it does not (vanishing curvature, a flat top, a support that ends nearby),
fit warns with the figures instead of returning a confident, meaningless Gaussian."""

import math

import pytest
import torch

import probcalc as pc
from probcalc.core.errors import ConvergenceWarning

F64 = torch.float64


def _fit_expecting_the_mismatch(log_joint, theta0, **options):
    with pytest.warns(ConvergenceWarning) as record:
        laplace = pc.laplace.fit(log_joint, torch.as_tensor(theta0, dtype=F64), **options)
    messages = [str(w.message) for w in record]
    assert any("does not fit the posterior" in m for m in messages), messages
    return laplace


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("structure", ["full", "diag"])
def test_vanishing_curvature_at_the_mode_warns_and_quadrature_still_finds_the_evidence(
    d, structure
):
    """exp(-Σ t⁴): the Hessian vanishes at the mode, so Newton stops near it with a tiny
    curvature and a huge standard deviation; ∫ exp(-t⁴) dt = 2 Γ(5/4) per coordinate."""

    def log_joint(t):
        return -(t**4).sum()

    laplace = _fit_expecting_the_mismatch(log_joint, [1.0] * d, structure=structure)
    assert float(laplace.log_density_drops.min()) < -5  # far steeper than the Gaussian
    if d == 1:
        exact = math.log(2 * math.gamma(1.25))
        result = pc.evidence(log_joint, method="quadrature", laplace=laplace)
        assert abs(float(result.log_evidence) - exact) < 1e-6
        assert abs(float(laplace.log_evidence) - exact) > 1  # what the check warns about


def test_a_support_that_ends_within_one_standard_deviation_warns_unless_constrained():
    """Gamma(2, 1) on λ: mode 1, standard deviation 1, and log p = -inf at λ = 0."""

    def log_joint(theta):
        return torch.where(theta > 0, torch.log(theta.abs()) - theta, -torch.inf).sum()

    laplace = _fit_expecting_the_mismatch(log_joint, [2.0])
    assert not bool(torch.isfinite(laplace.log_density_drops).all())
    constrained = pc.laplace.fit(log_joint, torch.tensor([2.0], dtype=F64), constraints="positive")
    assert bool(torch.isfinite(constrained.log_density_drops).all())


def test_a_flat_top_warns():
    """log p = -t⁶/6 - 10⁻³ t²/2 near its mode is flatter than its own curvature says."""

    def log_joint(t):
        return -(t**6).sum() / 6 - 1e-3 * (t**2).sum() / 2

    laplace = _fit_expecting_the_mismatch(log_joint, [1.0])
    assert float(laplace.log_density_drops.min()) < -5


def test_the_drops_are_exact_where_the_gaussian_is_and_close_where_the_tails_are_heavy():
    """A Gaussian drops by exactly 1/2; a Cauchy posterior, log p = -log(1 + t²) (H = 2 at
    0, one standard deviation 1/√2), by log(3/2) = 0.405: near enough, so no warning."""
    A = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]], dtype=F64)

    def gaussian(t):
        return -0.5 * t @ A @ t

    laplace = pc.laplace.fit(gaussian, torch.ones(3, dtype=F64))
    assert torch.allclose(laplace.log_density_drops, torch.full((6,), -0.5, dtype=F64), atol=1e-10)

    def cauchy(t):
        return -torch.log1p(t**2).sum()

    laplace = pc.laplace.fit(cauchy, torch.tensor([0.3], dtype=F64))
    expected = torch.full((2,), -math.log(1.5), dtype=F64)
    assert torch.allclose(laplace.log_density_drops, expected, atol=1e-8)


def test_lowrank_is_judged_by_the_log_joints_own_curvature_not_its_truncation():
    """A lowrank structure drops eigenvalues on purpose; on a Gaussian, steps along the
    coordinate axes use the exact curvature v'∇²v and so still drop by exactly 1/2, while
    a quartic likelihood is flagged."""
    scales = torch.linspace(1.0, 5.0, 8, dtype=F64)

    def quadratic(t):
        return -0.5 * (scales * t**2).sum()

    low = pc.laplace.fit(
        quadratic, torch.ones(8, dtype=F64), prior_precision=1.0, structure="lowrank", rank=2
    )
    assert torch.allclose(
        low.log_density_drops, torch.full_like(low.log_density_drops, -0.5), atol=1e-10
    )

    def quartic(t):
        return -(scales * t**4).sum()

    laplace = _fit_expecting_the_mismatch(
        quartic, torch.ones(8), prior_precision=1e-6, structure="lowrank", rank=2
    )
    assert float(laplace.log_density_drops.min()) < -5
