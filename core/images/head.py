"""The defect head (`score.method: head`): a small U-Net that looks at an image beside its Swin
MAE reconstruction and segments what does not belong, trained on synthetic defects
(`core.images.defects`) after Swin MAE, with Swin MAE frozen (DRAEM's discriminative network,
with Swin MAE as the reconstruction network).

Its input per image is the image, the reconstruction (each region predicted from its context,
as masked scoring does) and their squared difference: 2C + 1 channels. It is an ensemble of
`head.ensemble` such U-Nets, each from its own random initialisation, trained side by side on
the same synthetic defects (one reconstruction serves them all); each gives one logit per
pixel, and the anomaly map is the mean of their sigmoids. A single head's detection moved with
its seed (magnetic tiles: image AUROC 0.74-0.87 over seeds); the mean of three moved far
less (0.85-0.87; benchmarks/README.md).

Dimension names: B images, C channels, S image side, w head width, K heads."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.images.defects import synthetic_defects
from core.images.swinmae import ScoringPass, SwinMAE

FOCAL_GAMMA = 2.0


Reconstructed = list[tuple[ScoringPass, torch.Tensor]]  # each scoring pass with the images'
# reconstruction under it (B, C, S, S)


def masked_reconstructions(mae: SwinMAE, imgs: torch.Tensor) -> Reconstructed:
    """The reconstructions `score.mode: masked` makes of imgs (B, C, S, S) (uniform masking: the
    2 diagonal packings; block: the complementary block masks), in imgs' dtype. Scoring
    computes them once for both the error map and the head's input."""
    return [(p, mae.reconstruct(imgs, p.mask, p.keep).to(imgs.dtype))
            for p in mae.scoring_passes(imgs.device)]


def masked_reconstruction(mae: SwinMAE, imgs: torch.Tensor,
                          passes: Reconstructed | None = None) -> torch.Tensor:
    """(B, C, S, S) → (B, C, S, S): each pixel as Swin MAE predicts it with its region hidden,
    averaged over the passes that hide it (`masked_reconstructions`, made here unless given)."""
    passes = passes or masked_reconstructions(mae, imgs)
    hidden = [p.hidden.to(imgs.dtype) for p, _ in passes]  # (S, S) each
    return sum(recon * h for (_, recon), h in zip(passes, hidden)) / sum(hidden)


@torch.no_grad()
def head_input(mae: SwinMAE, imgs: torch.Tensor,
               passes: Reconstructed | None = None) -> torch.Tensor:
    """(B, C, S, S) → (B, 2C + 1, S, S): image, reconstruction, squared error (channel mean)."""
    recon = masked_reconstruction(mae, imgs, passes)
    return torch.cat([imgs, recon, (imgs - recon).pow(2).mean(dim=1, keepdim=True)], dim=1)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two 3×3 convolutions, each with batch norm and ReLU: (B, cin, h, w) → (B, cout, h, w)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class UNet(nn.Module):
    """A 4-level U-Net: (B, in_chans, S, S) → (B, 1, S, S) logits; S a multiple of 8. Weights
    and activations are channels-last unless asked otherwise: its narrow convolutions train
    faster so on a CPU (`benchmarks/defect_head.py`)."""

    def __init__(self, in_chans: int, width: int, channels_last: bool = True):
        super().__init__()
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        w = width
        self.down = nn.ModuleList([_double_conv(in_chans, w), _double_conv(w, 2 * w),
                                   _double_conv(2 * w, 4 * w), _double_conv(4 * w, 8 * w)])
        self.up = nn.ModuleList([_double_conv(12 * w, 4 * w), _double_conv(6 * w, 2 * w),
                                 _double_conv(3 * w, w)])
        self.out = nn.Conv2d(w, 1, 1)
        self.to(memory_format=self.layout)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_chans, S, S) → the 4 levels' outputs, level i (B, 2^i w, S / 2^i, S / 2^i)."""
        x = x.contiguous(memory_format=self.layout)
        levels = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            levels.append(x)
        return levels

    def decode(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """`encode`'s levels → (B, 1, S, S) logits."""
        x = levels[-1]
        for block, skip in zip(self.up, reversed(levels[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.out(x).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class DefectHead(nn.Module):
    """`count` U-Nets side by side: (B, in_chans, S, S) → (B, K, S, S) logits, one map each."""

    def __init__(self, in_chans: int, width: int, count: int = 1, channels_last: bool = True):
        super().__init__()
        self.members = nn.ModuleList(UNet(in_chans, width, channels_last) for _ in range(count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([member(x) for member in self.members], dim=1)

    def with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in_chans, S, S) → the logits (B, K, S, S) and the members' deepest level side by
        side (B, K 8w, S / 8, S / 8): what each 8 × 8 place looks like to heads that learned to
        tell defects apart (`score.head_knn` measures how far it is from normal places)."""
        levels = [member.encode(x) for member in self.members]
        logits = [member.decode(lv) for member, lv in zip(self.members, levels)]
        return torch.cat(logits, dim=1), torch.cat([lv[-1] for lv in levels], dim=1)

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a saved head's weights; a checkpoint from before ensembles holds one U-Net's
        keys without the `members.0.` prefix."""
        if not any(k.startswith("members.") for k in state):
            state = {f"members.0.{k}": v for k, v in state.items()}
        self.load_state_dict(state)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean focal loss (gamma 2) of logits (B, K, S, S) against 0/1 targets (B, 1, S, S), the
    same for each of the K maps: the few defect pixels are not drowned by the many easy normal
    ones."""
    target = target.expand_as(logits)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = p * target + (1 - p) * (1 - target)
    return (ce * (1 - p_true) ** FOCAL_GAMMA).mean()


class HeadTraining(nn.Module):
    """What `core.training.fit` trains for the head: `loss(imgs)` makes synthetic defects in
    normal images, reconstructs them with the frozen Swin MAE and scores the head's
    segmentation. Only the head is a submodule: its checkpoint holds the head alone."""

    def __init__(self, mae: SwinMAE, head: DefectHead, defect_share: float):
        super().__init__()
        self.head, self.defect_share = head, defect_share
        self._mae = [mae.eval().requires_grad_(False)]  # in a list: not a submodule

    def loss(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs (B, C, S, S) normal images → scalar focal loss. The defects are drawn from
        torch's global generator on the CPU (validation seeds it: the same defects every
        epoch)."""
        with_defects, masks = synthetic_defects(imgs.cpu().float(), self.defect_share)
        inputs = head_input(self._mae[0], with_defects.to(imgs.device))
        return focal_loss(self.head(inputs), masks.to(imgs.device))


@torch.no_grad()
def head_outputs(mae: SwinMAE, head: DefectHead, imgs: torch.Tensor,
                 passes: Reconstructed | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, S, S) → the heads' mean defect probability per pixel (B, S, S) and their deepest
    features (B, K 8w, S / 8, S / 8), both float32 (`passes`: imgs' masked reconstructions,
    when already made)."""
    logits, features = head.with_features(head_input(mae, imgs, passes))
    return torch.sigmoid(logits.float()).mean(dim=1), features.float()
