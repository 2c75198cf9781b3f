"""The Ray task: upscale one segment with the single-process pipeline (same Upscaler, same encoder settings).

The segment's packets arrive as a small video-only NUT file through Ray's object store, so a worker on another
node needs no shared storage; the encoded segment goes back the same way. ``pipeline.run`` does the work, with
``Options.keep`` dropping the frames outside the segment (decoded only as references at the cuts).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import PsrError
from ..fileio import write_atomic
from ..output_size import SizeSpec
from ..video.crop import Crop
from .split import CUT_FORMAT, CUT_OPTIONS, Segment

_UPSCALERS: dict[str, Any] = {}  # per worker process: models stay loaded between segments


@dataclass(frozen=True)
class Settings:
    """Everything that decides a segment's output bytes (recorded in the manifest)."""

    variant: str
    scale: int
    weights_sha256: str | None
    backend: str
    precision: str | None
    tile: int
    batch: int
    codec: str
    crf: float | None
    preset: str | None
    pix_fmt: str | None
    tta: bool = False
    size: str | None = None  # --size, as given (WxH, xH or Wx)
    crop: str | None = None  # --crop, resolved (T:B:L:R; auto is measured once, on the source)
    part: str | None = None  # --start/--end, in seconds from the file's start ('90-120', '90-'; exact fractions)
    # OUT's container (FFmpeg's muxer name): a full-range source is written as limited-range codes where OUT can't
    # record full range (pipeline.output_colour); the segments are NUT, which records none
    container: str | None = None


@dataclass
class Placement:
    """How a worker runs: on one GPU, or on ``threads`` CPU threads; decode on NVDEC with ``hwaccel``."""

    device: str = "cpu"
    threads: int = 1
    hwaccel: str | None = None


@dataclass
class SegmentResult:
    index: int
    data: bytes
    frames: int
    seconds: float
    worker: str
    damaged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # what a single-process run sums up at the end (pipeline.Result's fields of these names), for this segment
    counts: dict[str, int] = field(default_factory=dict)


COUNTS = ("timed_pts", "fixed_pts", "nonfinite")  # the counts a segment brings back


class SegmentError(PsrError):
    """A user's mistake that surfaced in a worker (a setting the worker's hardware or encoder refuses): the
    single-process run's one line, raised again as this class so that Ray does not retry it (``RETRY_ON`` holds
    only what a retry can cure; some library errors are RuntimeErrors too)."""


# what a task's failure is retried for (worker crashes and lost nodes are retried by Ray in any case): the system's
# failures (I/O, memory, CUDA/driver errors); not a user's mistake, which fails the same way every time
RETRY_ON: tuple[type[BaseException], ...] = (OSError, MemoryError, RuntimeError, EOFError)
REPORT_TIMEOUT = 5.0  # seconds a worker waits for the progress actor before it stops reporting


def best_effort(call: Any) -> tuple[bool, Any]:
    """(True, what ``call`` returns) for a ``ray.get`` on the progress actor; (False, None) when the actor is
    dead, restarting or does not answer in time: progress is for the HUD, and a task must not fail or block on
    it."""
    import ray

    try:
        return True, call()
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, ray.exceptions.ObjectLostError):
        return False, None


def _stats_class():
    """A pipeline Stats that reports frames done to the progress actor, at most every 0.5 s.

    The report waits for the actor's answer (a few ms), so the HUD never lags and a supervisor can act on a
    worker while its segment runs; an actor that is gone or does not answer is left alone for the rest of the
    segment. The pipeline sets ``total`` to its own guess from the cut; the segment's frame count is reported.
    """
    from ..video.hud import Stats

    class Reporting(Stats):
        def __init__(self, progress: Any, index: int, worker: str, expected: int) -> None:
            super().__init__()
            self.total = self.segment_frames = expected  # the pipeline overwrites total, not this
            self._progress, self._index, self._worker = progress, index, worker
            self._sent = 0.0

        def report(self, done: int, fps: float, finished: bool = False) -> None:
            if self._progress is None:
                return
            import ray

            ref = self._progress.report.remote(self._worker, os.getpid(), self._index, done, self.segment_frames, fps,
                                               finished)
            if not best_effort(lambda: ray.get(ref, timeout=REPORT_TIMEOUT))[0]:
                self._progress = None

        def frame_done(self, n: int, media_time: float) -> None:
            super().frame_done(n, media_time)
            now = time.monotonic()
            if self._progress is not None and (now - self._sent >= 0.5 or self._sent == 0.0):
                self._sent = now
                self.report(self.done, self.fps_now)

    return Reporting


def worker_label(device: str) -> str:
    """'host:gpu0' or 'host:pid123' (shown in the HUD and in failure reports)."""
    host = socket.gethostname().split(".")[0]
    if device.startswith("cuda"):
        ids = os.environ.get("CUDA_VISIBLE_DEVICES", "?").split(",")[0]
        return f"{host}:gpu{ids}"
    return f"{host}:pid{os.getpid()}"


def _upscaler(settings: Settings, place: Placement, weights: bytes | None) -> Any:
    from ..runtime.upscaler import Upscaler

    key = repr((settings, place.device))
    if key not in _UPSCALERS:
        path = None
        if weights is not None:
            path = Path(tempfile.gettempdir()) / f"psr2video-weights-{settings.weights_sha256}.safetensors"
            if not path.exists():
                write_atomic(path, weights)
        _UPSCALERS.clear()  # one model per worker at a time
        _UPSCALERS[key] = Upscaler(variant=settings.variant, scale=settings.scale,
                                   weights=None if path is None else str(path), backend=settings.backend,
                                   precision=settings.precision, device=place.device, tile=settings.tile,
                                   tta=settings.tta)
    return _UPSCALERS[key]


def upscale_segment(settings: Settings, place: Placement, seg: Segment, cut: bytes, weights: bytes | None,
                    expected: int, progress: Any = None, color: Any = None, timing: Any = None,
                    shape: tuple[Fraction, int] | None = None,
                    shown: tuple[int | None, int | None] | None = None, scratch: str | None = None) -> SegmentResult:
    """Upscale the frames of ``seg`` (from its cut) into an encoded video-only segment (NUT bytes).
    ``color``: the source's ColorInfo (the cut has lost the container's colour tags); ``timing``: the source's
    SourceTiming for the cut (its packets' dts and the timestamp guess's state), so that the frames get the
    single-process run's times; ``shape``: the source's pixel shape and display rotation, for --size (the cut
    keeps no display matrix); ``shown``: the pts (``seg.time_base`` ticks) of the first frame the source shows and
    the first past its last (``split.shown_span``): the frames of packets its container discards (an MP4 edit
    list), which a single run's decoder drops and the cut no longer marks, are dropped by their times.
    ``scratch``: the run's folder for the cut and the segment being written (``_scratch``).
    A user's mistake is raised as ``SegmentError`` (not retried); a full disk is not a mistake, and is
    retried."""
    try:
        return _upscale_segment(settings, place, seg, cut, weights, expected, progress, color, timing, shape, shown,
                                scratch)
    except SegmentError:
        raise
    except PsrError as e:
        if "disk full" in str(e):  # the machine's trouble (a worker's full temporary folder): retried, maybe
            raise  # elsewhere (a TensorRT engine that can't be built is the same on every try: not retried)
        raise SegmentError(str(e)) from None


def _upscale_segment(settings: Settings, place: Placement, seg: Segment, cut: bytes, weights: bytes | None,
                     expected: int, progress: Any, color: Any, timing: Any, shape: tuple[Fraction, int] | None,
                     shown: tuple[int | None, int | None] | None, scratch: str | None = None) -> SegmentResult:
    import torch

    from ..video import pipeline

    if place.device == "cpu":
        torch.set_num_threads(max(1, place.threads))
    worker = worker_label(place.device)
    up = _upscaler(settings, place, weights)
    nonfinite = int(getattr(up, "nonfinite", 0))  # the worker's Upscaler counts over all its segments
    notes: list[str] = []
    with _scratch(scratch) as tmp:
        src = Path(tmp) / f"cut.{CUT_FORMAT}"
        src.write_bytes(cut)
        out = Path(tmp) / f"segment.{CUT_FORMAT}"
        tb = Fraction(seg.time_base)
        keep = (None if seg.start is None else seg.start * tb, None if seg.end is None else seg.end * tb)
        span = keep
        if shown is not None:  # the source's discarded frames: outside what it shows
            first, past = (None if t is None else t * tb for t in shown)
            keep = (first if keep[0] is None else keep[0] if first is None else max(keep[0], first),
                    past if keep[1] is None else keep[1] if past is None else min(keep[1], past))
        opts = pipeline.Options(input=str(src), output=str(out), scale=settings.scale, codec=settings.codec,
                                crf=settings.crf, preset=settings.preset, pix_fmt=settings.pix_fmt,
                                fmt=CUT_FORMAT, batch=settings.batch, hwaccel=place.hwaccel, keep=keep,
                                mux_options=dict(CUT_OPTIONS), color=color, time_base=tb,
                                out_container=settings.container,
                                timing=timing, size=None if settings.size is None else SizeSpec.parse(settings.size),
                                shape=shape, crop=None if settings.crop is None else Crop.parse(settings.crop))
        stats = _stats_class()(progress, seg.index, worker, expected)
        res = pipeline.run(opts, up, stats=stats, warn=notes.append)
        data = out.read_bytes()
    res.nonfinite -= nonfinite
    # damage reported inside the segment's own span (not the dropped frames at its cuts)
    lo = span[0] if span[0] is not None else -1e18
    hi = span[1] if span[1] is not None else 1e18
    damaged = [str(d) for d in res.damaged if d.end >= lo and d.start < hi]
    stats.report(res.frames, 0.0, True)
    return SegmentResult(seg.index, data, res.frames, res.seconds, worker, damaged,
                         [n for n in notes if (not n.startswith("note: ") or "cropped" in n or "--size" in n)
                          and not about_the_cut(n)],
                         {k: int(getattr(res, k)) for k in COUNTS if getattr(res, k)})


SCRATCH_PREFIX = "psr2video-seg-"


def _scratch(folder: str | None) -> Any:
    """A segment's temporary folder: in the run's work folder (``folder``) where this worker sees it (a worker on the
    driver's machine), so that what a killed worker leaves there is kept and said with the work folder, and removed
    by the next run (``WorkDir.open``); else in the system's temporary folder (a node of its own)."""
    here = folder if folder is not None and Path(folder).is_dir() else None
    return tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=here, ignore_cleanup_errors=True)


def about_the_cut(note: str) -> bool:
    """Whether a segment's note is about its own NUT container, not about OUT: NUT keeps no colour tags and
    can't be given non-square pixels, but the join writes OUT with the source's tags and pixel shape and says
    once what OUT can't hold (as a single-process run does). A --size note (the pixel shape it fits) is OUT's."""
    return "--size" not in note and ("has no colour tags" in note or "non-square pixels" in note
            or "held in the source's video bitstream" in note  # (the join says it once)
            or re.search(rf"\b{CUT_FORMAT}\b", note) is not None)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
