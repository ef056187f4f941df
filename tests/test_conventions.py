"""The public API against the conventions page (docs/conventions.md): one dialect for
results, seeds, sample counts, dtypes and callbacks."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import probcalc as pc

MODULES = [pc, pc.core, pc.integrate, pc.mc, pc.laplace, pc.mcmc, pc.vi, pc.rl]
RETIRED_PARAMETERS = {"n": "n_samples", "nfev": "n_evals", "hessian": "structure"}
# a quadrature rule's n is its order (numpy.polynomial.legendre.leggauss(deg) likewise), not a
# sample count
RULE_ORDERS = {
    "probcalc.integrate.gauss_legendre",
    "probcalc.integrate.gauss_kronrod",
    "probcalc.integrate.gauss_hermite",
}
RETIRED_FIELDS = {
    "log_value": "log_evidence",
    "nfev": "n_evals",
    "success": "converged",
    "n": "n_evals",
}


def _public_callables():
    seen = set()
    for module in MODULES:
        for name in getattr(module, "__all__", []):
            item = getattr(module, name)
            if not callable(item) or id(item) in seen:
                continue
            seen.add(id(item))
            qualname = f"{module.__name__}.{name}"
            yield qualname, item
            if inspect.isclass(item):
                for attribute, member in vars(item).items():
                    if not attribute.startswith("_") and inspect.isfunction(member):
                        yield f"{qualname}.{attribute}", member


CALLABLES = sorted(_public_callables(), key=lambda pair: pair[0])


def _parameters(item):
    try:
        return inspect.signature(item).parameters
    except (TypeError, ValueError):
        return {}


def _result_classes():
    return sorted(
        {item for _, item in CALLABLES if inspect.isclass(item) and dataclasses.is_dataclass(item)},
        key=lambda cls: cls.__qualname__,
    )


def test_the_api_has_what_the_checks_below_walk_over():
    assert len(CALLABLES) > 80
    assert len(_result_classes()) >= 6


@pytest.mark.parametrize(("name", "item"), CALLABLES, ids=[name for name, _ in CALLABLES])
def test_parameter_names_and_types_follow_the_conventions(name, item):
    for parameter in _parameters(item).values():
        if parameter.name == "n" and name in RULE_ORDERS:
            continue
        assert parameter.name not in RETIRED_PARAMETERS, (
            f"{name}({parameter.name}=...): the dialect's name is "
            f"{RETIRED_PARAMETERS[parameter.name]}"
        )
        annotation = str(parameter.annotation)
        if parameter.name == "seed":
            assert "Seed" in annotation or ("Generator" in annotation and "None" in annotation), (
                f"{name}: seed must be int | torch.Generator | None, annotated {annotation}"
            )
        if parameter.name == "dtype":
            assert "dtype" in annotation and "str" not in annotation, (
                f"{name}: dtype must be a torch.dtype, annotated {annotation}"
            )


@pytest.mark.parametrize("cls", _result_classes(), ids=lambda cls: cls.__qualname__)
def test_results_are_frozen_and_use_the_dialects_field_names(cls):
    assert cls.__dataclass_params__.frozen, f"{cls.__qualname__} is not frozen"
    for field in dataclasses.fields(cls):
        assert field.name not in RETIRED_FIELDS, (
            f"{cls.__qualname__}.{field.name}: the dialect's name is {RETIRED_FIELDS[field.name]}"
        )
        if field.name in ("error", "stderr"):
            assert "Tensor" in str(field.type) and "None" not in str(field.type), (
                f"{cls.__qualname__}.{field.name} must be a tensor, annotated {field.type}"
            )


@pytest.mark.parametrize("function", [pc.minimize, pc.rl.OnPolicyAgent.learn])
def test_callbacks_document_the_one_stop_convention(function):
    doc = inspect.getdoc(function)
    assert "StopIteration" in doc and "False" in doc
