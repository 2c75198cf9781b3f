"""PSNR and SSIM on the Y channel, with the protocol used by the SR literature.

Y is BT.601 studio range (16-235) as in MATLAB's ``rgb2ycbcr``; ``shave`` border pixels are dropped;
SSIM is Wang et al.'s with an 11x11 Gaussian window (sigma 1.5) on the 0-255 scale.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def rgb_to_y(rgb: np.ndarray | torch.Tensor) -> np.ndarray:
    """HWC or CHW uint8/float RGB (0-255 scale) -> Y in [16, 235], float64."""
    a = rgb.detach().cpu().numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)
    a = a.astype(np.float64)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    return 16.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0


def _shave(a: np.ndarray, shave: int) -> np.ndarray:
    return a[shave:-shave, shave:-shave] if shave > 0 else a


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR (dB) over every element of two arrays or tensors, in float64; inf when they are equal."""
    if isinstance(a, torch.Tensor):
        mse = float(torch.mean((a.double() - b.double()) ** 2))
    else:
        mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(data_range**2 / mse))


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int = 0) -> float:
    """PSNR (dB) between two uint8 RGB images (HWC) on Y, border ``shave`` pixels dropped."""
    return psnr(_shave(rgb_to_y(sr), shave), _shave(rgb_to_y(hr), shave), data_range=255.0)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The (1, 1, size, size) normalised Gaussian window of SSIM."""
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int = 0) -> float:
    """SSIM on Y (0-255 scale), 11x11 Gaussian window, valid region only."""
    a = torch.from_numpy(_shave(rgb_to_y(sr), shave))[None, None]
    b = torch.from_numpy(_shave(rgb_to_y(hr), shave))[None, None]
    return float(ssim(a, b, data_range=255.0).mean())


def ssim_parts(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5,
               data_range: float = 1.0, k: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (SSIM, contrast-structure) of NCHW tensors, channels averaged, valid region only; MS-SSIM
    (train/losses.py) combines the second term over scales and passes its window ``k`` built once."""
    c = a.shape[1]
    win = window if k is None else int(k.shape[-1])
    if min(a.shape[-2:]) < win:  # conv2d's own error ("padded input size ... Kernel size") names no picture
        raise ValueError(f"SSIM needs at least {win}x{win} pixels (its window), got {a.shape[-1]}x{a.shape[-2]}")
    if k is None:
        k = gaussian_window(window, sigma).to(a).expand(c, 1, window, window)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = F.conv2d(a, k, groups=c), F.conv2d(b, k, groups=c)
    saa = F.conv2d(a * a, k, groups=c) - mu_a**2
    sbb = F.conv2d(b * b, k, groups=c) - mu_b**2
    sab = F.conv2d(a * b, k, groups=c) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM of NCHW tensors (channels averaged); differentiable."""
    return ssim_parts(a, b, window, sigma, data_range)[0]
