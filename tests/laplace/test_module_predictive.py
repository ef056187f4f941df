"""ModuleLaplace's classification predictive: the logits' Gaussian against a dense posterior
built here with numpy, and each link approximation of E[softmax(f)] against the exact
two-class integral (scipy.integrate.quad), numpy Monte Carlo under the same Gaussian, the
closed-form Laplace map of a Dirichlet, and the invariances of softmax."""

import functools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
import torch
from torch import nn
from torch.func import functional_call

import probcalc as pc
from probcalc.laplace.module import expected_softmax

ALPHA = 1.0
# sup over all means and variances of |E[σ(d)] - σ(μ / sqrt(1 + π/8 v))|, d ~ N(μ, v): the
# v -> ∞ limit sup_t |Φ(t) - σ(t sqrt(8/π))| (checked below with scipy)
PROBIT_BOUND = 0.0177
# the multiclass probit's error against Monte Carlo, measured on 3- and 10-class networks
# and random Gaussians, stayed below 0.041 x the largest standard deviation of a logit
# difference; asserted with a margin
MULTICLASS_FACTOR = 0.05


@functools.cache
def _classifier(n_classes, seed, hidden=8, n=120, p=2):
    """A tanh MLP trained to its MAP under N(0, 1/α) on Gaussian blobs, and its data (once
    per process: no test changes the model)."""
    generator = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(n_classes, p, generator=generator)
    y = torch.randint(0, n_classes, (n,), generator=generator)
    X = centres[y] + torch.randn(n, p, generator=generator)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(p, hidden), nn.Tanh(), nn.Linear(hidden, n_classes))
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        penalty = sum((q**2).sum() for q in model.parameters())
        loss = nn.functional.cross_entropy(model(X), y, reduction="sum") + 0.5 * ALPHA * penalty
        loss.backward()
        return loss

    optimizer.step(closure)
    # points among the data and far from it, where the logits' variances are large
    X_new = torch.cat(
        [
            X[:4],
            3 * torch.randn(4, p, generator=generator),
            10 * torch.randn(4, p, generator=generator),
        ]
    )
    return model, X, y, X_new


def _dense_moments(model, X, y, X_new, structure="full", rank=None):
    """μ = f(X_new) and J (G̃ + αI)⁻¹ J' by numpy from a dense GGN G (G̃: G itself, its
    diagonal, or its top-rank eigenpairs; last_layer: the last Linear's parameters only)."""
    names = [name for name, _ in model.named_parameters()]
    if structure == "last_layer":
        names = names[-2:]
    params = dict(model.named_parameters())
    shapes = [params[name].shape for name in names]
    flat = torch.cat([params[name].detach().reshape(-1) for name in names])

    def outputs(theta, inputs):
        pieces, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            pieces[name] = theta[start : start + shape.numel()].reshape(shape)
            start += shape.numel()
        return functional_call(model, pieces, (inputs,))

    def jacobian(inputs):
        return torch.autograd.functional.jacobian(
            lambda t: outputs(t, inputs), flat, vectorize=True
        ).numpy()

    J, logits = jacobian(X), outputs(flat, X).detach().numpy()
    probs = scipy.special.softmax(logits, axis=1)
    lam = np.einsum("nc,ck->nck", probs, np.eye(probs.shape[1])) - np.einsum(
        "nc,nk->nck", probs, probs
    )
    G = np.einsum("ncd,nck,nke->de", J, lam, J)
    d = G.shape[0]
    if structure == "diag":
        covariance = np.diag(1 / (np.diag(G) + ALPHA))
    elif structure == "lowrank":
        values, vectors = np.linalg.eigh(G)
        values, vectors = values[-rank:], vectors[:, -rank:]
        covariance = (vectors / (values + ALPHA)) @ vectors.T + (
            np.eye(d) - vectors @ vectors.T
        ) / ALPHA
    else:
        covariance = np.linalg.inv(G + ALPHA * np.eye(d))
    J_new = jacobian(X_new)
    mean = outputs(flat, X_new).detach().numpy()
    return mean, np.einsum("mcd,de,mke->mck", J_new, covariance, J_new)


def _monte_carlo(mean, covariance, n=40_000, seed=0):
    """E[softmax(f)] and its standard error by numpy draws f ~ N(μ, Σ), row by row."""
    rng = np.random.default_rng(seed)
    values, errors = [], []
    for mu, sigma in zip(mean, covariance, strict=True):
        draws = rng.multivariate_normal(mu, sigma, size=n, method="eigh")
        probs = scipy.special.softmax(draws, axis=1)
        values.append(probs.mean(axis=0))
        errors.append(probs.std(axis=0) / math.sqrt(n))
    return np.array(values), np.array(errors)


def _exact_two_class(delta, variance):
    """E[σ(d)], d ~ N(δ, v), and Var[σ(d)] by adaptive quadrature."""
    sd = math.sqrt(variance)

    def moment(power):
        def integrand(x):
            return scipy.special.expit(x) ** power * scipy.stats.norm.pdf(x, delta, sd)

        lower, upper = delta - 40 * sd, delta + 40 * sd
        return scipy.integrate.quad(integrand, lower, upper, points=[0.0], limit=500, epsabs=1e-13)[
            0
        ]

    first = moment(1)
    return first, moment(2) - first**2


def _difference_sd(covariance):
    variance = np.diagonal(covariance, axis1=1, axis2=2)
    differences = variance[:, :, None] + variance[:, None, :] - 2 * covariance
    return np.sqrt(np.clip(differences, 0, None).max(axis=(1, 2)))


def test_the_probit_bound_is_the_supremum_of_the_normal_logistic_gap():
    t = np.linspace(0, 6, 600_001)
    gap = np.abs(scipy.stats.norm.cdf(t) - scipy.special.expit(t * math.sqrt(8 / math.pi)))
    assert gap.max() == pytest.approx(PROBIT_BOUND, abs=1e-4)
    # and no finite variance does worse (a grid over means and standard deviations)
    worst = max(
        abs(
            _exact_two_class(mu, sd**2)[0]
            - scipy.special.expit(mu / math.sqrt(1 + math.pi / 8 * sd**2))
        )
        for mu in (0.5, 5.0, 36.0)
        for sd in (0.5, 4.0, 20.0)
    )
    assert worst <= PROBIT_BOUND


@pytest.mark.parametrize(
    ("structure", "rank"), [("full", None), ("diag", None), ("lowrank", 5), ("last_layer", None)]
)
def test_output_moments_are_the_dense_linearized_gaussian(structure, rank):
    model, X, y, X_new = _classifier(3, seed=1)
    la = pc.laplace.fit_module(
        model,
        (X, y),
        likelihood="classification",
        prior_precision=ALPHA,
        structure=structure,
        rank=rank,
    )
    mean, covariance = (value.detach().numpy() for value in la.output_moments(X_new))
    mean_ref, covariance_ref = _dense_moments(model, X, y, X_new, structure, rank)
    assert np.allclose(mean, mean_ref, rtol=1e-10, atol=1e-10)
    scale = np.abs(covariance_ref).max()
    assert np.allclose(covariance, covariance_ref, rtol=1e-7, atol=1e-9 * scale)


@pytest.mark.parametrize("seed", [0, 4])
def test_two_class_probit_is_within_its_bound_of_the_exact_predictive(seed):
    """The per-logit probit softmax(μ / sqrt(1 + π/8 diag Σ)) ignores that softmax sees
    only f_1 - f_0, whose variance is Σ00 + Σ11 - 2Σ01: far from the data of these trained
    networks the logits are anti-correlated and it is too confident (with a positive
    correlation it is not confident enough). The probit of the difference is exact up to
    the probit bound."""
    model, X, y, X_new = _classifier(2, seed=seed)
    la = pc.laplace.fit_module(model, (X, y), likelihood="classification", prior_precision=ALPHA)
    probs = la.predictive(X_new).mean.numpy()
    mean, covariance = _dense_moments(model, X, y, X_new)
    delta = mean[:, 1] - mean[:, 0]
    variance = covariance[:, 0, 0] + covariance[:, 1, 1] - 2 * covariance[:, 0, 1]
    exact = np.array([_exact_two_class(a, b)[0] for a, b in zip(delta, variance, strict=True)])
    assert np.abs(probs[:, 1] - exact).max() <= PROBIT_BOUND
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-14)
    # the set-up separates the two: the per-logit probit misses by 6x the bound
    per_logit = scipy.special.softmax(
        mean / np.sqrt(1 + math.pi / 8 * np.diagonal(covariance, axis1=1, axis2=2)), axis=1
    )
    assert np.abs(per_logit[:, 1] - exact).max() > 3 * PROBIT_BOUND


def test_mc_link_matches_the_exact_two_class_predictive_within_standard_errors():
    model, X, y, X_new = _classifier(2, seed=3)
    la = pc.laplace.fit_module(model, (X, y), likelihood="classification", prior_precision=ALPHA)
    n = 20_000
    probs = la.predictive(X_new, link_approx="mc", n_samples=n, seed=0).mean.numpy()
    mean, covariance = _dense_moments(model, X, y, X_new)
    delta = mean[:, 1] - mean[:, 0]
    variance = covariance[:, 0, 0] + covariance[:, 1, 1] - 2 * covariance[:, 0, 1]
    exact = np.array([_exact_two_class(a, b) for a, b in zip(delta, variance, strict=True)])
    stderr = np.sqrt(exact[:, 1] / n)
    assert np.all(np.abs(probs[:, 1] - exact[:, 0]) <= 5 * stderr + 1e-12)
    # the same seed gives the same numbers; a Generator advances
    again = la.predictive(X_new, link_approx="mc", n_samples=n, seed=0).mean.numpy()
    assert np.array_equal(probs, again)
    generator = torch.Generator().manual_seed(0)
    first = la.predictive(X_new[:2], link_approx="mc", n_samples=50, seed=generator)
    second = la.predictive(X_new[:2], link_approx="mc", n_samples=50, seed=generator)
    assert not torch.equal(first.mean, second.mean)


@pytest.mark.parametrize(("n_classes", "seed"), [(3, 0), (3, 1), (10, 0), (10, 2)])
def test_multiclass_links_against_monte_carlo(n_classes, seed):
    model, X, y, X_new = _classifier(n_classes, seed=seed)
    la = pc.laplace.fit_module(model, (X, y), likelihood="classification", prior_precision=ALPHA)
    mean, covariance = _dense_moments(model, X, y, X_new)
    reference, stderr = _monte_carlo(mean, covariance, seed=seed)
    probit = la.predictive(X_new).mean.numpy()
    bound = MULTICLASS_FACTOR * _difference_sd(covariance)[:, None] + 5 * stderr
    assert np.all(np.abs(probit - reference) <= bound)
    n = 20_000
    mc = la.predictive(X_new, link_approx="mc", n_samples=n, seed=seed + 1).mean.numpy()
    # both estimates' standard errors: the reference's, and sqrt(p(1-p)/n) for ours
    mc_stderr = np.sqrt(stderr**2 + reference * (1 - reference) / n)
    assert np.all(np.abs(mc - reference) <= 5 * mc_stderr + 1e-12)


@pytest.mark.parametrize("n_classes", [3, 5, 10])
def test_bridge_inverts_the_laplace_map_of_a_dirichlet(n_classes):
    """A Dirichlet(α) in the softmax basis has the Laplace approximation μ_k = log α_k -
    mean log α, Σ = diag(1/α) - (1/α 1' + 1 1/α')/K + Σ_l (1/α_l) / K² (Hobbhahn et al.
    2022); the bridge maps it back: its predictive is the Dirichlet mean α / Σα. Monte Carlo
    under that Gaussian differs from it by the Laplace map's own error, below 1/Σα here."""
    generator = torch.Generator().manual_seed(n_classes)
    for scale in (10.0, 100.0):
        alpha = scale * (0.5 + torch.rand(6, n_classes, generator=generator))
        inverse = 1 / alpha
        mean = alpha.log() - alpha.log().mean(dim=1, keepdim=True)
        covariance = (
            torch.diag_embed(inverse)
            - (inverse[:, :, None] + inverse[:, None, :]) / n_classes
            + inverse.sum(dim=1)[:, None, None] / n_classes**2
        )
        bridge = expected_softmax(mean, covariance, link_approx="bridge")
        dirichlet_mean = alpha / alpha.sum(dim=1, keepdim=True)
        assert torch.allclose(bridge, dirichlet_mean, rtol=1e-12, atol=1e-14)
        reference, stderr = _monte_carlo(mean.numpy(), covariance.numpy(), n=20_000)
        bound = 1 / alpha.sum(dim=1, keepdim=True).numpy() + 5 * stderr
        assert np.all(np.abs(bridge.numpy() - reference) <= bound)


def test_links_depend_only_on_logit_differences():
    """softmax(f + t 1) = softmax(f): a common shift of the logits with any mean and
    variance must not change the predictive (the per-logit probit fails this)."""
    generator = torch.Generator().manual_seed(0)
    for n_classes in (2, 3, 10):
        mean = 3 * torch.randn(5, n_classes, generator=generator)
        root = torch.randn(5, n_classes, n_classes, generator=generator)
        covariance = root @ root.transpose(1, 2)
        ones = torch.ones(n_classes, n_classes)
        shifted_mean = mean + 7.0 * torch.randn(5, 1, generator=generator)
        for link in ("probit", "bridge"):
            base = expected_softmax(mean, covariance, link_approx=link)
            for spread in (0.0, 1.0, 100.0):
                moved = expected_softmax(shifted_mean, covariance + spread * ones, link_approx=link)
                assert torch.allclose(moved, base, rtol=1e-9, atol=1e-12)


def test_zero_covariance_gives_the_softmax_of_the_mean():
    generator = torch.Generator().manual_seed(1)
    for n_classes in (2, 3, 10):
        mean = 4 * torch.randn(6, n_classes, generator=generator)
        zero = torch.zeros(6, n_classes, n_classes)
        softmax = scipy.special.softmax(mean.numpy(), axis=1)
        for link in ("probit", "bridge", "mc"):
            probs = expected_softmax(mean, zero, link_approx=link, n_samples=3, seed=0)
            assert np.allclose(probs.numpy(), softmax, rtol=1e-13, atol=1e-15), link


def test_probit_of_two_classes_among_negligible_ones_is_the_two_class_probit():
    """Classes whose logits sit 300 below the others' with no variance drop out: the first
    two probabilities are the binary probit of the difference, within the probit bound of
    the exact two-class integral."""
    mean = torch.tensor([[1.5, -2.0, -300.0, -301.0], [0.0, 3.0, -300.0, -300.0]])
    covariance = torch.zeros(2, 4, 4)
    covariance[:, :2, :2] = torch.tensor([[[9.0, -7.0], [-7.0, 8.0]], [[30.0, 20.0], [20.0, 25.0]]])
    probs = expected_softmax(mean, covariance).numpy()
    for row in range(2):
        delta = float(mean[row, 1] - mean[row, 0])
        c = covariance[row].numpy()
        variance = c[0, 0] + c[1, 1] - 2 * c[0, 1]
        probit = scipy.special.expit(delta / math.sqrt(1 + math.pi / 8 * variance))
        assert probs[row, 1] == pytest.approx(probit, abs=1e-12)
        assert abs(probs[row, 1] - _exact_two_class(delta, variance)[0]) <= PROBIT_BOUND
        assert probs[row, 2:].max() < 1e-20


def test_bridge_mean_ignores_the_scale_of_the_covariance():
    generator = torch.Generator().manual_seed(2)
    for n_classes in (2, 4):
        mean = 2 * torch.randn(4, n_classes, generator=generator)
        root = torch.randn(4, n_classes, n_classes, generator=generator)
        covariance = root @ root.transpose(1, 2)
        base = expected_softmax(mean, covariance, link_approx="bridge")
        for scale in (1e-6, 1e3):
            scaled = expected_softmax(mean, scale * covariance, link_approx="bridge")
            assert torch.allclose(scaled, base, rtol=1e-10, atol=1e-14)
    # for two classes it is softmax(μ) whatever the variance
    mean = torch.tensor([[0.3, 1.9]])
    covariance = torch.tensor([[[50.0, -40.0], [-40.0, 45.0]]])
    bridge = expected_softmax(mean, covariance, link_approx="bridge")
    assert torch.allclose(bridge, torch.softmax(mean, dim=1), rtol=1e-13)


@pytest.mark.parametrize("link", ["probit", "bridge", "mc"])
def test_probabilities_lie_in_the_unit_interval_and_sum_to_one(link):
    generator = torch.Generator().manual_seed(4)
    for n_classes in (2, 3, 10):
        for mean_scale, covariance_scale in ((1.0, 1e-12), (30.0, 1.0), (1e3, 1e6)):
            mean = mean_scale * torch.randn(8, n_classes, generator=generator)
            root = torch.randn(8, n_classes, n_classes, generator=generator)
            covariance = covariance_scale * root @ root.transpose(1, 2)
            probs = expected_softmax(mean, covariance, link_approx=link, n_samples=200, seed=0)
            assert torch.isfinite(probs).all()
            assert bool((probs >= 0).all()) and bool((probs <= 1).all())
            assert torch.allclose(probs.sum(dim=1), torch.ones(8), atol=1e-12)


def test_bad_input_is_named_before_work_starts():
    model, X, y, X_new = _classifier(3, seed=5)
    la = pc.laplace.fit_module(model, (X, y), likelihood="classification", prior_precision=ALPHA)
    with pytest.raises(ValueError, match="'probit', 'bridge', 'mc'"):
        la.predictive(X_new, link_approx="sampling")
    with pytest.raises(ValueError, match="n_samples"):
        la.predictive(X_new, link_approx="mc", n_samples=0)
    with pytest.raises(TypeError, match="seed"):
        la.predictive(X_new, link_approx="mc", seed="0")
    X_bad = X_new.clone()
    X_bad[2, 0] = math.nan
    with pytest.raises(pc.NonFiniteError, match="input 2"):
        la.predictive(X_bad)
    mean, covariance = la.output_moments(X_new)
    with pytest.raises(ValueError, match=r"\(m, C, C\)"):
        expected_softmax(mean, covariance[:, :2, :2])
    with pytest.raises(pc.NonFiniteError, match="row 1"):
        expected_softmax(mean, covariance.index_fill(0, torch.tensor([1]), math.inf))
    indefinite = torch.diag_embed(torch.tensor([[1.0, -3.0, 1.0]]))
    for link in ("probit", "bridge", "mc"):
        with pytest.raises(pc.NotPositiveDefiniteError, match="not positive semi-definite"):
            expected_softmax(mean[:1], indefinite, link_approx=link, seed=0)
    # the bridge's α is infinite for a class with no variance about the mean logit
    degenerate = torch.tensor([[[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    with pytest.raises(pc.ProbcalcError, match="Laplace bridge"):
        expected_softmax(mean[:1], degenerate, link_approx="bridge")
    regression = pc.laplace.fit_module(nn.Linear(2, 1).double(), (X, X[:, :1]))
    with pytest.raises(ValueError, match="classification"):
        regression.predictive(X_new, link_approx="probit")
