"""``--size``: an output size other than the model's scale (720p -> 1080p is x1.5; a model is x2).

The model runs at its own scale and its output is resampled to the size asked for, on the device, before the
frames are encoded. The size is a box the picture fits in, as it is shown: its display aspect ratio (pixel
shape and display rotation applied) is kept, its pixels come out square, and ``1920x1080`` on a 4:3 DVD gives
1440x1080, never a stretched picture. One side alone (``x1080``, ``1920x``) sets that side.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .errors import PsrError

MAX_SIDE = 16384  # what libx264/libx265 and the players take; far past any model's useful output
MIN_SIDE = 16  # a smaller side asked for is a slip ("x2" meaning twice wrote a 4x2 video), not a wish


class SizeError(PsrError, ValueError):
    """A --size that gives an output past MAX_SIDE for this picture's shape."""

# the largest side a picture format can hold (WebP's 14-bit sizes; JPEG's, GIF's and TGA's 16-bit ones; AVIF:
# measured with Pillow, 65536 wide was written and then not readable); .jfif and .jpe come as .jpg
# (image_upscale.kind)
FORMAT_MAX_SIDE = {".webp": 16383, ".jpg": 65535, ".jpeg": 65535, ".gif": 65535, ".avif": 65535, ".tga": 65535}


def check_format(width: int, height: int, ext: str) -> None:
    """SizeError when a ``width`` x ``height`` output is larger than an ``ext`` picture can be (said before any
    work: the encoder refused it at the end, with a traceback)."""
    top = FORMAT_MAX_SIDE.get(ext.lower())
    if top and max(width, height) > top:
        raise SizeError(f"the output would be {width}x{height} pixels, and {ext} holds at most {top} a side (use "
                        ".png, or --size to fit it)")


_SPEC = re.compile(r"^\s*(\d*)\s*[xX:]\s*(\d*)\s*$")


@dataclass(frozen=True)
class SizeSpec:
    """A box WxH the output fits in (either side may be None: that side follows the picture's shape)."""

    width: int | None
    height: int | None

    @classmethod
    def parse(cls, text: str) -> SizeSpec:
        """``1920x1080``, ``x1080`` or ``1920x`` (``:`` works as the separator too); ValueError in one line."""
        m = _SPEC.match(text or "")
        if m is None or not (m.group(1) or m.group(2)):
            raise ValueError(f"--size expects WIDTHxHEIGHT, xHEIGHT or WIDTHx (e.g. 1920x1080, x1080), got {text!r}")
        w, h = (int(g) if g else None for g in m.groups())
        for side, what in ((w, "wide"), (h, "high")):
            if side is not None and side < MIN_SIDE:  # "x2", "2x": a user meaning "twice", not 2 pixels
                times = {2: "twice the size use --scale 2 (the default)", 3: "three times the size use --scale 3",
                         4: "four times the size use --scale 4"}.get(side)
                raise ValueError(f"--size {text.strip()} asks for {side} pixel{'s' if side != 1 else ''} {what} "
                                 f"(each side must be at least {MIN_SIDE})" + (f"; for {times}" if times else ""))
            if side is not None and side > MAX_SIDE:
                raise ValueError(f"--size {text.strip()}: each side must be {MIN_SIDE} to {MAX_SIDE} pixels")
        return cls(w, h)

    def __str__(self) -> str:
        return f"{self.width or ''}x{self.height or ''}"

    def fit(self, width: int, height: int, sar: Fraction = Fraction(1), rotation: int = 0, even_w: bool = False,
            even_h: bool = False) -> tuple[int, int]:
        """The output's stored size (square pixels) for a ``width`` x ``height`` picture of pixel shape ``sar``
        shown turned by ``rotation`` degrees: as large as fits the box as shown, the display aspect kept to the
        nearest pixel (an even one where the pixel format subsamples that axis)."""
        turned = rotation % 180 == 90
        box_w, box_h = (self.height, self.width) if turned else (self.width, self.height)  # the box as stored
        shown_w, shown_h = Fraction(width) * sar, Fraction(height)  # the stored picture with square pixels
        by_width = box_h is None or (box_w is not None and Fraction(box_w) / shown_w <= Fraction(box_h) / shown_h)
        if by_width:  # the side that meets the box first is the box's (to the step), the other follows it
            w = _side(Fraction(box_w), box_w, even_w)
            out = w, _side(shown_h * w / shown_w, box_h, even_h)
        else:
            h = _side(Fraction(box_h), box_h, even_h)
            out = _side(shown_w * h / shown_h, box_w, even_w), h
        if max(out) > MAX_SIDE:  # the side that follows the shape: a long strip with one side given
            raise SizeError(f"--size {self} makes {out[0]}x{out[1]} of this {width}x{height} picture; each side must "
                            f"be at most {MAX_SIDE} pixels (give both sides: WxH fits inside them)")
        return out


def _side(exact: Fraction, bound: int | None, even: bool) -> int:
    """``exact`` rounded to a whole (even) pixel count, never past ``bound``, at least one step."""
    step = 2 if even else 1
    n = max(step, round(exact / step) * step)
    if bound is not None and n > bound:
        n = max(step, bound // step * step)
    return n


LANCZOS_LOBES = 3


@functools.lru_cache(maxsize=16)
def _weights(n_in: int, n_out: int, device: str) -> Any:
    """The (n_out x n_in) Lanczos-3 resampling matrix along one axis, sparse (CSR): each output pixel weighs the
    input pixels under the kernel, stretched by the ratio when shrinking (every input pixel counts: no aliasing),
    edges replicated, each row summing to 1. Sparse because a row has about 6 x ratio taps: a dense matrix for
    2560 -> 1920 columns would cost 40 GFLOP a frame, the band 0.1."""
    import numpy as np
    import torch

    scale = n_in / n_out
    stretch = max(scale, 1.0)
    reach = LANCZOS_LOBES * stretch
    taps = int(math.ceil(reach)) * 2 + 1
    centre = (np.arange(n_out) + 0.5) * scale  # output pixel centres in input coordinates
    first = np.floor(centre - reach).astype(np.int64)
    cols = first[:, None] + np.arange(taps)[None]
    t = (cols + 0.5 - centre[:, None]) / stretch
    w = np.sinc(t) * np.sinc(t / LANCZOS_LOBES) * (np.abs(t) < LANCZOS_LOBES)
    w /= w.sum(1, keepdims=True)
    rows = np.repeat(np.arange(n_out), taps)
    index = torch.from_numpy(np.stack([rows, np.clip(cols, 0, n_in - 1).ravel()]))
    with warnings.catch_warnings():  # "sparse CSR support is in beta": matmul by it is all that is used
        warnings.simplefilter("ignore", UserWarning)
        m = torch.sparse_coo_tensor(index, torch.from_numpy(w.ravel().astype(np.float32)), (n_out, n_in))
        return m.coalesce().to_sparse_csr().to(device)  # coalesce sums the replicated edge taps


def _axis(x: Any, n_out: int, dim: int) -> Any:
    """``x`` resampled along ``dim`` to n_out: one sparse matmul over all the other axes (that axis moved first,
    so the matrix multiplies it without a transpose of the result)."""
    import torch

    n_in = x.shape[dim]
    if n_in == n_out:
        return x
    m = x.movedim(dim, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        y = torch.sparse.mm(_weights(n_in, n_out, str(x.device)), m.reshape(n_in, -1))
    return y.reshape(n_out, *m.shape[1:]).movedim(0, dim)


def resample(x: Any, height: int, width: int) -> Any:
    """NCHW float in [0, 1] resampled to ``height`` x ``width`` with Lanczos-3 (as FFmpeg's and Pillow's lanczos:
    widened when shrinking, so 1-px lines average out instead of aliasing into bands), computed in float32,
    clamped to [0, 1]. A fourth (or second) channel is alpha: colour is resampled premultiplied by it, so
    see-through pixels' colour does not bleed into the edges.

    Measured on Set14 + 20 B100 pictures at x1.5 (bicubic LR, realtime x2, resampled to the HR size): 35.32 dB
    PSNR-Y, against 35.24 for antialiased bicubic and 33.56 for Lanczos from the LR alone; 1-px stripes shrunk to
    3/4 keep a 0.035 ripple (bicubic: 0.114). CPU: 120 ms for 2560x1440 -> 1920x1080."""
    import torch

    if tuple(x.shape[-2:]) == (height, width):
        return x
    y = x.float()
    alpha = y.shape[1] in (2, 4)
    if alpha:
        y = torch.cat([y[:, :-1] * y[:, -1:], y[:, -1:]], 1)
    y = _axis(_axis(y, width, -1), height, -2).clamp(0, 1)
    if alpha:
        a = y[:, -1:]
        y = torch.cat([torch.where(a > 0, y[:, :-1] / a.clamp_min(1e-6), 0).clamp_(0, 1), a], 1)
    return y.contiguous().to(x.dtype)


def notes(spec: SizeSpec, size: tuple[int, int], model_size: tuple[int, int], sar: Fraction, name: str) -> list[str]:
    """What the run says about the size it resamples to: past the model's own output, and pixels made square."""
    out = []
    if sar != 1:
        out.append(f"note: {name} has non-square pixels (SAR {sar.numerator}:{sar.denominator}); --size writes "
                   f"square ones ({size[0]}x{size[1]} shows the same shape)")
    if size[0] > model_size[0] or size[1] > model_size[1]:
        out.append(f"note: --size {spec}: the model makes {model_size[0]}x{model_size[1]}; the rest of the way to "
                   f"{size[0]}x{size[1]} is Lanczos interpolation, which adds no detail (a model of a larger "
                   "--scale does)")
    return out


__all__ = ["FORMAT_MAX_SIDE", "MAX_SIDE", "SizeError", "SizeSpec", "check_format", "notes", "resample"]
