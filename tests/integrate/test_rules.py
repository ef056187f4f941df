"""Quadrature rules against scipy/numpy, QUADPACK's published constants and exactness."""

import numpy as np
import pytest
import scipy.special
import torch

from probcalc.integrate import gauss_hermite, gauss_kronrod, gauss_legendre, smolyak


def _moments_error(nodes, weights, degree):
    """max over k <= degree of |Σ w x^k - ∫_{-1}^{1} x^k dx|."""
    exact = [2.0 / (k + 1) if k % 2 == 0 else 0.0 for k in range(degree + 1)]
    return max(abs(float((weights * nodes**k).sum()) - exact[k]) for k in range(degree + 1))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 37, 150, 1000])
def test_gauss_legendre_matches_scipy(n):
    nodes, weights = gauss_legendre(n)
    ref_nodes, ref_weights = scipy.special.roots_legendre(n)
    np.testing.assert_allclose(nodes.numpy(), ref_nodes, atol=1e-14)
    # scipy's own weights carry errors near 1e-13 at n = 1000 (its moments are worse than
    # ours: see the exactness test), so compare absolutely
    np.testing.assert_allclose(weights.numpy(), ref_weights, rtol=0, atol=2e-13)


@pytest.mark.parametrize("n", [2, 7, 20, 10_000])
def test_gauss_legendre_is_exact_to_degree_2n_minus_1(n):
    nodes, weights = gauss_legendre(n)
    degree = min(2 * n - 1, 40)  # beyond ~40 the monomials' own rounding dominates
    assert _moments_error(nodes, weights, degree) < 1e-13
    assert float(weights.sum()) == pytest.approx(2.0, abs=1e-13)
    assert bool((nodes[1:] > nodes[:-1]).all())


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 15, 30])
def test_gauss_kronrod_exactness_and_embedded_gauss_rule(n):
    nodes, kronrod, gauss = gauss_kronrod(n)
    degree = 3 * n + 1 if n % 2 == 0 else 3 * n + 2
    assert _moments_error(nodes, kronrod, degree) < 1e-13
    assert _moments_error(nodes, gauss, 2 * n - 1) < 1e-13
    gauss_nodes, gauss_weights = gauss_legendre(n)
    np.testing.assert_allclose(nodes[1::2].numpy(), gauss_nodes.numpy(), atol=1e-14)
    np.testing.assert_allclose(gauss[1::2].numpy(), gauss_weights.numpy(), atol=1e-14)
    assert bool((gauss[::2] == 0).all())


def test_gauss_kronrod_15_and_21_match_quadpack():
    """Constants from QUADPACK's qk15 and qk21 (Piessens et al., 1983)."""
    nodes, kronrod, _ = gauss_kronrod(7)
    xgk = [
        0.991455371120812639,
        0.949107912342758525,
        0.864864423359769073,
        0.741531185599394440,
        0.586087235467691130,
        0.405845151377397167,
        0.207784955007898468,
        0.0,
    ]
    wgk = [
        0.022935322010529225,
        0.063092092629978553,
        0.104790010322250184,
        0.140653259715525919,
        0.169004726639267903,
        0.190350578064785410,
        0.204432940075298892,
        0.209482141084727828,
    ]
    np.testing.assert_allclose(nodes.numpy()[::-1][:8], xgk, atol=1e-15)
    np.testing.assert_allclose(kronrod.numpy()[::-1][:8], wgk, atol=1e-15)
    nodes21, kronrod21, _ = gauss_kronrod(10)
    assert float(nodes21[-1]) == pytest.approx(0.995657163025808081, abs=1e-15)
    assert float(kronrod21[-1]) == pytest.approx(0.011694638867371874, abs=1e-15)
    assert float(kronrod21[10]) == pytest.approx(0.149445554002916906, abs=1e-15)


@pytest.mark.parametrize("n", [1, 5, 20, 100])
def test_gauss_hermite_matches_numpy(n):
    nodes, weights = gauss_hermite(n)
    ref_nodes, ref_weights = np.polynomial.hermite.hermgauss(n)
    np.testing.assert_allclose(nodes.numpy(), ref_nodes, atol=1e-12)
    np.testing.assert_allclose(weights.numpy(), ref_weights, rtol=1e-10, atol=1e-300)


def test_rules_reject_bad_orders():
    for rule in (gauss_legendre, gauss_kronrod, gauss_hermite):
        for bad in (0, -3, 2.5, True):
            with pytest.raises(ValueError, match="order"):
                rule(bad)


@pytest.mark.parametrize("rule", [gauss_legendre, gauss_kronrod, gauss_hermite])
@pytest.mark.parametrize(
    ("device", "error", "match"),
    [
        ("nodevice", ValueError, "device 'nodevice' cannot be used"),
        (3, TypeError, "device must be a torch.device or a device string"),
        ("meta:x", ValueError, "device 'meta:x' cannot be used"),
    ],
)
def test_rules_name_a_device_torch_cannot_use(rule, device, error, match):
    with pytest.raises(error, match=match):
        rule(5, device=device)


@pytest.mark.parametrize("rule", [gauss_legendre, gauss_kronrod, gauss_hermite])
def test_rules_go_to_the_device_and_dtype_asked_for(rule):
    nodes = rule(5, dtype=torch.float32, device=torch.device("cpu"))[0]
    assert nodes.dtype == torch.float32 and nodes.device.type == "cpu"
    on_meta = rule(5, device="meta")[0]
    assert on_meta.device.type == "meta" and on_meta.shape == nodes.shape


@pytest.mark.parametrize("rule", [None, 3, "gauss_hermite"])
def test_smolyak_names_a_rule_that_is_not_a_function(rule):
    with pytest.raises(TypeError, match="rule must be a function"):
        smolyak(2, 2, rule, dtype=torch.float64, device="cpu")
