"""Tiled inference with overlap: run big frames in pieces and stitch them seamlessly.

Each tile is run with ``overlap`` input pixels of real context on every side (clipped at the frame
edge) and only its centre is kept, so when the overlap covers the model's receptive field the result
equals the untiled output. Tile origins are aligned to the model's attention window grid.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _starts(size: int, tile: int) -> list[int]:
    return list(range(0, size, tile)) if size > tile else [0]


def tile_shapes(h: int, w: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """The distinct (height, width) inputs ``tiled_apply`` hands ``fn`` for an ``h`` x ``w`` frame."""
    if tile <= 0 or (h <= tile and w <= tile):
        return [(h, w)]
    tile = max(align, tile - tile % align)
    ov = -(-overlap // align) * align
    hs = {min(y0 + tile + ov, h) - max(y0 - ov, 0) for y0 in _starts(h, tile)}
    ws = {min(x0 + tile + ov, w) - max(x0 - ov, 0) for x0 in _starts(w, tile)}
    return sorted((a, b) for a in hs for b in ws)


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int, tile: int,
                overlap: int, align: int = 1) -> torch.Tensor:
    """Apply ``fn`` (an upscaler by ``scale``) to ``x`` (NCHW) in ``tile`` x ``tile`` input tiles."""
    n, c, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return fn(x)
    tile = max(align, tile - tile % align)
    ov = -(-overlap // align) * align  # round context up to the alignment grid
    out = None
    for y0 in _starts(h, tile):
        for x0 in _starts(w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - ov, 0), max(x0 - ov, 0)
            yb, xb = min(y1 + ov, h), min(x1 + ov, w)
            y = fn(x[:, :, ya:yb, xa:xb])
            if out is None:
                out = y.new_empty((n, y.shape[1], h * scale, w * scale))
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = y[
                :, :, (y0 - ya) * scale:(y1 - ya) * scale, (x0 - xa) * scale:(x1 - xa) * scale]
    assert out is not None
    return out
