"""LR synthesis for robust models: blur -> antialiased bicubic downscale -> noise -> JPEG / H.264.

Configured by ``[data.degrade]`` (every stage optional, each with a probability):

    [data.degrade]
    blur = {prob = 0.5, sigma = [0.2, 1.5]}        # isotropic Gaussian on HR before downscaling
    noise = {prob = 0.5, sigma = [1.0, 8.0], gray_prob = 0.3}   # Gaussian, sigma on the 0-255 scale
    jpeg = {prob = 0.5, quality = [40, 95]}
    h264 = {prob = 0.3, crf = [18, 35], preset = "ultrafast"}   # PyAV libx264, 2-frame clip (I + P)

Randomness comes from the batch generator, so degraded batches are reproducible per step too.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data import downscale

STAGES = ("blur", "noise", "jpeg", "h264")


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of NCHW (reflect padding)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()


def _from_uint8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).float() / 255.0


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of one CHW image in [0, 1] (PIL, 4:2:0)."""
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(x)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return _from_uint8(np.asarray(im.convert("RGB")))


def h264(x: torch.Tensor, crf: int, preset: str = "ultrafast", shift: int = 1) -> torch.Tensor:
    """H.264 (libx264, yuv420p) round trip of one CHW image: encodes a 2-frame clip (the image shifted by
    ``shift`` px, then the image) and returns the decoded P-frame, so both intra and motion-compensated
    artefacts appear. Odd sizes are padded by replication and cropped back."""
    import av

    c, h, w = x.shape
    ph, pw = h % 2, w % 2
    img = F.pad(x[None], (0, pw, 0, ph), mode="replicate")[0] if ph or pw else x
    frames = [torch.roll(img, shifts=(shift, shift), dims=(1, 2)), img]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = img.shape[2], img.shape[1], "yuv420p"
    enc.options = {"crf": str(int(crf)), "preset": preset, "tune": "zerolatency", "bf": "0"}
    dec = av.CodecContext.create("h264", "r")
    out = None
    packets = []
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(_to_uint8(f), format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        packets += enc.encode(vf)
    packets += enc.encode(None)
    for p in packets:
        for fr in dec.decode(p):
            out = fr
    for fr in dec.decode(None):
        out = fr
    if out is None:
        raise RuntimeError("libx264 round trip produced no frame")
    y = _from_uint8(out.to_ndarray(format="rgb24"))
    return y[:, :h, :w]


class Degrader:
    """Callable ``(hr_batch, generator) -> lr_batch`` following the ``[data.degrade]`` table."""

    def __init__(self, scale: int, cfg: dict) -> None:
        unknown = set(cfg) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown degradation(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")
        self.scale, self.cfg = scale, cfg

    def _on(self, name: str, g: torch.Generator) -> dict | None:
        c = self.cfg.get(name)
        if not c:
            return None
        return c if float(torch.rand((), generator=g)) < float(c.get("prob", 1.0)) else None

    def __call__(self, hr: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        out = []
        for img in hr:
            x = img[None]
            if c := self._on("blur", g):
                x = gaussian_blur(x, _uniform(g, *c.get("sigma", (0.2, 1.5))))
            x = downscale(x, self.scale, quantize=False)[0]
            if c := self._on("noise", g):
                s = _uniform(g, *c.get("sigma", (1.0, 8.0))) / 255.0
                gray = float(torch.rand((), generator=g)) < float(c.get("gray_prob", 0.0))
                n = torch.randn((1 if gray else 3, *x.shape[1:]), generator=g) * s
                x = x + n
            x = x.clamp(0, 1)
            if c := self._on("jpeg", g):
                lo, hi = c.get("quality", (40, 95))
                x = jpeg(x, int(torch.randint(int(lo), int(hi) + 1, (), generator=g)))
            if c := self._on("h264", g):
                lo, hi = c.get("crf", (18, 35))
                x = h264(x, int(torch.randint(int(lo), int(hi) + 1, (), generator=g)), c.get("preset", "ultrafast"))
            out.append((x * 255).round() / 255)
        return torch.stack(out)
