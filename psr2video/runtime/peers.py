"""Benchmark peers: Real-ESRGAN's SRVGGNetCompact family (architecture only, random weights).

SRVGGNetCompact (Wang et al., Real-ESRGAN, BSD-3-Clause): conv3x3(3->F) + PReLU, then N x (conv3x3(F->F)
+ PReLU), conv3x3(F->3*s*s), PixelShuffle(s), plus the nearest-upsampled input. Speed does not depend on
the weights, so the peers run with random ones through the same backend as the model under test.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SettingError
from ..models.registry import ModelDescriptor

# name -> (features, convs)
PEERS: dict[str, tuple[int, int]] = {
    "compact": (64, 16),
    "ultracompact": (64, 8),
    "superultracompact": (24, 8),
}
PEER_LABELS = {"compact": "Real-ESRGAN Compact", "ultracompact": "Real-ESRGAN UltraCompact",
               "superultracompact": "Real-ESRGAN SuperUltraCompact"}


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact VGG-style SR network (the animevideov3 / realesr-general-x4v3 family)."""

    def __init__(self, num_feat: int = 64, num_conv: int = 16, scale: int = 4, in_ch: int = 3,
                 out_ch: int = 3) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(in_ch, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, out_ch * scale * scale, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.upsampler(self.body(x))
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def build_peer(name: str, scale: int = 2, seed: int = 0) -> SRVGGNetCompact:
    """A peer with random weights and a ``descriptor`` so ``Upscaler(model=...)`` can run it."""
    if name not in PEERS:
        raise SettingError(f"unknown peer {name!r}; choose one of {', '.join(PEERS)}")
    feat, conv = PEERS[name]
    torch.manual_seed(seed)
    net = SRVGGNetCompact(feat, conv, scale).eval()
    params = sum(p.numel() for p in net.parameters())
    net.descriptor = ModelDescriptor(variant=name, scale=scale, width=feat, tile_overlap=conv + 2, params=params,
                                     fused=True)
    return net


class ToNHWC(nn.Module):
    """An NCHW net behind NHWC I/O: the layout several community ONNX files use (for making stand-ins of
    them: tools/make_foreign_models.py and the foreign-model tests)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
