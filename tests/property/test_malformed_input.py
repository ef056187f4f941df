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

PROFILE = settings.get_profile(os.environ.get("PROBCALC_PROPERTY_PROFILE", "property"))


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in cases(TARGETS)])
@settings(PROFILE)
@given(data=st.data())
def test_public_function_handles_malformed_input(case, data):
    value = data.draw(case.strategy, label=case.slot.name)
    run_case(case, value)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_valid_call_of_the_table_works(target):
    """Every target's valid call succeeds with a finite result: the malformed cases start
    from a call that works, so that a rejection is the malformed value's doing."""
    run_valid(target)
