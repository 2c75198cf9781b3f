"""Synthetic test cards: the screen content that natural photos lack (text, 1-px lines, UI, flat colour).

Rendered at run time with Pillow (DejaVu from Debian's fonts when present, else Pillow's built-in font),
so neither the stress suite nor training ships images. ``card(name)`` gives the fixed cards the stress
suite judges; ``random_patch`` draws random cards of the same kinds for the training mix. ``aliased_card`` and
``aliased_pair`` do the same for hard-edged content drawn at LR size (the suite's aliased section, ``[data] aliased``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

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


def nearest_up(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``x`` (..., H, W) enlarged ``scale`` times by nearest neighbour: each pixel a ``scale`` x ``scale`` block."""
    return x.repeat_interleave(scale, -2).repeat_interleave(scale, -1)


def flat_mask(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, 1, H*scale, W*scale) bool: the output pixels whose LR pixel has a 3x3 neighbourhood (edges replicated)
    of one single colour in every channel."""
    import torch.nn.functional as F

    pad = F.pad(lr, (1, 1, 1, 1), mode="replicate")
    spread = (F.max_pool2d(pad, 3, 1) + F.max_pool2d(-pad, 3, 1)).amax(1, keepdim=True)
    return nearest_up(spread == 0, scale)


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


# ---- hard-edged (aliased) content drawn AT LR size (issue 9) ----
# The cards above reach a model through an antialiased bicubic downscale, so none of them has a staircase
# edge at LR size. Real video has them: DVD/PGS bitmap subtitles with an outline, aliased UI text, pixel art
# scaled by nearest neighbour, 1-px dots. These are rendered directly at the size the model sees, with no
# antialiasing (Pillow's fontmode "1"; its ellipses and polygons are not antialiased), every pixel one of a
# few flat colours.
ALIASED_CARDS: dict[str, str] = {
    "subtitle_outlined_photo": "outlined aliased subtitle (white, black outline) over a photo-like background",
    "subtitle_outlined_flat": "outlined aliased subtitle (white, black outline) over flat grey",
    "ui_text_aliased": "aliased UI text (black on white menus, white on a blue title bar)",
    "dots_black_on_white": "1-px black dots on white",
    "disc_white_on_black": "a white disc and triangle on black (staircase curves)",
    "pixel_art": "a pixel-art sprite upscaled by nearest neighbour",
}
ALIASED_KINDS = tuple(ALIASED_CARDS)


@lru_cache(maxsize=64)
def _font_like(fragment: str, index: int, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The first font whose file name contains ``fragment`` (e.g. "Sans-Bold"), else ``_font(index, size)``."""
    for i, f in enumerate(font_files()):
        if Path(f).stem.endswith(fragment):
            return _font(i, size)
    return _font(index, size)


def _photo_like(w: int, h: int, r: np.random.Generator) -> Image.Image:
    """A smooth, photo-like background: a few random colours blended bicubically over the frame."""
    grid = r.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC)


def render_aliased(kind: str, w: int, h: int, r: np.random.Generator) -> torch.Tensor:
    """One hard-edged card of ``kind`` (3 x h x w, float in [0, 1]) drawn at this very size, no antialiasing."""
    if kind == "pixel_art":
        k = int(r.integers(2, 5))  # the sprite's pixel size on the frame
        bg = (0, 0, 0) if r.integers(0, 2) else _colour(r)
        a = np.empty((h, w, 3), np.uint8)
        a[:] = bg
        for _ in range(int(r.integers(2, 6))):  # mirror-symmetric sprites of 6-12 cells, 3-5 colours
            n = int(r.integers(6, 13))
            pal = np.array([bg] + [_colour(r) for _ in range(int(r.integers(2, 5)))], np.uint8)
            half = r.integers(0, len(pal), (n, (n + 1) // 2))
            half[r.random(half.shape) < 0.35] = 0
            cells = np.concatenate([half, half[:, ::-1][:, n % 2:]], 1)
            sprite = pal[cells].repeat(k, 0).repeat(k, 1)
            sh, sw = min(h, sprite.shape[0]), min(w, sprite.shape[1])
            y0, x0 = int(r.integers(0, h - sh + 1)), int(r.integers(0, w - sw + 1))
            a[y0:y0 + sh, x0:x0 + sw] = sprite[:sh, :sw]
        return torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)
    if kind == "dots_black_on_white":
        a = np.full((h, w, 3), 255, np.uint8)
        step = int(r.integers(5, 13))
        oy, ox = int(r.integers(0, step)), int(r.integers(0, step))
        a[oy::step, ox::step] = 0
        return torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)
    if kind == "disc_white_on_black":
        im = Image.new("RGB", (w, h), (0, 0, 0))
        d = ImageDraw.Draw(im)
        s = min(w, h)
        x0, y0 = int(r.integers(0, max(1, w - s // 2 * 2 + 1))), int(r.integers(0, max(1, h - s + 1)))
        d.ellipse((x0 + s // 8, y0 + s // 8, x0 + s - s // 8, y0 + s - s // 8), fill=(255, 255, 255))
        tx = int(r.integers(0, max(1, w - s // 2)))
        d.polygon([(tx, h - 2), (tx + s // 4, h - s // 2), (tx + s // 2, h - s // 6)], fill=(255, 255, 255))
        return to_tensor(im)
    if kind in ("subtitle_outlined_photo", "subtitle_outlined_flat"):
        im = _photo_like(w, h, r) if kind.endswith("photo") else Image.new("RGB", (w, h), (90, 90, 90))
        mask = Image.new("L", (w, h), 0)  # the glyphs, 1 bit; Pillow's stroke_width is antialiased even then
        d = ImageDraw.Draw(mask)
        d.fontmode = "1"
        size = int(r.integers(12, 17))
        font = _font_like("Sans-Bold", 1, size)
        y = int(r.integers(2, max(3, h // 3)))
        while y + size < h:
            d.text((int(r.integers(1, 8)), y), WORDS[int(r.integers(0, len(WORDS)))], fill=255, font=font)
            y += size + int(r.integers(4, 12))
        outline = mask.filter(ImageFilter.MaxFilter(3))  # a 1-px hard outline round every glyph (DVD style)
        im.paste((0, 0, 0), (0, 0, w, h), outline)
        im.paste((255, 255, 255), (0, 0, w, h), mask)
        return to_tensor(im)
    if kind == "ui_text_aliased":
        im = Image.new("RGB", (w, h), (255, 255, 255))
        d = ImageDraw.Draw(im)
        d.fontmode = "1"
        d.rectangle((0, 0, w - 1, 13), fill=(30, 60, 160))
        d.text((3, 1), "psr2video - Player", fill=(255, 255, 255), font=_font_like("Sans", 5, 10))
        y = 16 + int(r.integers(0, 4))
        while y + 11 < h:
            d.text((int(r.integers(2, 8)), y), WORDS[int(r.integers(0, len(WORDS)))], fill=(0, 0, 0),
                   font=_font_like("Sans", 5, int(r.integers(9, 12))))
            y += 14 + int(r.integers(0, 6))
        return to_tensor(im)
    raise ValueError(f"unknown aliased card {kind!r}; choose from {', '.join(ALIASED_CARDS)}")


def aliased_card(name: str, w: int = 128, h: int = 96, seed: int = 0) -> torch.Tensor:
    """The fixed hard-edged card ``name`` at LR size (same pixels on every run for a given seed and size)."""
    if name not in ALIASED_CARDS:
        raise ValueError(f"unknown aliased card {name!r}; choose from {', '.join(ALIASED_CARDS)}")
    return render_aliased(name, w, h, _rng(seed + 7919 * list(ALIASED_CARDS).index(name)))


def aliased_pair(lr_size: int, scale: int, g: torch.Generator,
                 target: str = "nearest") -> tuple[torch.Tensor, torch.Tensor]:
    """A random hard-edged training pair drawn from ``g``: the LR (3 x lr_size x lr_size) rendered at LR size with
    no antialiasing, and its HR target, the LR enlarged ``scale`` x by nearest neighbour (``target="flat"``: only
    where the LR's 3x3 neighbourhood is one flat colour, ``flat_mask``; NaN, no target, at and beside the edges).

    Why nearest neighbour: hard-edged content was rasterised on the LR grid (bitmap subtitles, UI, pixel art); a
    finer version of it does not exist in the signal, and one rendered at HR size (other hinting and stroke
    widths, antialiased or not) is not something the LR determines, so an L1 loss would average the candidates
    into grey fringes, the very halo and stipple this content must not get. The nearest enlargement is the one
    target the LR fixes exactly (a box downscale gives the LR back): flat stays flat, edges stay hard."""
    if target not in ("nearest", "flat"):
        raise ValueError(f"unknown aliased target {target!r}; choose nearest or flat")
    seed = int(torch.randint(0, 2**31 - 1, (), generator=g))
    r = _rng(seed)
    kind = ALIASED_KINDS[int(r.integers(0, len(ALIASED_KINDS)))]
    big = render_aliased(kind, lr_size * 2, lr_size * 2, r)  # drawn larger and cropped: content varies across
    y, x = int(r.integers(0, lr_size + 1)), int(r.integers(0, lr_size + 1))
    lr = big[:, y:y + lr_size, x:x + lr_size].contiguous()
    hr = nearest_up(lr, scale)
    if target == "flat":  # why: a small net pays for blocky edges on photos' edges (trainer: [data] aliased_target)
        hr = hr.masked_fill(~flat_mask(lr[None], scale)[0], float("nan"))
    return lr, hr
