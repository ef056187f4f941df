"""probcalc.core: derivative transforms, finite differences, losses, minimize and CG."""

import math

import numpy as np
import torch
from malformed import (
    NAN,
    AppendOne,
    AsDtype,
    AsList,
    AsNumpy,
    DropLast,
    Empty,
    First,
    Poison,
    Slot,
    Stack,
    Target,
    Unsqueeze,
    bad_tensor,
    f64,
    nonfinite_elements,
    one_of,
    unknown_strings,
    values,
)

import probcalc as pc

F16 = AsDtype(torch.float16)
INT, BOOL, COMPLEX = AsDtype(torch.int64), AsDtype(torch.bool), AsDtype(torch.complex128)


def _square_sum(x):
    return (x**2).sum()


def _square(x):
    return x**2


def _vector_output(x):
    return x**2  # not a scalar


def _nan_output(x):
    return (x * NAN).sum()


def _float_output(x):
    return 1.0  # not a tensor


NOT_CALLABLE = (None, 3, "f")
ARGUMENT = ("argument", "x", "argnums")


# -------------------------------------------------------------------- derivative transforms
X_UNUSUAL = (Unsqueeze(), First(), Empty())  # shapes grad and jacobian take


def _transform(
    name,
    make,
    valid_f,
    bad_f,
    *,
    x_unusual=X_UNUSUAL,
    x_bad=(),
    extra_slots=(),
    batch=False,
):
    def call(f, x, argnums=0, **options):
        return make(f, argnums=argnums, batch=batch, **options)(x)

    def valid():
        x = f64([[1.0, -2.0], [0.5, 3.0]]) if batch else f64([1.0, -2.0])
        return {"f": valid_f, "x": x}

    slots = (
        Slot("f", bad=values(*NOT_CALLABLE, *bad_f), words=("f",)),
        Slot(
            "x",
            bad=values(INT, BOOL, AsList(), AsNumpy(), "x", None, 2.0, *x_bad),
            unusual=values(*x_unusual) if x_unusual else None,
            either=values(F16),
            words=ARGUMENT,
        ),
        Slot("argnums", bad=values(5, -3, 1.5, "0", None, (0, 4), [0]), words=("argnums",)),
        *extra_slots,
    )
    return Target(name, call, valid, slots, user=("f",))


TRANSFORMS = [
    _transform("probcalc.grad", pc.grad, _square_sum, (_vector_output, _float_output)),
    _transform(
        "probcalc.value_and_grad", pc.value_and_grad, _square_sum, (_vector_output, _float_output)
    ),
    _transform(
        "probcalc.grad(batch=True)",
        pc.grad,
        _square_sum,
        (_vector_output,),
        x_unusual=(),
        x_bad=(First(),),
        batch=True,
    ),
    _transform(
        "probcalc.jacobian",
        pc.jacobian,
        _square,
        (),
        extra_slots=(
            Slot("mode", bad=unknown_strings(), words=("mode",)),
            Slot(
                "chunk_size",
                bad=values(0, -1, 1.5, "2", NAN),
                unusual=values(1, 2, None),
                words=("chunk_size",),
            ),
        ),
    ),
    _transform(
        "probcalc.hessian",
        pc.hessian,
        _square_sum,
        (_vector_output, _float_output),
        x_unusual=(Unsqueeze(), First()),
        extra_slots=(Slot("mode", bad=unknown_strings(), words=("mode",)),),
    ),
]


def _hvp_valid():
    return {"f": lambda x: (x**3).sum(), "x": f64([1.0, 2.0]), "v": f64([1.0, -1.0])}


HVP = Target(
    "probcalc.hvp",
    pc.hvp,
    _hvp_valid,
    (
        Slot("f", bad=values(*NOT_CALLABLE, _vector_output, _float_output), words=("f",)),
        Slot(
            "x",
            bad=bad_tensor(shapes=(DropLast(), First()), extra=(AsList(), "x", None)),
            either=values(F16),
            words=("x", "v"),
        ),
        Slot(
            "v",
            bad=bad_tensor(dtypes=(BOOL, COMPLEX), extra=(AsList(), "v", None)),
            unusual=values(INT),
            either=values(F16, AsNumpy()),
            words=("v",),
        ),
    ),
    user=("f",),
)


def _hvp_operator_call(f, x, v):
    return pc.hvp_operator(f, x)(v)


HVP_OPERATOR = Target(
    "probcalc.hvp_operator",
    _hvp_operator_call,
    _hvp_valid,
    (
        Slot("x", bad=bad_tensor(shapes=(), extra=(AsNumpy(), "x")), words=("x",)),
        Slot(
            "v",
            bad=bad_tensor(dtypes=(BOOL, COMPLEX), extra=("v",)),
            unusual=values(INT),
            words=("v",),
        ),
    ),
    user=("f",),
)

FINITE_DIFFERENCE = Target(
    "probcalc.finite_difference",
    pc.finite_difference,
    lambda: {"f": _square_sum, "x": f64([1.0, -2.0])},
    (
        Slot("f", bad=values(None, 3, "f"), words=("f",)),
        Slot(
            "x",
            bad=one_of(nonfinite_elements(), values(Empty(), COMPLEX, INT, BOOL, "x", None)),
            unusual=values(AsList(), AsNumpy(), Unsqueeze(), First()),
            either=values(F16),
            words=("x",),
        ),
        Slot(
            "h",
            bad=values(0.0, -1e-3, NAN, math.inf, "0.1", f64(np.ones(3)), f64([1e-3, NAN]), 1e-3j),
            unusual=values(1e-4, f64(1e-4), f64([1e-4, 2e-4]), None, [1e-3]),
            words=("h", "step"),
        ),
        Slot(
            "order",
            bad=values(3, 1, 0, "2", 2.5, None, True),
            unusual=values(4, 2.0),
            words=("order",),
        ),
        Slot(
            "direction",
            bad=one_of(nonfinite_elements(), values(COMPLEX, DropLast(), Unsqueeze(), "d")),
            unusual=values(INT, AsList(), f64([0.0, 1.0])),
            words=("direction",),
            base=lambda: f64([1.0, 0.5]),
        ),
    ),
    user=("f",),
)

FUNCTIONAL_MODULE = Target(
    "probcalc.functional_module",
    pc.functional_module,
    lambda: {"module": torch.nn.Linear(2, 1)},
    (
        Slot("module", bad=values(None, 3, "linear", f64(np.ones(2)), _square), words=("module",)),
        Slot(
            "names",
            bad=values("weight", ["w"], [], [3], 3, ["weight", "nope"]),
            unusual=values(["weight"], ("bias",), ["weight", "bias"], None),
            words=("names",),
        ),
    ),
)


# -------------------------------------------------------------------- losses
REDUCTION = Slot(
    "reduction", bad=unknown_strings(), unusual=values("sum", "mean", "none"), words=("reduction",)
)
DATA_SHAPES = (AppendOne(), DropLast(), Empty())  # do not broadcast against (3,)


def _nll_target(
    name,
    fn,
    y,
    parameter_name,
    parameter,
    y_bad=(),
    y_unusual=(),
    y_passthrough=(),
    parameter_bad=(),
    parameter_unusual=(),
    extra=(),
):
    slots = (
        Slot(
            "y",
            bad=one_of(values(COMPLEX, *DATA_SHAPES, "y", None, *y_bad)),
            unusual=values(AsList(), AsNumpy(), First(), Unsqueeze(), Stack(), *y_unusual),
            passthrough=values(*y_passthrough) if y_passthrough else None,
            words=("y",),
        ),
        Slot(
            parameter_name,
            bad=values(COMPLEX, *DATA_SHAPES, "m", None, *parameter_bad),
            unusual=values(AsList(), AsNumpy(), First(), Unsqueeze(), Stack(), *parameter_unusual),
            either=values(F16),
            passthrough=nonfinite_elements(),
            words=(parameter_name,),
        ),
        *extra,
        REDUCTION,
    )

    def valid():
        return {"y": y.clone(), parameter_name: parameter.clone()}

    return Target(name, fn, valid, slots)


LOSSES = [
    _nll_target(
        "probcalc.core.gaussian_nll",
        lambda y, mean, scale=1.5, **kw: pc.core.gaussian_nll(y, mean, scale, **kw),
        f64([0.5, 1.0, -0.3]),
        "mean",
        f64([0.0, 0.2, -0.1]),
        y_passthrough=(Poison(NAN), Poison(math.inf, 0.5), Poison(-math.inf, 0.9)),
        y_unusual=(INT, BOOL),
        parameter_unusual=(INT,),
        extra=(
            Slot(
                "scale",
                bad=one_of(
                    values(
                        0.0,
                        -1.0,
                        NAN,
                        "1",
                        None,
                        1j,
                        f64([1.0, -1.0, 1.0]),
                        f64([1.0, NAN, 1.0]),
                        f64(np.ones(4)),
                    )
                ),
                unusual=values(2, np.float64(0.5), f64([1.0, 2.0, 3.0]), f64(2, torch.int64)),
                passthrough=values(math.inf, f64([1.0, math.inf, 1.0])),
                words=("scale",),
            ),
        ),
    ),
    _nll_target(
        "probcalc.core.bernoulli_nll",
        pc.core.bernoulli_nll,
        f64([0.0, 1.0, 1.0]),
        "logits",
        f64([0.3, -1.2, 2.0]),
        y_bad=(Poison(2.0), Poison(-1.0, 0.5), Poison(0.5, 0.9), Poison(NAN), Poison(math.inf)),
        y_unusual=(INT, BOOL),
        parameter_unusual=(INT,),
    ),
    _nll_target(
        "probcalc.core.poisson_nll",
        pc.core.poisson_nll,
        f64([0.0, 3.0, 1.0]),
        "log_rate",
        f64([0.3, 1.2, -2.0]),
        y_bad=(Poison(-1.0), Poison(1.5, 0.5), Poison(NAN), Poison(math.inf, 0.9)),
        y_unusual=(INT,),
        parameter_unusual=(INT,),
    ),
]


def _categorical_valid():
    return {
        "y": f64([0, 2, 1], torch.int64),
        "logits": f64([[0.1, 0.2, -0.3], [1.0, 0.0, 0.5], [-1.0, 2.0, 0.0]]),
    }


LOSSES.append(
    Target(
        "probcalc.core.categorical_nll",
        pc.core.categorical_nll,
        _categorical_valid,
        (
            Slot(
                "y",
                bad=values(
                    f64([0.0, 2.0, 1.0]),
                    f64([0, 3, 1], torch.int64),
                    f64([-1, 0, 1], torch.int64),
                    COMPLEX,
                    AppendOne(),
                    DropLast(),
                    Empty(),
                    "y",
                    None,
                ),
                unusual=values(AsList(), AsNumpy(), First(), f64([0, 1, 1], torch.int32)),
                words=("y",),
            ),
            Slot(
                "logits",
                bad=values(
                    COMPLEX, First(), DropLast(), AppendOne(), f64(np.zeros((3, 0))), "l", None
                ),
                unusual=values(AsList(), AsNumpy(), INT, f64(np.zeros((3, 4))), f64(np.zeros(3))),
                either=values(F16),
                passthrough=nonfinite_elements(),
                words=("logits",),
            ),
            REDUCTION,
        ),
    )
)


def _surrogate_valid():
    return {"log_prob": f64([-1.0, -0.5, -2.0]), "weight": f64([0.5, 1.0, -1.0])}


SURROGATE_SHAPES = (Unsqueeze(), First(), DropLast(), AppendOne(), Empty(), Stack())


def _surrogate_slot(name):
    return Slot(
        name,
        bad=one_of(nonfinite_elements(), values(COMPLEX, *SURROGATE_SHAPES, "w", None)),
        unusual=values(AsList(), AsNumpy(), INT),
        either=values(F16),
        words=(name,),
    )


LOSSES.append(
    Target(
        "probcalc.core.score_function_surrogate",
        pc.core.score_function_surrogate,
        _surrogate_valid,
        (_surrogate_slot("log_prob"), _surrogate_slot("weight"), REDUCTION),
    )
)


def _empty_surrogate(n, reduction="mean"):
    return pc.core.score_function_surrogate(torch.zeros(n), torch.zeros(n), reduction=reduction)


LOSSES.append(
    Target(
        "probcalc.core.score_function_surrogate(no observations)",
        _empty_surrogate,
        lambda: {"n": 3},
        (Slot("n", bad=values(0), words=("log_prob", "observation", "observations", "empty")),),
    )
)


def _clipped_valid():
    return {
        "log_prob": f64([-1.0, -0.5, -2.0]),
        "old_log_prob": f64([-1.1, -0.4, -2.0]),
        "advantage": f64([0.5, 1.0, -1.0]),
    }


LOSSES.append(
    Target(
        "probcalc.core.clipped_surrogate_loss",
        pc.core.clipped_surrogate_loss,
        _clipped_valid,
        (
            _surrogate_slot("log_prob"),
            _surrogate_slot("old_log_prob"),
            _surrogate_slot("advantage"),
            Slot(
                "clip_range",
                bad=values(0.0, -0.2, NAN, "0.2", None, -math.inf),
                unusual=values(1, 0.1, np.float32(0.3)),
                either=values(math.inf),
                words=("clip_range",),
            ),
            REDUCTION,
        ),
    )
)


# -------------------------------------------------------------------- minimize, CG
def _quadratic(x):
    return ((x - 1.0) ** 2).sum()


MINIMIZE = Target(
    "probcalc.minimize",
    pc.minimize,
    lambda: {"fun": _quadratic, "x0": f64([0.0, 0.5])},
    (
        Slot(
            "fun",
            bad=values(None, 3, "f", _vector_output, _nan_output, _float_output),
            words=("fun", "objective"),
        ),
        Slot(
            "x0",
            bad=one_of(
                nonfinite_elements(), values(COMPLEX, Unsqueeze(), First(), Empty(), "x", None)
            ),
            unusual=values(AsList(), AsNumpy(), INT),
            either=values(F16, BOOL),
            words=("x0",),
        ),
        Slot(
            "method",
            bad=unknown_strings(),
            unusual=values("newton", "newton-cg", "lbfgs"),
            words=("method",),
        ),
        Slot(
            "tol",
            bad=values(-1.0, NAN, "1e-8", -math.inf),
            unusual=values(1e-6, 1),
            either=values(math.inf),
            words=("tol",),
        ),
        Slot(
            "max_iter",
            bad=values(-1, 1.5, "10", NAN, math.inf),
            unusual=values(50, None),
            words=("max_iter",),
        ),
        Slot(
            "callback",
            bad=values(3, "cb"),
            unusual=values(lambda result: None, None),
            words=("callback",),
        ),
        Slot(
            "options",
            bad=values({"nope": 1}, "lr", [1], {"cg_max_iter": 3}, 3),
            unusual=values({}, None),
            words=("options", "option"),
        ),
    ),
    user=("fun",),
)

_A = f64([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]])


def _matvec(v):
    return _A @ v


def _cg_valid():
    return {"matvec": _matvec, "b": f64([1.0, 2.0, 3.0])}


CONJUGATE_GRADIENT = Target(
    "probcalc.conjugate_gradient",
    pc.conjugate_gradient,
    _cg_valid,
    (
        Slot(
            "matvec",
            bad=values(None, 3, lambda v: v[:-1], lambda v: v * NAN, lambda v: (_A @ v).tolist()),
            words=("matvec",),
        ),
        Slot(
            "b",
            bad=one_of(nonfinite_elements(), values(COMPLEX, "b", None, AsList())),
            either=values(INT, AsNumpy()),
            words=("b",),
        ),
        Slot(
            "x0",
            bad=one_of(
                nonfinite_elements(), values(COMPLEX, DropLast(), Unsqueeze(), "x", AsList())
            ),
            unusual=values(f64(np.zeros(3)), f64(np.ones(3))),
            words=("x0",),
            base=lambda: f64([0.1, 0.2, 0.3]),
        ),
        Slot(
            "rtol", bad=values(-1.0, NAN, "1e-8", None), unusual=values(1e-6, 0.5), words=("rtol",)
        ),
        Slot("atol", bad=values(-1.0, NAN, "0", None), unusual=values(1e-12, 1), words=("atol",)),
        Slot(
            "max_iter",
            bad=values(-1, 1.5, "10", NAN),
            unusual=values(20, None),
            words=("max_iter",),
        ),
        Slot(
            "preconditioner",
            bad=values(3, "jacobi"),
            unusual=values(lambda r: r / torch.diagonal(_A), None),
            words=("preconditioner",),
        ),
    ),
    user=("matvec", "preconditioner"),
)


TARGETS = [
    *TRANSFORMS,
    HVP,
    HVP_OPERATOR,
    FINITE_DIFFERENCE,
    FUNCTIONAL_MODULE,
    *LOSSES,
    MINIMIZE,
    CONJUGATE_GRADIENT,
]
