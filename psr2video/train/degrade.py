"""LR synthesis for robust models: blur -> antialiased bicubic downscale -> noise -> JPEG / H.264.

Configured by ``[data.degrade]`` (every stage optional, each with a probability):

    [data.degrade]
    blur = {prob = 0.5, sigma = [0.2, 1.5]}        # isotropic Gaussian on HR before downscaling
    noise = {prob = 0.5, sigma = [1.0, 8.0], gray_prob = 0.3}   # Gaussian, sigma on the 0-255 scale
    jpeg = {prob = 0.5, quality = [40, 95]}
    h264 = {prob = 0.3, crf = [18, 35], preset = "ultrafast"}   # PyAV libx264, 2-frame clip (I + P), per image
    video = {prob = 0.6, codecs = ["libx264", "libx265"], crf = [18, 32], presets = ["ultrafast", "veryfast"]}

``video`` compresses the whole batch at once: the LR patches are tiled into one mosaic frame and encoded
as a 2-frame clip (the mosaic shifted by a pixel, then the mosaic) with a random codec, CRF and preset, so
the decoded P-frame carries intra and motion-compensated artefacts and 4:2:0 chroma, at the cost of one
encode per batch (per-patch encoding cost ~27 ms each and stalled the trainer). Randomness comes from the
batch generator, so degraded batches are reproducible per step too.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data import downscale

STAGES = ("blur", "noise", "jpeg", "h264", "video")


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
    """H.264 (libx264, yuv420p) round trip of one CHW image (see ``codec_roundtrip``)."""
    return codec_roundtrip(x, "libx264", crf, preset, shift)


def codec_roundtrip(x: torch.Tensor, codec: str, crf: int, preset: str = "ultrafast", shift: int = 1) -> torch.Tensor:
    """Round trip of one CHW image through ``codec`` (libx264 / libx265, yuv420p): encodes a 2-frame clip
    (the image shifted by ``shift`` px, then the image) and returns the decoded P-frame, so both intra and
    motion-compensated artefacts appear. Odd sizes are padded by replication and cropped back."""
    import av

    c, h, w = x.shape
    ph, pw = h % 2, w % 2
    img = F.pad(x[None], (0, pw, 0, ph), mode="replicate")[0] if ph or pw else x
    frames = [torch.roll(img, shifts=(shift, shift), dims=(1, 2)), img]
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = img.shape[2], img.shape[1], "yuv420p"
    if codec == "libx265":
        enc.options = {"crf": str(int(crf)), "preset": preset, "tune": "zerolatency",
                       "x265-params": "log-level=error:bframes=0"}
        dec = av.CodecContext.create("hevc", "r")
    else:
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
        raise RuntimeError(f"{codec} round trip produced no frame")
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
        lr = torch.stack(out)
        if c := self._on("video", g):
            lr = self._video(lr, c, g)
        return lr

    @staticmethod
    def _video(lr: torch.Tensor, c: dict, g: torch.Generator) -> torch.Tensor:
        """The whole batch through one codec round trip, as a mosaic of its patches."""
        n, ch, h, w = lr.shape
        codecs, presets = list(c.get("codecs", ["libx264"])), list(c.get("presets", ["ultrafast"]))
        lo, hi = c.get("crf", (18, 32))
        codec = codecs[int(torch.randint(0, len(codecs), (), generator=g))]
        preset = presets[int(torch.randint(0, len(presets), (), generator=g))]
        crf = int(torch.randint(int(lo), int(hi) + 1, (), generator=g))
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        mosaic = torch.zeros(ch, rows * h, cols * w)
        for i in range(n):
            mosaic[:, (i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = lr[i]
        y = codec_roundtrip(mosaic, codec, crf, preset)
        return torch.stack([y[:, (i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w]
                            for i in range(n)])
