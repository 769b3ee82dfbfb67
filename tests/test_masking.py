"""The mask rules both models share (core/masking.py)."""
from __future__ import annotations

import pytest
import torch

from core.masking import masked_error, n_complementary, n_hidden, random_hidden


@pytest.mark.parametrize("n_units, ratio, hidden", [(10, 0.4, 4), (10, 0.01, 1), (4, 0.99, 3),
                                                    (16, 0.75, 12), (1, 0.5, 1)])
def test_training_hides_round_ratio_but_keeps_one_unit_visible(n_units, ratio, hidden):
    assert n_hidden(n_units, ratio) == hidden
    mask = random_hidden(32, n_units, ratio, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.sum(dim=1).tolist() == [hidden] * 32


def test_random_hidden_follows_the_generator():
    a = random_hidden(8, 20, 0.5, torch.Generator().manual_seed(4))
    b = random_hidden(8, 20, 0.5, torch.Generator().manual_seed(4))
    c = random_hidden(8, 20, 0.5, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("n_units, ratio, k", [(20, 0.5, 2), (20, 0.2, 5), (20, 0.125, 8),
                                               (20, 0.9, 2), (3, 0.1, 3)])
def test_complementary_count(n_units, ratio, k):
    assert n_complementary(n_units, ratio) == k


def test_masked_error_takes_each_place_from_the_mask_that_hides_it():
    """Reconstruction under mask i is off by i+1 everywhere; each place must get the error of
    the one mask that hid it."""
    masks = torch.arange(6)[None, :] % 3 == torch.arange(3)[:, None]  # (3, 6): 3 masks
    errors = {i: torch.full((2, 6), float(i + 1)) for i in range(3)}
    index = {tuple(m.tolist()): i for i, m in enumerate(masks)}
    err = masked_error(masks, lambda m: errors[index[tuple(m.tolist())]], lambda m: m)
    assert err.tolist() == [[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]] * 2
