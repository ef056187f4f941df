"""The public surface: the documented public names, type hints, result and error types."""

import dataclasses
import inspect

import pytest
import torch

import probcalc as pc
from probcalc import core


def test_design_names_are_public():
    for name in [
        "grad",
        "value_and_grad",
        "jacobian",
        "hessian",
        "hvp",
        "finite_difference",
        "minimize",
        "conjugate_gradient",
        "functional_module",
        "OptimizeResult",
    ]:
        assert callable(getattr(pc, name)), name


def test_envs_are_installed_as_probcalc_envs():
    import probcalc.envs

    assert probcalc.envs.__name__ == "probcalc.envs"


@pytest.mark.parametrize("name", core.__all__)
def test_every_public_function_has_type_hints(name):
    obj = getattr(core, name)
    if not inspect.isfunction(obj):
        return
    signature = inspect.signature(obj)
    missing = [
        p
        for p, param in signature.parameters.items()
        if param.annotation is inspect.Parameter.empty
    ]
    assert not missing, f"{name}: parameters without a type hint: {missing}"
    assert signature.return_annotation is not inspect.Signature.empty, name


def test_results_are_frozen_dataclasses():
    result = pc.minimize(lambda x: (x**2).sum(), torch.ones(2))
    assert dataclasses.is_dataclass(result)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.x = torch.zeros(2)
    cg = pc.conjugate_gradient(lambda v: 2 * v, torch.ones(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cg.nit = 0


def test_errors_share_one_base_and_keep_their_figures():
    for error in (pc.NonFiniteError, pc.NotPositiveDefiniteError, pc.ConvergenceError):
        assert issubclass(error, pc.ProbcalcError)
    assert issubclass(pc.NotPositiveDefiniteError, torch.linalg.LinAlgError)
    assert issubclass(pc.ConvergenceWarning, UserWarning)
    error = pc.NotPositiveDefiniteError("H is not PD", min_eigenvalue=-0.5)
    assert error.min_eigenvalue == -0.5
    assert pc.ConvergenceError("no", figure=3.0).figure == 3.0


def test_options_accept_members_and_strings():
    assert core.Method.parse("newton-cg") is core.Method.NEWTON_CG
    assert core.Method.parse(core.Method.LBFGS) is core.Method.LBFGS
    assert core.Method.NEWTON == "newton"
