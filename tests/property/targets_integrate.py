"""probcalc.integrate, probcalc.laplace and probcalc.marginal."""

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
    Scaled,
    Slot,
    Target,
    Unsqueeze,
    f64,
    nonfinite_elements,
    one_of,
    unknown_strings,
    values,
)
from torch.distributions import Normal

import probcalc as pc

INF = math.inf
COMPLEX, INT = AsDtype(torch.complex128), AsDtype(torch.int64)
NOT_CALLABLE = (None, 3, "f")
BAD_TOLERANCES = (-1.0, NAN, "1e-8", -INF)
BAD_COUNTS = (0, -1, 1.5, NAN, INF, "100", True)


def _square(x):
    return x**2


def _nan(x):
    return x * NAN


def _sum_all(x):
    return x.sum()  # 0-d: not one value a point


def _as_list(x):
    return x.tolist()


# -------------------------------------------------------------------- integrate
def _tolerance_slots(rtol_unusual=(1e-6, 1e-3)):
    return (
        Slot("rtol", bad=values(*BAD_TOLERANCES), unusual=values(*rtol_unusual), words=("rtol",)),
        Slot("atol", bad=values(*BAD_TOLERANCES), unusual=values(0, 1e-12), words=("atol",)),
        Slot(
            "max_evals",
            bad=values(*BAD_COUNTS),
            unusual=values(np.int64(10_000)),
            words=("max_evals",),
        ),
    )


QUAD = Target(
    "probcalc.integrate.quad",
    pc.integrate.quad,
    lambda: {"f": _square, "a": 0.0, "b": 1.0},
    (
        Slot("f", bad=values(*NOT_CALLABLE, _nan, _sum_all, _as_list), words=("f", "integrand")),
        Slot(
            "a",
            bad=values(NAN, "0", None, 1j, f64([0.0, 0.5, 1.0]) * NAN, [0.0, "x"]),
            unusual=values(0, np.float64(0.0), f64(0.0), f64(0), -1.0, 2.0, f64([0.0, 0.5])),
            words=("a", "limit", "limits"),
        ),
        Slot(
            "b",
            bad=values(NAN, "1", None, 1j, f64([1.0, 2.0, 3.0]) * NAN),
            unusual=values(1, np.float64(2.0), f64(1.0), f64([1.0, 2.0])),
            words=("b", "limit", "limits"),
        ),
        *_tolerance_slots(),
        Slot(
            "order",
            bad=values(0, -1, 1.5, "10", None, NAN, True),
            unusual=values(7, 3),
            words=("order",),
        ),
        Slot("batched", bad=values("no", None, 2), unusual=values(True), words=("batched",)),
        Slot(
            "device",
            bad=values("nodevice", 3),
            unusual=values("cpu", torch.device("cpu")),
            words=("device",),
        ),
        Slot(
            "points",
            bad=values([NAN], [2.0], "0.5", [[0.5]], [INF], [0.5, None], 0.5j),
            unusual=values([0.5], (0.25, 0.75), f64([0.5]), [], None),
            words=("points",),
        ),
    ),
    user=("f",),
)


def _box(x):
    return (x**2).sum(1)


def _box_valid():
    return {"f": _box, "lower": [0.0, 0.0], "upper": [1.0, 1.0]}


LIMIT_BAD = values(
    Poison(NAN),
    Poison(NAN, 0.9),
    DropLast(),
    AppendOne(),
    First(),
    Unsqueeze(),
    Empty(),
    COMPLEX,
    "0",
    None,
    [0.0, "x"],
)  # ±inf limits are valid

CUBATURE = Target(
    "probcalc.integrate.cubature",
    pc.integrate.cubature,
    _box_valid,
    (
        Slot("f", bad=values(*NOT_CALLABLE, _nan, _sum_all, _as_list), words=("f", "integrand")),
        Slot(
            "lower",
            bad=LIMIT_BAD,
            unusual=values(AsNumpy(), INT, (0, 0), f64([0.0, 0.0])),
            words=("lower", "limits"),
        ),
        Slot(
            "upper",
            bad=LIMIT_BAD,
            unusual=values(AsNumpy(), INT, (1, 2), f64([1.0, 2.0])),
            words=("upper", "limits"),
        ),
        *_tolerance_slots(),
        Slot(
            "rule",
            bad=unknown_strings(),
            unusual=values("adaptive", "gauss-legendre", "sparse", "qmc"),
            words=("rule",),
        ),
        Slot("seed", bad=values("0", 1.5, [1], NAN), unusual=values(None, 3), words=("seed",)),
        Slot(
            "points",
            bad=values([[NAN], None], [[0.5]], [[2.0], None], "x", [[0.5], [0.5], [0.5]]),
            unusual=values([[0.5], None], [[], [0.25]], None),
            either=values([0.5, 0.5]),
            words=("points",),
        ),
    ),
    user=("f",),
)


def _log_density(x):
    return -0.5 * x**2


LOG_INTEGRAL = Target(
    "probcalc.integrate.log_integral",
    pc.integrate.log_integral,
    lambda: {"log_f": _log_density, "lower": -INF, "upper": INF},
    (
        Slot(
            "log_f",
            bad=values(*NOT_CALLABLE, _nan, lambda x: x * 0 + INF, _sum_all),
            words=("log_f", "integrand"),
        ),
        Slot(
            "lower",
            bad=values(NAN, INF, "0", None, 1j, [0.0, 0.0]),
            unusual=values(-10, f64(-8.0), np.float64(-9.0)),
            words=("lower", "limits", "limit"),
        ),
        Slot(
            "upper",
            bad=values(NAN, -INF, "0", None, [0.0, 1.0]),
            unusual=values(10, f64(8.0)),
            words=("upper", "limits", "limit"),
        ),
        *_tolerance_slots(),
    ),
    user=("log_f",),
)


def _normal_valid():
    return {"f": _box, "mean": f64([0.5, -0.5]), "cov": f64([[1.0, 0.2], [0.2, 0.5]])}


EXPECT_NORMAL = Target(
    "probcalc.integrate.expect_normal",
    pc.integrate.expect_normal,
    _normal_valid,
    (
        Slot("f", bad=values(*NOT_CALLABLE, _nan, _sum_all), words=("f", "integrand")),
        Slot(
            "mean",
            bad=one_of(
                nonfinite_elements(),
                values(DropLast(), AppendOne(), First(), Unsqueeze(), Empty(), COMPLEX, "m", None),
            ),
            unusual=values(AsList(), AsNumpy(), INT),
            words=("mean",),
        ),
        Slot(
            "cov",
            bad=one_of(
                nonfinite_elements(),
                values(
                    Scaled(-1.0),
                    Scaled(0.0),
                    DropLast(),
                    First(),
                    Unsqueeze(),
                    COMPLEX,
                    "c",
                    None,
                    f64([[1.0, 0.9], [0.0, 1.0]]),
                ),
            ),
            unusual=values(AsList(), AsNumpy(), f64([[2, 0], [0, 1]])),
            words=("cov",),
        ),
        Slot(
            "order",
            bad=values(0, -1, 1.5, "3", NAN, True),
            unusual=values(None, 3, 5),
            words=("order",),
        ),
        Slot(
            "rule",
            bad=unknown_strings(),
            unusual=values("product", "sparse", "auto"),
            words=("rule",),
        ),
        *_tolerance_slots(),
        Slot("batched", bad=values("no", None, 2), words=("batched",)),
    ),
    user=("f",),
)

RULES = [
    Target(
        f"probcalc.integrate.{rule.__name__}",
        rule,
        lambda: {"n": 5},
        (
            Slot(
                "n",
                bad=values(0, -1, 1.5, "3", None, NAN, INF, True, [3]),
                unusual=values(1, np.int64(4), 3.0),
                words=("n", "order"),
            ),
            Slot(
                "dtype",
                bad=values("float64", torch.int64, 3, torch.complex128),
                unusual=values(torch.float32, None),
                words=("dtype",),
            ),
            Slot("device", bad=values("nodevice", 3), unusual=values("cpu"), words=("device",)),
        ),
    )
    for rule in (
        pc.integrate.gauss_legendre,
        pc.integrate.gauss_kronrod,
        pc.integrate.gauss_hermite,
    )
]

SMOLYAK = Target(
    "probcalc.integrate.smolyak",
    pc.integrate.smolyak,
    lambda: {
        "level": 2,
        "d": 2,
        "rule": pc.integrate.gauss_hermite,
        "dtype": torch.float64,
        "device": "cpu",
    },
    (
        Slot("level", bad=values(0, -1, 1.5, "2", None), unusual=values(1, 3), words=("level",)),
        Slot("d", bad=values(0, -1, 1.5, "2", None), unusual=values(1, 3), words=("d",)),
        Slot("rule", bad=values(None, 3, "gauss_hermite"), words=("rule",)),
    ),
)


# -------------------------------------------------------------------- laplace
def _log_joint(theta):
    return -0.5 * ((theta - 1.0) ** 2).sum() - 0.1 * (theta**4).sum()


def _vector_joint(theta):
    return -0.5 * (theta - 1.0) ** 2


def _nan_joint(theta):
    return (theta * NAN).sum()


def _fit_valid():
    return {"log_joint": _log_joint, "theta0": f64([0.0, 0.5])}


def _fit_numbers(result):
    return [result.mode, result.log_evidence, result.precision]


FIT = Target(
    "probcalc.laplace.fit",
    pc.laplace.fit,
    _fit_valid,
    (
        Slot(
            "log_joint", bad=values(*NOT_CALLABLE, _vector_joint, _nan_joint), words=("log_joint",)
        ),
        Slot(
            "theta0",
            bad=one_of(
                nonfinite_elements(), values(COMPLEX, Unsqueeze(), First(), Empty(), "t", None)
            ),
            unusual=values(AsList(), AsNumpy(), INT),
            words=("theta0",),
        ),
        Slot(
            "structure", bad=unknown_strings(), unusual=values("diag", "full"), words=("structure",)
        ),
        Slot(
            "optimizer",
            bad=unknown_strings(),
            unusual=values("newton-cg", "lbfgs"),
            words=("optimizer",),
        ),
        Slot(
            "prior_precision",
            bad=values(0.0, -1.0, NAN, INF, "1", f64([1.0, 2.0, 3.0]), f64([1.0, NAN]), 1j),
            unusual=values(2, f64([1.0, 2.0]), [1.0, 2.0], None),
            words=("prior_precision",),
        ),
        Slot(
            "repair",
            bad=unknown_strings().filter(lambda v: v is not None),
            unusual=values(None, "jitter", "clip"),
            words=("repair",),
        ),
        Slot(
            "constraints",
            bad=values("pos", ["positive"], 3, [None, "pos"]),
            unusual=values("real", [None, "real"], None),
            words=("constraints",),
        ),
        Slot("tol", bad=values(-1.0, NAN, "1e-8"), unusual=values(None, 1e-6), words=("tol",)),
        Slot(
            "max_iter",
            bad=values(-1, 1.5, "10", NAN),
            unusual=values(None, 50),
            words=("max_iter",),
        ),
    ),
    user=("log_joint",),
    finite=_fit_numbers,
)

FIT_LOWRANK = Target(
    "probcalc.laplace.fit(structure='lowrank')",
    pc.laplace.fit,
    lambda: {
        "log_joint": _log_joint,
        "theta0": f64([0.0, 0.5, 0.2]),
        "structure": "lowrank",
        "rank": 1,
        "prior_precision": 1.0,
    },
    (
        Slot("rank", bad=values(0, -1, 1.5, "1", None, 4, NAN), unusual=values(2), words=("rank",)),
        Slot("prior_precision", bad=values(None, 0.0, -1.0), words=("prior_precision",)),
    ),
    user=("log_joint",),
    finite=_fit_numbers,
)


def _fitted():
    return pc.laplace.fit(_log_joint, f64([0.0, 0.5]))


def _sample(n_samples, seed=0):
    return _fitted().sample(n_samples, seed=seed)


SAMPLE = Target(
    "probcalc.laplace.LaplaceApproximation.sample",
    _sample,
    lambda: {"n_samples": 8},
    (
        Slot(
            "n_samples",
            bad=values(-1, 1.5, "3", None, NAN),
            unusual=values(1, np.int64(4)),
            either=values(0),
            words=("n_samples",),
        ),
        Slot(
            "seed",
            bad=values("0", 1.5, NAN, [1], -1),
            unusual=values(None, 2),
            either=values(np.int64(2)),
            words=("seed",),
        ),
    ),
)


def _predictive(f, method="mc", n_samples=100, seed=0):
    return _fitted().predictive(f, method, n_samples=n_samples, seed=seed)


PREDICTIVE = Target(
    "probcalc.laplace.LaplaceApproximation.predictive",
    _predictive,
    lambda: {"f": lambda theta: theta**2},
    (
        Slot("f", bad=values(None, 3, lambda theta: theta * NAN), words=("f",)),
        Slot(
            "method",
            bad=unknown_strings(),
            unusual=values("linearized", "unscented"),
            words=("method",),
        ),
        Slot(
            "n_samples",
            bad=values(0, 1, -1, 1.5, "10", None),
            unusual=values(2, 50),
            words=("n_samples",),
        ),
    ),
    user=("f",),
)


def _module_valid():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1).double()
    X = torch.linspace(-1.0, 1.0, 8).reshape(4, 2)
    y = X @ f64([[0.5], [-1.0]]) + 0.1
    return {"model": model, "data": (X, y)}


def _module_numbers(result):
    return [result.mode, result.log_evidence]


def _data_edit(fn):
    class DataEdit(Poison):
        def __init__(self) -> None:
            super().__init__(NAN)
            self.label = fn.__name__

        def apply(self, valid):
            return fn(*valid)

        def __repr__(self):
            return f"DataEdit({self.label})"

    return DataEdit()


def _nan_inputs(X, y):
    X = X.clone()
    X[1, 0] = NAN
    return X, y


def _nan_targets(X, y):
    y = y.clone()
    y[2, 0] = INF
    return X, y


def _short_targets(X, y):
    return X, y[:-1]


def _inputs_alone(X, y):
    return (X,)


def _integer_inputs(X, y):
    return X.round().long(), y


FIT_MODULE = Target(
    "probcalc.laplace.fit_module",
    pc.laplace.fit_module,
    _module_valid,
    (
        Slot("model", bad=values(None, 3, "linear", _square), words=("model",)),
        Slot(
            "data",
            bad=values(
                *(
                    _data_edit(fn)
                    for fn in (
                        _nan_inputs,
                        _nan_targets,
                        _short_targets,
                        _inputs_alone,
                        _integer_inputs,
                    )
                ),
                "data",
                None,
                3,
            ),
            words=("data", "X", "y"),
        ),
        Slot("likelihood", bad=unknown_strings(), words=("likelihood",)),
        Slot("curvature", bad=unknown_strings(), unusual=values("hessian"), words=("curvature",)),
        Slot(
            "structure",
            bad=unknown_strings(),
            unusual=values("diag", "last_layer"),
            words=("structure",),
        ),
        Slot(
            "prior_precision",
            bad=values(0.0, -1.0, NAN, INF, "1", None),
            unusual=values(2, 0.5),
            words=("prior_precision",),
        ),
        Slot(
            "sigma_noise",
            bad=values(0.0, -1.0, NAN, INF, "1", None),
            unusual=values(2),
            words=("sigma_noise",),
        ),
    ),
    finite=_module_numbers,
)


def _softmax_valid():
    return {
        "mean": f64([[0.5, -0.5, 0.0], [1.0, 2.0, -1.0]]),
        "covariance": torch.eye(3, dtype=torch.float64).expand(2, 3, 3) * 0.5,
    }


EXPECTED_SOFTMAX = Target(
    "probcalc.laplace.expected_softmax",
    pc.laplace.expected_softmax,
    _softmax_valid,
    (
        Slot(
            "mean",
            bad=one_of(
                nonfinite_elements(),
                values(DropLast(), First(), Unsqueeze(), COMPLEX, "m", None, f64([[0.5], [1.0]])),
            ),
            either=values(INT, AsList(), AsNumpy()),
            words=("mean",),
        ),
        Slot(
            "covariance",
            bad=one_of(
                nonfinite_elements(), values(Scaled(-1.0), DropLast(), First(), COMPLEX, "c", None)
            ),
            unusual=values(Scaled(0.0)),
            either=values(AsList()),
            words=("covariance",),
        ),
        Slot(
            "link_approx",
            bad=unknown_strings(),
            unusual=values("bridge", "mc", "probit"),
            words=("link_approx",),
        ),
        Slot(
            "n_samples",
            bad=values(0, -1, 1.5, "10", None),
            unusual=values(1, 20),
            words=("n_samples",),
        ),
        Slot("seed", bad=values("0", 1.5, [1]), unusual=values(None, 3), words=("seed",)),
    ),
)


# -------------------------------------------------------------------- marginal
def _gaussian_joint(theta):
    return -0.5 * (theta**2).sum()


def _evidence_numbers(result):
    return [result.log_evidence]


EVIDENCE = Target(
    "probcalc.evidence",
    pc.evidence,
    lambda: {"log_joint": _gaussian_joint, "theta0": f64([0.3])},
    (
        Slot(
            "log_joint", bad=values(*NOT_CALLABLE, _nan_joint, _vector_joint), words=("log_joint",)
        ),
        Slot(
            "method",
            bad=unknown_strings(),
            unusual=values("quadrature", "laplace"),
            words=("method",),
        ),
        Slot(
            "theta0",
            bad=one_of(nonfinite_elements(), values(COMPLEX, Unsqueeze(), Empty(), First(), "t")),
            unusual=values(AsList(), INT),
            words=("theta0",),
        ),
        Slot(
            "constraints",
            bad=values("pos", ["real", "real"], 3),
            unusual=values("real", None),
            words=("constraints",),
        ),
    ),
    user=("log_joint",),
    finite=_evidence_numbers,
)

EVIDENCE_MC = Target(
    "probcalc.evidence(method='mc')",
    pc.evidence,
    lambda: {
        "log_joint": _gaussian_joint,
        "theta0": f64([0.3]),
        "method": "mc",
        "n_samples": 64,
        "seed": 0,
    },
    (
        Slot(
            "n_samples",
            bad=values(0, -1, 5, 1.5, "64", NAN),
            unusual=values(32, np.int64(40)),
            words=("n_samples",),
        ),
        Slot(
            "df",
            bad=values(0.0, -1.0, NAN, "5"),
            unusual=values(3, 30.0),
            either=values(INF),
            words=("df",),
        ),
        Slot(
            "seed",
            bad=values("0", 1.5, NAN, -1),
            unusual=values(None, 1),
            either=values(np.int64(1)),
            words=("seed",),
        ),
        Slot(
            "proposal",
            bad=values("t", Normal(f64(0.0), f64(1.0)), 3),
            unusual=values(torch.distributions.Independent(Normal(f64([0.0]), f64([1.5])), 1)),
            words=("proposal",),
        ),
    ),
    user=("log_joint",),
    finite=_evidence_numbers,
)

EVIDENCE_BOUNDS = Target(
    "probcalc.evidence(bounds=...)",
    pc.evidence,
    lambda: {"log_joint": _gaussian_joint, "method": "quadrature", "bounds": [(-8.0, 8.0)]},
    (
        Slot(
            "bounds",
            bad=values(
                [(0.0, NAN)], [(1.0, -1.0)], [(0.0, 1.0)] * 7, "x", [(0.0,)], [("a", 1.0)], [], 3
            ),
            unusual=values([(-INF, INF)], ((-8, 8),), [[-9.0, 9.0]]),
            words=("bounds", "d"),
        ),
        Slot("rtol", bad=values(*BAD_TOLERANCES), unusual=values(1e-6), words=("rtol",)),
    ),
    user=("log_joint",),
    finite=_evidence_numbers,
)


def _nested_joint(theta, h):
    return -0.5 * (theta**2).sum() * torch.exp(h[0]) + 0.5 * h[0] - 0.5 * h[0] ** 2


def _nested_numbers(result):
    return [result.log_evidence, result.theta_mean, result.theta_var]


NESTED = Target(
    "probcalc.nested_laplace",
    pc.nested_laplace,
    lambda: {
        "log_joint": _nested_joint,
        "theta0": f64([0.2]),
        "hyper_bounds": [(-1.0, 1.0)],
        "n_nodes": 3,
    },
    (
        Slot(
            "log_joint",
            bad=values(*NOT_CALLABLE, lambda theta, h: theta * NAN),
            words=("log_joint",),
        ),
        Slot(
            "theta0",
            bad=one_of(nonfinite_elements(), values(COMPLEX, Unsqueeze(), Empty(), "t", None)),
            unusual=values(AsList(), INT),
            words=("theta0",),
        ),
        Slot(
            "hyper_bounds",
            bad=values(
                [],
                [(1.0, -1.0)],
                [(0.0, NAN)],
                [(0.0, INF)],
                [(0.0, 1.0)] * 4,
                "ab",
                [(0.0,)],
                None,
            ),
            unusual=values(((-1, 1),), [[-0.5, 0.5]]),
            words=("hyper_bounds", "hyperparameters"),
        ),
        Slot(
            "n_nodes",
            bad=values(0, -1, 1.5, "3", NAN, True),
            unusual=values(None, 2),
            words=("n_nodes",),
        ),
    ),
    user=("log_joint",),
    finite=_nested_numbers,
)

TARGETS = [
    QUAD,
    CUBATURE,
    LOG_INTEGRAL,
    EXPECT_NORMAL,
    *RULES,
    SMOLYAK,
    FIT,
    FIT_LOWRANK,
    SAMPLE,
    PREDICTIVE,
    FIT_MODULE,
    EXPECTED_SOFTMAX,
    EVIDENCE,
    EVIDENCE_MC,
    EVIDENCE_BOUNDS,
    NESTED,
]
