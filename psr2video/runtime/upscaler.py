"""``Upscaler``: the one way every front end (CLI, VapourSynth, bench, eval) runs a model.

model descriptor + backend + precision + tiling. Input: NCHW RGB in [0, 1] (any float dtype, any
device); output: NCHW RGB on the upscaler's device, ``scale`` times the size, clamped to [0, 1].
"""

from __future__ import annotations

import logging
import math
import operator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PsrError, SettingError, first_line
from ..models.magic import MagicKernelSharp2021
from ..models.registry import ModelDescriptor, describe, load_model
from ..names import PRECISIONS, device_name_problem
from .auto import export_error_line, export_fallback, resolve, short_line
from .backends import BackendConfig, ORTBackend, Runner, TorchBackend, TRTBackend, backend_label
from .tiling import tile_shapes, tiled_apply

log = logging.getLogger("psr2video.runtime")


# said once per process at the start of an int8 run of a ParagonSR2 network (README, "Precisions and ONNX export":
# ONNX Runtime CPU, the QDQ file TensorRT int8 builds from too, vs PyTorch fp32)
INT8_COST = ("int8 costs quality (x2, against fp32): Set5/Set14 -0.3 to 0 dB, but flat and dark areas gain +-1-2 "
             "codes of noise (a dark frame 1-6 dB lower) and near-black gradients band; fp16 does not")
_SAID: set[str] = set()


def _say_once(line: str) -> None:
    if line not in _SAID:
        _SAID.add(line)
        log.warning("%s", line)


class ExportRefused(PsrError, RuntimeError):
    """A foreign model's ONNX export was refused (SpandrelModel.check_onnx), now or by an earlier run."""


class FitError(PsrError, ValueError):
    """The frames can't run through this model as set up (a fixed-size graph without a tile, an engine
    profile that can't take them): one line for the user, a ValueError for library callers."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> CUDA when available, else CPU; a CUDA request without CUDA is an error, and so is any
    other name (one line for the user, not torch's parser error)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, torch.device) and (problem := device_name_problem(str(device))) is not None:
        raise SettingError(problem)
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise SettingError(f"unsupported device {str(device)!r}; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SettingError(f"device {device} requested but CUDA is not available here; use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SettingError(f"device {device} requested but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s) (cuda:0 ... cuda:{torch.cuda.device_count() - 1})")
    return dev


def make_runner(config: BackendConfig, model: nn.Module, descriptor: ModelDescriptor, precision: str,
                device: torch.device) -> Runner:
    """Instantiate the runner for ``config``; the only place that imports a backend module (here, not in
    backends.py, so that the runners can import their configs from backends.py without a cycle)."""
    if isinstance(config, TorchBackend):
        from .torch_backend import TorchRunner

        return TorchRunner(config, model, descriptor, precision, device)
    if isinstance(config, ORTBackend):
        from .ort_backend import ORTRunner

        return ORTRunner(config, model, descriptor, precision, device)
    if isinstance(config, TRTBackend):
        from .trt_backend import TRTRunner

        return TRTRunner(config, model, descriptor, precision, device)
    raise TypeError(f"not a backend config: {config!r}")


class Upscaler:
    """Upscale RGB tensors with a ParagonSR2 variant (or a baseline) on a chosen backend.

    >>> up = Upscaler(variant="realtime", scale=2, device="cpu")
    >>> y = up(torch.rand(1, 3, 64, 64))   # (1, 3, 128, 128)
    """

    def __init__(self, variant: str | None = None, scale: int | None = None,
                 weights: str | Path | None = None, backend: str | BackendConfig | None = None,
                 precision: str | None = None, device: str | torch.device | None = "auto", tile: int = 0,
                 tile_overlap: int | None = None, model: nn.Module | None = None, clamp: bool = True,
                 model_file: str | Path | None = None, tta: bool = False) -> None:
        self.device = resolve_device(device)
        scale = _check_scale(scale)
        if model_file is not None:
            if variant not in (None, "stream"):  # "stream" was the default once: not a choice
                raise SettingError("model_file= says what the model is; drop variant=")
            model = _load_model_file(model_file, scale, weights, model)
        elif model is None:
            # no variant: a weights file names its own (and its scale), else the product's default, stream
            if variant is None and weights is None:
                variant = "stream"
            model = load_model(variant, scale, weights=weights)  # a baseline is built there (and refuses weights)
        elif getattr(model, "descriptor", None) is None:
            model.descriptor = _describe_bare(model, variant, scale)
        elif scale is not None and model.descriptor.scale != scale:  # never run x2 when x4 was asked for
            raise SettingError(f"the model given is a x{model.descriptor.scale} model "
                               f"({model.descriptor.variant}), not x{scale}")
        if hasattr(model, "fuse_for_release"):
            model = model.fuse_for_release()
        self.model = model.eval()
        self.descriptor: ModelDescriptor = model.descriptor
        d = self.descriptor
        self.scale = d.scale
        if precision is not None and precision in PRECISIONS and precision not in d.precisions:
            raise SettingError(f"{d.variant} ({d.arch}) does not run in {precision}; it runs in "
                             f"{', '.join(d.precisions)}")  # before a backend is picked for a precision it lacks
        if backend is None:  # not chosen: PyTorch where the model is a module, else what can run it (ONNX)
            backend = "torch" if "torch" in d.backends else "auto"
        cfg, self.backend_reason = resolve(backend, self.device, precision)
        if cfg.name not in d.backends:
            if self.backend_reason == "asked for":
                raise SettingError(f"{d.variant} ({d.arch}) runs on the {' or '.join(d.backends)} backend, "
                                 f"not {cfg.name}")
            # e.g. an ONNX file on CUDA without TensorRT/onnxruntime-gpu
            raise SettingError(f"{d.variant} runs on {' or '.join(d.backends)} and neither can run on "
                             f"{self.device.type} here (install onnxruntime-gpu or tensorrt, or use --device cpu)")
        self.precision = precision or default_precision(d, self.device, cfg.name)
        if self.precision not in PRECISIONS:
            raise SettingError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.precision not in d.precisions:
            raise SettingError(f"{d.variant} ({d.arch}) does not run in {self.precision}; it runs in "
                             f"{', '.join(d.precisions)}")
        self.backend = cfg
        if not isinstance(cfg, TorchBackend):  # the export and engine cache keys: hashed once, here
            from .export import with_weights_hash

            self.descriptor = d = with_weights_hash(d, self.model)
        try:
            refused = None if isinstance(cfg, TorchBackend) else getattr(self.model, "onnx_refusal", None)
            if refused:  # an earlier run's check of this architecture's export: not exported (and refused) again
                raise ExportRefused(refused)
            self.runner = make_runner(self.backend, self.model, d, self.precision, self.device)
        except RuntimeError as e:  # a foreign model the exporter can't trace (or whose export was refused)
            if not d.source:
                raise
            fallback = export_fallback(d, self.backend_reason, e, precision, self.device.type)  # auto: PyTorch
            if fallback is None:
                raise SettingError(str(e) if isinstance(e, PsrError) else
                                   f"{d.variant} ({d.arch}) can't be exported for the {cfg.name} backend "
                                   f"({export_error_line(e)}); try --backend torch") from None
            cfg, self.backend_reason = fallback
            self.backend = cfg
            if precision is None:
                self.precision = default_precision(d, self.device, cfg.name)
            self.runner = make_runner(cfg, self.model, d, self.precision, self.device)
        else:  # a cached export runs no check: what it was found to need travels in the file (check_onnx)
            if (recall := getattr(self.model, "recall_onnx_findings", None)) is not None and not isinstance(
                    cfg, TorchBackend):
                recall(d.weights_hash)
        # the export's check may have found that the model must run one frame per call (check_onnx)
        fb = getattr(getattr(self.model, "descriptor", None), "fixed_batch", d.fixed_batch)
        if fb != d.fixed_batch:
            self.descriptor = d = d.with_(fixed_batch=fb)
        if d.source and isinstance(cfg, TorchBackend):
            self._try_model()
        self.tile = _pixel_count("tile", tile)
        self.tile_overlap = d.tile_overlap if tile_overlap is None else _pixel_count("tile_overlap", tile_overlap)
        if self.tile < 0 or self.tile_overlap < 0:  # (a negative overlap failed later as a shape mismatch)
            raise SettingError(f"tile and tile_overlap are pixel counts (0 or more), not {self.tile} and "
                               f"{self.tile_overlap}")
        if tile_overlap is not None and self.tile and not d.fixed_size and self.tile_overlap < d.tile_overlap:
            # realtime, tile=16, tile_overlap=0: seams up to 90 codes off the untiled output, without a word
            log.warning("tile_overlap %d is below the %d px of context %s needs to match its untiled output: "
                        "tile seams may show; use tile_overlap=%d or more", self.tile_overlap, d.tile_overlap,
                        d.variant, d.tile_overlap)
        if d.fixed_size:
            self._check_fixed_tiling()
        elif self.tile and d.tiling == "internal":
            log.warning("%s (%s) tiles internally; --tile on top of it may cost quality", d.variant, d.arch)
        elif self.tile and d.tiling == "discouraged":  # e.g. pro: global pooling, which no tile can see
            log.warning("%s (%s) looks at the whole frame; tiled output only approximates it", d.variant, d.arch)
        if self.precision == "int8" and getattr(self.model, "int8_keep_float", ("",)) != ("",):
            _say_once(INT8_COST)  # a ParagonSR2 network: int8 reaches its detail path (MKS2021 has none)
        self.clamp = clamp
        # self-ensemble: the mean of the outputs for the frame and its three mirror images, 4x the model time.
        # Mirrors keep every frame's shape (transposes would not: a TensorRT engine or a fixed-size graph takes
        # the same shapes as without it); measured +0.10 dB on Set5 and Set14 (stream x2), transposes add 0.01
        self.tta = bool(tta)
        self._nonfinite: torch.Tensor | None = None  # device-side count, read only when asked for
        self._nonfinite_cpu = 0

    def _try_model(self) -> None:
        """A foreign checkpoint, run once on a small non-square input before any frame: spandrel says SwinIR runs
        in bf16, but it makes its attention mask in float32 at any size but its training one, and a file whose
        layers don't fit together fails only on its first input (a traceback per frame, mid-run)."""
        d = self.descriptor
        h, w = d.input_size(9, 17)
        x = torch.rand(1, d.in_channels, h, w, device=self.device, dtype=self.runner.dtype)
        compiled = isinstance(self.backend, TorchBackend) and self.backend.compile
        try:
            with torch.inference_mode():
                # torch.compile: twice, as a frame would: spandrel's SPAN rebuilds its weights inside forward,
                # so the graph compiled at the first call failed at the second (a 100-line inductor traceback)
                for _ in range(2 if compiled else 1):
                    self.runner(x)
        except Exception as e:  # noqa: BLE001 - inductor raises AssertionError, dynamo its own types
            eager_ok = False
            if compiled:  # the model itself, without the compiler: is it the compiler or the precision?
                try:
                    with torch.inference_mode():
                        self.runner.model(x.to(memory_format=self.runner.memory_format))
                    eager_ok = True
                except Exception:  # noqa: BLE001 - said below as the precision's failure
                    pass
            if eager_ok:
                raise SettingError(f"{d.variant} ({d.arch}) can't run under torch.compile "
                                   f"({short_line(first_line(e, with_type=True))}); use --backend torch") from None
            if not isinstance(e, RuntimeError):
                raise
            hint = "; use --precision fp32" if self.precision != "fp32" else ""
            raise SettingError(f"{d.variant} ({d.arch}) can't run in {self.precision} here ({first_line(e)})"
                               f"{hint}") from None

    def _fixed_tile(self) -> tuple[int, int]:
        """(largest tile, context px) that fit a fixed-size graph's input."""
        fh, fw = self.descriptor.fixed_size
        ov = -(-self.tile_overlap // self.descriptor.tile_align) * self.descriptor.tile_align
        best = min(fh, fw) - 2 * ov
        return (best, ov) if best >= 8 else (min(fh, fw), 0)  # too small a graph for context: tiles just meet

    def _check_fixed_tiling(self) -> None:
        """A fixed-size graph runs whole frames when they fit (padded to it); otherwise tiles padded to its
        size: a tile asked for must fit with its context."""
        fh, fw = self.descriptor.fixed_size
        best, ov = self._fixed_tile()
        if ov == 0:
            self.tile_overlap = 0
        if self.tile and self.tile + 2 * ov > min(fh, fw):
            raise SettingError(f"--tile {self.tile} plus {ov} px of context on each side exceeds the {fw}x{fh} "
                             f"input of {self.descriptor.variant}; use --tile {best} or less")

    def check_size(self, height: int, width: int) -> None:
        """Refuse, before a run, frames a fixed-size graph can't take whole when no tile was asked for."""
        d = self.descriptor
        if d.fixed_size and not self.tile and (height > d.fixed_size[0] or width > d.fixed_size[1]):
            fh, fw = d.fixed_size
            best, ov = self._fixed_tile()
            raise FitError(f"{d.variant} only takes inputs up to {fw}x{fh}, not {width}x{height}: run it tiled "
                             f"with --tile {best} (tile=... in Python/VapourSynth; tiles plus {ov} px of context "
                             f"are padded to {fw}x{fh})")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the backend computes in (feed it this to avoid a cast)."""
        return self.runner.dtype

    def __repr__(self) -> str:
        d = self.descriptor
        w = f" [{d.weights_name}]" if d.weights_name else ""  # which file, when not the variant's default
        tta = ", tta=x4" if self.tta else ""
        return (f"Upscaler({d.variant} x{d.scale}{w}, backend={backend_label(self.backend)}, "
                f"precision={self.precision}, device={self.device}, tile={self.tile or 'off'}{tta})")

    @property
    def nonfinite(self) -> int:
        """How many output values were NaN or infinite (and replaced) so far."""
        return self._nonfinite_cpu + (0 if self._nonfinite is None else int(self._nonfinite.item()))

    def prepare(self, n: int, height: int, width: int) -> None:
        """Get the backend ready for batches of up to ``n`` frames of ``width`` x ``height`` before a run
        (TensorRT: find or build an engine whose profile takes every tile shape, the last short batch
        included); raises ValueError when it can't take them."""
        self.check_size(height, width)
        prepare = getattr(self.runner, "prepare", None)
        if prepare is not None:
            shapes = tile_shapes(height, width, self.tile, self.tile_overlap, self.descriptor.tile_align)
            shapes = {self.descriptor.input_size(h, w) for h, w in shapes}  # what _fit pads them to
            batches = [self.descriptor.fixed_batch] if self.descriptor.fixed_batch else sorted({1, n})
            try:
                prepare([(b, self.descriptor.in_channels, h, w) for b in batches for h, w in sorted(shapes)])
            except FitError:
                raise
            except ValueError as e:  # e.g. an engine profile that can't take these frames
                raise FitError(str(e)) from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):  # a NumPy array or PIL image: said, not an AttributeError on .ndim
            raise SettingError(f"expected a torch.Tensor (NCHW float in [0, 1]), got {type(x).__module__}."
                               f"{type(x).__name__}; convert it first, e.g. torch.from_numpy(a) for a NumPy array")
        if x.ndim != 4 or x.shape[1] != self.descriptor.in_channels:
            raise SettingError(f"expected NCHW with {self.descriptor.in_channels} channels, got {tuple(x.shape)}")
        if not x.is_floating_point():  # a uint8 frame would be read as 0-255 "intensities" and clamp to white
            raise SettingError(f"expected a float tensor in [0, 1], got {x.dtype} (divide 8-bit frames by 255)")
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise SettingError(f"expected frames of at least 1x1 pixels, got {tuple(x.shape)}")
        if x.shape[0] == 0:  # no frames: nothing to run (a backend may not take a batch of 0)
            return torch.empty((0, self.descriptor.out_channels, x.shape[2] * self.scale, x.shape[3] * self.scale),
                               device=self.device, dtype=self.dtype)
        x = _finite_input(x)
        y = self._ensemble(x) if self.tta else self._tiled(x)
        if not y.is_contiguous():  # a model may hand back channels-last (SwinIR at batch 2): consumers (the
            y = y.contiguous()  # encoder's planes, numpy, VapourSynth) take plain NCHW
        if not y.is_floating_point():
            return y
        if y.is_cuda:  # count on the device (no sync); the replacement is one more cheap kernel
            bad = y.numel() - torch.isfinite(y).sum()
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad
            y = torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=0.0)
            return y.clamp_(0.0, 1.0) if self.clamp else y  # nan_to_num's output is ours: clamp in place
        elif not math.isfinite(float(y.sum(dtype=torch.float32))):
            # CPU: one reduction finds them (every extra elementwise op costs a thread barrier on a busy CPU)
            self._nonfinite_cpu += int((~torch.isfinite(y)).sum())
            y = torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=0.0)
        return y.clamp(0.0, 1.0) if self.clamp else y

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        return tiled_apply(self._fit, x, self.scale, self.tile, self.tile_overlap, self.descriptor.tile_align)

    def _ensemble(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the model's outputs for ``x`` mirrored left-right, top-bottom and both, mirrored back
        (summed in float32: four fp16 outputs would round twice)."""
        total, dtype = None, None
        for dims in ((), (-1,), (-2,), (-2, -1)):
            y = self._tiled(x.flip(dims) if dims else x)
            dtype = y.dtype
            y = (y.flip(dims) if dims else y).float()
            total = y if total is None else total + y
        return (total * 0.25).to(dtype)

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        """Run ``x`` padded (replicate, bottom/right) to the size the model needs, and crop the result."""
        h, w = x.shape[-2:]
        th, tw = self.descriptor.input_size(h, w)
        if (th, tw) == (h, w):
            return self._run(x)
        if th < h or tw < w:
            self.check_size(h, w)  # no tile asked for: says how to tile
            fh, fw = self.descriptor.fixed_size
            raise SettingError(f"a {w}x{h} input does not fit the {fw}x{fh} input of {self.descriptor.variant}; "
                             "use a smaller --tile")
        y = self._run(F.pad(x, (0, tw - w, 0, th - h), mode="replicate"))
        return y[..., :h * self.scale, :w * self.scale]

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """The runner on ``x``; a graph with a fixed batch (most community ONNX files fix it to 1) gets ``x``
        in chunks of that batch, the last one padded by repeating its final image."""
        fb = self.descriptor.fixed_batch
        if not fb or x.shape[0] == fb:
            return self.runner(x)
        outs = []
        for i in range(0, x.shape[0], fb):
            part = x[i:i + fb]
            n = part.shape[0]
            if n < fb:
                part = torch.cat([part, part[-1:].expand(fb - n, *part.shape[1:])])
            outs.append(self.runner(part)[:n])
        return torch.cat(outs)


def _finite_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` with NaN -> 0, +inf -> 1, -inf -> 0 (an upstream filter that divided by zero): every convolution
    spreads a non-finite value over its whole footprint, so one bad pixel blacked out a block of the output (the
    output's NaNs become 0); replaced here, the damage stays at that pixel and its neighbours. CUDA: one
    elementwise kernel (no sync); CPU: one reduction, and the replacement only when it finds some."""
    if x.is_cuda or not math.isfinite(float(x.detach().sum(dtype=torch.float32))):
        return torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
    return x


def default_precision(d: ModelDescriptor, device: torch.device, backend: str = "torch") -> str:
    """fp16 on CUDA and fp32 on the CPU, unless the model can't run in half (then bf16 on torch, or fp32)."""
    if device.type != "cuda":
        return "fp32"
    order = ("fp16", "bf16", "fp32") if backend == "torch" else ("fp16", "fp32")
    return next(p for p in order if p in d.precisions)


def _check_scale(scale) -> int | None:
    """``scale`` as an int (None: not given); anything but a whole number >= 1 is refused in one line, showing
    the value as given (the string ``"2"`` is not the number 2)."""
    if scale is None:
        return None
    try:
        value = operator.index(scale)  # int, numpy ints; not bool, float or str
    except TypeError:
        value = None
    if value is None or isinstance(scale, bool) or value < 1:
        raise SettingError(f"unsupported scale {scale!r}; give a whole number such as 2, 3 or 4")
    return int(value)


def _pixel_count(name: str, value) -> int:
    """``tile``/``tile_overlap`` as an int: 2.5 was cut to 2 and the string "64" taken, without a word."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return int(operator.index(value))  # int, numpy ints; not float or str
    except TypeError:
        raise SettingError(f"{name} is a whole number of pixels, not {value!r}") from None


def _probe_scale(model: nn.Module, scale: int) -> None:
    """Run a bare module once on a small input: a ``scale=`` it does not upscale by is refused in one line (a x2
    module given scale=3 returned x2 frames, or failed tiled with a shape mismatch). A module that does not run
    at that size is left to say so on its first frame (it may need larger inputs)."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    h, w = 16, 24
    try:
        with torch.inference_mode():
            y = model.eval()(torch.rand(1, 3, h, w, device=device, dtype=dtype))
    except Exception:  # noqa: BLE001 - see above
        return
    if not isinstance(y, torch.Tensor) or y.ndim != 4:
        return
    oh, ow = y.shape[-2:]
    if (oh, ow) == (h * scale, w * scale):
        return
    whole = oh % h == 0 and ow % w == 0 and oh // h == ow // w and oh // h >= 1
    got, fix = (f"x{oh // h}", f"; give scale={oh // h}") if whole else ("not a whole-number upscale", "")
    raise SettingError(f"the model given turns {w}x{h} into {ow}x{oh} ({got}), not x{scale}{fix}")


def _describe_bare(model: nn.Module, variant: str | None, scale: int | None) -> ModelDescriptor:
    """The descriptor of a module without one: its scale is its own ``.scale`` (a ParagonSR2 or
    MagicKernelSharp2021 module, most upscalers), and a ``scale=`` that disagrees is refused (neither: refused,
    never guessed); its variant is ``variant=``, else its own ArchSpec's (ParagonSR2), ``mks`` for a bare
    MagicKernelSharp2021, else its class name."""
    own = getattr(model, "scale", None)
    try:
        own = operator.index(own) if own is not None and not isinstance(own, bool) else None
    except TypeError:  # a float or tensor attribute of the module's own: not a scale to trust
        own = None
    if own is not None and scale is not None and own != scale:
        raise SettingError(f"the model given is a x{own} model (its .scale), not x{scale}")
    if own is None and scale is not None:  # scale= alone describes it: checked on one small input
        _probe_scale(model, scale)
    scale = own if own is not None else scale
    if variant is None:
        spec = getattr(model, "spec", None)
        variant = getattr(spec, "variant", None) or ("mks" if isinstance(model, MagicKernelSharp2021)
                                                     else type(model).__name__)
    if scale is None:
        raise SettingError(f"a bare model needs scale= to describe it ({type(model).__name__} has no .scale "
                           "attribute)")
    return describe(model, variant, scale)


def _load_model_file(path: str | Path, scale: int | None, weights, model) -> nn.Module:
    """A model file of any supported kind (psr2video/foreign), checked against an explicit ``scale``."""
    from ..foreign import load_model_file

    if weights is not None or model is not None:
        raise SettingError("give model_file= alone, not with weights= or model=")
    net = load_model_file(path)
    if scale is not None and net.descriptor.scale != scale:
        raise SettingError(f"{Path(path).name} is a x{net.descriptor.scale} model, not x{scale}")
    return net
