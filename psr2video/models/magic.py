"""Magic Kernel Sharp 2021 upscaler as fixed convolutions.

Follows John Costella's definition ("Solving the mystery of Magic Kernel Sharp", 2021): sharpen at the
input resolution with the Sharp 2021 kernel ``[-1, 6, -35, 204, -35, 6, -1] / 144`` (blended by
``alpha``), then resample with the Magic Kernel (the quadratic B-spline). Both steps are separable and
linear, so each axis folds into one small per-phase kernel. The module is one replicate pad, two
depthwise convolutions and a PixelShuffle: plain ops for ONNX and TensorRT, for any integer scale.

The ParagonSR2 reference blends with a low-pass filter instead (it blurs as alpha grows) and zero-pads
(it darkens borders); see DESIGN.md.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SHARP_2021 = np.array([-1.0, 6.0, -35.0, 204.0, -35.0, 6.0, -1.0]) / 144.0


def magic_kernel(t: np.ndarray) -> np.ndarray:
    """The Magic Kernel (quadratic B-spline), support |t| <= 1.5, in input-pixel units."""
    a = np.abs(t)
    return np.where(a <= 0.5, 0.75 - a * a, np.where(a <= 1.5, 0.5 * (a - 1.5) ** 2, 0.0))


def magic_phase_taps(scale: int) -> np.ndarray:
    """Taps (scale, 3) over input offsets (-1, 0, +1) for every output phase.

    Output phase ``p`` of input pixel ``i`` sits at ``i + (p + 0.5) / scale - 0.5``.
    """
    taps = np.zeros((scale, 3))
    for p in range(scale):
        d = (p + 0.5) / scale - 0.5
        taps[p] = magic_kernel(d - np.array([-1.0, 0.0, 1.0]))
    return taps / taps.sum(axis=1, keepdims=True)


def mks_phase_kernels(scale: int, alpha: float) -> np.ndarray:
    """Per-phase 1-D kernels (scale, 9): blended Sharp 2021 convolved with the Magic phase taps."""
    sharpen = alpha * SHARP_2021
    sharpen[3] += 1.0 - alpha
    magic = magic_phase_taps(scale)
    out = np.stack([np.convolve(sharpen, magic[p][::-1])[::-1] for p in range(scale)])
    return out / out.sum(axis=1, keepdims=True)


class MagicKernelSharp2021(nn.Module):
    """Upscale NCHW by an integer ``scale`` with Magic Kernel Sharp 2021.

    ``alpha`` in [0, 1] blends the Sharp 2021 sharpening (0 = Magic Kernel only, 1 = full Sharp 2021).
    The kernels are buffers, never trained. Scale 1 is the identity (sharpening alone is not applied).

    Always computes in float32, whatever the model is cast to or autocast asks for, and returns float32:
    the base path carries nearly the whole picture, and in bf16 (8-bit mantissa) it is off by up to 0.75
    8-bit codes (banding on 10-bit output). Costs little: two depthwise 9-tap convolutions.
    """

    pad = 4
    float_base = True  # takes any float input, computes and returns float32 (float64 for float64 input)
    # exported on its own (--variant mks), int8 quantises none of it: "" is the whole graph (the resampler is
    # the base path, which reduced precision never touches; its int8 file is its fp32 graph)
    int8_keep_float = ("",)

    def __init__(self, scale: int, alpha: float = 1.0, channels: int = 3) -> None:
        super().__init__()
        if int(scale) != scale or scale < 1:
            raise ValueError(f"MagicKernelSharp2021 needs an integer scale >= 1, got {scale}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.scale, self.alpha, self.channels = int(scale), float(alpha), int(channels)
        kv, kh = self._kernels()
        self.register_buffer("kv", kv, persistent=False)
        self.register_buffer("kh", kh, persistent=False)

    def _kernels(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernels, rounded once to ``dtype``. Vertical pass: each channel -> s row phases; horizontal pass: each
        (channel, row phase) -> s column phases, so channels come out ordered (c, ry, rx) as PixelShuffle
        expects."""
        k = torch.from_numpy(mks_phase_kernels(self.scale, self.alpha)).to(dtype)  # (s, 9)
        s, c = self.scale, self.channels
        return k.repeat(c, 1).view(c * s, 1, 9, 1), k.repeat(c * s, 1).view(c * s * s, 1, 1, 9)

    def _apply(self, fn, recurse: bool = True):
        """``.half()``/``.to(bfloat16)`` on the model leave the kernels float32, and ``.double()`` makes them
        float64; either way rebuilt from the exact taps (a round trip through half would have rounded them)."""
        old = self.kv.dtype
        super()._apply(fn, recurse)
        if self.kv.dtype != old:
            kv, kh = self._kernels(torch.promote_types(self.kv.dtype, torch.float32))
            self.kv, self.kh = kv.to(self.kv.device), kh.to(self.kh.device)
        return self

    def extra_repr(self) -> str:
        return f"scale={self.scale}, alpha={self.alpha}, channels={self.channels}"

    def pre_shuffle(self, x: torch.Tensor) -> torch.Tensor:
        """The upscale before its pixel shuffle: (N, C*s*s, H, W), phases ordered (c, ry, rx)."""
        c, s, p = self.channels, self.scale, self.pad
        dt = torch.promote_types(x.dtype, torch.float32)  # float32, or float64 when asked for
        with torch.autocast(x.device.type, enabled=False):
            y = F.pad(x.to(dt), (p, p, p, p), mode="replicate")
            y = F.conv2d(y, self.kv.to(dt), groups=c)
            return F.conv2d(y, self.kh.to(dt), groups=c * s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x.to(torch.promote_types(x.dtype, torch.float32))
        return F.pixel_shuffle(self.pre_shuffle(x), self.scale)


class PreShuffle(nn.Module):
    """``MagicKernelSharp2021.pre_shuffle`` as a module of its own, so that an exported graph scopes its
    nodes (``/base/...``) and an int8 export can keep them float."""

    float_base = True

    def __init__(self, mks: MagicKernelSharp2021) -> None:
        super().__init__()
        self.mks = mks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mks.pre_shuffle(x)
