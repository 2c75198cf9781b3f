"""``psr2video bench resize``: what ``--size`` costs and buys, against its peers in the same run.

Quality: HR pictures are shrunk by 2/3 (antialiased bicubic, the SR protocol's LR), upscaled x2 by the model and
taken back to the HR size (x1.5 overall, 720p -> 1080p) by psr2video's Lanczos-3 and by torch's antialiased
bicubic; Lanczos-3 from the LR alone (no model) is the floor. PSNR-Y against HR, 3 px shaved.
Speed: ms per resample of a 2560x1440 frame to 1920x1080 (the x2 output of 720p, to 1080p) on the device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics import psnr_y
from ..output_size import resample

PEERS: dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = {
    "lanczos3 (--size)": resample,
    "bicubic, antialiased (torch)": lambda x, h, w: F.interpolate(
        x.float(), size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1),
}


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).float().cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)


def quality(up: Any, files: list[Path]) -> dict[str, float]:
    """Mean PSNR-Y (dB) per method over ``files`` at x1.5 through ``up`` (a x2 Upscaler)."""
    from PIL import Image

    from ..pictures import load_rgb

    scores: dict[str, list[float]] = {name: [] for name in [*PEERS, "lanczos3 from the LR (no model)"]}
    for f in files:
        hr = load_rgb(f)
        w, h = hr.width // 6 * 6, hr.height // 6 * 6
        hr = hr.crop((0, 0, w, h))
        lr = hr.resize((w * 2 // 3, h * 2 // 3), Image.Resampling.BICUBIC, reducing_gap=None)
        x = torch.from_numpy(np.array(lr)).permute(2, 0, 1)[None].float().div(255).to(up.device)
        with torch.inference_mode():
            out = up(x.to(up.dtype))
            for name, fn in PEERS.items():
                scores[name].append(psnr_y(_u8(fn(out, h, w)), np.asarray(hr), shave=3))
            scores["lanczos3 from the LR (no model)"].append(psnr_y(_u8(resample(x, h, w)), np.asarray(hr), shave=3))
    return {name: float(np.mean(v)) for name, v in scores.items()}


def speed(device: torch.device, iters: int = 10) -> dict[str, float]:
    """ms per 2560x1440 -> 1920x1080 resample, per method (the first call, which builds Lanczos' matrices, not
    counted)."""
    x = torch.rand(1, 3, 1440, 2560, device=device)
    out = {}
    for name, fn in PEERS.items():
        fn(x, 1080, 1920)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn(x, 1080, 1920)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out[name] = (time.perf_counter() - t0) / iters * 1000
    return out


__all__ = ["PEERS", "quality", "speed"]
