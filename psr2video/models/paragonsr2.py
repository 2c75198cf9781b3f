"""ParagonSR2: ``out = MKS2021(x) + detail_gain * detail(x)``.

The base path is a fixed Magic Kernel Sharp 2021 upscale; the detail path is a small residual network
that learns what the resampler misses. ``fuse_for_release()`` folds every training-time branch,
LayerScale and ``detail_gain`` into plain convolutions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..names import SCALES
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
from .magic import MagicKernelSharp2021, PreShuffle


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
    revision: int = 2  # 2: normalised Stream gate (files without this field are revision 1)

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
        if scale not in SCALES:
            raise ValueError(f"unsupported scale {scale}; ParagonSR2 runs at {', '.join(map(str, SCALES))}")
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

    float_base = True  # float32 base path and output in any precision (see MagicKernelSharp2021)
    # int8 export: the fixed base path and the final 3-channel projection (its output is the picture) stay float
    int8_keep_float = ("base", "tail")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base in float32 from the input as given; the detail path in the weights' dtype; float32 out."""
        return self.base(x) + self.detail(x.to(self.tail.weight.dtype)).float()

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

    @torch.no_grad()
    def for_export(self, inplace: bool = False) -> nn.Module:
        """The exact graph to export (equal up to float summation order), faster on ONNX Runtime/TensorRT.

        Stream blocks lose their Concat/Slice; at x2 the full-resolution tail conv moves before the pixel
        shuffle (``LRTailParagonSR2``). The original is left alone unless ``inplace`` (a fused private copy
        the caller is done with).
        """
        net = self.fuse_for_release()
        if net is self and not inplace:  # already fused: rewrite a copy, not the caller's model
            net = copy.deepcopy(net)
        for group in net.body:
            for i, blk in enumerate(group.blocks):
                if hasattr(blk, "for_export"):
                    group.blocks[i] = blk.for_export()
        return LRTailParagonSR2(net).eval() if net.scale == 2 else net.eval()


class LRTailParagonSR2(nn.Module):
    """A fused x2 ParagonSR2 with its full-resolution tail conv moved before the pixel shuffle.

    ``tail(shuffle(u))`` (3x3 conv at high resolution) equals ``shuffle(tail_lr(u))`` with a 3x3 conv at
    low resolution whose weights scatter the tail kernel over the sub-pixel phases (zero padding commutes
    with the shuffle), and the Magic Kernel base is added before its own shuffle: one shuffle of 3*s*s
    channels replaces a shuffle of C*s*s channels, the high-resolution conv and the high-resolution add.
    Measured ~22% faster for realtime x2 on ONNX Runtime CPU. Used for scale 2 only: the low-resolution
    conv costs s^2 times the MACs of the original.
    """

    def __init__(self, net: ParagonSR2) -> None:
        super().__init__()
        s = net.scale
        w, b = net.tail.weight.detach(), net.tail.bias.detach()
        o_ch, c_ch = w.shape[:2]
        wl = torch.zeros(o_ch * s * s, c_ch * s * s, 3, 3, dtype=w.dtype)
        for p in range(s):
            for q in range(s):
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        i, ky = (p + dy) % s, (p + dy) // s
                        j, kx = (q + dx) % s, (q + dx) // s
                        wl[p * s + q::s * s, i * s + j::s * s, ky + 1, kx + 1] += w[:, :, dy + 1, dx + 1]
        self.scale = s
        self.head, self.body, self.body_tail, self.upconv = net.head, net.body, net.body_tail, net.upconv
        self.base = PreShuffle(net.base)  # a module call: its nodes are scoped /base/
        self.tail_lr = nn.Conv2d(c_ch * s * s, o_ch * s * s, 3, padding=1).to(w)
        with torch.no_grad():
            self.tail_lr.weight.copy_(wl)
            self.tail_lr.bias.copy_(b.repeat_interleave(s * s))

    float_base = True
    int8_keep_float = ("base", "tail_lr")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x.to(self.tail_lr.weight.dtype))
        f = self.body_tail(self.body(f)) + f
        return F.pixel_shuffle(self.base(x) + self.tail_lr(self.upconv(f)).float(), self.scale)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
