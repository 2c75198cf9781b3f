"""YUV <-> RGB on the device (torch), with the right matrix, range, chroma siting and bit depth.

Rules (README, "Colour"):
- the matrix comes from the stream's tag; untagged content is BT.709 when its height is >= 720, else BT.601
  (576-line SD with PAL primaries, other SD with SMPTE-C's); a matrix we have no conversion for (YCgCo) is
  read as that guess and said so;
- the range comes from the tag (``yuvj*`` formats are full range); untagged is limited ("TV") range;
- RGB/palette sources are converted once (in the reader) to limited-range YUV with that same matrix and tagged
  so; packed YUV is unpacked to the matching planar format with its own matrix and range (``decide_color``);
- 4:2:0 chroma is taken as left-sited horizontally and centred vertically (MPEG-2/H.264 default) unless the
  stream says centre or top-left; the encoder side uses the matching filters so a round trip is neutral;
- RGB is clamped to [0, 1] and the codes to the legal code range before rounding; >8-bit planes are uint16.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import torch
import torch.nn.functional as F

# FFmpeg enum values (AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic, AVColorRange,
# AVChromaLocation); PyAV exposes these as plain ints on frames and codec contexts.
SPACE_RGB, SPACE_BT709, SPACE_UNSPECIFIED, SPACE_FCC, SPACE_BT470BG, SPACE_SMPTE170M = 0, 1, 2, 4, 5, 6
SPACE_SMPTE240M, SPACE_BT2020_NCL, SPACE_BT2020_CL = 7, 9, 10
SPACE_YCGCO = 8
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2
PRIM_BT709, PRIM_UNSPECIFIED, PRIM_BT470BG, PRIM_SMPTE170M, PRIM_BT2020 = 1, 2, 5, 6, 9
TRC_BT709, TRC_UNSPECIFIED, TRC_SMPTE170M = 1, 2, 6
LOC_UNSPECIFIED, LOC_LEFT, LOC_CENTER, LOC_TOPLEFT = 0, 1, 2, 3

# (Kr, Kb) per AVColorSpace
KRKB = {
    SPACE_BT709: (0.2126, 0.0722),
    SPACE_FCC: (0.30, 0.11),
    SPACE_BT470BG: (0.299, 0.114),
    SPACE_SMPTE170M: (0.299, 0.114),
    SPACE_SMPTE240M: (0.212, 0.087),
    SPACE_BT2020_NCL: (0.2627, 0.0593),
    SPACE_BT2020_CL: (0.2627, 0.0593),  # constant luminance approximated by the NCL matrix
}
SPACE_NAMES = {SPACE_BT709: "bt709", SPACE_FCC: "fcc", SPACE_BT470BG: "bt470bg", SPACE_SMPTE170M: "bt601",
               SPACE_SMPTE240M: "smpte240m", SPACE_BT2020_NCL: "bt2020nc", SPACE_BT2020_CL: "bt2020c"}

# planar layouts the device stage reads and writes: name -> (chroma shift w, chroma shift h, bits)
PLANAR: dict[str, tuple[int, int, int]] = {}
for _sub, (_sw, _sh) in {"420": (1, 1), "422": (1, 0), "444": (0, 0)}.items():
    PLANAR[f"yuv{_sub}p"] = (_sw, _sh, 8)
    PLANAR[f"yuvj{_sub}p"] = (_sw, _sh, 8)
    for _b in (9, 10, 12, 14, 16):
        PLANAR[f"yuv{_sub}p{_b}le"] = (_sw, _sh, _b)
PLANAR["gray"] = (0, 0, 8)
for _b in (9, 10, 12, 14, 16):
    PLANAR[f"gray{_b}le"] = (0, 0, _b)
# semi-planar (interleaved chroma) layouts, e.g. from NVDEC: name -> (bits, shift of the value in 16 bits)
SEMIPLANAR = {"nv12": (8, 0), "p010le": (10, 6), "p016le": (16, 0), "p012le": (12, 4)}


# swscale's names for the matrices (RGB/packed input is converted to planar YUV once, in the reader)
SWS_SPACE = {SPACE_BT709: "ITU709", SPACE_FCC: "FCC", SPACE_BT470BG: "ITU601", SPACE_SMPTE170M: "SMPTE170M",
             SPACE_SMPTE240M: "SMPTE240M", SPACE_BT2020_NCL: "BT2020", SPACE_BT2020_CL: "BT2020"}
# matrices a stream can be tagged with that the device stage has no conversion for (read as the untagged guess):
# named as the tag they are, not as "untagged"
OTHER_SPACE_NAMES = {SPACE_YCGCO: "YCgCo", 12: "chroma-derived non-constant luminance",
                     13: "chroma-derived constant luminance", 14: "ICtCp", 15: "IPT-C2", 16: "YCgCo-R (even)",
                     17: "YCgCo-R (odd)"}
# frame heights of 625-line (PAL/SECAM) video: untagged, its primaries are EBU/BT.470BG, not SMPTE-C (525-line NTSC)
PAL_HEIGHTS = (576, 288, 608)


@dataclass(frozen=True)
class ColorInfo:
    """The one colour decision for a stream: how the reader turns decoded frames into planar YUV codes, how
    the device stage reads those codes as RGB and writes them back, and how the output is tagged."""

    space: int = SPACE_BT709
    full_range: bool = False
    primaries: int = PRIM_UNSPECIFIED
    transfer: int = TRC_UNSPECIFIED
    chroma_location: int = LOC_LEFT
    guessed_space: bool = False
    bits: int = 8  # depth of the planes the device stage reads
    source_fmt: str = ""  # the decoder's pixel format
    work_fmt: str = ""  # the planar format the reader hands on ("" = the source's own planes)
    from_rgb: bool = False  # RGB/palette source: converted to limited-range YUV with ``space``
    alpha: bool = False  # the source has an alpha channel (not carried)
    tagged_space: int = SPACE_UNSPECIFIED  # the stream's own matrix tag where it is one we can't convert with

    @property
    def krkb(self) -> tuple[float, float]:
        return KRKB.get(self.space, KRKB[SPACE_BT709])

    @property
    def name(self) -> str:
        return SPACE_NAMES.get(self.space, str(self.space))

    @property
    def converted(self) -> bool:
        """Whether the reader converts frames (swscale, once) before the device stage."""
        return bool(self.work_fmt) and self.work_fmt != self.source_fmt

    def describe(self) -> str:
        g = " (untagged, guessed)" if self.guessed_space else ""
        if self.guessed_space and self.tagged_space not in (SPACE_UNSPECIFIED, SPACE_RGB):
            tag = OTHER_SPACE_NAMES.get(self.tagged_space, f"matrix {self.tagged_space}")
            g = f" (tagged {tag}, read as {'BT.601' if self.space == SPACE_SMPTE170M else 'BT.709'})"
        src = f" (from {self.source_fmt})" if self.from_rgb else ""
        return f"{self.name}{g}, {'full' if self.full_range else 'limited'} range{src}"

    def sws_args(self) -> dict[str, object]:
        """``VideoFrame.reformat`` arguments that turn a decoded frame into ``work_fmt`` codes with exactly
        this matrix and range (YUV sources keep their codes: same matrix and range on both sides)."""
        cs = SWS_SPACE.get(self.space, "ITU709")
        rng = "JPEG" if self.full_range else "MPEG"
        args: dict[str, object] = {"format": self.work_fmt, "dst_colorspace": cs, "dst_color_range": rng}
        if not self.from_rgb:
            args.update(src_colorspace=cs, src_color_range=rng)
        return args

    def output_tags(self) -> dict[str, int]:
        """Explicit tags for the output (never 'unspecified': an upscaled SD clip would be read as BT.709)."""
        prim, trc = self.primaries, self.transfer
        if prim == PRIM_UNSPECIFIED:
            prim = {SPACE_BT709: PRIM_BT709, SPACE_BT470BG: PRIM_BT470BG, SPACE_SMPTE170M: PRIM_SMPTE170M,
                    SPACE_BT2020_NCL: PRIM_BT2020, SPACE_BT2020_CL: PRIM_BT2020}.get(self.space, PRIM_UNSPECIFIED)
        if trc == TRC_UNSPECIFIED:
            trc = {SPACE_BT709: TRC_BT709, SPACE_BT470BG: TRC_SMPTE170M, SPACE_SMPTE170M: TRC_SMPTE170M,
                   SPACE_BT2020_NCL: TRC_BT709}.get(self.space, TRC_UNSPECIFIED)
        space = self.space if self.space in KRKB else SPACE_BT709
        # the chroma siting the device stage subsampled at (the input's): untagged, players assume left and a
        # centre-sited MJPEG's or top-left-sited UHD clip's chroma sat half an output pixel off
        return {"colorspace": space, "color_primaries": prim, "color_trc": trc,
                "color_range": RANGE_FULL if self.full_range else RANGE_LIMITED,
                "chroma_location": self.chroma_location}


def _work_format(pix_fmt: str) -> tuple[str, int, bool, bool]:
    """(planar format the device stage reads, its bits, RGB/palette source?, alpha?) for a decoder format."""
    if pix_fmt in PLANAR:
        return pix_fmt, PLANAR[pix_fmt][2], False, False
    if pix_fmt in SEMIPLANAR or pix_fmt in ("cuda", ""):
        return pix_fmt, SEMIPLANAR.get(pix_fmt, (8, 0))[0], False, False
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, TypeError):
        return "yuv444p", 8, True, False
    depth = max((c.bits for c in fmt.components), default=8)
    bits = 8 if depth <= 8 else 10 if depth <= 10 else 12 if depth <= 12 else 16
    suffix = "" if bits == 8 else f"{bits}le"
    alpha = any(c.is_alpha for c in fmt.components)
    if fmt.is_rgb or fmt.has_palette:
        return f"yuv444p{suffix}", bits, True, alpha
    chroma = [c for c in fmt.components if not c.is_luma and not c.is_alpha]
    if not chroma:
        return f"gray{suffix}", bits, False, alpha
    sub = {(8, 8): "420", (8, 16): "422"}.get((fmt.chroma_width(16), fmt.chroma_height(16)), "444")
    return f"yuv{sub}p{suffix}", bits, False, alpha


def quarter_chroma(pix_fmt: str) -> bool:
    """Whether ``pix_fmt`` keeps a quarter of the width's chroma (4:1:1, NTSC DV and DVCPRO; 4:1:0): read through
    4:4:4, it is written 4:2:0 (the chroma it has fits half the width, and every player decodes 4:2:0), not
    4:4:4 (H.264 High 4:4:4 Predictive, which few players decode)."""
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, TypeError):
        return False
    return not fmt.is_rgb and len(fmt.components) >= 3 and fmt.chroma_width(16) == 4


def decide_color(space: int | None, color_range: int | None, primaries: int | None, transfer: int | None,
                 height: int, pix_fmt: str = "", chroma_location: int | None = None) -> ColorInfo:
    """The ColorInfo for a stream's pixel format and tags.

    YUV: the tagged matrix (untagged HD, height >= 720, is BT.709; SD is BT.601) and range (``yuvj*`` is
    full; untagged is limited, untagged grey full, as swscale reads them). RGB and palette sources have no YUV
    matrix of their own: they are converted once to limited-range YUV with the matrix an untagged stream of
    that height would get, and tagged as exactly that, so the reader's conversion, the device stage and the
    output tags agree.
    """
    work, bits, rgb, alpha = _work_format(pix_fmt)
    guessed = rgb or space not in KRKB
    tagged = int(space) if not rgb and space is not None and space not in KRKB else SPACE_UNSPECIFIED
    if guessed:
        space = SPACE_BT709 if height >= 720 else SPACE_SMPTE170M
    # untagged grey is full range, as FFmpeg's swscale reads it (film scans, depth maps): read as limited, a
    # 16-bit FFV1 grey archive lost everything below limited-range black, even into FFV1
    full = not rgb and (color_range == RANGE_FULL or pix_fmt.startswith("yuvj")
                        or (pix_fmt.startswith(("gray", "ya")) and color_range != RANGE_LIMITED))
    loc = chroma_location if chroma_location in (LOC_LEFT, LOC_CENTER, LOC_TOPLEFT) else LOC_LEFT
    if rgb:
        loc = LOC_LEFT  # we subsample the chroma ourselves: MPEG-2 siting, the default players assume
    prim = int(primaries or PRIM_UNSPECIFIED)
    if rgb and prim == PRIM_UNSPECIFIED:
        prim = PRIM_BT709  # sRGB primaries
    elif prim == PRIM_UNSPECIFIED and guessed and height in PAL_HEIGHTS:
        prim = PRIM_BT470BG  # untagged 576-line SD is PAL/SECAM: its output was tagged with NTSC's primaries
    return ColorInfo(space=int(space), full_range=full, primaries=prim, transfer=int(transfer or TRC_UNSPECIFIED),
                     chroma_location=loc, guessed_space=guessed and not rgb, bits=bits, source_fmt=pix_fmt,
                     work_fmt=work, from_rgb=rgb, alpha=alpha, tagged_space=tagged)


def _levels(bits: int, full: bool) -> tuple[float, float, float, float]:
    """(y offset, y scale, c offset, c scale) mapping codes to y in [0, 1] and c in [-0.5, 0.5]."""
    m = float(1 << (bits - 8))
    if full:
        top = float((1 << bits) - 1)
        return 0.0, top, float(1 << (bits - 1)), top
    return 16.0 * m, 219.0 * m, 128.0 * m, 224.0 * m


def _plane_levels(bits: int, full: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-plane (scale, offset) for (Y, Cb, Cr) as float64 vectors: codes = value * scale + offset."""
    yo, ys, co, cs = _levels(bits, full)
    return (torch.tensor([ys, cs, cs], dtype=torch.float64), torch.tensor([yo, co, co], dtype=torch.float64))


def _up2(c: torch.Tensor, dim: int, cosited: bool) -> torch.Tensor:
    """Double ``c`` along ``dim`` (-1 or -2) by linear interpolation at the given siting (replicate edges)."""
    n = c.shape[dim]
    prev = torch.cat([c.narrow(dim, 0, 1), c.narrow(dim, 0, n - 1)], dim) if n > 1 else c
    nxt = torch.cat([c.narrow(dim, 1, n - 1), c.narrow(dim, n - 1, 1)], dim) if n > 1 else c
    if cosited:  # chroma sample j sits on luma 2j
        even, odd = c, (c + nxt) * 0.5
    else:  # chroma sample j sits between luma 2j and 2j+1
        even, odd = 0.75 * c + 0.25 * prev, 0.75 * c + 0.25 * nxt
    out = torch.stack([even, odd], dim=dim if dim < 0 else dim + 1)
    shape = list(c.shape)
    shape[dim] = 2 * n
    return out.reshape(shape)


def _matrix(info: ColorInfo) -> torch.Tensor:
    """3x3 M with rgb = M @ (y, cb, cr), y in [0, 1], cb/cr in [-0.5, 0.5]."""
    kr, kb = info.krkb
    kg = 1.0 - kr - kb
    return torch.tensor([[1.0, 0.0, 2 * (1 - kr)],
                         [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg],
                         [1.0, 2 * (1 - kb), 0.0]], dtype=torch.float64)


_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _codes_to_rgb(info: ColorInfo, bits: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    key = ("c2r", info.space, info.full_range, bits, str(device))
    if key not in _CACHE:
        scale, off = _plane_levels(bits, info.full_range)
        m = _matrix(info) / scale  # rgb = m @ codes - m @ off
        bias = -(m @ off)
        _CACHE[key] = (m.float().reshape(3, 3, 1, 1).to(device), bias.float().to(device))
    return _CACHE[key]


def _rgb_to_codes(info: ColorInfo, bits: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    key = ("r2c", info.space, info.full_range, bits, str(device))
    if key not in _CACHE:
        scale, off = _plane_levels(bits, info.full_range)
        a = torch.linalg.inv(_matrix(info)) * scale[:, None]  # codes = a @ rgb + off
        _CACHE[key] = (a.float().reshape(3, 3, 1, 1).to(device), off.float().to(device))
    return _CACHE[key]


def _sub2(c: torch.Tensor, dim: int, cosited: bool) -> torch.Tensor:
    """Halve ``c`` along ``dim`` (-1 or -2; odd sizes replicate the last sample): [1 2 1]/4 centred on the
    even samples when chroma is co-sited, else the mean of each pair. Strided slices, no convolution
    (3x faster than a strided depthwise conv on the CPU)."""
    n = c.shape[dim]
    if n % 2:
        c = torch.cat([c, c.narrow(dim, n - 1, 1)], dim)
    idx = [slice(None)] * c.ndim
    idx[dim] = slice(0, None, 2)
    e = c[tuple(idx)]
    idx[dim] = slice(1, None, 2)
    o = c[tuple(idx)]
    if not cosited:
        return (e + o) * 0.5
    m = o.shape[dim]
    prev = torch.cat([e.narrow(dim, 0, 1), o.narrow(dim, 0, m - 1)], dim)
    return (e * 2.0 + o + prev) * 0.25


def yuv_to_rgb(y: torch.Tensor, u: torch.Tensor | None, v: torch.Tensor | None, bits: int, info: ColorInfo,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Planes (N, H, W) / (N, Hc, Wc) of integer codes -> NCHW RGB in [0, 1] (``dtype``).

    ``u``/``v`` None means grey. Chroma is upsampled to the luma size (odd sizes: the last chroma sample
    covers the lone luma row/column). One 1x1 convolution does range, offsets and matrix in one pass.
    """
    h, w = y.shape[-2:]
    if u is None or v is None:
        yo, ys, _, _ = _levels(bits, info.full_range)
        yf = (y.to(torch.float32) - yo) / ys
        return yf.unsqueeze(1).expand(-1, 3, -1, -1).clamp(0, 1).to(dtype)
    c = torch.stack([u, v], 1).to(torch.float32)
    if c.shape[-1] != w:
        c = _up2(c, -1, cosited=info.chroma_location in (LOC_LEFT, LOC_TOPLEFT))[..., :w]
    if c.shape[-2] != h:
        c = _up2(c, -2, cosited=info.chroma_location == LOC_TOPLEFT)[..., :h, :]
    x = torch.cat([y.unsqueeze(1).to(torch.float32), c], 1)
    weight, bias = _codes_to_rgb(info, bits, x.device)
    return F.conv2d(x, weight, bias).clamp_(0, 1).to(dtype)


def rgb_to_yuv(rgb: torch.Tensor, bits: int, info: ColorInfo, shift_w: int = 1, shift_h: int = 1,
               gray: bool = False, assume_clamped: bool = False) -> tuple[torch.Tensor, ...]:
    """NCHW RGB -> integer code planes (uint8 for 8-bit, uint16 above), clamped before rounding.

    Returns (Y,) for grey or (Y, U, V) with the chroma subsampled by 2**shift (sizes rounded up), filtered
    to match the chroma siting. ``assume_clamped`` skips the RGB clamp for input already in [0, 1] (the
    Upscaler's output); the codes are clamped to the code range before rounding either way.
    """
    rgb = rgb.to(torch.float32)
    if not assume_clamped:
        rgb = rgb.clamp(0, 1)
    weight, off = _rgb_to_codes(info, bits, rgb.device)
    top = float((1 << bits) - 1)
    out_dtype = torch.uint8 if bits <= 8 else torch.uint16
    codes = F.conv2d(rgb, weight, off)
    yq = codes[:, 0].clamp_(0.0, top).round_().to(out_dtype)
    if gray:
        return (yq,)
    c = codes[:, 1:]
    if shift_h:
        c = _sub2(c, -2, cosited=info.chroma_location == LOC_TOPLEFT)
    if shift_w:
        c = _sub2(c, -1, cosited=info.chroma_location in (LOC_LEFT, LOC_TOPLEFT))
    cq = c.clamp_(0.0, top).round_().to(out_dtype)
    return yq, cq[:, 0], cq[:, 1]
