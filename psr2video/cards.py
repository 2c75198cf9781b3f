"""Synthetic test cards: the screen content that natural photos lack (text, 1-px lines, UI, flat colour).

Rendered at run time with Pillow (DejaVu from Debian's fonts when present, else Pillow's built-in font),
so neither the stress suite nor training ships images. ``card(name)`` gives the fixed cards the stress
suite judges; ``random_patch`` draws random cards of the same kinds for the training mix.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .pictures import to_tensor

# card name -> kind; "text" and "ui" cards must not come out worse than MKS2021 (the stress bar)
CARDS: dict[str, str] = {
    "lines": "lines",
    "text_bw_aa": "text",
    "text_bw_aliased": "text",
    "text_colour": "text",
    "text_small_white_on_black": "text",
    "checkerboard": "pattern",
    "ui": "ui",
    "gradient": "gradient",
    "noise": "noise",
    "flat_black": "flat",
    "flat_white": "flat",
    "colour_bars": "flat",
}
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts")
WORDS = ("The quick brown fox jumps over the lazy dog 0123456789", "Subtitles: Where are you going?",
         "FPS 59.94  HP 100/100  x2 ParagonSR2", "File  Edit  View  Help", "ETA 00:12:34  ·  1920x1080",
         "il1|!I lI1 WWMM @#%&", "Ünïcödé àéîõü ß Ωπ", "© 2026 All rights reserved.")


@lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """TrueType fonts found in the usual Debian folders (may be empty: then Pillow's built-in font)."""
    for d in FONT_DIRS:
        files = sorted(str(p) for p in Path(d).rglob("*.ttf")) if Path(d).is_dir() else []
        if files:
            return tuple(files)
    return ()


@lru_cache(maxsize=64)
def _font(index: int, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    files = font_files()
    if files:
        return ImageFont.truetype(files[index % len(files)], size)
    return ImageFont.load_default(size=size)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _colour(r: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in r.integers(0, 256, 3))


def _text(d: ImageDraw.ImageDraw, r: np.random.Generator, w: int, h: int, fg, size_range=(8, 16),
          aliased: bool = False, lines: int = 0) -> None:
    d.fontmode = "1" if aliased else "L"
    y = int(r.integers(0, 6))
    n = lines or 999
    while y < h and n > 0:
        size = int(r.integers(size_range[0], size_range[1] + 1))
        f = _font(int(r.integers(0, 1 << 16)), size)
        d.text((int(r.integers(0, 8)) - 2, y), WORDS[int(r.integers(0, len(WORDS)))], fill=fg, font=f)
        y += size + int(r.integers(1, 6))
        n -= 1


def _lines(d: ImageDraw.ImageDraw, r: np.random.Generator, w: int, h: int, fg, width: int = 1) -> None:
    """1-px (or ``width``) lines at several angles, evenly spread over the card."""
    angles = (0, 90, 45, 30, 10, 80, 135, 3)
    for i, a in enumerate(angles):
        cx, cy = (i % 4 + 0.5) * w / 4, (i // 4 + 0.5) * h / 2
        t = math.radians(a)
        for k in range(-3, 4):
            ox, oy = -math.sin(t) * k * 4, math.cos(t) * k * 4
            dx, dy = math.cos(t) * w / 9, math.sin(t) * h / 5
            d.line((cx + ox - dx, cy + oy - dy, cx + ox + dx, cy + oy + dy), fill=fg, width=width)


def _ui(d: ImageDraw.ImageDraw, r: np.random.Generator, w: int, h: int) -> None:
    """Flat panels with 1-px borders, buttons with labels, a title bar and a progress bar."""
    d.rectangle((0, 0, w, 14), fill=_colour(r))
    d.fontmode = "L"
    d.text((4, 1), "psr2video - Player", fill=(255, 255, 255), font=_font(0, 10))
    for _ in range(int(r.integers(4, 9))):
        x0, y0 = int(r.integers(0, w - 24)), int(r.integers(16, h - 16))
        x1, y1 = min(w - 1, x0 + int(r.integers(16, w // 2))), min(h - 1, y0 + int(r.integers(10, h // 3)))
        d.rectangle((x0, y0, x1, y1), fill=_colour(r), outline=_colour(r), width=1)
        if y1 - y0 > 12:
            d.text((x0 + 3, y0 + 2), "OK" if r.integers(0, 2) else "Cancel", fill=_colour(r), font=_font(1, 9))
    y = h - 10
    d.rectangle((4, y, w - 5, y + 5), outline=(200, 200, 200), width=1)
    d.rectangle((5, y + 1, 5 + int((w - 10) * r.random()), y + 4), fill=(30, 140, 255))


def render(kind: str, w: int, h: int, r: np.random.Generator) -> torch.Tensor:
    """One card of ``kind`` (3 x h x w, float in [0, 1]) with random details from ``r``."""
    bw = [(0, 0, 0), (255, 255, 255)]
    if kind in ("flat_black", "flat_white"):
        return torch.full((3, h, w), 0.0 if kind == "flat_black" else 1.0)
    if kind == "noise":
        return torch.from_numpy(r.random((3, h, w), dtype=np.float32))
    if kind == "gradient":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a, b = np.array(_colour(r), np.float32) / 255, np.array(_colour(r), np.float32) / 255
        t = (xx / max(1, w - 1)) if r.integers(0, 2) else (yy / max(1, h - 1))
        return torch.from_numpy((a[:, None, None] * (1 - t) + b[:, None, None] * t).astype(np.float32))
    if kind == "colour_bars":
        bars = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255), (255, 0, 0),
                (0, 0, 255), (0, 0, 0)]
        im = Image.new("RGB", (w, h))
        d = ImageDraw.Draw(im)
        for i, c in enumerate(bars):
            d.rectangle((i * w // 8, 0, (i + 1) * w // 8 - 1, h - 1), fill=c)
        return to_tensor(im)
    if kind == "checkerboard":
        cell = int(r.integers(1, 5))
        yy, xx = np.mgrid[0:h, 0:w]
        m = ((yy // cell + xx // cell) % 2).astype(np.float32)
        return torch.from_numpy(np.repeat(m[None], 3, 0))
    bg, fg = (bw if r.integers(0, 2) else bw[::-1])
    if kind == "text_colour":
        bg, fg = _colour(r), _colour(r)
    if kind == "text_small_white_on_black":
        bg, fg = (0, 0, 0), (255, 255, 255)
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    if kind == "lines":
        _lines(d, r, w, h, fg)
    elif kind == "ui":
        im.paste(_colour(r), (0, 0, w, h))
        _ui(d, r, w, h)
    elif kind.startswith("text"):
        small = kind == "text_small_white_on_black"
        _text(d, r, w, h, fg, (7, 11) if small else (9, 18), aliased=kind == "text_bw_aliased")
    else:
        raise ValueError(f"unknown card {kind!r}; choose from {', '.join(CARDS)}")
    return to_tensor(im)


def card(name: str, w: int = 256, h: int = 192, seed: int = 0) -> torch.Tensor:
    """The fixed card ``name`` (same pixels on every run for a given seed and size)."""
    if name not in CARDS:
        raise ValueError(f"unknown card {name!r}; choose from {', '.join(CARDS)}")
    return render(name, w, h, _rng(seed + 7919 * list(CARDS).index(name)))


# kinds drawn for training, with weights: mostly text and UI (everyday video: subtitles, credits, HUDs)
TRAIN_KINDS = {"text_bw_aa": 3, "text_bw_aliased": 1, "text_colour": 3, "text_small_white_on_black": 1,
               "lines": 2, "ui": 3, "checkerboard": 1, "gradient": 1, "colour_bars": 0.5}


def random_patch(size: int, g: torch.Generator) -> torch.Tensor:
    """A random synthetic HR crop (3 x size x size) for training, drawn from ``g`` (reproducible per step)."""
    seed = int(torch.randint(0, 2**31 - 1, (), generator=g))
    r = _rng(seed)
    kinds, weights = zip(*TRAIN_KINDS.items(), strict=True)
    p = np.array(weights, dtype=np.float64)
    kind = kinds[int(r.choice(len(kinds), p=p / p.sum()))]
    big = render(kind, size * 2, size * 2, r)  # render larger and crop: cards vary across the patch
    y, x = int(r.integers(0, size + 1)), int(r.integers(0, size + 1))
    return big[:, y:y + size, x:x + size].contiguous()
