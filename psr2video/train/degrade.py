"""LR synthesis for robust models: blur -> antialiased bicubic downscale -> noise -> JPEG / H.264.

Configured by ``[data.degrade]`` (every stage optional, each with a probability):

    [data.degrade]
    blur = {prob = 0.5, sigma = [0.2, 1.5]}        # isotropic Gaussian on HR before downscaling
    noise = {prob = 0.5, sigma = [1.0, 8.0], gray_prob = 0.3}   # Gaussian, sigma on the 0-255 scale
    jpeg = {prob = 0.5, quality = [40, 95]}
    h264 = {prob = 0.3, crf = [18, 35], preset = "ultrafast"}   # PyAV libx264, 2-frame clip (I + P), per image
    video = {prob = 0.6, codecs = ["libx264", "libx265"], crf = [18, 32], presets = ["ultrafast", "veryfast"]}
    video = {..., frames = 6, motion = 3}           # pans: a 6-frame clip, each patch moving up to 3 HR px/frame

``video`` compresses the whole batch at once: the LR patches are tiled into one mosaic frame and encoded
with a random codec, CRF and preset (4:2:0 chroma), at the cost of one encode per batch (per-patch encoding
cost ~27 ms each and stalled the trainer). Without ``frames`` the clip is 2 frames (the mosaic shifted by a
pixel, then the mosaic; zero-latency settings) and the decoded P-frame is the LR. With ``frames = N`` (>= 3)
every patch pans: its HR source is translated by a random whole number of HR pixels per frame (up to
``motion``, so the LR moves by half pixels too, as in real pans), each frame is made like the LR (same blur,
fresh noise), and the N mosaics are encoded with the codec's own GOP settings (B-frames, lookahead, mbtree:
what a real encode does); the LR is a random decoded frame after the first, so the model sees P- and B-frame
artefacts of sub-pixel motion, not only a near-copy of an intra frame. Randomness comes from the batch
generator, so degraded batches are reproducible per step too.

``Degrader(..., pairs=True)`` (the trainer asks for it when ``[loss] temporal`` is set) makes a panning batch
return two consecutive decoded frames and their HR targets, ``(lr, hr)`` stacked as ``(2, N, C, H, W)``
(previous frame first), so a temporal loss can see how the output changes from one frame to the next.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..video import sws
from .config import ConfigError
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
    (the image shifted by ``shift`` px, then the image; zero-latency settings) and returns the decoded
    P-frame, so both intra and motion-compensated artefacts appear."""
    return clip_roundtrip([torch.roll(x, shifts=(shift, shift), dims=(1, 2)), x], codec, crf, preset, pick=1,
                          zerolatency=True)


def clip_roundtrip(frames: list[torch.Tensor], codec: str, crf: int, preset: str, pick: int,
                   zerolatency: bool = False) -> torch.Tensor:
    """Encode CHW ``frames`` as one clip through ``codec`` (libx264 / libx265, yuv420p) and return decoded
    frame ``pick`` (display order). ``zerolatency``: no B-frames or lookahead; otherwise the codec's own GOP
    settings for ``preset``. Odd sizes are padded by replication and cropped back."""
    return clip_roundtrip_frames(frames, codec, crf, preset, zerolatency)[pick]


def clip_roundtrip_frames(frames: list[torch.Tensor], codec: str, crf: int, preset: str,
                          zerolatency: bool = False) -> list[torch.Tensor]:
    """Every decoded frame of ``clip_roundtrip``'s clip, in display order."""
    import av

    from ..video.color import RANGE_LIMITED, SPACE_SMPTE170M, decide_color
    from ..video.reader import frame_rgb

    c, h, w = frames[0].shape
    ph, pw = h % 2, w % 2
    if not zerolatency:  # libx265 with lookahead corrupts the heap on some clips under 64 px (16x48, 32x48)
        ph, pw = max(ph, 64 - h), max(pw, 64 - w)
    if ph or pw:
        frames = [F.pad(f[None], (0, pw, 0, ph), mode="replicate")[0] for f in frames]
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = w + pw, h + ph, "yuv420p"
    opts = {"crf": str(int(crf)), "preset": preset}
    if codec == "libx265":
        opts["x265-params"] = "log-level=error" + (":bframes=0" if zerolatency else "")
        dec = av.CodecContext.create("hevc", "r")
    else:
        if zerolatency:
            opts["bf"] = "0"
        dec = av.CodecContext.create("h264", "r")
    if zerolatency:
        opts["tune"] = "zerolatency"
    else:  # rate control with lookahead needs the frame rate
        enc.time_base, enc.framerate = Fraction(1, 25), Fraction(25)
    enc.options = opts
    packets = []
    for i, f in enumerate(frames):
        vf = sws.reformat(av.VideoFrame.from_ndarray(_to_uint8(f), format="rgb24"), format="yuv420p")
        vf.pts = i
        packets += enc.encode(vf)
    packets += enc.encode(None)
    out = []
    for p in [*packets, None]:
        out += dec.decode(p)
    if len(out) != len(frames):
        raise RuntimeError(f"{codec} round trip gave {len(out)} of {len(frames)} frames")
    out.sort(key=lambda fr: fr.pts if fr.pts is not None else 0)
    # decoded as psr2video reads a video (float RGB, interpolated chroma: swscale's to_ndarray takes the nearest
    # chroma sample, a picture the models never get), with the matrix and range swscale encoded with (BT.601, limited)
    color = decide_color(SPACE_SMPTE170M, RANGE_LIMITED, None, None, h, "yuv420p")
    return [frame_rgb(fr, color)[0, :, :h, :w] for fr in out]


class Degrader:
    """Callable ``(hr_batch, generator) -> lr_batch`` following the ``[data.degrade]`` table."""

    def __init__(self, scale: int, cfg: dict, pairs: bool = False) -> None:
        unknown = set(cfg) - set(STAGES)
        if unknown:
            raise ConfigError(f"unknown degradation(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")
        if pairs and int((cfg.get("video") or {}).get("frames", 2)) <= 2:
            raise ConfigError("a temporal loss needs panning clips: set frames = 3 or more in [data.degrade] video")
        self.scale, self.cfg, self.pairs = scale, cfg, pairs

    def _on(self, name: str, g: torch.Generator) -> dict | None:
        c = self.cfg.get(name)
        if not c:
            return None
        return c if float(torch.rand((), generator=g)) < float(c.get("prob", 1.0)) else None

    def __call__(self, hr: torch.Tensor, g: torch.Generator) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The LR batch; with ``pairs`` and a panning batch, ``(lr, hr)`` each stacked ``(2, N, ...)``."""
        out = []
        sources: list[tuple[torch.Tensor, tuple[float, bool] | None]] = []  # (HR after blur, noise) per patch
        for img in hr:
            x = img[None]
            if c := self._on("blur", g):
                x = gaussian_blur(x, _uniform(g, *c.get("sigma", (0.2, 1.5))))
            src = x
            x = downscale(x, self.scale, quantize=False)[0]
            noise = None
            if c := self._on("noise", g):
                noise = (_uniform(g, *c.get("sigma", (1.0, 8.0))) / 255.0,
                         float(torch.rand((), generator=g)) < float(c.get("gray_prob", 0.0)))
                x = x + _noise(x.shape, noise, g)
            sources.append((src, noise))
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
            if int(c.get("frames", 2)) <= 2:
                return self._video(lr, c, g)
            return self._pan(lr, sources, c, g, hr if self.pairs else None)
        return lr

    @staticmethod
    def _codec(c: dict, g: torch.Generator) -> tuple[str, str, int]:
        codecs, presets = list(c.get("codecs", ["libx264"])), list(c.get("presets", ["ultrafast"]))
        lo, hi = c.get("crf", (18, 32))
        codec = codecs[int(torch.randint(0, len(codecs), (), generator=g))]
        preset = presets[int(torch.randint(0, len(presets), (), generator=g))]
        return codec, preset, int(torch.randint(int(lo), int(hi) + 1, (), generator=g))

    @classmethod
    def _video(cls, lr: torch.Tensor, c: dict, g: torch.Generator) -> torch.Tensor:
        """The whole batch through one codec round trip, as a mosaic of its patches."""
        codec, preset, crf = cls._codec(c, g)
        return _untile(codec_roundtrip(_tile(lr), codec, crf, preset), lr.shape)

    def _pan(self, lr: torch.Tensor, sources: list, c: dict, g: torch.Generator,
             hr: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The batch as a clip of ``frames`` mosaics in which every patch pans (module docstring). Batched:
        tiny per-patch ops stall the data thread when the trainer holds every core. Given ``hr`` (the targets),
        also the frame before the LR's and its target, the HR moved the same way (``pairs``)."""
        codec, preset, crf = self._codec(c, g)
        n_frames, vmax = int(c["frames"]), int(c.get("motion", 3))
        pick = int(torch.randint(1, n_frames, (), generator=g))  # never the intra frame
        vel = torch.randint(-vmax, vmax + 1, (len(sources), 2), generator=g).tolist()
        h, w = sources[0][0].shape[-2:]
        m = (n_frames - 1) * vmax  # replicated border: content entering the panning window
        padded = F.pad(torch.cat([src for src, _ in sources]), (m, m, m, m), mode="replicate")
        sigma = torch.tensor([nz[0] if nz else 0.0 for _, nz in sources]).view(-1, 1, 1, 1)
        gray = torch.tensor([bool(nz and nz[1]) for _, nz in sources]).view(-1, 1, 1, 1)
        frames = []
        for t in range(n_frames):
            if t == pick:
                frames.append(_tile(lr))
                continue
            hr_t = torch.stack([padded[i, :, m - (t - pick) * vy: m - (t - pick) * vy + h,
                                       m - (t - pick) * vx: m - (t - pick) * vx + w]
                                for i, (vy, vx) in enumerate(vel)])
            x = downscale(hr_t, self.scale, quantize=False)
            n = torch.randn(x.shape, generator=g)
            x = x + torch.where(gray, n[:, :1], n) * sigma
            frames.append(_tile((x.clamp(0, 1) * 255).round() / 255))
        if hr is None:
            return _untile(clip_roundtrip(frames, codec, crf, preset, pick=pick), lr.shape)
        decoded = clip_roundtrip_frames(frames, codec, crf, preset)
        hp = F.pad(hr, (m, m, m, m), mode="replicate")
        hr_prev = torch.stack([hp[i, :, m + vy: m + vy + h, m + vx: m + vx + w] for i, (vy, vx) in enumerate(vel)])
        return (torch.stack([_untile(decoded[pick - 1], lr.shape), _untile(decoded[pick], lr.shape)]),
                torch.stack([hr_prev, hr]))


def _noise(shape: torch.Size, noise: tuple[float, bool], g: torch.Generator) -> torch.Tensor:
    sigma, gray = noise
    return torch.randn((1 if gray else 3, *shape[1:]), generator=g) * sigma


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _tile(batch: torch.Tensor) -> torch.Tensor:
    """NCHW patches as one CHW mosaic (row-major, near square)."""
    n, ch, h, w = batch.shape
    rows, cols = _grid(n)
    mosaic = torch.zeros(ch, rows * h, cols * w)
    for i in range(n):
        mosaic[:, (i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = batch[i]
    return mosaic


def _untile(mosaic: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    n, _, h, w = shape
    _, cols = _grid(n)
    return torch.stack([mosaic[:, (i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w]
                        for i in range(n)])
