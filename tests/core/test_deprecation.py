"""Renamed keywords and fields: the old name works, warns, and names the new one."""

from dataclasses import dataclass

import pytest

from probcalc.core.deprecation import deprecated_field, renamed


@renamed("n", "n_samples")
def draws(x, *, n_samples=3):
    return x * n_samples


def test_a_renamed_keyword_warns_and_is_passed_on():
    assert draws(2, n_samples=5) == 10
    with pytest.warns(DeprecationWarning, match="use n_samples="):
        assert draws(2, n=5) == 10
    with pytest.raises(TypeError, match="both 'n' and its new name 'n_samples'"):
        draws(2, n=5, n_samples=5)


@dataclass(frozen=True)
class Result:
    n_evals: int
    nfev = deprecated_field("nfev", "n_evals")


def test_a_deprecated_field_reads_the_new_one_with_a_warning():
    result = Result(7)
    with pytest.warns(DeprecationWarning, match=r"Result\.nfev is deprecated: use \.n_evals"):
        assert result.nfev == 7
