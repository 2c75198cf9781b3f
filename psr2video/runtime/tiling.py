"""Tiled inference with overlap: run big frames in pieces and stitch them seamlessly.

Each tile is run with ``overlap`` input pixels of real context on every side (clipped at the frame
edge) and only its centre is kept, so when the overlap covers the model's receptive field the result
equals the untiled output (a model that pools over the whole frame, pro, only approximates it: its descriptor
says ``tiling="discouraged"``). Tile origins are aligned to the model's attention window grid.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Span = tuple[int, int, int, int]  # kept [start, end) and the [start, end) it is run with (context added)


def _spans(size: int, tile: int, ov: int) -> list[Span]:
    starts = range(0, size, tile) if size > tile else [0]
    return [(s, min(s + tile, size), max(s - ov, 0), min(s + tile + ov, size)) for s in starts]


def _grid(h: int, w: int, tile: int, overlap: int, align: int) -> tuple[list[Span], list[Span]]:
    """The tile grid: rows and columns, origins on the ``align`` grid, context rounded up to it too."""
    tile = max(align, tile - tile % align)
    ov = -(-overlap // align) * align
    return _spans(h, tile, ov), _spans(w, tile, ov)


def _whole(h: int, w: int, tile: int) -> bool:
    return tile <= 0 or (h <= tile and w <= tile)


def tile_shapes(h: int, w: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """The distinct (height, width) inputs ``tiled_apply`` hands ``fn`` for an ``h`` x ``w`` frame."""
    if _whole(h, w, tile):
        return [(h, w)]
    rows, cols = _grid(h, w, tile, overlap, align)
    return sorted({(yb - ya, xb - xa) for _, _, ya, yb in rows for _, _, xa, xb in cols})


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int, tile: int,
                overlap: int, align: int = 1) -> torch.Tensor:
    """Apply ``fn`` (an upscaler by ``scale``) to ``x`` (NCHW) in ``tile`` x ``tile`` input tiles."""
    n, c, h, w = x.shape
    if _whole(h, w, tile):
        return fn(x)
    rows, cols = _grid(h, w, tile, overlap, align)
    out = None
    for y0, y1, ya, yb in rows:
        for x0, x1, xa, xb in cols:
            y = fn(x[:, :, ya:yb, xa:xb])
            if out is None:
                out = y.new_empty((n, y.shape[1], h * scale, w * scale))
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = y[
                :, :, (y0 - ya) * scale:(y1 - ya) * scale, (x0 - xa) * scale:(x1 - xa) * scale]
    assert out is not None
    return out
