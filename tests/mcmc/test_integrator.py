"""The samplers' batched potential (values by vmap of the forward pass, gradients by one
backward pass over their sum, the vmap-of-grad_and_value fallback, the opt-in
torch.compile'd graph) against per-point torch.autograd, and the NUTS U-turn checks of all
checkpoints at once against the criterion applied to one checkpoint at a time."""

import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch.distributions import HalfCauchy, Normal

from probcalc.core.evaluation import without_distribution_validation
from probcalc.mcmc import integrator
from probcalc.mcmc.integrator import CompileFallbackWarning, batched_log_prob
from probcalc.mcmc.nuts import _turning_at_checkpoints

Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
S = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]


def _eight_schools(x):
    y, s = torch.tensor(Y, dtype=x.dtype), torch.tensor(S, dtype=x.dtype)
    mu, log_tau, eta = x[0], x[1], x[2:]
    tau = log_tau.exp()
    return (
        Normal(0.0, 5.0).log_prob(mu)
        + HalfCauchy(5.0).log_prob(tau)
        + log_tau
        + Normal(0.0, 1.0).log_prob(eta).sum()
        + Normal(mu + tau * eta, s).log_prob(y).sum()
    )


def _quadratic(x):
    a = torch.arange(1.0, x.numel() ** 2 + 1, dtype=x.dtype).reshape(x.numel(), x.numel())
    precision = a @ a.T / a.numel() + torch.eye(x.numel(), dtype=x.dtype)
    return -0.5 * x @ (precision @ x) + torch.sin(x).sum()


def _partly_detached(x):
    # the detached term has no gradient; the first coordinate is not used at all
    return -(x[1:] ** 2).sum() + x.detach().sum()


def _constant(x):
    return torch.tensor(-1.5, dtype=x.dtype)


def _support(x):
    # -inf where x[0] <= 0 (log of a non-positive number: -inf or NaN)
    return torch.log(x[0]) - x[1] ** 2


MODELS = {
    "eight schools": (_eight_schools, 10),
    "quadratic": (_quadratic, 5),
    "partly detached": (_partly_detached, 3),
    "constant": (_constant, 2),
    "support": (_support, 2),
}


def _per_point(log_prob, q):
    """Each chain's value and gradient by torch.autograd, one point at a time, with the
    samplers' rule: -inf and a zero gradient where either is not finite."""
    values, gradients = [], []
    for point in q:
        x = point.detach().clone().requires_grad_(True)
        with without_distribution_validation():
            value = log_prob(x)
        if value.requires_grad:
            (gradient,) = torch.autograd.grad(value, x, allow_unused=True)
        else:
            gradient = None
        gradient = torch.zeros_like(x) if gradient is None else gradient
        if not (math.isfinite(value.item()) and bool(torch.isfinite(gradient).all())):
            value, gradient = torch.tensor(-math.inf, dtype=q.dtype), torch.zeros_like(x)
        values.append(value.detach())
        gradients.append(gradient)
    return torch.stack(values), torch.stack(gradients)


def _points(d, dtype):
    q = torch.randn(5, d, generator=torch.Generator().manual_seed(0), dtype=dtype)
    q[:, 0] = torch.tensor([0.5, -0.3, 0.0, 2.0, math.nan], dtype=dtype)
    return q


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", MODELS)
def test_batched_potential_equals_per_point_autograd(name, dtype):
    log_prob, d = MODELS[name]
    q = _points(d, dtype)
    before = torch.distributions.Distribution._validate_args
    value, gradient = batched_log_prob(log_prob)(q)
    assert torch.distributions.Distribution._validate_args == before
    expected_value, expected_gradient = _per_point(log_prob, q)
    assert value.shape == (5,) and gradient.shape == (5, d)
    assert gradient.dtype == dtype and value.dtype == expected_value.dtype
    assert not value.requires_grad and not gradient.requires_grad
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(value, expected_value, **tol)
    torch.testing.assert_close(gradient, expected_gradient, **tol)


def test_non_finite_chains_get_minus_inf_and_zero_gradient_and_leave_the_others_alone():
    value, gradient = batched_log_prob(_support)(_points(2, torch.float64))
    # x0 = 0 (log 0 = -inf), x0 < 0 and x0 = NaN (NaN): chains 1, 2, 4
    assert value[[1, 2, 4]].tolist() == [-math.inf] * 3
    assert bool((gradient[[1, 2, 4]] == 0).all())
    q = _points(2, torch.float64)[[0, 3]]
    torch.testing.assert_close(value[[0, 3]], torch.log(q[:, 0]) - q[:, 1] ** 2)
    torch.testing.assert_close(gradient[[0, 3]], torch.stack([1.0 / q[:, 0], -2.0 * q[:, 1]], 1))


def test_a_vector_log_prob_is_refused_with_the_cores_message():
    with pytest.raises(ValueError, match="0-d tensor"):
        batched_log_prob(lambda x: -0.5 * x**2)(torch.zeros(3, 2))


def test_when_the_backward_of_the_sum_fails_vmap_of_grad_and_value_takes_over_for_good(
    monkeypatch,
):
    calls = []

    def failing(log_prob):
        def potential(q):
            calls.append(q.shape)
            raise RuntimeError("cannot run this way")

        return potential

    monkeypatch.setattr(integrator, "_gradient_of_sum", failing)
    potential = batched_log_prob(_quadratic)
    q = _points(5, torch.float64)
    for _ in range(3):
        value, gradient = potential(q)
        expected_value, expected_gradient = _per_point(_quadratic, q)
        torch.testing.assert_close(value, expected_value, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gradient, expected_gradient, rtol=1e-12, atol=1e-12)
    assert len(calls) == 1


def test_an_error_of_the_function_itself_is_raised_and_every_way_kept():
    state = {"fail": True}

    def flaky(x):
        if state["fail"]:
            raise KeyError("a bug in the model")
        return -(x**2).sum()

    potential = batched_log_prob(flaky)
    with pytest.raises(KeyError, match="a bug in the model"):
        potential(torch.zeros(2, 3))
    state["fail"] = False
    ways = [name for name, _ in potential.ways]
    assert ways == ["gradient of the sum", "vmap of grad_and_value"]
    value, gradient = potential(torch.ones(2, 3))
    assert value.tolist() == [-3.0, -3.0] and bool((gradient == -2.0).all())


def test_compiled_potential_equals_the_uncompiled_one():
    """One compilation (seconds): the compiled graph's values, gradients and non-finite
    mask against the uncompiled potential. With torch's portable kernels
    (ATEN_CPU_CAPABILITY=default) inductor's generated C++ does not build (torch 2.13), so
    there the potential falls back, with its warning, and must still be right."""
    q = _points(10, torch.float64)
    q[1, 1] = 800.0  # tau = exp(800) overflows: a non-finite chain inside the graph
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CompileFallbackWarning)
        compiled = batched_log_prob(_eight_schools, compile=True)
        value, gradient = compiled(q)
        again = compiled(q + 0.25)
    fell_back = [w for w in caught if issubclass(w.category, CompileFallbackWarning)]
    if os.environ.get("ATEN_CPU_CAPABILITY") != "default":
        assert not fell_back, fell_back[0].message
        assert compiled.ways[0][0] == "compiled"
    for got, point in (((value, gradient), q), (again, q + 0.25)):
        expected = batched_log_prob(_eight_schools)(point)
        torch.testing.assert_close(got[0], expected[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got[1], expected[1], rtol=1e-12, atol=1e-12)
    assert value[1] == -math.inf and bool((gradient[1] == 0).all())


def test_a_log_prob_torch_compile_cannot_compile_runs_uncompiled_with_a_warning():
    def log_prob(x):
        torch._dynamo.graph_break()  # what fullgraph compilation refuses
        return -(x**2).sum()

    potential = batched_log_prob(log_prob, compile=True)
    q = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    with pytest.warns(CompileFallbackWarning, match="running it uncompiled"):
        value, gradient = potential(q)
    assert value.tolist() == [-5.0, -1.25]
    torch.testing.assert_close(gradient, -2.0 * q)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        potential(q)  # warned once: the compiled way is gone


@pytest.mark.parametrize("dense", [False, True])
def test_checkpoint_u_turns_at_once_equal_one_checkpoint_at_a_time(dense):
    """_turning_at_checkpoints against the generalized U-turn criterion applied to each
    sub-subtree (first leaf at checkpoint k, last leaf the new one) in turn."""
    g = torch.Generator().manual_seed(1)
    chains, k, d = 64, 3, 4
    # momenta around one direction, so that some sub-subtrees turn and others do not
    direction = torch.ones(d)
    ckpt_p = direction + torch.randn(chains, k, d, generator=g)
    ckpt_sum = ckpt_p + torch.randn(chains, k, d, generator=g)
    p_new = direction + torch.randn(chains, d, generator=g)
    sub_sum = 3.0 * direction + torch.randn(chains, d, generator=g)
    if dense:
        a = 0.5 * torch.randn(chains, d, d, generator=g)
        inverse_mass = torch.eye(d) + a @ a.mT
    else:
        inverse_mass = torch.rand(chains, d, generator=g) + 0.5
    got = _turning_at_checkpoints(ckpt_p, ckpt_sum, p_new, sub_sum, inverse_mass)
    expected = torch.zeros(chains, dtype=torch.bool)
    for c in range(chains):
        metric = inverse_mass[c] if dense else torch.diag(inverse_mass[c])
        for j in range(k):
            first = ckpt_p[c, j]
            span = sub_sum[c] - ckpt_sum[c, j] + first  # momenta from checkpoint j's leaf on
            rho = span - (first + p_new[c]) / 2
            if float(metric @ first @ rho) <= 0 or float(metric @ p_new[c] @ rho) <= 0:
                expected[c] = True
    assert torch.equal(got, expected)
    assert 0 < int(got.sum()) < chains  # both outcomes occur


def test_compiling_leaves_the_users_distribution_validation_on():
    """torch.compile's first use in a process switches torch.distributions' validation off
    process-wide; a compiled potential must leave it as the user had it. A fresh process,
    so that this compile is the first."""
    code = (
        "import torch\n"
        "from probcalc.mcmc.integrator import batched_log_prob\n"
        "assert torch.distributions.Distribution._validate_args\n"
        "batched_log_prob(lambda x: -(x**2).sum(), compile=True)\n"
        "print(torch.distributions.Distribution._validate_args)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "True", out.stderr
