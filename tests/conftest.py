"""Test set-up: float64 by default (the numerics' dtype) and fixed seeds in every test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _float64_and_seeds():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)
