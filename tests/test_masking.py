"""The mask rules both models share (core/masking.py)."""
from __future__ import annotations

import pytest
import torch

from core.masking import (gather_units, masked_error, n_complementary, n_hidden, random_hidden,
                          scatter_units, visible_index)


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


def test_visible_index_lists_each_rows_visible_units_in_order():
    hidden = torch.tensor([[True, False, False, True, False],
                           [False, False, True, True, False],
                           [True, True, False, False, False]])
    assert visible_index(hidden, 3).tolist() == [[1, 2, 4], [0, 1, 4], [2, 3, 4]]


@pytest.mark.parametrize("n_units, ratio", [(10, 0.4), (16, 0.75), (7, 0.5), (2, 0.5)])
def test_gather_and_scatter_of_visible_units_are_exact_inverses(n_units, ratio):
    g = torch.Generator().manual_seed(3)
    hidden = random_hidden(6, n_units, ratio, g)  # (S, N)
    n_keep = n_units - n_hidden(n_units, ratio)
    index = visible_index(hidden, n_keep)  # (S, n_keep)
    x = torch.randn(6, n_units, 5, generator=g)  # (S, N, D)
    kept = gather_units(x, index)  # (S, n_keep, D)
    assert kept.shape == (6, n_keep, 5)
    assert not hidden.gather(1, index).any()  # only visible units are gathered
    fill = torch.full((5,), -7.0)
    back = scatter_units(fill, kept, index, n_units)  # (S, N, D)
    assert torch.equal(back[~hidden], x[~hidden])  # visible units back in place, bit for bit
    assert torch.equal(back[hidden], fill.expand(int(hidden.sum()), 5))  # the rest is the fill
    assert torch.equal(gather_units(back, index), kept)  # and gathering again gives the tokens


def test_scatter_passes_gradients_to_tokens_and_fill():
    index = torch.tensor([[0, 2], [1, 2]])  # (S=2, n=2) of N=3
    tokens = torch.randn(2, 2, 4, requires_grad=True)
    fill = torch.zeros(4, requires_grad=True)
    scatter_units(fill, tokens, index, 3).sum().backward()
    assert torch.equal(tokens.grad, torch.ones(2, 2, 4))
    assert torch.equal(fill.grad, torch.full((4,), 2.0))  # one hidden unit per row
