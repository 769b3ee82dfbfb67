"""Swin MAE: a masked autoencoder on a Swin Transformer, for self-supervised anomaly detection on
images (Swin: Liu et al., ICCV 2021; Swin MAE: Xu et al., 2023; MAE: He et al., CVPR 2022).

Training hides random blocks of `mask_unit`×`mask_unit` patches. Hidden patch embeddings are
replaced by a learned mask token *before* the encoder: shifted windows and patch merging need the
full grid, so unlike ViT MAE the encoder sees every position (as in SimMIM, Xie et al. 2022). A
light decoder projects the last stage to `decoder_dim`, expands it back to the patch grid in one
step ("patch expanding", Cao et al. 2021, Swin-Unet), runs `decoder_depth` Swin blocks there and
predicts each patch's raw pixels. The loss is the MSE over hidden patches only.

`masking: uniform` (UM-MAE, Li et al. 2022) lets the encoder drop tokens after all: one mask
unit per 2×2 block is kept and the kept units are packed into a grid half as wide, where the
windows still tile; a secondary mask token hides a share of the packed units, so the task stays
hard. The encoder sees a quarter of the tokens; the decoder unpacks to the full grid
(`core/images/uniform_mask.py`).

Dimension names: B batch, C image channels, H×W image (square), p patch side, h×w patch grid
(h = H/p), N = h*w patches, D width, ws window side (in tokens), T = ws*ws tokens per window,
nW windows per image, nh heads. Encoder tensors are channels-last: (B, h, w, D).
Masks: bool, True = hidden.

Differences from the references, on purpose: the decoder expands in one step and runs 1–2 blocks
(a heavy decoder is what makes the reference Swin-MAE slow on CPU, `../shared/PERF.md`); no
absolute position embedding (Swin's default: the relative position bias carries position); no
dropout or stochastic depth (their CPU cost is large, and the models here are small)."""
from __future__ import annotations


from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.images.config import SwinMAEModelConfig, stage_windows
from core.images.uniform_mask import diagonal_packings, dropped, pack, uniform_keep, unpack
from core.masking import n_complementary, random_hidden


def preset(name: str, **changes) -> SwinMAEModelConfig:
    """The model config of a preset in configs/swinmae.yaml (`tiny`, `base`), with optional
    field changes, checked."""
    from core.config import from_dict, load_config
    cfg = load_config([f"swinmae.preset={name}"]).swinmae.model
    cfg = from_dict(SwinMAEModelConfig, cfg.model_dump() | changes, "swinmae.model")
    cfg.check()
    return cfg


# --- tensor helpers ---------------------------------------------------------------------------

def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) → (B, N, p*p*C); patches in raster order, each flattened as (row, col, C)."""
    B, C, H, W = imgs.shape
    x = imgs.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(x: torch.Tensor, p: int, h: int, w: int, C: int) -> torch.Tensor:
    """(B, N, p*p*C) → (B, C, h*p, w*p); the exact inverse of `patchify`."""
    B = x.shape[0]
    x = x.reshape(B, h, w, p, p, C).permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(B, C, h * p, w * p)


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) → (B*nW, ws*ws, C), nW = (H/ws)*(W/ws); windows and the tokens inside each
    in raster order."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C).transpose(2, 3)  # (B, H/ws, W/ws, ws, ws, C)
    return x.reshape(B * (H // ws) * (W // ws), ws * ws, C)


def window_reverse(windows: torch.Tensor, ws: int, H: int, W: int) -> torch.Tensor:
    """(B*nW, ws*ws, C) → (B, H, W, C); the exact inverse of `window_partition`."""
    C = windows.shape[-1]
    x = windows.view(-1, H // ws, W // ws, ws, ws, C).transpose(2, 3)  # (B, H/ws, ws, W/ws, ws, C)
    return x.reshape(-1, H, W, C)


def window_order(H: int, W: int, ws: int, shift: int) -> torch.Tensor:
    """Long (H*W,): the raster index, in the H×W grid, of each token of the shifted window
    partition, in its (nW, T) order: `x.flatten(1, 2)[:, order]` (B, nW*T, C) is
    `window_partition(torch.roll(x, (-shift, -shift), (1, 2)), ws)` viewed as (B, nW*T, C).
    One gather instead of a roll (a copy per rolled dim on CPU) and a partition copy."""
    grid = torch.arange(H * W).view(1, H, W, 1)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    return window_partition(grid, ws).flatten()


class _GatherTokens(torch.autograd.Function):
    """y = x[:, order] for a permutation `order` of dim 1. The gradient is the gather by the
    inverse permutation: a plain copy, where index_select's backward is a slow scatter-add."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(1, order)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(1, inverse), None, None


def gather_tokens(x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """(B, N, C) → (B, N, C), token i taken from x[:, order[i]]; `inverse` is order.argsort()."""
    return _GatherTokens.apply(x, order, inverse)


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     bias: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd) + bias) v in plain ops. q, k, v (B*nW, nh, T, hd), rows
    image-major; bias (nW, nh, T, T) or (1, nh, T, T) → (B*nW, nh, T, hd). The bias broadcasts
    over the images: no (B*nW, nh, T, T) copy of it, and its gradient is one sum."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B*nW, nh, T, T)
    scores.view(-1, *bias.shape).add_(bias)  # in place: matmul's backward does not need it
    return scores.softmax(dim=-1) @ v


def folded_window_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       bias: torch.Tensor) -> torch.Tensor:
    """As `biased_attention`, through SDPA's fused CPU kernel, which gives no gradient for the
    bias (inference). The windows are folded into the heads, (B, nW*nh, T, hd), so the bias
    broadcasts over the images: a copy of q, k and v instead of one of the bias per window."""
    BW, nh, T, hd = q.shape
    nW = bias.shape[0]
    q, k, v = (t.reshape(BW // nW, nW * nh, T, hd) for t in (q, k, v))  # image-major rows
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.reshape(1, nW * nh, T, T))
    return y.view(BW, nh, T, hd)


def shifted_window_mask(H: int, W: int, ws: int, shift: int,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Additive attention mask (nW, ws*ws, ws*ws) for the grid rolled by (-shift, -shift): -inf
    between two tokens of a window that were not neighbours in the image (one of them wrapped
    around from the opposite border), 0 otherwise. shift = 0 gives all zeros."""
    def region(n: int) -> torch.Tensor:  # (n,) 0: never wraps, 1: last window, 2: wrapped around
        i = torch.arange(n, device=device)
        return (i >= n - ws).long() + (i >= n - shift).long()

    label = region(H)[:, None] * 3 + region(W)[None, :]  # (H, W), 9 regions
    label = window_partition(label[None, :, :, None], ws)[..., 0]  # (nW, T)
    apart = label[:, :, None] != label[:, None, :]  # (nW, T, T)
    return torch.zeros(apart.shape, device=device).masked_fill(apart, float("-inf"))


def relative_position_index(ws: int, table_ws: int | None = None) -> torch.Tensor:
    """Long (T, T): row of the bias table for the offset between tokens i and j of a ws×ws
    window, (dy + t-1) * (2t-1) + (dx + t-1) for a table built for window t = table_ws (default
    ws), in [0, (2t-1)**2). A window smaller than the table's uses a subset of its offsets."""
    t = ws if table_ws is None else table_ws
    yx = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = yx[:, :, None] - yx[:, None, :] + (t - 1)  # (2, T, T), each in [t-ws, t+ws-2]
    return rel[0] * (2 * t - 1) + rel[1]


def block_mask(B: int, grid_h: int, grid_w: int, unit: int, ratio: float,
               generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool (B, grid_h, grid_w), True = hidden: whole unit×unit blocks of patches are hidden,
    `core.masking.n_hidden` of the n_units blocks per image, chosen uniformly at random. The
    generator must live on `device`."""
    uh, uw = grid_h // unit, grid_w // unit
    if uh * unit != grid_h or uw * unit != grid_w:
        raise ValueError(f"patch grid {grid_h}×{grid_w} is not a multiple of mask unit {unit}")
    hidden = random_hidden(B, uh * uw, ratio, generator, device)  # (B, n_units)
    hidden = hidden.view(B, uh, 1, uw, 1).expand(B, uh, unit, uw, unit)  # unit → its patches
    return hidden.reshape(B, grid_h, grid_w)


def complementary_block_masks(grid_h: int, grid_w: int, unit: int, ratio: float) -> torch.Tensor:
    """Bool (K, grid_h, grid_w), True = hidden, K = `core.masking.n_complementary`: unit
    (i, j) of the unit grid is hidden in mask (i * (K // 2) + j) % K only, so every unit is
    hidden exactly once and units sharing an edge are never hidden together (each hidden unit is
    predicted from context on all four sides). Each mask hides ~1/K of the image (1/2 at 0.75)."""
    uh, uw = grid_h // unit, grid_w // unit
    if uh * unit != grid_h or uw * unit != grid_w:
        raise ValueError(f"patch grid {grid_h}×{grid_w} is not a multiple of mask unit {unit}")
    k = n_complementary(uh * uw, ratio)
    i, j = torch.meshgrid(torch.arange(uh), torch.arange(uw), indexing="ij")
    which = (i * (k // 2) + j) % k  # (uh, uw)
    hidden = which[None] == torch.arange(k)[:, None, None]  # (K, uh, uw)
    return hidden.repeat_interleave(unit, 1).repeat_interleave(unit, 2)  # (K, grid_h, grid_w)


def patch_stats(patches: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, P) → per-patch (mean, std), each (B, N, 1), as MAE's norm_pix_loss uses them."""
    mean = patches.mean(dim=-1, keepdim=True)
    return mean, (patches.var(dim=-1, keepdim=True, unbiased=False) + eps).sqrt()


# --- modules ----------------------------------------------------------------------------------

class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias per
    head for each of the (2ws-1)^2 offsets (Swin §3.2). All windows go through one SDPA call."""

    def __init__(self, dim: int, num_heads: int, ws: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.empty((2 * ws - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)

    def forward(self, x: torch.Tensor, bias_index: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B*nW, T, D), bias_index (T, T) rows of the bias table (`relative_position_index`),
        mask (nW, T, T) additive or None → (B*nW, T, D)."""
        BW, T, D = x.shape
        nh, hd = self.num_heads, D // self.num_heads
        q, k, v = self.qkv(x).view(BW, T, 3, nh, hd).permute(2, 0, 3, 1, 4)  # (B*nW, nh, T, hd)
        bias = self.bias_table[bias_index].permute(2, 0, 1)[None]  # (1, nh, T, T)
        if mask is not None:  # window i of every image gets mask[i]; rows are image-major
            bias = bias + mask[:, None]  # (nW, nh, T, T)
        bias = bias.to(q.dtype)
        if q.is_cuda:  # SDPA can pick a fused kernel there (4-D inputs only: no 5-D batch)
            nW = bias.shape[0]
            bias = bias.expand(BW // nW, nW, nh, T, T).reshape(BW, nh, T, T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        elif bias.requires_grad:  # CPU SDPA would take its math kernel: same ops, plus a copy
            y = biased_attention(q, k, v, bias)  # (B*nW, nh, T, hd)
        else:  # no gradient for the bias (inference): the fused kernel
            y = folded_window_sdpa(q, k, v, bias)  # (B*nW, nh, T, hd)
        # a copy by name: torch.export may judge the transposed tensor contiguous and make the
        # reshape a view that ONNX export then rejects (the packed grid of uniform masking)
        y = y.transpose(1, 2).clone(memory_format=torch.contiguous_format)  # (B*nW, T, nh, hd)
        return self.proj(y.view(BW, T, D))


class WindowLayout(nn.Module):
    """A block's windows on one grid side: the window min(ws, grid), its shift (none when one
    window covers the grid), the token permutation of shift + partition and its inverse, the
    shifted-window mask and the bias-table rows. Buffers only, not saved: rebuilt from the
    config, so a block can run on several grids (uniform masking's packed one)."""

    def __init__(self, grid: int, ws: int, shift: int):
        super().__init__()
        self.ws = min(ws, grid)
        self.shift = shift if grid > self.ws else 0
        mask = shifted_window_mask(grid, grid, self.ws, self.shift) if self.shift else None
        self.register_buffer("attn_mask", mask, persistent=False)  # (nW, T, T) or None
        order = window_order(grid, grid, self.ws, self.shift)  # (grid*grid,)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("inverse", order.argsort(), persistent=False)
        self.register_buffer("bias_index", relative_position_index(self.ws, ws), persistent=False)


class SwinBlock(nn.Module):
    """Pre-norm block: (shifted-)window attention, then an MLP, each residual. On a grid of
    side `grid`, and on each of `more_grids`; shift = 0 is W-MSA, shift = ws // 2 is SW-MSA."""

    def __init__(self, dim: int, num_heads: int, grid: int, ws: int, shift: int, mlp_ratio: float,
                 more_grids: tuple[int, ...] = ()):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, ws)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.layouts = nn.ModuleDict({str(g): WindowLayout(g, ws, shift)
                                      for g in (grid, *more_grids)})

    def layout(self, grid: int) -> WindowLayout:
        """The window layout on a grid of side `grid`; ValueError for a grid not built for."""
        if str(grid) not in self.layouts:
            raise ValueError(f"this Swin block runs on grids {list(self.layouts)}, not {grid}")
        return self.layouts[str(grid)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.window_attention(self.norm1(x))  # (B, h, w, D)
        return x + self.mlp(self.norm2(x))

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w, D) → (B, h, w, D). With a shift the grid is rolled by (-shift, -shift)
        first, so the windows straddle the previous block's window borders, and back after."""
        B, H, W, D = x.shape
        lay = self.layout(H)
        T = lay.ws * lay.ws
        windows = gather_tokens(x.reshape(B, H * W, D), lay.order, lay.inverse)  # (B, nW*T, D)
        y = self.attn(windows.view(-1, T, D), lay.bias_index, lay.attn_mask)  # (B*nW, T, D)
        y = gather_tokens(y.view(B, H * W, D), lay.inverse, lay.order)  # (B, h*w, D) raster
        return y.view(B, H, W, D)


class PatchMerging(nn.Module):
    """2×2 neighbouring tokens → one: (B, h, w, D) → (B, h/2, w/2, 2D) (Swin §3.1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduce = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, D = x.shape
        x = x.view(B, H // 2, 2, W // 2, 2, D).permute(0, 1, 3, 2, 4, 5)  # (B, h/2, w/2, 2, 2, D)
        return self.reduce(self.norm(x.reshape(B, H // 2, W // 2, 4 * D)))


class PatchExpand(nn.Module):
    """One token → scale×scale tokens: (B, h, w, D) → (B, h*scale, w*scale, D), a linear map to
    scale²·D channels then a pixel-shuffle rearrangement (Swin-Unet's patch expanding)."""

    def __init__(self, dim: int, scale: int):
        super().__init__()
        self.scale = scale
        self.expand = nn.Linear(dim, scale * scale * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, D = x.shape
        s = self.scale
        x = self.expand(x).view(B, H, W, s, s, D).permute(0, 1, 3, 2, 4, 5)  # (B, H, s, W, s, D)
        return x.reshape(B, H * s, W * s, D)


class SwinStage(nn.Module):
    """`depth` Swin blocks alternating W-MSA and SW-MSA, then patch merging unless last. The
    blocks also run on `more_grids` (with their own window layouts)."""

    def __init__(self, dim: int, depth: int, num_heads: int, grid: int, ws: int,
                 mlp_ratio: float, merge: bool, more_grids: tuple[int, ...] = ()):
        super().__init__()
        shift = ws // 2 if grid > ws else 0  # one window covers the grid: nothing to shift
        self.blocks = nn.Sequential(*(
            SwinBlock(dim, num_heads, grid, ws, shift * (i % 2), mlp_ratio, more_grids)
            for i in range(depth)))
        self.merge = PatchMerging(dim) if merge else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(self.blocks(x))


class SwinMAE(nn.Module):
    """`forward(imgs, mask)` predicts every patch's pixels; `loss(imgs)` is the training
    objective; `reconstruct(imgs, mask)` gives images for anomaly maps. Inputs are float
    (B, C, image_size, image_size), already normalised by the data pipeline.

    With cfg.masking "uniform" (UM-MAE) the same calls also take `keep`, a packing of
    `core.images.uniform_mask`: the encoder then runs on the kept units only, packed into a grid
    half as wide (its blocks hold window layouts for both grids), `mask` hides patches of that
    packed grid (the secondary mask), and the decoder puts its own mask token at the dropped
    units before its blocks on the full grid."""

    def __init__(self, cfg: SwinMAEModelConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        p, C, D = cfg.patch_size, cfg.in_chans, cfg.embed_dim
        windows = stage_windows(cfg)
        self.grid = windows[0][0]  # patch grid side h = w
        self.patch_embed = nn.Conv2d(C, D, kernel_size=p, stride=p)  # one token per patch
        self.embed_norm = nn.LayerNorm(D)
        self.mask_token = nn.Parameter(torch.zeros(D))
        uniform = cfg.masking == "uniform"
        self.stages = nn.ModuleList(
            SwinStage(D * 2 ** s, depth, cfg.num_heads[s], grid, ws, cfg.mlp_ratio,
                      merge=s < len(cfg.depths) - 1, more_grids=(grid // 2,) if uniform else ())
            for s, (depth, (grid, ws)) in enumerate(zip(cfg.depths, windows)))
        last = D * 2 ** (len(cfg.depths) - 1)
        self.norm = nn.LayerNorm(last)
        self.decoder_embed = nn.Linear(last, cfg.decoder_dim)
        self.expand = PatchExpand(cfg.decoder_dim, 2 ** (len(cfg.depths) - 1))
        ws0 = windows[0][1]
        shift = ws0 // 2 if self.grid > ws0 else 0
        self.decoder_blocks = nn.Sequential(*(
            SwinBlock(cfg.decoder_dim, cfg.decoder_heads, self.grid, ws0, shift * (i % 2),
                      cfg.mlp_ratio) for i in range(cfg.decoder_depth)))
        self.decoder_norm = nn.LayerNorm(cfg.decoder_dim)
        self.head = nn.Linear(cfg.decoder_dim, p * p * C)  # raw pixels of each patch
        # uniform masking: what the decoder sees at the dropped units (a parameter of such
        # models only, so block-masking checkpoints load unchanged)
        self.decoder_mask_token = nn.Parameter(torch.zeros(cfg.decoder_dim)) if uniform else None
        self.apply(_init_weights)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(D, -1))  # as a linear map (MAE)
        nn.init.normal_(self.mask_token, std=0.02)
        if uniform:
            nn.init.normal_(self.decoder_mask_token, std=0.02)

    def forward_encoder(self, imgs: torch.Tensor, mask: torch.Tensor | None,
                        keep: torch.Tensor | None = None) -> torch.Tensor:
        """imgs (B, C, H, W), mask (B, g, g) or (g, g), True = hidden, or None, keep a packing
        (B or 1, h/2/unit, w/2/unit) or None → last stage features (B, g / 2**(S-1),
        g / 2**(S-1), D * 2**(S-1)). g is the patch grid h, or h/2 with `keep` (then only the
        kept units' pixels are embedded)."""
        cfg = self.cfg
        size, C = cfg.image_size, cfg.in_chans
        if imgs.ndim != 4 or tuple(imgs.shape[1:]) != (C, size, size):
            raise ValueError(f"expected images (B, {C}, {size}, {size}), found {tuple(imgs.shape)}")
        if keep is not None:  # (B, C, H/2, W/2): patches never straddle a unit, so embedding
            # the packed image equals packing the embedded one, at a quarter of the cost
            imgs = pack(imgs.permute(0, 2, 3, 1), self._check_keep(keep),
                        cfg.mask_unit * cfg.patch_size).permute(0, 3, 1, 2)
        x = self.embed_norm(self.patch_embed(imgs).permute(0, 2, 3, 1))  # (B, g, g, D)
        if mask is not None:
            if mask.shape[-2:] != x.shape[1:3]:
                raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit the "
                                 f"{x.shape[1]}×{x.shape[2]} patch grid")
            # hidden patches become the mask token before any attention: no pixel of theirs is seen
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def stage_outputs(self, imgs: torch.Tensor) -> list[torch.Tensor]:
        """imgs (B, C, H, W), nothing hidden → every stage's blocks' output before its patch
        merging, [(B, g / 2**s, g / 2**s, D * 2**s) for stage s] (the last one normed, as
        `forward_encoder` returns it): the features `core.images.knn` compares."""
        x = self.embed_norm(self.patch_embed(imgs).permute(0, 2, 3, 1))  # (B, g, g, D)
        outputs = []
        for stage in self.stages:
            x = stage.blocks(x)
            outputs.append(x)
            x = stage.merge(x)
        outputs[-1] = self.norm(outputs[-1])
        return outputs

    def _check_keep(self, keep: torch.Tensor) -> torch.Tensor:
        """`keep` unchanged if this model packs and it fits the unit grid, else ValueError."""
        if self.decoder_mask_token is None:
            raise ValueError("this model was built for block masking (swinmae.model.masking: "
                             "block); a packing needs masking: uniform")
        n = self.grid // self.cfg.mask_unit // 2
        if keep.ndim != 3 or tuple(keep.shape[1:]) != (n, n):
            raise ValueError(f"expected a packing (B, {n}, {n}), found {tuple(keep.shape)}")
        return keep

    def forward_decoder(self, latent: torch.Tensor,
                        keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, h', w', D') last stage features → (B, N, p*p*C) predicted patches. With `keep`
        the features are of the packed grid: unpacked to the full one, the decoder's mask
        token at the dropped units."""
        x = self.expand(self.decoder_embed(latent))  # (B, g, g, decoder_dim)
        if keep is not None:  # (B, h/2, w/2, Dd) → (B, h, w, Dd)
            x = unpack(x, keep, self.cfg.mask_unit, self.decoder_mask_token)
        x = self.head(self.decoder_norm(self.decoder_blocks(x)))  # (B, h, w, p*p*C)
        return x.flatten(1, 2)  # (B, N, p*p*C), raster order as `patchify`

    def forward(self, imgs: torch.Tensor, mask: torch.Tensor | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """imgs (B, C, H, W), mask (B, g, g) or (g, g) bool, True = hidden, or None, keep a
        packing or None (see `forward_encoder`) → predicted patches (B, N, p*p*C) of the full
        grid, normalised per patch when cfg.norm_pix_loss."""
        return self.forward_decoder(self.forward_encoder(imgs, mask, keep), keep)

    def hidden(self, B: int, mask: torch.Tensor | None, keep: torch.Tensor | None) -> torch.Tensor:
        """Bool (B, h, w): the patches a `forward(imgs, mask, keep)` call hid from the encoder,
        the dropped units and the mask (of the packed grid with `keep`)."""
        if keep is None:
            return mask.expand(B, self.grid, self.grid)
        unit = self.cfg.mask_unit
        out = dropped(keep.expand(B, *keep.shape[1:]), unit)  # (B, h, w)
        if mask is not None:  # (B, h/2, w/2) → its patches' places in the full grid
            no = torch.zeros(1, dtype=torch.bool, device=mask.device)
            out = out | unpack(mask.expand(B, *mask.shape[-2:])[..., None], keep, unit, no)[..., 0]
        return out

    def training_masks(self, B: int, device: torch.device | str) -> tuple[torch.Tensor,
                                                                            torch.Tensor | None]:
        """A fresh (mask, keep) for `loss`: block masking hides cfg.mask_ratio of the units
        (keep None); uniform masking keeps one unit per 2×2 block and hides cfg.secondary_ratio
        of the packed units."""
        cfg = self.cfg
        if cfg.masking == "block":
            return block_mask(B, self.grid, self.grid, cfg.mask_unit, cfg.mask_ratio,
                              device=device), None
        keep = uniform_keep(B, self.grid // cfg.mask_unit, device=device)
        half = self.grid // 2
        return block_mask(B, half, half, cfg.mask_unit, cfg.secondary_ratio, device=device), keep

    def loss(self, imgs: torch.Tensor, mask: torch.Tensor | None = None,
             keep: torch.Tensor | None = None) -> torch.Tensor:
        """MSE between predicted and true patches over hidden patches only; `mask` (True =
        hidden) and `keep` as in `forward`; with neither, fresh `training_masks`."""
        cfg, B = self.cfg, imgs.shape[0]
        if mask is None and keep is None:
            mask, keep = self.training_masks(B, imgs.device)
        pred = self(imgs, mask, keep)  # (B, N, P)
        target = patchify(imgs, cfg.patch_size).float()  # (B, N, P)
        if cfg.norm_pix_loss:
            mean, std = patch_stats(target)
            target = (target - mean) / std
        per_patch = (pred.float() - target).pow(2).mean(dim=-1)  # (B, N)
        hidden = self.hidden(B, mask, keep).reshape(B, -1)  # (B, N)
        return (per_patch * hidden).sum() / hidden.sum()

    def reconstruct(self, imgs: torch.Tensor, mask: torch.Tensor | None,
                    keep: torch.Tensor | None = None) -> torch.Tensor:
        """imgs (B, C, H, W), mask and keep as in `forward` → predicted images (B, C, H, W),
        every patch predicted (the caller keeps the hidden ones). With norm_pix_loss the model
        predicts normalised patches: they are mapped back with each patch's own true mean and
        std, so brightness and contrast come from the input and an anomaly map sees only
        structure. For anomaly maps, train with norm_pix_loss False (the default)."""
        cfg = self.cfg
        pred = self(imgs, mask, keep)  # (B, N, P)
        if cfg.norm_pix_loss:
            mean, std = patch_stats(patchify(imgs, cfg.patch_size).float())
            pred = (pred.float() * std + mean).to(pred.dtype)
        return unpatchify(pred, cfg.patch_size, self.grid, self.grid, cfg.in_chans)

    def scoring_passes(self, device: torch.device | str = "cpu") -> list[ScoringPass]:
        """The reconstructions `masked` scoring makes of every image: uniform masking the 2
        diagonal packings (`diagonal_packings`), block masking the complementary block masks.
        Together they hide every pixel at least once."""
        cfg = self.cfg
        if cfg.masking == "uniform":
            pixels_per_unit = cfg.mask_unit * cfg.patch_size
            return [ScoringPass(None, keep, dropped(keep, pixels_per_unit)[0].float())
                    for keep in diagonal_packings(self.grid // cfg.mask_unit, device)[:, None]]
        masks = complementary_block_masks(self.grid, self.grid, cfg.mask_unit,
                                          cfg.mask_ratio).to(device)  # (K, h, w)
        return [ScoringPass(mask, None, mask.repeat_interleave(cfg.patch_size, 0)
                            .repeat_interleave(cfg.patch_size, 1).float()) for mask in masks]


@dataclass(frozen=True)
class ScoringPass:
    """One reconstruction of masked scoring: `reconstruct(imgs, mask, keep)` with this mask
    (h, w) or packing (1, n, n), and the pixels it hides, `hidden` (S, S) float 0/1."""
    mask: torch.Tensor | None
    keep: torch.Tensor | None
    hidden: torch.Tensor


def _init_weights(m: nn.Module) -> None:
    """Xavier-uniform linear weights, zero biases, unit LayerNorms (as MAE)."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
