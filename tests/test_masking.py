"""core.masking: the hiding rules PatchTST and Swin MAE share (True = hidden)."""
from __future__ import annotations

import pytest
import torch

from core.masking import complementary_count, random_hidden


def test_random_hidden_hides_exactly_the_count_per_row_and_varies_between_rows():
    mask = random_hidden(200, 10, 3, torch.Generator().manual_seed(0))
    assert mask.shape == (200, 10) and mask.dtype == torch.bool
    assert (mask.sum(1) == 3).all()
    assert len({tuple(row.tolist()) for row in mask}) > 50  # not one pattern repeated
    share = mask.float().mean(0)  # every item about equally often: 3/10
    assert ((share - 0.3).abs() < 0.12).all()


def test_random_hidden_is_reproducible_with_a_generator():
    first = random_hidden(4, 16, 5, torch.Generator().manual_seed(7))
    again = random_hidden(4, 16, 5, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)


@pytest.mark.parametrize("ratio, n_items, k", [
    (0.4, 10, 3), (0.2, 10, 5), (0.25, 64, 4), (0.75, 64, 2), (0.9, 64, 2), (0.1, 4, 4)])
def test_complementary_count_by_hand(ratio, n_items, k):
    assert complementary_count(ratio, n_items) == k
