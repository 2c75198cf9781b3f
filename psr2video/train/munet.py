"""MUNet: a spectral-norm U-Net discriminator with Magic Kernel Sharp upsampling and per-pixel logits.

Encoder 64-128-256-512 (stride-2 4x4 convs), decoder upsamples with the fixed MKS2021 resampler (no
checkerboard from transposed convs) and adds the skip connections, then two refinement convs and a
1-channel per-pixel logit map at the input resolution (as Real-ESRGAN's U-Net discriminator, with MKS).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..models.magic import MagicKernelSharp2021


class MUNet(nn.Module):
    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (64, 128, 256, 512), alpha: float = 1.0,
                 slope: float = 0.2) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("MUNet needs at least two widths")
        self.channels, self.slope = tuple(channels), slope
        self.factor = 2 ** (len(channels) - 1)
        sn = spectral_norm
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        pairs = list(zip(channels[:-1], channels[1:], strict=True))
        self.down = nn.ModuleList(sn(nn.Conv2d(a, b, 4, 2, 1, bias=False)) for a, b in pairs)
        rev = channels[::-1]
        self.ups = nn.ModuleList(MagicKernelSharp2021(2, alpha, channels=c) for c in rev[:-1])
        self.up = nn.ModuleList(sn(nn.Conv2d(b, a, 3, padding=1, bias=False)) for a, b in reversed(pairs))
        c = channels[0]
        self.refine = nn.Sequential(sn(nn.Conv2d(c, c, 3, padding=1, bias=False)), nn.LeakyReLU(slope),
                                    sn(nn.Conv2d(c, c, 3, padding=1, bias=False)), nn.LeakyReLU(slope))
        self.logits = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW images in [0, 1] -> N x 1 x H x W logits (any H, W: padded to a multiple of 8 inside)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.factor, (-w) % self.factor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        f = F.leaky_relu(self.stem(x), self.slope)
        skips = [f]
        for conv in self.down:
            f = F.leaky_relu(conv(f), self.slope)
            skips.append(f)
        skips.pop()
        for mks, conv in zip(self.ups, self.up, strict=True):
            f = F.leaky_relu(conv(mks(f)), self.slope) + skips.pop()
        out = self.logits(self.refine(f))
        return out[..., :h, :w]
