"""Stored outputs of every trainer on a fixed tiny CLIP (``tests/golden.py``); refactors must reproduce them."""
import pytest
import torch
from golden import CASES, TOL, compute, path_of


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_equal_the_stored_golden_ones(name):
    stored = torch.load(path_of(name), weights_only=True)
    now = compute(name)
    assert sorted(now) == sorted(stored)
    for key, want in stored.items():
        got = now[key]
        assert got.shape == want.shape, key
        assert torch.allclose(got.to(want.dtype), want, atol=TOL, rtol=0), (key, (got - want).abs().max().item())
