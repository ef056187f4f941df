"""The seed convention: int reproduces, Generator advances, None is fresh, global state
untouched."""

import pytest
import torch

from probcalc.core.random import check_seed, generator, integer_seed, seeded


def test_an_int_gives_the_same_numbers_and_none_gives_fresh_ones():
    assert torch.equal(torch.rand(5, generator=generator(7)), torch.rand(5, generator=generator(7)))
    assert not torch.equal(
        torch.rand(5, generator=generator(None)), torch.rand(5, generator=generator(None))
    )
    assert integer_seed(None) != integer_seed(None)


def test_a_generator_is_used_and_advanced():
    source = torch.Generator().manual_seed(3)
    assert generator(source) is source
    first, second = integer_seed(source), integer_seed(source)
    assert first != second
    replay = torch.Generator().manual_seed(3)
    assert integer_seed(replay) == first


def test_seeded_blocks_leave_the_global_state_where_it_was():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    with seeded(5):
        inside = torch.rand(3)
    with seeded(None):
        torch.rand(3)
    assert torch.equal(torch.random.get_rng_state(), before)
    with seeded(5):
        assert torch.equal(torch.rand(3), inside)


@pytest.mark.parametrize("bad", [1.5, True, "0", [1], torch.tensor(3)])
def test_other_seed_types_are_a_type_error(bad):
    with pytest.raises(TypeError, match=r"seed must be an int, a torch\.Generator or None"):
        check_seed(bad)


def test_a_negative_seed_is_a_value_error():
    with pytest.raises(ValueError, match="non-negative"):
        check_seed(-1)
