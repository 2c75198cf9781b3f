"""decode thread -> [queue] -> device stage (this thread) -> [queue] -> encode thread.

The device stage uploads YUV planes, converts to RGB with the stream's matrix and range, runs the shared
``Upscaler``, converts back to YUV (clamped, quantised; uint16 above 8 bits) and downloads the planes.
On CUDA it overlaps upload of batch N+1, compute of N and download of N-1 with pinned double-buffered
host memory, an upload stream, a dedicated compute stream (TensorRT on the legacy default stream adds
device-wide synchronisation) and a download stream, ordered by CUDA events; host waits use blocking
events (they sleep instead of spinning a core). On the CPU the same code runs without streams.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from ..fileio import NAME_MAX, beside
from ..output_size import SizeSpec, resample
from ..output_size import notes as size_notes
from .color import PLANAR, ColorInfo, quarter_chroma, rgb_to_yuv, yuv_to_rgb
from .continuity import container_alpha
from .crop import Crop
from .hud import Stats, burn_text
from .reader import (
    Damage,
    EndItem,
    FirstFrame,
    InputError,
    PacketItem,
    Reader,
    SourceTiming,
    StreamInfo,
    VideoItem,
    main_video,
    open_input,
    pixel_shape,
    shown_length,
    stream_info,
    video_end,
    video_start,
)
from .trim import Trim, Window, container_origin, part_window
from .writer import (
    SUBSAMPLING_NAME,
    EncodeItem,
    EndOfVideo,
    OutputError,
    Writer,
    codec_available,
    colour_kept,
    encodes,
    guess_format,
    ideal_pix_fmt,
    is_disk_full,
    keep_colour_hint,
    output_ticks,
    pick_pix_fmt,
)


@dataclass
class Options:
    input: str
    output: str
    scale: int = 2
    codec: str = "libx264"
    crf: float | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    fmt: str | None = None  # output container format ('-' needs one, default matroska)
    in_fmt: str | None = None
    in_fps: Fraction | None = None  # an image-sequence IN's frame rate (default 25)
    size: SizeSpec | None = None  # --size: the model's output resampled to fit this box (square pixels)
    crop: Crop | None = None  # --crop: edges cut off the frames before the model (resolved: not "auto")
    trim: Trim | None = None  # --start/--end: only this part of the video, moved to start at 0
    # scale-out: the source's pixel shape and display rotation, which --size fits by (the cut keeps no rotation)
    shape: tuple[Fraction, int] | None = None
    batch: int = 1
    overlay_fps: bool = False
    max_frames: int = 0
    hwaccel: str | None = None
    deinterlace: bool = False
    depth: int = 8  # queue depth (items) between the stages
    decode_threads: int = 0
    # scale-out segments: only frames whose time (s) lies in [start, end) (None = open) are upscaled; the
    # others are decoded (as references) and dropped
    keep: tuple[Fraction | None, Fraction | None] | None = None
    mux_options: dict[str, str] | None = None  # output format options (scale-out: timestamps kept as they are)
    # the source's colour decision, when the input is a scale-out cut: NUT keeps no container colour tags, and
    # a segment deciding from its cut would convert with another matrix than a single-process run
    color: ColorInfo | None = None
    # scale-out: the source's time base (the cut's NUT time base refines it); frames are timed, and nudged when
    # their times don't increase, in it, as a single-process run does: a nudge of one NUT tick rounded back to
    # the source's time base at the join gave two frames one time
    time_base: Fraction | None = None
    # scale-out: the source's dts of the cut's packets and its timestamp guess's state at the cut (the cut's NUT
    # keeps neither), so the segment's frames get the single-process run's times
    timing: SourceTiming | None = None
    # scale-out: the container the joined OUT is written in (FFmpeg's muxer name), whose colour fields decide the
    # output's range (a segment is NUT, which records none); None: this output's own
    out_container: str | None = None
    # the encoder was psr2video's default, not --codec: a 10-bit source written as 10-bit H.264 gets a note
    codec_default: bool = False


@dataclass
class Result:
    frames: int = 0
    seconds: float = 0.0
    stopped: bool = False
    stop_time: float = 0.0
    damaged: list[Damage] = field(default_factory=list)
    truncated: str = ""
    resized: str = ""
    fixed_pts: int = 0
    timed_pts: int = 0  # frames without any timestamp, timed one frame period after the previous
    notes: list[str] = field(default_factory=list)  # copied streams whose timestamps were fixed
    out_size: tuple[int, int] = (0, 0)
    pix_fmt: str = ""
    color: ColorInfo | None = None
    expected: int = 0
    nonfinite: int = 0  # NaN/inf model outputs replaced before encoding
    pipe_closed: bool = False  # stopped (Ctrl-C/SIGTERM) and the program reading stdout quit on the same signal


def count_lines(timed_pts: int, fixed_pts: int, notes: list[str], nonfinite: int) -> list[str]:
    """The end-of-run notes about timestamps made up or moved and model outputs replaced (a scale-out run sums
    its segments' and says them the same way)."""
    lines = []
    if timed_pts:
        lines.append(f"note: {timed_pts} frame(s) had no timestamp (a raw stream?) and were timed from the frame rate")
    if fixed_pts:
        lines.append(f"note: {fixed_pts} frame(s) had non-increasing timestamps and were nudged")
    lines += [f"note: {note}" for note in notes]
    if nonfinite:
        lines.append(f"warning: the model produced {nonfinite} NaN/infinite value(s), replaced before encoding "
                     "(an fp16 overflow? try --precision fp32)")
    return lines


class CudaOps:
    """The CUDA calls the device stage makes, in one place (tests swap in no-op streams and events to run
    the same streamed path on the CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def stream(self) -> Any:
        return torch.cuda.Stream(self.device)

    def event(self) -> Any:
        return torch.cuda.Event(blocking=True)  # synchronize() sleeps instead of spinning a CPU core

    def use(self, stream: Any) -> Any:
        return torch.cuda.stream(stream)

    def scope(self) -> Any:
        return torch.cuda.device(self.device)

    def current(self) -> Any:
        return torch.cuda.current_stream(self.device)

    def pinned(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, pin_memory=True)

    def record_stream(self, t: torch.Tensor, stream: Any) -> None:
        t.record_stream(stream)


class DeviceStage:
    """YUV planes -> RGB -> Upscaler -> YUV planes, batched; CUDA path overlaps copies with compute."""

    def __init__(self, upscaler: Any, color: ColorInfo, out_size: tuple[int, int], out_pix_fmt: str,
                 stats: Stats | None = None, overlay: bool = False, ops: Any = None,
                 out_color: ColorInfo | None = None, resize: bool = False, crop: Crop | None = None) -> None:
        self.up = upscaler
        self.crop = crop if crop else None  # --crop: cut on the device, before the colour conversion
        self.resize = resize  # --size: the model's output is resampled to out_size (else cropped to it)
        self.color = color
        self.out_color = out_color or color  # the output's range may differ (--pix-fmt yuvj*: full range)
        self.out_w, self.out_h = out_size
        self.sw, self.sh, self.bits = PLANAR[planar(out_pix_fmt)]
        self.gray = out_pix_fmt.startswith("gray")
        self.stats = stats
        self.overlay = overlay
        self.device = upscaler.device
        self.ops = ops if ops is not None else (CudaOps(self.device) if self.device.type == "cuda" else None)
        self.cuda = self.ops is not None  # the streamed path (real CUDA, or stand-ins in tests)
        if self.cuda:
            self.up_stream = self.ops.stream()
            self.compute_stream = self.ops.stream()
            self.down_stream = self.ops.stream()
            self._slots: list[list[torch.Tensor] | None] = [None, None]
            self._slot_ev: list[Any] = [None, None]
            self._k = 0

    @contextlib.contextmanager
    def _colour_threads(self):
        """CPU: the colour maths is memory bound and runs beside decode/encode threads; one OpenMP thread
        avoids barrier stalls on a busy machine (measured 2.3 ms vs 59 ms for a 1x1 conv at 960x540 on 2
        loaded cores). The model keeps the configured thread count."""
        if self.cuda:
            yield
            return
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(n)

    def _time(self, stage: str, t0: float, n: int) -> float:
        if self.stats is not None:
            self.stats.add(stage, time.perf_counter() - t0, n)
        return time.perf_counter()

    def _upload(self, batch: list[VideoItem]) -> list[torch.Tensor | None]:
        """Planes of ``batch`` on the device, usable on the current (compute) stream."""
        nplanes = len(batch[0].planes)
        first = batch[0].planes[0]
        if isinstance(first, torch.Tensor):  # NVDEC frames: already on the device, ready after their event
            if self.cuda:
                for it in batch:
                    if it.keep is not None and hasattr(it.keep, "record"):
                        self.ops.current().wait_event(it.keep)
            return [torch.stack([it.planes[p] for it in batch]) for p in range(nplanes)]
        if not self.cuda:
            return [torch.from_numpy(np.stack([it.planes[p] for it in batch])) for p in range(nplanes)]
        # pinned double buffer: slot k is reused only after its previous upload finished
        slot = self._k % 2
        self._k += 1
        if self._slot_ev[slot] is not None:
            self._slot_ev[slot].synchronize()
        shapes = [(len(batch), *batch[0].planes[p].shape) for p in range(nplanes)]
        dts = [torch.from_numpy(batch[0].planes[p][:1, :1].copy()).dtype for p in range(nplanes)]
        host = self._slots[slot]
        if host is None or [tuple(h.shape) for h in host] != shapes:
            host = [self.ops.pinned(s, d) for s, d in zip(shapes, dts, strict=False)]
            self._slots[slot] = host
        for p in range(nplanes):
            dst = host[p].numpy()
            for i, it in enumerate(batch):
                np.copyto(dst[i], it.planes[p])
        ev = self.ops.event()
        with self.ops.use(self.up_stream):
            dev = [h.to(self.device, non_blocking=True) for h in host]
            ev.record(self.up_stream)
        self._slot_ev[slot] = ev
        cur = self.ops.current()
        cur.wait_event(ev)
        for t in dev:
            self.ops.record_stream(t, cur)
        return dev

    def _download(self, planes: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], Any]:
        if not self.cuda:
            return list(planes), None
        done = self.ops.event()
        done.record(self.ops.current())
        ready = self.ops.event()
        with self.ops.use(self.down_stream):
            self.down_stream.wait_event(done)
            host = [self.ops.pinned(tuple(p.shape), p.dtype) for p in planes]
            for h, p in zip(host, planes, strict=False):
                h.copy_(p, non_blocking=True)
                self.ops.record_stream(p, self.down_stream)
            ready.record(self.down_stream)
        return host, ready

    @torch.inference_mode()
    def process(self, batch: list[VideoItem]) -> list[EncodeItem]:
        """Run one batch; on CUDA everything but the copies is queued on the dedicated compute stream."""
        if not self.cuda:
            return self._process(batch)
        with self.ops.scope(), self.ops.use(self.compute_stream):
            return self._process(batch)

    def _process(self, batch: list[VideoItem]) -> list[EncodeItem]:
        n = len(batch)
        t0 = time.perf_counter()
        planes = self._upload(batch)
        if self.crop is not None:  # views into the uploaded planes: nothing is copied
            planes = self.crop.planes(planes, batch[0].shift_w, batch[0].shift_h)
        t0 = self._time("upload", t0, n)
        y = planes[0]
        u, v = (planes[1], planes[2]) if len(planes) >= 3 else (None, None)
        with self._colour_threads():
            rgb = yuv_to_rgb(y.to(self.device), None if u is None else u.to(self.device),
                             None if v is None else v.to(self.device), batch[0].bits, self.color,
                             dtype=self.up.dtype)
        t_col = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = self.up(rgb)
        t0 = self._time("infer", t0, n)  # on CUDA: launch time (the copy/compute overlap hides the rest)
        if self.resize:  # --size: resampled on the device (the download and the encoder get the final frame)
            out = resample(out, self.out_h, self.out_w)
            t0 = self._time("resize", t0, n)
        else:  # the even size a subsampled format needs
            out = out[..., : self.out_h, : self.out_w]
        with self._colour_threads():
            yuv = rgb_to_yuv(out, self.bits, self.out_color, self.sw, self.sh, gray=self.gray,
                             assume_clamped=bool(getattr(self.up, "clamp", False)))
        if self.overlay and self.stats is not None:
            burn_text(yuv, f"{self.stats.fps_now:.1f} fps", self.bits, self.sw, self.sh)
        if self.stats is not None:
            self.stats.add("colour", t_col + time.perf_counter() - t0, n)
        t0 = time.perf_counter()
        host, ready = self._download(yuv)
        self._time("download", t0, n)
        return [EncodeItem(it.index, it.pts, it.time_base, tuple(h[i] for h in host), ready, it.duration)
                for i, it in enumerate(batch)]


def output_size(width: int, height: int, scale: int, pix_fmt: str) -> tuple[int, int]:
    """``scale`` times the input, cropped to even sizes when the output format subsamples chroma."""
    sw, sh, _ = PLANAR.get(pix_fmt, (1, 1, 8))
    w, h = width * scale, height * scale
    return (w - (w % 2 if sw else 0), h - (h % 2 if sh else 0))


def output_colour(color: ColorInfo, pix_fmt: str, codec: str, container: str) -> tuple[ColorInfo, list[str]]:
    """The output's colour decision for a source of ``color`` written as ``pix_fmt`` by ``codec`` into ``container``
    (FFmpeg's muxer name; "" when unknown), and the notes that say what changed: ``yuvj*`` is full range (the
    encoders flag it so); a colour source written grey is full range, as untagged grey is read back (AVI and NUT
    hold no range tag); a full-range source is written as limited-range codes where the output can't record full
    range (``writer.colour_kept``: ProRes, MPEG-2, MOV's MPEG-4, AVI...), which read it back as limited: the
    levels are folded into the device stage's conversion, so the picture looks as it did."""
    out, notes = color, []
    made_grey = pix_fmt.startswith("gray") and not color.work_fmt.startswith("gray")
    if pix_fmt.startswith("yuvj") and not color.full_range:
        out = dataclasses.replace(color, full_range=True)
        notes.append(f"note: --pix-fmt {pix_fmt} is full range; the limited-range input is written full range")
    elif made_grey and not color.full_range:
        out = dataclasses.replace(color, full_range=True)
    elif (color.full_range and container and not pix_fmt.startswith(("yuvj", "gray"))
          and "range" not in colour_kept(codec, container)):
        out = dataclasses.replace(color, full_range=False)
        notes.append(f"note: {codec} in {container} can't record full range: the full-range input is written as "
                     f"limited-range codes, which look the same ({keep_colour_hint(codec, container)} to keep full "
                     "range)")
    if made_grey:
        notes.append(f"note: --pix-fmt {pix_fmt} holds brightness only: the input's colour is dropped")
    return out, notes


def output_container(path: str, fmt: str | None) -> str:
    """The muxer FFmpeg writes OUT with (its extension's, or --format; "" when it can't tell)."""
    if found := guess_format(path, fmt):
        return found
    try:
        return av.format.ContainerFormat(Path(path).suffix.lstrip(".").lower(), "w").name
    except (ValueError, av.error.FFmpegError):
        pass
    from .output_checks import _probe

    probe = _probe(path, fmt)  # FFmpeg's guess from the name; None: no muxer (the run names it)
    if probe is None:
        return ""
    with probe:
        return probe.format.name


def subsampling(color: ColorInfo) -> tuple[int, int]:
    """The source's chroma shifts (width, height) as the device stage reads it (RGB is converted to 4:4:4)."""
    if color.from_rgb or quarter_chroma(color.source_fmt):  # 4:1:1 DV: 4:2:0, not 4:4:4 (see quarter_chroma)
        return (1, 1)
    return PLANAR.get(color.work_fmt, (1, 1, 8))[:2]


def planar(pix_fmt: str, codec: str | None = None) -> str:
    """``pix_fmt``, refused when the device stage can't write it (not a planar YUV/grey format), naming those of
    ``codec``'s formats it writes."""
    if pix_fmt not in PLANAR:
        formats = [f.name for f in av.codec.Codec(codec, "w").video_formats or ()] if codec else []
        writable = [f for f in formats if f in PLANAR]
        raise OutputError(f"--pix-fmt {pix_fmt} is not a planar YUV/grey format the pipeline writes"
                          + (f" ({codec} takes {', '.join(writable)})" if writable else ""))
    return pix_fmt


def output_pix_fmt(color: ColorInfo, codec: str, requested: str | None) -> str:
    """The output pixel format for a source of ``color`` (``writer.pick_pix_fmt``: as requested, else the source's
    subsampling and depth where ``codec`` has them), refused as the device stage would (a scale-out run asks this
    before any worker starts)."""
    cw, ch = subsampling(color)
    chosen = pick_pix_fmt(codec, color.bits, cw, ch, color.work_fmt.startswith("gray"), requested)
    if requested is None and chosen not in PLANAR:  # the encoder's own first format, not the user's --pix-fmt
        raise OutputError(f"{codec} encodes no planar YUV/grey format for this video (its first, {chosen}, is not "
                          "one the pipeline writes); pick --codec libx264, libx265, libsvtav1 or ffv1")
    return planar(chosen, codec)


def partial_path(out: str) -> str:
    """OUT's temporary name while it is written (``.NAME.partial.EXT``; a digest of the name where that would be
    too long for a file name)."""
    p = Path(out)
    tmp = p.with_name(f".{p.stem}.partial{p.suffix}")
    return str(tmp if len(os.fsencode(tmp.name)) <= NAME_MAX else beside(p, ".partial"))


class _Run:
    """One upscale run, split by job: set up (probe, writer, reader, device stage), pump frames, finish."""

    def __init__(self, opts: Options, upscaler: Any, inp: av.container.InputContainer, stop: threading.Event,
                 stats: Stats, warn: Callable[[str], None]) -> None:
        self.opts, self.up, self.inp, self.stop, self.stats, self.warn = opts, upscaler, inp, stop, stats, warn
        self.res = Result()
        self.tmp: str | None = None
        self.reader: Reader | None = None
        self.writer: Writer | None = None
        self.stage: DeviceStage | None = None
        self.hw_fallback_said = False
        self.window: Window | None = None  # --start/--end in the file's times
        self.resize = False  # --size asks for another size than the model's: resample on the device

    def set_up(self, on_start: Callable[[Stats, Result], None] | None) -> None:
        opts, inp, res, stats = self.opts, self.inp, self.res, self.stats
        info = stream_info(inp)
        if opts.color is not None:
            info = dataclasses.replace(info, color=opts.color)
        if not info.width or not info.height:
            raise OutputError(f"{opts.input}: video stream has no size")
        if not codec_available(opts.codec):
            raise OutputError(f"encoder {opts.codec} is not in this FFmpeg build")
        depth = max(opts.depth, 2 * opts.batch)
        self.window = win = self._window(info)
        reader = self.reader = Reader(inp, info.color, depth=depth, max_frames=opts.max_frames, stop=self.stop,
                                      stats=stats, threads=opts.decode_threads, deinterlace=opts.deinterlace,
                                      warn=self.warn, timing=opts.timing, window=win)
        first = reader.prime()
        if opts.crop:  # the model sees the cropped frames: everything sized from here on is of them
            cw, ch = opts.crop.apply(info)
            info = dataclasses.replace(info, width=cw, height=ch)
        self._notes(info, first)
        pix_fmt, (w, h) = self._output_format(info, first)
        res.out_size, res.pix_fmt, res.color = (w, h), pix_fmt, info.color
        # a scale-out segment (NUT, the source's colour given) decides for the joined OUT's container, or not at all
        container = opts.out_container or ("" if opts.color is not None else output_container(opts.output, opts.fmt))
        out_color, notes = output_colour(info.color, pix_fmt, opts.codec, container)
        for line in notes:
            self.warn(line)
        prepare = getattr(self.up, "prepare", None)
        if prepare is not None:  # a fixed-size graph's fit; TensorRT: find or build an engine now, not mid-run
            prepare(opts.batch, info.height, info.width)
        vin = main_video(inp)
        if win is None:  # a count the container keeps is exact; length x rate is an estimate (wrong for VFR)
            frames, length, exact = info.frames, info.duration or 0.0, bool(vin.frames)
        else:
            (frames, length), exact = self._part_frames(info.rate, win), False
        # --max-frames is a bound, not a total: a stream of unknown length may end first
        res.expected = min(frames, opts.max_frames) if opts.max_frames and frames else frames
        copy = [s for s in inp.streams if s is not vin and s.type in ("audio", "subtitle", "data", "attachment",
                                                                      "video")]
        stats.total, stats.exact, stats.length, stats.cap = frames, exact, length, opts.max_frames
        stats.src_fps = float(info.rate) if info.rate else 0.0
        stats.device = self.up.device
        self.tmp = opts.output if opts.output == "-" else partial_path(opts.output)
        stats.out_path = "" if self.tmp == "-" else self.tmp
        stats.final_path = "" if self.tmp == "-" else opts.output
        self.writer = Writer(self.tmp, inp, copy, width=w, height=h, codec=opts.codec, pix_fmt=pix_fmt, crf=opts.crf,
                             preset=opts.preset, time_base=opts.time_base or info.time_base,
                             rate=getattr(opts.timing, "rate", None) or info.rate,
                             color_tags=out_color.output_tags(), fmt=opts.fmt, depth=depth, stats=stats,
                             warn=self.warn, first=first, deinterlaced=opts.deinterlace,
                             mux_options=opts.mux_options, out_name=opts.output, square_pixels=self.resize,
                             window=win, crop=opts.crop)
        reader.copy_ids = set(self.writer.copy_map)
        self.stage = DeviceStage(self.up, info.color, (w, h), pix_fmt, stats, opts.overlay_fps, out_color=out_color,
                                 resize=self.resize, crop=opts.crop)
        stats.queues = {"decode": reader.queue, "encode": self.writer.queue}
        if on_start is not None:
            on_start(stats, res)

    def _window(self, info: StreamInfo) -> Window | None:
        """--start/--end in the file's own times; a start at or past the video's end is refused."""
        trim = self.opts.trim
        if trim is None:
            return None
        trim.check(shown_length(self.inp), self.opts.input)
        return part_window(trim, self.inp, main_video(self.inp),
                           output_ticks(self.opts.output, self.opts.fmt, info.rate))

    def _part_frames(self, rate: Fraction | None, win: Window) -> tuple[int, float]:
        """About how many frames the part holds and how long it is (s), for the progress; 0 for what is unknown.
        Where the video's end is unknown (a raw stream) so is the part's: --end is only a bound, and the part's
        length from it made a 4 s stream's progress say 15/1475."""
        end = video_end(self.inp)
        if end is None:
            return 0, 0.0
        hi = end if win.hi is None else min(end, float(win.hi))
        length = max(0.0, hi - max(float(win.lo), video_start(self.inp)))
        return (int(round(length * float(rate))) if rate else 0), length

    def _output_format(self, info: StreamInfo, first: FirstFrame) -> tuple[str, tuple[int, int]]:
        """The output pixel format (the input's subsampling and depth where the codec has them; RGB input is
        written 4:2:0, what players expect) and size (even where the format subsamples; --size's box)."""
        opts, color = self.opts, info.color
        cw, ch = subsampling(color)
        pix_fmt = output_pix_fmt(color, opts.codec, opts.pix_fmt)
        ow, oh, obits = PLANAR.get(pix_fmt, (1, 1, 8))  # nv12 and the like: 4:2:0, 8-bit
        if not opts.pix_fmt:  # what this build's encoder has no form for is said, with the encoders that have it
            gray = color.work_fmt.startswith("gray")
            lost = [f"{color.bits}-bit"] if obits < color.bits else []
            if not color.from_rgb and not gray and ow + oh > cw + ch:  # coarser chroma than the input's
                lost.append(SUBSAMPLING_NAME[(cw, ch)])
            if lost:
                ideal = ideal_pix_fmt(color.bits, cw, ch, gray)
                keep = [c for c in ("libx265", "ffv1") if c != opts.codec and encodes(c, ideal)]
                form = "grey" if pix_fmt.startswith("gray") else SUBSAMPLING_NAME.get((ow, oh), "4:2:0")
                self.warn(f"note: the input is {' '.join(lost)} but {opts.codec} here encodes {pix_fmt}: written "
                          f"{obits}-bit {form}"
                          + (f" ({' or '.join(keep)} keep {ideal})" if keep else ""))
            elif opts.codec_default and opts.codec == "libx264" and obits > 8:
                self.warn(f"note: the input is {color.bits}-bit: written as {obits}-bit H.264, which few devices "
                          "play (--codec libx265 is the usual choice for 10-bit video)")
        scale = self.up.scale
        model_size = (info.width * scale, info.height * scale)
        if opts.size is not None:
            sar, rotation = opts.shape or (pixel_shape(main_video(self.inp)), first.rotation)
            w, h = opts.size.fit(info.width, info.height, sar, rotation, even_w=bool(ow), even_h=bool(oh))
            self.resize = (w, h) != model_size
            if self.resize:
                for line in size_notes(opts.size, (w, h), model_size, sar, "the input"):  # a scale-out cut: same
                    self.warn(line)
            return pix_fmt, (w, h)
        w, h = output_size(info.width, info.height, scale, pix_fmt)
        if (w, h) != model_size:
            self.warn(f"note: {pix_fmt} needs even sizes; output cropped to {w}x{h}")
        return pix_fmt, (w, h)

    def _notes(self, info: StreamInfo, first: FirstFrame) -> None:
        """Say what the run does with input properties it can't keep as they are."""
        opts, warn = self.opts, self.warn
        if opts.hwaccel and not self.hw_fallback_said and not first.hw_decoded:
            warn(f"note: --hwaccel {opts.hwaccel}: the hardware decoder did not take this {info.codec} stream; "
                 "decoding in software")
        if info.color.alpha:
            warn(f"note: the input's alpha channel ({info.pix_fmt}) is not carried (the output has none)")
        elif self.reader is not None and container_alpha(self.reader.vstream):
            warn(f"note: the input's alpha channel ({info.codec} alpha in its container) is not carried (the output "
                 "has none)")
        if opts.deinterlace and not first.interlaced:
            warn("note: --deinterlace: the input is not flagged interlaced; every frame is deinterlaced anyway")
        elif opts.deinterlace:
            warn("note: --deinterlace: frames are deinterlaced (bwdif, one frame per frame) before upscaling")

    def pump(self) -> EndItem:
        """Move items from the reader through the device stage to the writer until the reader's end marker."""
        reader, writer, stage, stats = self.reader, self.writer, self.stage, self.stats
        assert reader is not None and writer is not None and stage is not None
        stats.start = time.perf_counter()
        reader.start()
        writer.start()
        batch: list[VideoItem] = []

        def flush() -> None:
            if batch:
                for item in stage.process(batch):
                    writer.put(item)
                stats.frame_done(len(batch), batch[-1].time)
                batch.clear()

        while True:
            try:
                item = reader.queue.get(timeout=0.2)
            except queue.Empty:
                if writer.error is not None:
                    raise writer.error from None
                continue
            if isinstance(item, PacketItem):
                writer.put(item)
            elif isinstance(item, VideoItem):
                if self.opts.keep is not None and not kept(item, self.opts.keep):
                    continue
                batch.append(item)
                if len(batch) >= self.opts.batch:
                    flush()
            else:
                flush()
                return item

    def finish(self, end: EndItem) -> Result:
        """Flush and close the output, then rename it into place."""
        writer, res, stats = self.writer, self.res, self.stats
        assert writer is not None
        writer.put(EndOfVideo())
        writer.join()
        if end.error is not None:
            raise end.error
        if writer.error is not None:
            raise writer.error
        writer.close(cut=end.stopped or self.stop.is_set() or bool(self.reader and self.reader.capped))
        stats.finish()
        if writer.error is not None:
            raise writer.error
        res.frames = writer.frames
        res.stopped = end.stopped or self.stop.is_set()
        # where a player (and --start) puts it: the file's time, less the container's start (1.4 s in MPEG-TS);
        # untimed frames (a raw stream) are timed from the frame rate in Stats, as the writer times them; NaN when
        # neither is known
        res.stop_time = self._stop_time()
        res.damaged, res.truncated, res.resized = end.damaged, end.truncated, end.resized
        res.fixed_pts, res.timed_pts = writer._fixed_pts, writer._missing_pts
        jumps = self.reader.continuity.note() if self.reader is not None else None
        res.notes = ([jumps] if jumps else []) + writer.fixup_notes() + writer.lost_facts() + [
            f"audio stream #{i}: no packet of it lies in the part (it ends before it, or is muxed further from the "
            "video than the reading goes); its track is empty"
            for i in (self.reader.empty_in_part() if self.reader is not None else []) if i in writer.copy_map]
        res.nonfinite = int(getattr(self.up, "nonfinite", 0))
        res.seconds = stats.elapsed
        if not res.frames and not res.stopped:  # nothing to write: say why, leave no empty or missing OUT
            name = self.opts.input
            if self.opts.keep is not None:
                raise InputError(f"no video frame of {name} lies in the segment to keep")
            if self.opts.trim is not None and not end.damaged and not end.truncated:
                raise InputError(f"no video frame of {name} lies in the part {self.opts.trim.describe()} "
                                 "(--start/--end)")
            why = (f": {end.truncated}" if end.truncated
                   else f" ({len(end.damaged)} damaged spans)" if end.damaged else "")
            raise InputError(f"no video frame could be decoded from {name}{why}")
        if self.tmp != "-":
            if res.stopped and not res.frames:  # Ctrl-C before the first frame: nothing to keep (PyAV may
                Path(self.tmp).unlink(missing_ok=True)  # not even have created the file), OUT left as it was
            else:
                Path(self.tmp).replace(self.opts.output)
        self.tmp = None
        return res

    def _stop_time(self) -> float:
        return (self.stats.last_time + (float(self.window.moved) if self.window is not None else 0.0)
                - float(container_origin(self.inp)))

    def stopped_on_closed_pipe(self) -> Result:
        """The result of a run stopped (Ctrl-C, SIGTERM) whose stdout reader quit on the same signal before the
        output was finished (`psr2video IN - | player`, Ctrl-C in the terminal): a stopped run, not a broken pipe
        error; the frames the encoder took, timed as a finished run's."""
        res, stats = self.res, self.stats
        stats.finish()
        res.frames = self.writer.frames if self.writer is not None else 0
        res.stopped = res.pipe_closed = True
        res.stop_time = self._stop_time()
        res.seconds = stats.elapsed
        return res

    def abort(self, e: BaseException) -> BaseException:
        """Stop everything, remove the partial output; the exception to raise (user-facing where it is one)."""
        self.stop.set()
        if self.writer is not None:
            with contextlib.suppress(BaseException):
                self.writer.close()
        if self.tmp not in (None, "-"):
            with contextlib.suppress(OSError):
                Path(self.tmp).unlink()
        if is_disk_full(e):
            if self.opts.output == "-":
                return OutputError("disk full while writing to stdout")
            return OutputError(f"disk full while writing {self.opts.output}; partial output removed")
        if is_broken_pipe(e):
            return OutputError("stdout was closed by the reading program (broken pipe)")
        return e

    def close(self) -> None:
        if self.reader is not None:
            self.stop.set()
            self.reader.abandon()
            if self.reader.is_alive():
                self.reader.join(timeout=5)
        with contextlib.suppress(Exception):
            self.inp.close()


def is_broken_pipe(e: BaseException) -> bool:
    return getattr(e, "errno", None) == errno.EPIPE or isinstance(e, BrokenPipeError)


def kept(item: VideoItem, keep: tuple[Fraction | None, Fraction | None]) -> bool:
    """Whether a frame lies in ``keep``: by its own pts, which the plan cut by (a decode-order source's frames
    are timed by dts, a reorder delay later); frames without a timestamp are kept."""
    pts = item.own_pts if item.own_pts is not None else item.pts
    if pts is None:
        return True
    t = pts * Fraction(item.time_base)
    return (keep[0] is None or t >= keep[0]) and (keep[1] is None or t < keep[1])


def run(opts: Options, upscaler: Any, stop: threading.Event | None = None, stats: Stats | None = None,
        warn: Callable[[str], None] = print, on_start: Callable[[Stats, Result], None] | None = None) -> Result:
    """Upscale ``opts.input`` into ``opts.output`` (written under a temporary name, renamed at the end).

    Raises InputError/OutputError/ValueError for user mistakes; on any failure the partial output is
    removed. A set ``stop`` event ends the run early with a finalised, playable output.
    """
    stop = stop or threading.Event()
    said: list[str] = []  # open_input's own hardware-decoder fallback line

    def warn_open(msg: str) -> None:
        said.append(msg)
        warn(msg)

    dev = getattr(upscaler, "device", torch.device("cpu"))
    gpu = (dev.index if dev.index is not None else torch.cuda.current_device()) if dev.type == "cuda" else None
    inp = open_input(opts.input, opts.in_fmt, opts.hwaccel, warn=warn_open, gpu=gpu, fps=opts.in_fps)
    job = _Run(opts, upscaler, inp, stop, stats or Stats(), warn)
    job.hw_fallback_said = bool(said)
    try:
        job.set_up(on_start)
        return job.finish(job.pump())
    except BaseException as e:
        stopped = stop.is_set()  # by Ctrl-C/SIGTERM (the caller's handler), before abort sets it too
        err = job.abort(e)
        if stopped and opts.output == "-" and is_broken_pipe(e):  # the reader quit on the same Ctrl-C
            return job.stopped_on_closed_pipe()
        if err is e:
            raise
        raise err from None
    finally:
        job.close()


__all__ = ["DeviceStage", "Options", "Result", "count_lines", "run", "output_size", "partial_path"]
