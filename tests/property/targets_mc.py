"""probcalc.mc: expectation, importance sampling, PSIS and the gradient estimators."""

import math

import numpy as np
import torch
from malformed import (
    NAN,
    AsDtype,
    AsList,
    AsNumpy,
    DropLast,
    Empty,
    First,
    Poison,
    Slot,
    Target,
    Unsqueeze,
    f64,
    one_of,
    unknown_strings,
    values,
)
from torch.distributions import Bernoulli, Normal

import probcalc as pc

COMPLEX = AsDtype(torch.complex128)
NOT_A_DISTRIBUTION = (None, "normal", f64([0.0, 1.0]), Normal)
# counts of draws: the first are never valid
BAD_COUNTS = (0, 1, -5, 1.5, NAN, math.inf, "32", None, True, [32])
SEEDS_BAD = ("0", 1.5, [1], NAN, 2**70, -1, True)
SEEDS_UNUSUAL = (torch.Generator().manual_seed(1), 0, 3, None)


def _square(x):
    return x**2


def _nan(x):
    return x * NAN


def _sum_all(x):
    return x.sum()  # 0-d: not one value a sample


def _pairs(x):
    return torch.stack([x, x], dim=-1)  # (n, 2): two values a sample


def _as_list(x):
    return x.tolist()


def _normal():
    return Normal(f64(0.3), f64(1.2))


EXPECTATION = Target(
    "probcalc.mc.expectation",
    pc.mc.expectation,
    lambda: {"f": _square, "dist": _normal(), "n_samples": 32, "seed": 0},
    (
        Slot("f", bad=values(None, 3, "f", _nan, _sum_all, _as_list), words=("f",)),
        Slot("dist", bad=values(*NOT_A_DISTRIBUTION), words=("dist",)),
        Slot(
            "n_samples",
            bad=values(*BAD_COUNTS),
            unusual=values(np.int64(16), 2, 33.0),
            words=("n_samples",),
        ),
        Slot(
            "method",
            bad=unknown_strings(),
            unusual=values("mc", "antithetic", "qmc"),
            words=("method",),
        ),
        Slot("seed", bad=values(*SEEDS_BAD), unusual=values(*SEEDS_UNUSUAL), words=("seed",)),
        Slot(
            "batch_size",
            bad=values(0, -1, 1.5, "8", NAN, math.inf, True),
            unusual=values(1, 7, None, np.int64(5)),
            words=("batch_size",),
        ),
        Slot("batched", bad=values("no", None, 2), unusual=values(False, True), words=("batched",)),
        Slot(
            "scrambles",
            bad=values(0, -1, 1.5, "2", NAN, None),
            unusual=values(1),
            words=("scrambles",),
        ),
    ),
    user=("f",),
)

QMC = Target(
    "probcalc.mc.expectation(method='qmc')",
    pc.mc.expectation,
    lambda: {"f": _square, "dist": _normal(), "n_samples": 64, "seed": 0, "method": "qmc"},
    (
        Slot(
            "n_samples",
            bad=values(63, 48, 8, 0, 2**31),
            unusual=values(16, 128),
            words=("n_samples",),
        ),
        Slot(
            "scrambles",
            bad=values(0, -1, 1.5, "2", 3, 64, NAN),
            unusual=values(2, 4),
            words=("scrambles",),
        ),
        Slot("dist", bad=values(Bernoulli(f64(0.3)), None), words=("dist", "method")),
    ),
    user=("f",),
)


def _log_target(x):
    return -0.5 * x**2


def _minus_inf(x):
    return x * 0 - math.inf


def _plus_inf(x):
    return x * 0 + math.inf


def _importance_valid():
    return {
        "log_target": _log_target,
        "proposal": Normal(f64(0.0), f64(1.5)),
        "n_samples": 32,
        "seed": 0,
    }


def _importance_numbers(result):
    return [result.log_evidence, result.stderr, result.ess]


IMPORTANCE = Target(
    "probcalc.mc.importance_sampling",
    pc.mc.importance_sampling,
    _importance_valid,
    (
        Slot(
            "log_target",
            bad=values(None, 3, _nan, _plus_inf, _minus_inf, _sum_all, _pairs, _as_list),
            words=("log_target", "log weight"),
        ),
        Slot("proposal", bad=values(*NOT_A_DISTRIBUTION), words=("proposal",)),
        Slot(
            "n_samples",
            bad=values(*BAD_COUNTS, 9),
            unusual=values(10, np.int64(20)),
            words=("n_samples",),
        ),
        Slot(
            "smoothing", bad=unknown_strings(), unusual=values("psis", "none"), words=("smoothing",)
        ),
        Slot("seed", bad=values(*SEEDS_BAD), unusual=values(*SEEDS_UNUSUAL), words=("seed",)),
    ),
    user=("log_target",),
    finite=_importance_numbers,
)


def _importance_expectation(f):
    result = pc.mc.importance_sampling(_log_target, Normal(f64(0.0), f64(1.5)), 32, seed=0)
    return result.expectation(f)


IMPORTANCE_EXPECTATION = Target(
    "probcalc.mc.ImportanceResult.expectation",
    _importance_expectation,
    lambda: {"f": _square},
    (Slot("f", bad=values(None, 3, _nan, _sum_all, _as_list), words=("f",)),),
    user=("f",),
)


def _psis_smoothed(result):
    smoothed, _ = result
    return [smoothed[smoothed > -math.inf]]


PSIS = Target(
    "probcalc.mc.psis",
    pc.mc.psis,
    lambda: {"log_weights": torch.linspace(-3.0, 0.0, 20) + torch.sin(torch.arange(20.0))},
    (
        Slot(
            "log_weights",
            bad=one_of(
                values(
                    Poison(NAN),
                    Poison(math.inf, 0.5),
                    Poison(NAN, 0.99),
                    Unsqueeze(),
                    First(),
                    Empty(),
                    COMPLEX,
                    "w",
                    None,
                    torch.full((20,), -math.inf, dtype=torch.float64),
                    f64(np.zeros(9)),
                )
            ),
            unusual=values(
                Poison(-math.inf),
                Poison(-math.inf, 0.7),
                AsList(),
                AsNumpy(),
                DropLast(),
                f64(np.zeros(20)),
            ),
            either=values(AsDtype(torch.float32)),
            words=("log_weights",),
        ),
    ),
    finite=_psis_smoothed,
)


def _score_valid():
    return {
        "f": _square,
        "dist": Normal(f64(0.5).requires_grad_(), f64(1.0)),
        "n_samples": 16,
        "seed": 0,
    }


SCORE_FUNCTION = Target(
    "probcalc.mc.score_function_grad",
    pc.mc.score_function_grad,
    _score_valid,
    (
        Slot("f", bad=values(None, 3, _nan, _sum_all, _pairs, _as_list), words=("f",)),
        Slot("dist", bad=values(*NOT_A_DISTRIBUTION), words=("dist",)),
        Slot(
            "n_samples",
            bad=values(*BAD_COUNTS),
            unusual=values(2, np.int64(8)),
            words=("n_samples",),
        ),
        Slot(
            "baseline",
            bad=unknown_strings().filter(lambda v: v is not None),
            unusual=values(None, "mean", "leave-one-out"),
            words=("baseline",),
        ),
        Slot("seed", bad=values(*SEEDS_BAD), unusual=values(*SEEDS_UNUSUAL), words=("seed",)),
    ),
    user=("f",),
)

PATHWISE = Target(
    "probcalc.mc.pathwise_grad",
    pc.mc.pathwise_grad,
    _score_valid,
    (
        Slot("f", bad=values(None, 3, _nan, _sum_all, _pairs), words=("f",)),
        Slot(
            "dist", bad=values(*NOT_A_DISTRIBUTION, Bernoulli(f64(0.3))), words=("dist", "sampler")
        ),
        Slot(
            "n_samples",
            # one draw is a valid pathwise estimate (SAC's actor loss takes one per state)
            bad=values(*(n for n in BAD_COUNTS if not (type(n) is int and n == 1))),
            unusual=values(1, np.int64(8)),
            words=("n_samples",),
        ),
        Slot("seed", bad=values(*SEEDS_BAD), unusual=values(*SEEDS_UNUSUAL), words=("seed",)),
    ),
    user=("f",),
)

TARGETS = [EXPECTATION, QMC, IMPORTANCE, IMPORTANCE_EXPECTATION, PSIS, SCORE_FUNCTION, PATHWISE]
