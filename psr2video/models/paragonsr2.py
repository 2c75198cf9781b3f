"""ParagonSR2: ``out = MKS2021(x) + detail_gain * detail(x)``.

The base path is a fixed Magic Kernel Sharp 2021 upscale; the detail path is a small residual network
that learns what the resampler misses. ``fuse_for_release()`` folds every training-time branch,
LayerScale and ``detail_gain`` into plain convolutions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import (
    NanoBlock,
    PhotoBlock,
    ProBlock,
    RelativePositionBias,
    RepConv,
    StreamBlock,
    fuse_children,
    window_attention_bias,
)
from .magic import MagicKernelSharp2021


@dataclass(frozen=True)
class ArchSpec:
    """Architecture knobs of one variant; everything here is stored in a weights file's metadata."""

    variant: str
    width: int
    groups: int
    blocks: int
    block: str  # nano | stream | photo | pro
    window: int = 0
    heads: int = 4
    tokens: int = 0
    alpha: float = 1.0
    ls_init: float = 1e-5

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Group(nn.Module):
    """A run of residual blocks; attention groups share one relative position bias table."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        c, ls = spec.width, spec.ls_init
        self.attention = spec.block in ("photo", "pro")
        self.bias = RelativePositionBias(spec.window, spec.heads) if self.attention else None
        blocks: list[nn.Module] = []
        for i in range(spec.blocks):
            shift = spec.window // 2 if i % 2 else 0
            if spec.block == "nano":
                blocks.append(NanoBlock(c, ls))
            elif spec.block == "stream":
                blocks.append(StreamBlock(c, ls))
            elif spec.block == "photo":
                blocks.append(PhotoBlock(c, spec.heads, spec.window, shift, ls))
            elif spec.block == "pro":
                blocks.append(ProBlock(c, spec.heads, spec.window, shift, spec.tokens, ls))
            else:
                raise ValueError(f"unknown block type {spec.block!r}")
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.bias is not None:
            table = self.bias()
            biases: dict[int, torch.Tensor] = {}
            for blk in self.blocks:
                shift = blk.attn.shift
                if shift not in biases:
                    biases[shift] = window_attention_bias(table, x, blk.attn.window, shift)
                y = blk(y, biases[shift])
        else:
            for blk in self.blocks:
                y = blk(y)
        return y


class ParagonSR2(nn.Module):
    """The ParagonSR2 network for one variant and integer scale (NCHW RGB in [0, 1] -> scale x size)."""

    def __init__(self, spec: ArchSpec, scale: int) -> None:
        super().__init__()
        if scale not in (1, 2, 3, 4, 8):
            raise ValueError(f"unsupported scale {scale}")
        c = spec.width
        self.spec, self.scale, self.fused = spec, scale, False
        self.base = MagicKernelSharp2021(scale, spec.alpha)
        self.head = RepConv(3, c, 3)
        self.body = nn.Sequential(*[Group(spec) for _ in range(spec.groups)])
        self.body_tail = RepConv(c, c, 3)
        self.upconv = RepConv(c, c * scale * scale, 3)
        self.shuffle = nn.PixelShuffle(scale)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)
        self.detail_gain = nn.Parameter(torch.tensor(1.0))
        self.descriptor = None  # set by the registry

    def detail(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        f = self.body_tail(self.body(f)) + f
        y = self.tail(self.shuffle(self.upconv(f)))
        return y if self.fused else y * self.detail_gain.to(y.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.detail(x)

    @torch.no_grad()
    def fuse_for_release(self) -> ParagonSR2:
        """Return an inference-only copy: re-parameterised convs, LayerScale and detail_gain folded."""
        if self.fused:
            return self
        net = copy.deepcopy(self).eval()
        fuse_children(net)
        net.tail.weight.mul_(net.detail_gain)
        net.tail.bias.mul_(net.detail_gain)
        del net.detail_gain
        net.fused = True
        if self.descriptor is not None:
            net.descriptor = self.descriptor.with_(fused=True, params=count_params(net))
        for p in net.parameters():
            p.requires_grad_(False)
        return net


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
