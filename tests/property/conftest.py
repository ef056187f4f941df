"""Hypothesis settings of the malformed-input suite, and the count of what it ran.

The profile is derandomized (the same examples on every run, so CI is reproducible) and
skips shrinking: every strategy draws from short lists of malformed values, whose examples
are already small. The profiles are registered here and applied by the suite's tests alone (not
loaded globally, so that other hypothesis tests keep their own settings);
``PROBCALC_PROPERTY_PROFILE=property-dev`` explores more examples, with shrinking.
"""

from hypothesis import HealthCheck, Phase, settings
from malformed import COUNTS

_COMMON = {
    "deadline": None,
    # the root conftest's autouse fixture (float64, seed 0) is function-scoped; the suite
    # sets nothing per example that it would have to reset
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "database": None,
}
settings.register_profile(
    "property",
    max_examples=8,
    derandomize=True,
    phases=(Phase.explicit, Phase.generate),
    **_COMMON,
)
settings.register_profile("property-dev", max_examples=60, **_COMMON)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not COUNTS:
        return
    targets = {target for target, _, _ in COUNTS}
    # "probcalc.mc.expectation(method='qmc')" is a second set-up of one function
    functions = {target.split("(")[0] for target in targets}
    slots = {(target, slot) for target, slot, _ in COUNTS}
    by_kind = {
        kind: sum(n for (_, _, k), n in COUNTS.items() if k == kind)
        for kind in ("bad", "unusual", "either", "passthrough")
    }
    terminalreporter.write_sep("-", "malformed-input property suite")
    terminalreporter.write_line(
        f"{len(functions)} public functions and constructors ({len(targets)} call set-ups), "
        f"{len(slots)} argument slots, "
        f"{sum(COUNTS.values())} cases run ({by_kind['bad']} malformed, "
        f"{by_kind['unusual']} valid but unusual, {by_kind['either']} either, "
        f"{by_kind['passthrough']} non-finite parameters passed through)"
    )
