"""The seed convention: int reproduces, Generator advances, None is fresh, global state
untouched."""

import numpy as np
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


@pytest.mark.parametrize("seed", [np.int64(7), np.uint32(7), np.int8(7)])
def test_a_numpy_integer_is_an_int_seed(seed):
    assert check_seed(seed) == 7 and type(check_seed(seed)) is int
    assert integer_seed(seed) == 7
    assert torch.equal(
        torch.rand(4, generator=generator(seed)), torch.rand(4, generator=generator(7))
    )
    with seeded(seed):
        inside = torch.rand(3)
    with seeded(7):
        assert torch.equal(torch.rand(3), inside)


@pytest.mark.parametrize("seed", [2**64, 2**70])
def test_a_seed_torch_cannot_take_is_a_value_error_before_any_draw(seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative int below 2\^64"):
        check_seed(seed)
    with pytest.raises(ValueError, match=r"below 2\^64"), seeded(seed):
        pass


def test_the_largest_seed_torch_takes_is_accepted():
    largest = np.uint64(2**64 - 1)
    with seeded(largest):
        first = torch.rand(2)
    assert torch.equal(torch.rand(2, generator=generator(2**64 - 1)), first)
