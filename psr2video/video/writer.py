"""Encode + mux on its own thread: YUV planes to the encoder without copies, every other stream copied.

- video: ``--codec`` (libx264 default, libx265, libsvtav1, ffv1, libvpx-vp9, *_nvenc when present), CRF,
  preset, pixel format, colour tags; each frame keeps the input's pts in the input's time base;
- audio, subtitle, attachment and data streams: copied packet for packet (``add_stream_from_template``)
  when the output format can hold them, otherwise a warning per stream;
- chapters, container and stream metadata and dispositions are kept.
"""

from __future__ import annotations

import errno
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from ..errors import PsrError
from .reader import PacketItem

DEFAULT_PRESET = {"libx264": "medium", "libx265": "medium", "libsvtav1": "8", "h264_nvenc": "p4",
                  "hevc_nvenc": "p4", "av1_nvenc": "p4"}
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libsvtav1": 28, "libvpx-vp9": 30, "h264_nvenc": 20,
               "hevc_nvenc": 22, "av1_nvenc": 28}
EXT_FORMAT = {".mkv": "matroska", ".mka": "matroska", ".webm": "webm", ".mp4": "mp4", ".m4v": "mp4",
              ".mov": "mov", ".ts": "mpegts", ".m2ts": "mpegts", ".avi": "avi", ".nut": "nut"}


class OutputError(PsrError):
    """The output can't be written (bad path, unwritable, disk full, codec/container mismatch)."""


@dataclass
class EncodeItem:
    index: int
    pts: int | None
    time_base: Fraction
    planes: tuple[Any, ...]  # CPU torch tensors (uint8 / uint16), one per plane
    ready: Any = None  # a CUDA event to wait for before touching the planes (download in flight)


@dataclass
class EndOfVideo:
    pass


def codec_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


def pick_pix_fmt(codec: str, bits: int, shift_w: int, shift_h: int, gray: bool, requested: str | None) -> str:
    """The output pixel format: as requested, else the input's subsampling and depth if the codec has it."""
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    if requested:
        if formats and requested not in formats:
            raise OutputError(f"{codec} can't encode --pix-fmt {requested} (it takes {', '.join(formats)})")
        return requested
    sub = {(1, 1): "420", (1, 0): "422", (0, 0): "444"}.get((shift_w, shift_h), "420")
    deep = 10 if bits > 8 else 8
    cands = []
    if gray:
        cands += ["gray" if deep == 8 else "gray10le"]
    cands += [f"yuv{sub}p" + ("10le" if deep > 8 else ""), "yuv420p" + ("10le" if deep > 8 else ""), "yuv420p"]
    for c in cands:
        if not formats or c in formats:
            return c
    if "nv12" in formats:
        return "nv12"
    return formats[0]


def guess_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":
        return "matroska"
    return EXT_FORMAT.get(Path(path).suffix.lower(), "")


def is_disk_full(e: BaseException) -> bool:
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e)


class Writer(threading.Thread):
    """Owns the output container; ``queue`` takes EncodeItem / PacketItem / EndOfVideo."""

    def __init__(self, path: str, inp: av.container.InputContainer, copy_streams: list[Any], *, width: int,
                 height: int, codec: str, pix_fmt: str, crf: float | None, preset: str | None,
                 time_base: Fraction, rate: Fraction | None, color_tags: dict[str, int], fmt: str | None = None,
                 depth: int = 8, stats: Any = None, warn: Callable[[str], None] = print) -> None:
        super().__init__(name="psr2-writer", daemon=True)
        self.path = path
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stats = stats
        self.warn = warn
        self.error: BaseException | None = None
        self.frames = 0
        self.bytes_hint = 0
        self.pix_fmt = pix_fmt
        self.color_tags = color_tags
        self.time_base = time_base
        self._last_pts: int | None = None
        self._fixed_pts = 0
        options = {}
        fmt = guess_format(path, fmt)
        if path == "-" and fmt in ("mp4", "mov", "ipod"):
            options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
        try:
            if path == "-":
                self.out = av.open(sys.stdout.buffer, "w", format=fmt or "matroska", options=options)
            else:
                self.out = av.open(path, "w", format=fmt or None, options=options)
        except av.error.FFmpegError as e:
            raise OutputError(_describe_output_error(path, e)) from None
        except ValueError as e:
            raise OutputError(f"can't write {path}: {e}") from None
        supported = self.out.supported_codecs
        try:
            vcodec = av.codec.Codec(codec, "w")
        except Exception:
            raise OutputError(f"encoder {codec} is not in this FFmpeg build") from None
        if supported and vcodec.canonical_name not in supported and codec not in supported:
            raise OutputError(f"{self.out.format.name} can't hold {vcodec.canonical_name} video; "
                              "pick a --codec it can hold (webm: libvpx-vp9 or libsvtav1) or use .mkv")
        try:
            vs = self.out.add_stream(codec, rate=rate if rate else None)
        except Exception as e:  # noqa: BLE001
            raise OutputError(f"can't use encoder {codec}: {e}") from None
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        vs.time_base = time_base
        cc = vs.codec_context
        cc.time_base = time_base
        for k, v in color_tags.items():
            setattr(cc, k, v)
        cc.thread_count = 0
        vs.options = self._codec_options(codec, crf, preset)
        self.vstream = vs
        # stream copy
        self.copy_map: dict[int, Any] = {}
        for s in copy_streams:
            name = _codec_name(s)
            kind = s.type
            if kind == "attachment" and self.out.format.name != "matroska":
                warn(f"warning: attachment stream #{s.index} ({_stream_label(s)}) can't be carried in "
                     f"{self.out.format.name}; dropped (use .mkv)")
                continue
            if supported and kind != "attachment" and name and name not in supported:
                warn(f"warning: {kind} stream #{s.index} ({name}) can't be carried in {self.out.format.name}; "
                     "dropped (use .mkv to keep it)")
                continue
            if kind == "attachment":
                try:
                    self.out.add_attachment(s.name, s.mimetype, s.data)
                except Exception as e:  # noqa: BLE001
                    warn(f"warning: attachment {_stream_label(s)} can't be copied: {e}; dropped")
                continue
            try:
                o = self.out.add_stream_from_template(s)
            except Exception as e:  # noqa: BLE001
                warn(f"warning: {kind} stream #{s.index} ({name or '?'}) can't be copied: {e}; dropped")
                continue
            try:
                o.metadata.update(s.metadata)
                o.disposition = s.disposition
            except Exception:  # noqa: BLE001 - cosmetic
                pass
            self.copy_map[s.index] = o
        try:
            vin = inp.streams.video[0]
            vs.metadata.update({k: v for k, v in vin.metadata.items() if k.lower() not in ("encoder", "duration")})
            self.out.metadata.update({k: v for k, v in inp.metadata.items() if k.lower() != "encoder"})
            chapters = inp.chapters()
            if chapters:
                self.out.set_chapters(chapters)
        except Exception as e:  # noqa: BLE001
            warn(f"warning: metadata/chapters not copied: {e}")

    @staticmethod
    def _codec_options(codec: str, crf: float | None, preset: str | None) -> dict[str, str]:
        if codec == "ffv1":
            return {"level": "3", "slices": "4", "slicecrc": "1"}
        crf = DEFAULT_CRF.get(codec, 20) if crf is None else crf
        preset = preset or DEFAULT_PRESET.get(codec)
        opts: dict[str, str] = {}
        if codec.endswith("_nvenc"):
            opts = {"rc": "vbr", "cq": str(int(crf)), "b": "0"}
        elif codec == "libvpx-vp9":
            opts = {"crf": str(int(crf)), "b": "0", "row-mt": "1"}
        else:
            opts = {"crf": f"{crf:g}"}
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"
        if preset and codec != "libvpx-vp9":
            opts["preset"] = str(preset)
        return opts

    def put(self, item: Any) -> None:
        """Queue an item for the encoder; re-raises the writer's error instead of blocking on a dead thread."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self.is_alive():
                    raise (self.error or RuntimeError("writer stopped")) from None

    def _frame(self, item: EncodeItem) -> av.VideoFrame:
        if item.ready is not None:
            item.ready.synchronize()
        fr = av.VideoFrame.from_dlpack(tuple(item.planes), format=self.pix_fmt)
        for k, v in self.color_tags.items():
            setattr(fr, k, v)
        pts = item.pts
        if pts is not None and item.time_base != self.time_base:
            pts = int(round(pts * item.time_base / self.time_base))
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            pts = (self._last_pts + 1) if self._last_pts is not None else 0
            self._fixed_pts += 1
        self._last_pts = pts
        fr.pts = pts
        fr.time_base = self.time_base
        return fr

    def run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if isinstance(item, EndOfVideo):
                    break
                if isinstance(item, PacketItem):
                    o = self.copy_map.get(item.packet.stream.index)
                    if o is None:
                        continue
                    pkt = item.packet
                    pkt.stream = o
                    self.out.mux(pkt)
                    continue
                t0 = time.perf_counter()
                for pkt in self.vstream.encode(self._frame(item)):
                    self.out.mux(pkt)
                    self.bytes_hint += pkt.size
                self.frames += 1
                if self.stats is not None:
                    self.stats.add("encode", time.perf_counter() - t0)
                    self.stats.set_encoded(self.frames, self.bytes_hint)
            for pkt in self.vstream.encode(None):
                self.out.mux(pkt)
                self.bytes_hint += pkt.size
            if self.stats is not None:
                self.stats.set_encoded(self.frames, self.bytes_hint)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
            # keep draining so the producer never blocks on a dead writer
            try:
                while True:
                    self.queue.get(timeout=0.5)
            except queue.Empty:
                pass

    def close(self) -> None:
        try:
            self.out.close()
        except BaseException as e:  # noqa: BLE001
            if self.error is None:
                self.error = e


def _codec_name(s: Any) -> str:
    cc = s.codec_context
    if cc is None:
        return ""
    try:
        return cc.codec.canonical_name or cc.name
    except Exception:  # noqa: BLE001
        return cc.name or ""


def _stream_label(s: Any) -> str:
    md = s.metadata or {}
    return md.get("filename") or md.get("title") or s.type


def _describe_output_error(path: str, e: BaseException) -> str:
    if is_disk_full(e):
        return f"disk full while writing {path}"
    no = getattr(e, "errno", None)
    if no in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"can't write {path}: permission denied"
    if no == errno.ENOENT:
        return f"can't write {path}: folder does not exist"
    return f"can't write {path}: {getattr(e, 'strerror', None) or e}"
