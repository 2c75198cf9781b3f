"""Python side of the VapourSynth plugin ``core.psr2.Upscale``.

The native shim (plugins/vapoursynth/psr2_shim.c, installed by ``psr2video vs install``)
registers ``psr2.Upscale``; when a script calls it, the shim calls :func:`create` here with the
arguments the script gave and a description of the input clip. ``create`` validates everything and
builds the shared :class:`psr2video.Upscaler` (``num_streams`` of them); any exception becomes a
``vapoursynth.Error`` whose message is the exception text. For every frame the shim calls
``instance.process`` with the source and destination planes as memoryviews.

``upscale(clip, ...)`` is a convenience for Python code: ``core.psr2.Upscale(clip, ...)`` with a
hint when the plugin is not installed.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import re
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from ..errors import PsrError, first_line
from ..names import BACKENDS, BASELINES, MODELS, PRECISIONS, SCALES
from ..paths import weights_preset
from ..runtime.upscaler import Upscaler

# VapourSynth enum values (VapourSynth4.h), so this module never needs to import vapoursynth.
CF_UNDEFINED, CF_GRAY, CF_RGB, CF_YUV = 0, 1, 2, 3
ST_INTEGER, ST_FLOAT = 0, 1
TRIM_EVERY = 64 << 20  # CPU slots: output bytes between two malloc_trim calls (see Instance._trim)
SIGNATURE = ('psr2.Upscale(clip, variant="stream", scale=2, weights=None, model=None, backend="auto", '
             'precision=None, tile=0, overlap=None, num_streams=1, device="auto", tta=0)')


class PluginError(PsrError, ValueError):
    """A user mistake in a psr2.Upscale call (its text becomes the vapoursynth.Error message)."""


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; elsewhere there is nothing to call
    except (OSError, AttributeError, TypeError):
        return None


_TRIM = _malloc_trim()


def check_format(info: dict) -> np.dtype:
    """The numpy dtype of the clip's planes, or PluginError saying which conversion to add."""
    fmt, cf, st, bits = info.get("format", "?"), info["color_family"], info["sample_type"], info["bits"]
    back = " (and convert back afterwards)"
    if cf == CF_UNDEFINED:
        raise PluginError("clips with a variable format are not supported; make the format constant first, "
                          "e.g. clip = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s=\"709\") when every "
                          "frame is YUV (a clip joined from RGB and YUV sources: convert each source before joining)")
    if cf == CF_YUV:
        raise PluginError(f"input is {fmt} (YUV) but psr2 works on RGBS or RGBH; add "
                          "clip = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s=\"709\") before it "
                          f"(with the clip's own matrix, e.g. \"170m\" for SD){back}")
    if cf == CF_GRAY:
        raise PluginError(f"input is {fmt} (Gray) but psr2 works on RGBS or RGBH; add clip = core.resize.Point("
                          "core.std.SetFrameProps(core.std.ShufflePlanes(clip, [0, 0, 0], vs.RGB), _Matrix=0), "
                          f"format=vs.RGBS) before it (a luma plane keeps its YUV matrix, which RGB can't have){back}")
    if cf != CF_RGB:
        raise PluginError(f"input format {fmt} is not supported; convert to vs.RGBS")
    if st == ST_INTEGER:
        raise PluginError(f"input is {fmt} (integer RGB) but psr2 works on float RGB; add "
                          f"clip = core.resize.Point(clip, format=vs.RGBS) before it{back}")
    if bits == 32:
        return np.dtype(np.float32)
    if bits == 16:
        return np.dtype(np.float16)
    raise PluginError(f"input format {fmt} is not supported; convert to vs.RGBS")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise PluginError(f"{name}={value!r} is not valid; choose one of {', '.join(map(str, choices))}")


class _Slot:
    """One Upscaler with its CUDA stream and reusable (pinned, on CUDA) staging buffers."""

    def __init__(self, up: Upscaler, stream) -> None:
        self.up, self.stream = up, stream
        self.cuda = up.device.type == "cuda"
        self.buffers: dict[tuple, torch.Tensor] = {}

    def buffer(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        key = (shape, dtype)
        if key not in self.buffers:
            if len(self.buffers) > 8:  # variable-size clips: do not hoard
                self.buffers.clear()
            self.buffers[key] = torch.empty(shape, dtype=dtype, pin_memory=self.cuda)
        return self.buffers[key]


class Instance:
    """One ``psr2.Upscale`` filter: a pool of ``num_streams`` Upscalers shared by the frame threads."""

    def __init__(self, upscalers: list[Upscaler], dtype: np.dtype) -> None:
        self.upscalers = upscalers
        self.scale = upscalers[0].scale
        self.num_streams = len(upscalers)  # the shim runs frames concurrently only when > 1
        self.dtype = dtype
        self.torch_dtype = torch.float32 if dtype == np.float32 else torch.float16
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._since_trim = 0
        for up in upscalers:
            # every CUDA slot computes on its own stream, one stream too: on the legacy default stream
            # TensorRT adds device-wide synchronisation, and frames of different slots must not serialise
            stream = torch.cuda.Stream(up.device) if up.device.type == "cuda" else None
            self._pool.put(_Slot(up, stream))

    def __repr__(self) -> str:
        return f"psr2.Upscale[{self.upscalers[0]!r} x{len(self.upscalers)}]"

    def read(self, planes, w: int, h: int, stride: int, out: torch.Tensor) -> torch.Tensor:
        """Copy three VapourSynth planes into ``out`` (1, 3, h, w), clamped to [0, 1] on the way like the
        command line's input (a Bicubic 4:2:0 -> RGBS conversion overshoots to about -0.07..1.10, and the models
        were trained on [0, 1]); NaN stays NaN (the Upscaler replaces it)."""
        x = out.numpy()
        row = stride // self.dtype.itemsize
        for i, mv in enumerate(planes):
            np.clip(np.frombuffer(mv, dtype=self.dtype, count=h * row).reshape(h, row)[:, :w], 0, 1, out=x[0, i])
        return out

    def write(self, y: torch.Tensor, planes, stride: int) -> None:
        """Copy a (3, H, W) CPU tensor of the clip's dtype into three writable VapourSynth planes."""
        _, oh, ow = y.shape
        row = stride // self.dtype.itemsize
        yn = y.numpy()
        for i, mv in enumerate(planes):
            np.frombuffer(mv, dtype=self.dtype, count=oh * row).reshape(oh, row)[:, :ow] = yn[i]

    def process(self, src, dst, w: int, h: int, src_stride: int, dst_stride: int) -> None:
        """Called by the shim for each frame: src/dst are 3 plane memoryviews each."""
        try:
            self._process(src, dst, w, h, src_stride, dst_stride)
        except PluginError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. out of GPU memory: fail this frame with one line
            what = "" if isinstance(e, PsrError) else f"{type(e).__name__}: "  # ours is written for the user
            raise PluginError(script_words(f"frame {w}x{h}: {what}{first_line(e)}")) from None

    def _process(self, src, dst, w: int, h: int, src_stride: int, dst_stride: int) -> None:
        slot: _Slot = self._pool.get()  # blocks (without the GIL) while all num_streams are busy
        try:
            x = self.read(src, w, h, src_stride, slot.buffer((1, 3, h, w), self.torch_dtype))
            with torch.inference_mode(), (torch.cuda.device(slot.up.device) if slot.cuda else nullcontext()), (
                    torch.cuda.stream(slot.stream) if slot.stream is not None else nullcontext()):
                y = slot.up(x)[0]
                if slot.cuda:  # one pinned download on this thread's stream, then wait for it
                    out = slot.buffer(tuple(y.shape), self.torch_dtype)
                    out.copy_(y, non_blocking=True)
                    done = torch.cuda.Event(blocking=True)  # the wait sleeps, a stream sync would spin a core
                    done.record()
                    done.synchronize()
                    y = out
                else:
                    y = y.to(self.torch_dtype)
            self.write(y, dst, dst_stride)
            if not slot.cuda:
                self._trim(y.numel() * y.element_size())
        finally:
            self._pool.put(slot)

    def _trim(self, nbytes: int) -> None:
        """On the CPU every frame allocates and frees frame-sized tensors on the frame threads; glibc keeps the
        freed memory in its arenas, and a Python host's get_frame()/frames() loop grew by 0.1-0.3 MiB a frame
        (1.5-2 GB over a few thousand frames; vspipe stayed flat). Handing it back after every TRIM_EVERY bytes
        of output keeps the RSS flat: a trim costs about 1-2 ms whatever the frame size (+20% for 320x240
        outputs when done every 8 frames), so it is spaced by bytes (960x540 RGBS: every 10 frames, no
        measurable cost)."""
        self._since_trim += nbytes  # (a lost update between threads only delays a trim)
        if _TRIM is not None and self._since_trim >= TRIM_EVERY:
            self._since_trim = 0
            _TRIM(0)


def create(info: dict, variant: str | None = None, scale: int | None = None, weights: str | None = None,
           backend: str = "auto", precision: str | None = None, tile: int = 0, overlap: int | None = None,
           num_streams: int = 1, device: str = "auto", model: str | None = None, tta: int = 0) -> Instance:
    """Validate a psr2.Upscale call and build its Upscalers (called by the native shim)."""
    dtype = check_format(info)
    if variant is not None:
        _choice("variant", variant, MODELS)
    if scale is not None:
        _choice("scale", scale, SCALES)
    _choice("backend", backend.lower(), BACKENDS)
    if precision is not None:
        _choice("precision", precision, PRECISIONS)
    if tile < 0:
        raise PluginError(f"tile={tile} must be >= 0 (0 = whole frame)")
    if overlap is not None and overlap < 0:
        raise PluginError(f"overlap={overlap} must be >= 0")
    if tta not in (0, 1):
        raise PluginError(f"tta={tta} must be 0 or 1 (1: the mean over the frame's three mirror images)")
    if not 1 <= num_streams <= 16:
        raise PluginError(f"num_streams={num_streams} must be between 1 and 16")
    for name, value in (("model", model), ("weights", weights)):
        if value is not None and not value.strip():  # Path("") is the current folder
            raise PluginError(f"{name}=\"\" is empty; give a file (or leave {name}= out)")
    if model is not None:  # any model file (psr2video/foreign): the file says what it is
        if variant is not None or weights is not None:
            raise PluginError("model=\"FILE\" says what the model is; drop variant= and weights=")
        if Path(model).is_dir():
            raise PluginError(f"{model} is a directory, not a model file")
        if not Path(model).is_file():
            raise PluginError(f"model file not found: {model}")
    elif weights is not None:
        if variant in BASELINES:
            raise PluginError(f"variant {variant!r} is a fixed resampler and takes no weights")
        if not weights_preset(weights) and Path(weights).is_dir():
            raise PluginError(f"{weights} is a directory, not a weights file")
        if not weights_preset(weights) and not Path(weights).is_file():  # a preset is checked with the model
            raise PluginError(f"weights file not found: {weights}")
        # the file says which variant and scale it is; only check what the script asked for explicitly
    else:
        variant = variant or "stream"
        scale = scale or 2
    try:
        with _script_warnings():  # the Upscaler's warnings name tile_overlap=, a script sets overlap=
            first = Upscaler(variant=variant, scale=scale, weights=weights, backend=backend, precision=precision,
                             device=device, tile=tile, tile_overlap=overlap, model_file=model, tta=bool(tta))
            ups = [first]
            for _ in range(num_streams - 1):  # share the (read-only) fused model, one runner each
                ups.append(Upscaler(variant=first.descriptor.variant, scale=first.scale, model=first.model,
                                    backend=first.backend, precision=first.precision, device=first.device,
                                    tile=tile, tile_overlap=overlap, tta=bool(tta)))
            if info.get("width") and info.get("height"):  # a constant size: a fixed-size graph's fit, said now
                first.check_size(int(info["height"]), int(info["width"]))
    except Exception as e:  # noqa: BLE001 - every failure becomes one vs.Error line
        msg = first_line(e)
        msg = script_words(msg)
        raise PluginError(msg if isinstance(e, ValueError) else f"{type(e).__name__}: {msg}") from None
    return Instance(ups, dtype)


class _ScriptWords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # (not script_words: "--tile on top of it" is no value)
        msg = record.getMessage().replace("tile_overlap", "overlap").replace("--tile ", "tile=... ")
        record.msg, record.args = msg, ()
        return True


@contextmanager
def _script_warnings():
    """While the Upscalers are built, their warnings say what a script sets (overlap=, tile=)."""
    log, words = logging.getLogger("psr2video.runtime"), _ScriptWords()
    log.addFilter(words)
    try:
        yield
    finally:
        log.removeFilter(words)


ARGS = ("variant", "scale", "weights", "backend", "precision", "tile", "overlap", "device", "model", "tta")


def script_words(msg: str) -> str:
    """The shared library's messages name command-line flags; a script sets arguments: ``--backend torch``
    becomes ``backend="torch"``, ``--tile 32`` becomes ``tile=32``."""
    def arg(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if value is None:
            return f"{name}=..."
        return f"{name}={value}" if value.isdigit() else f'{name}="{value}"'

    # the flag's own script form, said twice after this: "(tile=... in Python/VapourSynth; tiles plus ...)" keeps
    # what follows the semicolon
    msg = re.sub(r" \(\w+=(?:\.\.\.)? in Python/VapourSynth(?:; ([^)]*))?\)",
                 lambda m: f" ({m.group(1)})" if m.group(1) else "", msg)
    return re.sub(r"--(" + "|".join(ARGS) + r")\b(?: ([A-Za-z0-9][\w:.-]*))?", arg, msg)


def upscale(clip, variant: str | None = None, scale: int | None = None, **kwargs):
    """``core.psr2.Upscale(clip, ...)`` from Python, with a hint when the plugin is missing."""
    import vapoursynth

    core = vapoursynth.core
    if not hasattr(core, "psr2"):
        raise RuntimeError("the psr2 VapourSynth plugin is not installed; run: psr2video vs install")
    if variant is not None:
        kwargs["variant"] = variant
    if scale is not None:
        kwargs["scale"] = scale
    return core.psr2.Upscale(clip, **kwargs)
