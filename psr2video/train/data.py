"""Image-folder training data: HR images preloaded once, random crops with flips/rotations, LR on the fly.

Batches are a pure function of ``(seed, step)``, so a resumed run sees exactly the batches an
uninterrupted one would, however far the background prefetcher has run ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..cards import aliased_pair, random_patch
from ..pictures import list_images, rgb_array
from .config import ConfigError


def load_images(folders: Sequence[str | Path], min_size: int = 0) -> list[torch.Tensor]:
    """Every image as a uint8 CHW tensor (kept in memory: 291 images are ~60 MB)."""
    out = []
    for p in list_images(folders, what="training"):
        a = rgb_array(p)
        if min(a.shape[:2]) >= min_size:
            out.append(torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous())
    if not out:
        raise ConfigError(f"no training image is at least {min_size} px on its short side")
    return out


def downscale(hr: torch.Tensor, scale: int, quantize: bool = True) -> torch.Tensor:
    """Antialiased bicubic downscale of float NCHW in [0, 1] (matches PIL's BICUBIC resize)."""
    h, w = hr.shape[-2:]
    lr = F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    lr = lr.clamp(0, 1)
    return (lr * 255).round() / 255 if quantize else lr


def shrink(crop: torch.Tensor, size: int) -> torch.Tensor:
    """A uint8 CHW crop shrunk to size x size (antialiased bicubic, rounded back to uint8). Scale augmentation
    as in VDSR's 291-image training: the same photos seen at smaller scales are new, sharper HR content."""
    out = F.interpolate(crop[None].float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def synthetic_patch(size: int, g: torch.Generator) -> torch.Tensor:
    """A hard synthetic HR crop (3 x size x size): periodic 1-4 px lines or a checkerboard in two colours
    (often pure black and white). Natural photos rarely contain these, and without them gated blocks can
    learn to blow up on text, subtitles and screen content."""

    def r(n: int) -> int:
        return int(torch.randint(0, n, (), generator=g))

    if r(2):
        a, b = torch.zeros(3), torch.ones(3)
    else:
        a, b = torch.rand(3, generator=g), torch.rand(3, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    period, width, kind = 2 + r(9), 1 + r(4), r(4)
    if kind == 0:
        m = (xx % period) < width
    elif kind == 1:
        m = (yy % period) < width
    elif kind == 2:
        m = ((xx // width) + (yy // width)) % 2 == 0
    else:
        m = ((xx + yy) % period) < width
    if r(2):  # a patch of pattern on a flat field, like text on a background
        y0, x0 = r(size // 2), r(size // 2)
        box = torch.zeros_like(m)
        box[y0: y0 + size // 2, x0: x0 + size // 2] = True
        m = m & box
    return torch.where(m[None], b.view(3, 1, 1), a.view(3, 1, 1))


class PatchSampler:
    """Random HR crops (with the 8 dihedral transforms) and their LR, batch by batch."""

    def __init__(self, images: list[torch.Tensor], scale: int, patch: int, batch: int, seed: int = 0,
                 augment: bool = True, degrade: Callable[[torch.Tensor, torch.Generator], Any] | None = None,
                 synthetic: float = 0.0, degrade_share: float = 1.0, rescale: float = 1.0, aliased: float = 0.0,
                 aliased_target: str = "nearest"):
        if patch % scale:
            raise ConfigError(f"HR patch {patch} must be a multiple of the scale {scale}")
        if not 0.0 < rescale <= 1.0:
            raise ConfigError(f"rescale {rescale} must be in (0, 1]: the smallest factor an HR image is shrunk by")
        self.images = [im for im in images if min(im.shape[-2:]) >= patch]
        if not self.images:
            raise ConfigError(f"no training image is at least {patch} px on its short side")
        self.scale, self.patch, self.batch, self.seed, self.augment = scale, patch, batch, seed, augment
        self.degrade = degrade
        self.synthetic, self.degrade_share, self.rescale = float(synthetic), float(degrade_share), float(rescale)
        self.aliased = float(aliased)  # the share of synthetic crops made hard-edged (``cards.aliased_pair``)
        self.aliased_target = aliased_target  # "flat": their HR is NaN (no target) at the edges
        sizes = torch.tensor([im.shape[-1] * im.shape[-2] for im in self.images], dtype=torch.float64)
        self.weights = sizes / sizes.sum()  # sample images by area: every pixel equally likely

    def generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step)

    def hr_batch(self, step: int, g: torch.Generator | None = None) -> torch.Tensor:
        g = g or self.generator(step)
        idx = torch.multinomial(self.weights, self.batch, replacement=True, generator=g).tolist()
        p = self.patch
        crops = []
        for i in idx:
            im = self.images[i]
            h, w = im.shape[-2:]
            q = p
            if self.rescale < 1.0:  # drawn only when asked, so the batches of older configs are unchanged
                lo = max(self.rescale, p / min(h, w))
                q = min(round(p / (lo + (1.0 - lo) * float(torch.rand((), generator=g)))), h, w)
            y = int(torch.randint(0, h - q + 1, (1,), generator=g))
            x = int(torch.randint(0, w - q + 1, (1,), generator=g))
            c = im[:, y:y + q, x:x + q]
            if q != p:
                c = shrink(c, p)
            if self.augment:
                t = int(torch.randint(0, 8, (1,), generator=g))
                if t & 1:
                    c = c.flip(-1)
                if t & 2:
                    c = c.flip(-2)
                if t & 4:
                    c = c.transpose(-1, -2)
            crops.append(c)
        return torch.stack(crops).float().div_(255.0)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.generator(step)
        hr = self.hr_batch(step, g)
        degraded = None
        if self.aliased > 0 and self.degrade is not None:  # drawn first only here: older configs' batches unchanged
            degraded = float(torch.rand((), generator=g)) < self.degrade_share
        hard: dict[int, torch.Tensor] = {}
        if self.synthetic > 0:
            for i in range(hr.shape[0]):
                if float(torch.rand((), generator=g)) < self.synthetic:
                    # hard-edged (aliased) content drawn at LR size, its HR the nearest enlargement; in clean
                    # batches only (a degradation starts from the HR and would smooth the LR's hard edges)
                    if self.aliased > 0 and not degraded and float(torch.rand((), generator=g)) < self.aliased:
                        hard[i], hr[i] = aliased_pair(self.patch // self.scale, self.scale, g, self.aliased_target)
                        continue
                    # rendered cards (text, UI, line art) mostly; raw periodic patterns sometimes
                    use_card = float(torch.rand((), generator=g)) < 0.75
                    hr[i] = random_patch(self.patch, g) if use_card else synthetic_patch(self.patch, g)
        if degraded is None:
            degraded = self.degrade is not None and float(torch.rand((), generator=g)) < self.degrade_share
        lr = self.degrade(hr, g) if degraded else downscale(hr, self.scale)
        for i, a in hard.items():  # the LR as drawn, not a downscale of its HR
            lr[i] = a
        if isinstance(lr, tuple):  # a pair of consecutive frames, (2, N, ...) each (degrade.Degrader pairs)
            lr, hr = lr
        return lr.contiguous(), hr.contiguous()


class Prefetcher:
    """Makes batches ``start, start+1, ...`` in a background thread (torch ops release the GIL)."""

    def __init__(self, make: Callable[[int], tuple[torch.Tensor, torch.Tensor]], start: int, depth: int = 4):
        self.make, self.q = make, queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self.thread.start()

    def _run(self, step: int) -> None:
        while not self.stop.is_set():
            try:
                item = (step, *self.make(step))
            except Exception as e:  # surface in the consumer
                item = (step, e, None)
            while not self.stop.is_set():
                try:
                    self.q.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            step += 1

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        while True:
            step, lr, hr = self.q.get()
            if isinstance(lr, Exception):
                raise lr
            yield step, lr, hr

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
