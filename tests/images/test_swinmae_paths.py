"""The fast paths in core/images/swinmae.py give what the plain definitions give: the shifted
window partition as one gather (`window_order`, `gather_tokens`) equals roll + partition and its
gradient is the inverse; the CPU attention with a broadcast bias (`biased_attention` in
training, `folded_window_sdpa` in inference) equals SDPA with the bias expanded per window; a
Swin block equals the roll/partition/SDPA reference, with and without gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.images.swinmae import (SwinBlock, biased_attention, folded_window_sdpa,
                                 gather_tokens, shifted_window_mask, window_order,
                                 window_partition, window_reverse)


@pytest.mark.parametrize("shift", [0, 2])
def test_window_order_is_roll_then_partition(shift):
    B, H, W, C, ws = 2, 8, 8, 3, 4
    x = torch.randn(B, H, W, C)
    order = window_order(H, W, ws, shift)
    want = window_partition(torch.roll(x, shifts=(-shift, -shift), dims=(1, 2)), ws)
    got = gather_tokens(x.reshape(B, H * W, C), order, order.argsort())
    assert torch.equal(got.view(-1, ws * ws, C), want)
    assert sorted(order.tolist()) == list(range(H * W))  # a permutation


def test_gather_tokens_gradient_is_the_inverse_gather():
    x = torch.randn(2, 16, 3, requires_grad=True)
    order = torch.randperm(16)
    g = torch.randn(2, 16, 3)
    gather_tokens(x, order, order.argsort()).backward(g)
    x2 = x.detach().requires_grad_()
    x2.index_select(1, order).backward(g)  # autograd's own gradient of the same gather
    assert torch.equal(x.grad, x2.grad)


@pytest.mark.parametrize("masked", [False, True])
def test_biased_attention_matches_sdpa(masked):
    torch.manual_seed(0)
    B, nW, nh, T, hd = 3, 4, 2, 16, 8
    q, k, v = (torch.randn(B * nW, nh, T, hd, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, nh, T, T, requires_grad=True)
    full = bias
    if masked:
        mask = shifted_window_mask(8, 8, 4, 2)[:, None]  # (nW, 1, T, T)
        full = bias + mask
    got = biased_attention(q, k, v, full)
    want = F.scaled_dot_product_attention(
        q, k, v, attn_mask=full.expand(B, full.shape[0], nh, T, T).reshape(B * nW, nh, T, T)
        if masked else full.expand(B * nW, nh, T, T))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(got)
    grads = torch.autograd.grad(got, (q, k, v, bias), g)
    want_grads = torch.autograd.grad(want, (q, k, v, bias), g)
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(folded_window_sdpa(q, k, v, full), want, rtol=1e-5,
                                   atol=1e-6)


def reference_block(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """A Swin block as the paper writes it: roll, partition, SDPA with the bias and mask
    expanded per window, reverse, roll back; with the window, shift, bias rows and mask of the
    block's layout for x's grid."""
    B, H, W, D = x.shape
    lay, attn = block.layout(H), block.attn
    s, ws = lay.shift, lay.ws
    h = torch.roll(block.norm1(x), shifts=(-s, -s), dims=(1, 2))
    win = window_partition(h, ws)  # (B*nW, T, D)
    BW, T, _ = win.shape
    nh = attn.num_heads
    q, k, v = attn.qkv(win).view(BW, T, 3, nh, D // nh).permute(2, 0, 3, 1, 4)
    bias = attn.bias_table[lay.bias_index].permute(2, 0, 1)  # (nh, T, T)
    if lay.attn_mask is not None:
        bias = bias + lay.attn_mask[:, None]  # (nW, nh, T, T)
        bias = bias.expand(B, *bias.shape).reshape(BW, nh, T, T)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.expand(BW, nh, T, T))
    y = attn.proj(y.transpose(1, 2).reshape(BW, T, D))
    y = torch.roll(window_reverse(y, ws, H, W), shifts=(s, s), dims=(1, 2))
    x = x + y
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize("shift", [0, 2])
def test_swin_block_matches_the_reference(shift):
    torch.manual_seed(0)
    block = SwinBlock(dim=16, num_heads=2, grid=8, ws=4, shift=shift, mlp_ratio=2.0)
    x = torch.randn(2, 8, 8, 16, requires_grad=True)
    got, want = block(x), reference_block(block, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(got)
    params = [x, *block.parameters()]
    for a, b in zip(torch.autograd.grad(got, params, g), torch.autograd.grad(want, params, g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the inference path
        torch.testing.assert_close(block(x), want, rtol=1e-5, atol=1e-5)
