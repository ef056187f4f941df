"""Malformed input at every public function: NaN and infinite values, wrong shapes and
dtypes, empty tensors, unknown options, out-of-range counts, probabilities and tolerances.

Each is rejected before any work, by a ProbcalcError or by a ValueError/TypeError that
probcalc raises itself and that names the argument; valid but unusual input (a list where
array-like is documented, an integer where a float is wanted) is accepted and gives a
finite result. The table of functions and argument slots is in the ``targets_*`` modules,
the machinery in ``malformed.py``; the number of cases run is printed in the terminal
summary.
"""

import os

import pytest
import targets_core
import targets_integrate
import targets_mc
import targets_rl
from hypothesis import given, settings
from hypothesis import strategies as st
from malformed import cases, run_case, run_valid

TARGETS = [
    *targets_core.TARGETS,
    *targets_mc.TARGETS,
    *targets_integrate.TARGETS,
    *targets_rl.TARGETS,
]

# Known failures, by case id (target:slot:kind): the module to fix and a one-line
# reproduction. They run as strict xfails: a fixed case passes, its xfail then fails, and
# its entry is removed here.
_RL = "probcalc/rl agent.py, vector.py, ppo.py, tuned.py"
_IO = "probcalc/rl checkpoints"
_NUM = "probcalc/integrate, laplace, marginal, core/optim.py"
KNOWN_FAILURES: dict[str, str] = {
    # probcalc/core/optim.py
    "probcalc.minimize:fun:bad": f"{_NUM}: pc.minimize(lambda x: x**2, torch.zeros(2)) -> "
    "ValueError 'f must return a 0-d tensor' (from core.derivatives) names f, not fun",
    "probcalc.conjugate_gradient:x0:bad": f"{_NUM}: pc.conjugate_gradient(A.__matmul__, b, "
    "x0=torch.zeros(3, dtype=torch.complex128)) drops the imaginary part and returns",
    # probcalc/integrate
    "probcalc.integrate.log_integral:lower:bad": f"{_NUM}: pc.integrate.log_integral(log_f, "
    "inf, inf) -> ValueError 'log_integral needs a < b' (names a and b, not lower/upper)",
    "probcalc.integrate.log_integral:upper:bad": f"{_NUM}: pc.integrate.log_integral(log_f, "
    "-inf, None) -> TypeError 'b must be a real number' (names b, not upper)",
    "probcalc.integrate.gauss_legendre:device:bad": f"{_NUM}: "
    "pc.integrate.gauss_legendre(5, device='nodevice') -> torch RuntimeError",
    "probcalc.integrate.gauss_kronrod:device:bad": f"{_NUM}: "
    "pc.integrate.gauss_kronrod(5, device='nodevice') -> torch RuntimeError",
    "probcalc.integrate.gauss_hermite:device:bad": f"{_NUM}: "
    "pc.integrate.gauss_hermite(5, device='nodevice') -> torch RuntimeError",
    "probcalc.integrate.smolyak:rule:bad": f"{_NUM}: pc.integrate.smolyak(2, 2, None, "
    "dtype=torch.float64, device='cpu') -> TypeError 'NoneType' object is not callable",
    # probcalc/rl
    "probcalc.rl.PPO:env:bad": f"{_RL}: pc.rl.PPO('NoSuchEnv-v0') -> gymnasium NameNotFound, "
    "not a ValueError",
    "probcalc.rl.PPO:env_kwargs:bad": f"{_RL}: pc.rl.PPO('Pendulum-v1', env_kwargs={{'nope': "
    "1}}) -> TypeError re-raised from gymnasium's frame",
    "probcalc.rl.PPO:seed:bad": f"{_RL}: pc.rl.PPO('Pendulum-v1', seed=-1) -> gymnasium "
    "Error 'Seed must be greater or equal to zero'",
    "probcalc.rl.PPO:batch_size:bad": f"{_RL}: pc.rl.PPO('Pendulum-v1', batch_size=None) is "
    "accepted",
    "probcalc.rl.evaluate:env:bad": f"{_RL}: pc.rl.evaluate(agent, 'NoSuchEnv-v0') -> "
    "gymnasium NameNotFound from make_vector_env",
    "probcalc.rl.OnPolicyAgent.predict:obs:bad": f"{_RL}: agent.predict(np.array([[1j]])) "
    "drops the imaginary part and returns actions",
    "probcalc.rl.OnPolicyAgent.predict:deterministic:bad": f"{_RL}: agent.predict(obs, "
    "deterministic='yes') is accepted",
    "probcalc.rl.OnPolicyAgent.learn:progress_bar:bad": f"{_RL}: agent.learn(4, "
    "progress_bar='yes') is accepted",
    "probcalc.rl.load:path:bad": f"{_IO}: pc.rl.load(3) -> TypeError from pathlib's frame",
    "probcalc.rl.load:env:bad": f"{_RL}: pc.rl.load(path, env='NoSuchEnv-v0') -> gymnasium "
    "NameNotFound from make_vector_env",
    "probcalc.rl.tuned:algorithm:bad": f"{_RL}: pc.rl.tuned(3, 'Pendulum-v1') -> "
    "AttributeError 'int' object has no attribute 'lower'",
    "probcalc.rl.tuned:env:bad": f"{_RL}: pc.rl.tuned('ppo', 3) returns {{}} for a non-string env",
    "probcalc.rl.tuned_steps:algorithm:bad": f"{_RL}: pc.rl.tuned_steps(3, 'Pendulum-v1') -> "
    "AttributeError",
}

PROFILE = settings.get_profile(os.environ.get("PROBCALC_PROPERTY_PROFILE", "property"))


def _params():
    for case in cases(TARGETS):
        marks = ()
        if case.id in KNOWN_FAILURES:
            marks = pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case.id])
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", list(_params()))
@settings(PROFILE)
@given(data=st.data())
def test_public_function_handles_malformed_input(case, data):
    value = data.draw(case.strategy, label=case.slot.name)
    run_case(case, value)


def test_every_known_failure_names_a_case_of_the_table():
    ids = {case.id for case in cases(TARGETS)}
    assert set(KNOWN_FAILURES) <= ids, sorted(set(KNOWN_FAILURES) - ids)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_valid_call_of_the_table_works(target):
    """Every target's valid call succeeds with a finite result: the malformed cases start
    from a call that works, so that a rejection is the malformed value's doing."""
    run_valid(target)
