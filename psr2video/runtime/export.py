"""Export a fused model to ONNX (fp32, fp16, INT8 QDQ) and verify the file against PyTorch.

Graph contract: one input ``input`` and one output ``output``, both NCHW RGB in [0, 1] (the output is
not clamped), dynamic batch, height and width (``batch``/``height``/``width`` and
``height_out``/``width_out``). The attention variants pad to their 16-px window with shape arithmetic
inside the graph, so one file runs at any size, odd sizes included. Weights are stored inside the
``.onnx`` (no ``.onnx.data``).

Precisions: ``fp32``; ``fp16`` (weights and compute in half; I/O half by default, ``fp16_io=False``
keeps float I/O with casts inside the graph), which is what strongly typed TensorRT needs. Models whose
descriptor says ``float_base`` (ParagonSR2, MKS2021) always take and give float32 in fp16: their Magic
Kernel base path and the final add stay float32 inside the graph, only the detail network is half;
``int8``: ONNX Runtime static quantisation in QDQ format (symmetric int8 activations, 99.999th-percentile
ranges, Q/DQ on the inputs of the quantised ops only, and per-channel int8 weights: TensorRT's
explicit-quantisation layout) of the convolutions and matmuls of the detail path except the first (it
reads the picture) and its final 3-channel projection, calibrated on real frames (a video through PyAV
or an image folder). The fixed Magic Kernel Sharp base path stays in float: it carries most of the
picture and costs little. int8 still costs flat and dark pictures +-1-2 codes (``upscaler.INT8_COST``).

Uses the TorchScript-based exporter (``dynamo=False``): it handles the in-graph window padding and
exports every variant in one pass.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import logging
import os
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import paths, pictures
from ..errors import PsrError
from ..fileio import atomic_path, sha256_file
from ..metrics import psnr
from ..names import EXPORT_PRECISIONS, IMAGE_EXTS

log = logging.getLogger("psr2video.export")

INPUT_NAME = "input"
OUTPUT_NAME = "output"
DEFAULT_OPSET = 17
MIN_OPSET = 17
# bump when the export-time rewrites change (it is part of the cache key)
GRAPH_REWRITES = "lrtail1-streamsplit2-fp32base1"
EXPORTER_VERSION = f"torch-{torch.__version__.split('+')[0]}-torchscript-{GRAPH_REWRITES}"
# verification floors (PSNR in dB between the ONNX Runtime output and PyTorch fp32, both clamped)
PSNR_FLOOR = {"fp32": 60.0, "fp16": 45.0, "int8": 0.0}
INT8_TARGET = 35.0
# int8 activation ranges: this percentile of the calibration activations (see quantize_int8); part of the key
INT8_PERCENTILE = 99.999
INT8_RECIPE = f"sym-pct{INT8_PERCENTILE}-inputs-only-first-conv-float"
CALIBRATION_FRAMES = 16  # calibration_tensors' defaults (part of the int8 cache key's calibration label)
CALIBRATION_CROP = 96
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".ts", ".m2ts")


class ExportError(PsrError, RuntimeError):
    """An export or its verification failed."""


class _HalfModel(nn.Module):
    """fp16 compute with float32 I/O: casts at the graph edges."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


def prepare(model: nn.Module) -> nn.Module:
    """A fused float32 CPU copy in eval mode (the caller's model is left alone)."""
    if hasattr(model, "fuse_for_release"):
        model = model.fuse_for_release()
    net = copy.deepcopy(model).eval().float().cpu()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def graph_module(net: nn.Module) -> nn.Module:
    """The module actually traced: the model's own exact export form (``for_export()``) when it has one.

    The rewrites live next to the modules they rewrite (models/); the export's verification checks the
    traced graph against the original model.
    """
    # ``net`` is prepare()'s private copy: rewritten in place, not copied once more
    return net.for_export(inplace=True) if hasattr(net, "for_export") and getattr(net, "fused", False) else net


def max_opset() -> int | None:
    """The newest ONNX opset the installed torch can write (None when this torch does not say)."""
    try:
        from torch.onnx import _constants
    except ImportError:
        return None
    top = getattr(_constants, "ONNX_MAX_OPSET", None)
    return int(top) if isinstance(top, int) else None


def check_opset(opset: int) -> None:
    """Refuse, before anything is exported, an opset this exporter can't write (one line naming the range)."""
    top = max_opset()
    supported = f"{MIN_OPSET} to {top}" if top else f"{MIN_OPSET} or newer"
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use {supported}")
    if top is not None and opset > top:
        raise ExportError(f"opset {opset} is newer than torch {torch.__version__.split('+')[0]} can export; "
                          f"use {supported}")


@contextlib.contextmanager
def _quiet_exporter_log():
    """Mute the TorchScript exporter's C++ log for one export. torch turns it on for every export and leaves it
    on (its ``setup_onnx_logging`` tests the function ``_jit_is_onnx_log_enabled``, always true, not its result),
    and an export that fails then prints the whole IR graph (a SAFMN checkpoint: 270 KB before the one-line
    error)."""
    log_fn = getattr(torch._C, "_jit_onnx_log", None)
    is_on, set_on = (getattr(torch._C, n, None) for n in ("_jit_is_onnx_log_enabled", "_jit_set_onnx_log_enabled"))
    was_on = is_on() if is_on is not None else None
    if log_fn is not None:
        torch._C._jit_onnx_log = lambda *args: None
    try:
        yield
    finally:
        if log_fn is not None:
            torch._C._jit_onnx_log = log_fn
        if was_on is not None and set_on is not None:
            set_on(was_on)


def _torch_export(net: nn.Module, path: Path, example: torch.Tensor, opset: int) -> None:
    with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter_log():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                net, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                              OUTPUT_NAME: {0: "batch", 2: "height_out", 3: "width_out"}},
                opset_version=opset, do_constant_folding=True, dynamo=False)
        except RuntimeError as e:  # a torch without ONNX_MAX_OPSET: its own refusal, as one line
            if "Unsupported onnx_opset_version" not in str(e):
                raise
            raise ExportError(f"opset {opset} is newer than torch {torch.__version__.split('+')[0]} can "
                              f"export; use {MIN_OPSET} or an opset it supports") from None


def export_onnx(model: nn.Module, path: str | Path, precision: str = "fp32", opset: int = DEFAULT_OPSET,
                fp16_io: bool = True, calibration: Sequence[torch.Tensor] | None = None,
                example_hw: tuple[int, int] = (48, 48), check: Callable[[Path], None] | None = None) -> Path:
    """Write ``model`` (fused first) as ONNX to ``path``; returns the path. Does not verify.

    ``calibration``: NCHW float tensors in [0, 1] for ``int8`` (see ``calibration_tensors``). ``check``: called
    with the written file before it takes ``path``'s name; what it raises leaves ``path`` as it was (``export
    -y`` of a refused export deleted the file it was to replace).
    """
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(f"cannot export precision {precision!r}; choose one of {', '.join(EXPORT_PRECISIONS)}")
    check_opset(opset)
    path = Path(path)
    if precision == "int8" and not calibration:
        raise ExportError("int8 export needs calibration frames (a video or an image folder)")
    net = graph_module(prepare(model))
    example = torch.rand(1, 3, *example_hw)
    # written beside PATH and renamed when whole and checked: a full disk or a Ctrl-C never leaves a
    # truncated file that looks like an export
    with atomic_path(path) as tmp:
        if precision == "fp16":
            net = net.half()
            if getattr(net, "float_base", False):  # float I/O: the net casts its detail path to half inside
                _torch_export(net, tmp, example, opset)
            elif fp16_io:
                _torch_export(net, tmp, example.half(), opset)
            else:
                _torch_export(_HalfModel(net), tmp, example, opset)
        elif precision == "fp32":
            _torch_export(net, tmp, example, opset)
        else:
            fp32 = path.with_name(f".{path.stem}.{os.getpid()}.fp32.onnx")
            try:
                _torch_export(net, fp32, example, opset)
                quantize_int8(fp32, tmp, calibration, getattr(net, "int8_keep_float", ()))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    fp32.unlink()
        _check_single_file(tmp, path)
        if check is not None:
            check(tmp)
    return path


def onnx_opset(path: str | Path) -> int | None:
    """The default-domain opset an ONNX file imports (None: unreadable)."""
    import onnx

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError, onnx's own types
        return None
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def _check_single_file(path: Path, shown: Path | None = None) -> None:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    for init in m.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise ExportError(f"{shown or path} stores weights outside the file; expected a single .onnx")
    onnx.checker.check_model(m)


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over a list of tensors."""

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        self._it = iter([{INPUT_NAME: t.float().cpu().numpy()} for t in tensors])

    def get_next(self):
        return next(self._it, None)


def _first_convs(graph) -> list[str]:
    """The Conv/MatMul nodes that read the graph input through no other Conv/MatMul (what sees the picture)."""
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out, seen, todo = [], set(), [i.name for i in graph.input]
    while todo:
        for n in consumers.get(todo.pop(), ()):
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.op_type in ("Conv", "MatMul"):
                out.append(n.name)
            else:
                todo.extend(n.output)
    return out


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration: Sequence[torch.Tensor],
                  keep_float: Sequence[str] = ()) -> Path:
    """Static INT8 QDQ quantisation of ``fp32_path`` calibrated on ``calibration`` (NCHW tensors).

    ``keep_float``: submodule names of the traced model whose nodes stay float (the model's own
    ``int8_keep_float``; the TorchScript exporter names every node ``/<submodule path>/<op>``); ``""`` names
    the traced model itself: every node stays float. The convolutions that read the picture stay float too.

    The recipe (``INT8_RECIPE``, measured on flat, dark and near-black pictures and Set5/Set14: README,
    "Precisions and ONNX export"): symmetric signed int8 activations (zero point 0: what TensorRT takes; the
    asymmetric uint8 it can't take measured ~1 dB better on a dark frame) with ranges at the 99.999th
    percentile of the calibration activations (MinMax let the rarest values set the step; 99.99 clipped the
    activations at the borders of bright flat pictures: edge pixels 20 codes off), Q/DQ on the inputs of the
    quantised ops only (their outputs, the last one's into the float projection included, stay float), the
    convolution that reads the picture float (a symmetric int8 picture in [0, 1] has steps of 2 codes),
    per-channel symmetric int8 weights, float biases.
    """
    import onnx

    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    try:  # importing it calls logging.basicConfig: every later log line of the run came out as "WARNING:name:..."
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    m = onnx.load(str(fp32_path))
    scopes = tuple(f"/{name}/" if name else "/" for name in keep_float)
    exclude = [n.name for n in m.graph.node if n.name.startswith(scopes)]
    exclude += [n for n in _first_convs(m.graph) if n not in exclude]
    root.setLevel(logging.ERROR)  # quantize_static nags about pre-processing on the root logger
    try:
        # the histogram calibrator print()s its progress: never onto a stdout that carries a picture or video
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            quantize_static(
                str(fp32_path), str(out_path), _Reader(calibration), quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                op_types_to_quantize=["Conv", "MatMul"], nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod.Percentile,
                # biases stay float: a DequantizeLinear of an INT32 bias is what onnx-tensorrt can't parse, and
                # TensorRT folds a float bias into its int8 convolution anyway
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                               "CalibPercentile": INT8_PERCENTILE,
                               "OpTypesToExcludeOutputQuantization": ["Conv", "MatMul"]})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    _check_float_kept(out_path, scopes)
    return Path(out_path)


def _check_float_kept(path: str | Path, scopes: tuple[str, ...]) -> None:
    """What must stay float (the base path, the final projection, the add of the two) reads no quantised
    tensor: ``ExportError`` otherwise (never ship an int8 file whose base path was quantised)."""
    import onnx

    graph = onnx.load(str(path)).graph
    made_by = {o: n for n in graph.node for o in n.output}
    dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    bad = [n.name for n in graph.node if n.name.startswith(scopes) and any(i in dq for i in n.input)]
    # the graph output and the adds/shuffles before it, back to the convolutions that make it (a model that
    # names nothing to keep float, a foreign one, may add a quantised input of its own there)
    todo, seen = [o.name for o in graph.output] if scopes else [], set()
    while todo:
        n = made_by.get(todo.pop())
        if n is None or n.name in seen or n.op_type in ("Conv", "MatMul"):
            continue
        seen.add(n.name)
        if n.op_type in ("DequantizeLinear", "QuantizeLinear"):
            bad.append(n.name)
            continue
        todo.extend(n.input)
    if bad:
        raise ExportError(f"int8 quantisation reached a path that must stay float ({', '.join(bad[:3])})")


# --------------------------------------------------------------------------------------------- frames
def synthetic_image(h: int = 96, w: int = 128, seed: int = 0) -> torch.Tensor:
    """A deterministic test card: gradients, hard edges, a zone plate and mild noise (1x3xHxW)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    zone = 0.5 + 0.5 * torch.cos(60 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2))
    bars = ((xx * 12).floor() % 2) * 0.8 + 0.1
    img = torch.stack([xx * 0.8 + 0.1, torch.where(yy < 0.5, zone, bars), 1 - yy * 0.7])
    img = img + 0.02 * torch.randn(img.shape, generator=g)
    return img.clamp(0, 1).unsqueeze(0)


def frames_from(source: str | Path, count: int = 16) -> list[tuple[str, torch.Tensor]]:
    """Calibration frames from a video file or an image folder (or a single image): ``pictures.frames_from``."""
    try:
        return pictures.frames_from(source, count)
    except FileNotFoundError:
        raise ExportError(f"calibration source not found: {source}") from None
    except ValueError as e:
        if getattr(e, "errno", None) is not None and (why := getattr(e, "strerror", None)):  # FFmpeg's (av.error)
            raise ExportError(f"can't decode the calibration video {Path(source).name} ({why[:1].lower()}{why[1:]})"
                              ) from None
        raise ExportError(str(e)) from None


def random_crops(frames: Iterable[torch.Tensor], count: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    """``count`` ``size`` x ``size`` crops spread over ``frames`` (frames smaller than ``size`` are used whole)."""
    frames = list(frames)
    rng = random.Random(seed)
    out = []
    for i in range(count):
        f = frames[i % len(frames)]
        h, w = f.shape[-2:]
        ch, cw = min(size, h), min(size, w)
        y, x = rng.randint(0, h - ch), rng.randint(0, w - cw)
        out.append(f[..., y:y + ch, x:x + cw].contiguous())
    return out


def calibration_tensors(source: str | Path | None, count: int = CALIBRATION_FRAMES, size: int = CALIBRATION_CROP,
                        ) -> list[torch.Tensor]:
    """Calibration crops from ``source`` (video or image folder), or from the validation set if None."""
    if source is None:
        folder = default_verify_dir()
        frames = ([t for _, t in pictures.image_tensors(folder)] if folder
                  else [synthetic_image(160, 160, s) for s in range(4)])
    else:
        frames = [t for _, t in frames_from(source, count)]
    return random_crops(frames, count, size)


def default_verify_dir() -> Path | None:
    """``val/Set5`` under the data folder (``paths.data_root()``), if it holds images."""
    c = paths.data_path("val", "Set5")
    return c if c.is_dir() and any(c.iterdir()) else None


# ------------------------------------------------------------------------------------------ verification
@dataclass
class Check:
    name: str
    shape: tuple[int, int]
    psnr: float
    max_abs: float


def verify_images(folder: str | Path | None = None, limit: int = 3, sizes: Sequence[tuple[int, int]] = ((75, 93),),
                  ) -> tuple[list[tuple[str, torch.Tensor]], str]:
    """Verification inputs: centre crops (odd, not multiples of 16) of real images, plus a note.

    A ``folder`` named by the caller must hold pictures (``ExportError`` otherwise: nothing would be
    verified); without one, the validation images, else a synthetic test card. A picture that can't be
    read raises ``pictures.PictureReadError`` naming it."""
    given = folder is not None
    folder = Path(folder) if folder else default_verify_dir()
    base = pictures.image_tensors(folder, limit) if folder is not None and folder.is_dir() else []
    if given and not base:
        raise ExportError(f"no pictures to verify on in {folder} ({', '.join(sorted(IMAGE_EXTS))}); "
                          "pass a folder with images, or --no-verify")
    if base:
        note = f"real images from {folder}"
    else:
        base = [("synthetic", synthetic_image(128, 160))]
        note = "no validation images found: a synthetic test card (set PSR2VIDEO_DATA for real images)"
    out, small = [], []
    for name, t in base:
        h, w = t.shape[-2:]
        fits = [(sh, sw) for sh, sw in sizes if sh <= h and sw <= w]
        if not fits:  # a crop of the whole small picture would not be the odd size promised (1x1 "verified")
            small.append(f"{name} ({w}x{h})")
        for sh, sw in fits:
            y, x = (h - sh) // 2, (w - sw) // 2
            out.append((f"{name}@{sw}x{sh}", t[..., y:y + sh, x:x + sw].contiguous()))
    need = " or ".join(f"{sw}x{sh}" for sh, sw in sizes)
    named = f"{', '.join(small[:3])}{' ...' if len(small) > 3 else ''}"
    if small and not out:
        raise ExportError(f"every picture to verify on in {folder} is smaller than the {need} px crops the check "
                          f"uses ({named}); pass larger pictures, or --no-verify")
    if small:
        note += f" ({len(small)} smaller than {need} px skipped: {named})"
    return out, note


def ort_session(path: str | Path, threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def verify_onnx(path: str | Path, model: nn.Module, images: Sequence[tuple[str, torch.Tensor]]) -> list[Check]:
    """Run the ONNX file in ONNX Runtime (CPU) and PyTorch fp32 on ``images``; PSNR of the clamped outputs."""
    net = prepare(model)
    sess = ort_session(path)
    inp = sess.get_inputs()[0]
    np_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    out = []
    for name, x in images:
        with torch.no_grad():
            ref = net(x).clamp(0, 1)
        y = sess.run(None, {inp.name: x.numpy().astype(np_dtype)})[0]
        y = torch.from_numpy(np.asarray(y, dtype=np.float32))
        if y.shape != ref.shape:
            raise ExportError(f"{path}: output shape {tuple(y.shape)} != PyTorch {tuple(ref.shape)} on {name}")
        y = y.clamp(0, 1)
        out.append(Check(name, tuple(x.shape[-2:]), psnr(y, ref), (y - ref).abs().max().item()))
    return out


def check_floor(precision: str, checks: Sequence[Check]) -> tuple[float, str | None]:
    """Worst PSNR and a failure message if it is below the precision's floor."""
    if not checks:  # nothing compared is not a pass
        return float("nan"), f"{precision} export was not verified: no pictures to compare on"
    worst = min(c.psnr for c in checks)
    floor = PSNR_FLOOR[precision]
    if worst < floor:
        return worst, f"{precision} export verification failed: PSNR {worst:.1f} dB < {floor:.0f} dB"
    return worst, None


# ------------------------------------------------------------------------------------------------ cached
def calibration_label(source: str | Path | None, count: int = CALIBRATION_FRAMES) -> str:
    """The int8 cache key's name for a calibration source: its content (what a run calibrates on), not its name.

    A video or picture file: the file's SHA-256. A folder: the names and contents of the pictures read from it
    (the first ``count``). None: the default validation pictures (``default:...``)."""
    if source is None:
        d = default_verify_dir()
        if d is None:
            return "default:synthetic"
        return f"default:{d.name}:{_pictures_hash(d, None)}"
    p = Path(source)
    if p.is_dir():
        return f"{p.name}:{_pictures_hash(p, count)}:{count}x{CALIBRATION_CROP}"
    if not p.is_file():
        raise ExportError(f"calibration source not found: {source}")
    st = p.stat()
    return f"{p.name}:{_digest(str(p.resolve()), st.st_size, st.st_mtime_ns)[:16]}:{count}x{CALIBRATION_CROP}"


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """A calibration file's SHA-256, once per run for the same file (the key is asked for per engine profile and
    per ONNX lookup; a calibration video can be gigabytes); ``size`` and ``mtime_ns`` notice a changed file."""
    return sha256_file(path)


def _pictures_hash(folder: Path, count: int | None) -> str:
    """SHA-256 (16 hex digits) of the relative names and bytes of the pictures ``pictures.image_tensors`` reads."""
    import hashlib

    try:
        files = pictures.list_images(folder)[:count]
    except (FileNotFoundError, ValueError):  # no pictures: calibration_tensors says so
        files = []
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(folder)}:{sha256_file(f)}\n".encode())
    return h.hexdigest()[:16]


def module_structure(model: nn.Module) -> str:
    """What the weights hash can't see: the module's class and layout (16 hex digits). Two modules with the same
    state dict (a ReLU net and a Sigmoid one) export different graphs. ParagonSR2 is described by its ArchSpec;
    any other module by its class, its source and its ``repr`` (every submodule and its settings)."""
    import hashlib
    import inspect
    import json

    spec = getattr(model, "spec", None)
    if spec is not None and hasattr(spec, "to_dict"):  # fused or not: the same spec, the same exported graph
        cls = type(model)
        body = json.dumps(spec.to_dict(), sort_keys=True, default=str)
    else:
        net = model.fuse_for_release() if hasattr(model, "fuse_for_release") else model
        cls = type(net)
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):  # defined in a REPL or a C extension
            source = ""
        body = f"{source}\n{net!r}"
    return hashlib.sha256(f"{cls.__module__}.{cls.__qualname__}\n{body}".encode()).hexdigest()[:16]


def model_weights_hash(model: nn.Module) -> str:
    """``weights_hash`` of the fused float model. The Upscaler (and ``engine build``) compute it once and carry
    it on the descriptor, which ``onnx_fields`` reads first."""
    from .engine_cache import weights_hash

    return weights_hash(model.fuse_for_release() if hasattr(model, "fuse_for_release") else model)


def with_weights_hash(descriptor, model: nn.Module):
    """``descriptor`` carrying the export/engine cache key's weights hash, computed once here (a model read
    from an ONNX file is keyed by its file's hash instead, and a descriptor that has one keeps it)."""
    if descriptor.source_sha256 or descriptor.weights_hash:
        return descriptor
    return descriptor.with_(weights_hash=model_weights_hash(model))


def onnx_fields(model: nn.Module, descriptor, precision: str, opset: int = DEFAULT_OPSET, fp16_io: bool = True,
                calibration: str | Path | None = None, cache=None) -> dict:
    """Everything that determines the bytes of an exported ONNX file (the engine cache key).

    int8 without a ``calibration`` source and with a ``cache``: the calibration of the int8 file already built for
    this model (``engine build -p int8 --calibration X``; the newest one), else the default pictures."""
    own = getattr(model, "onnx_cache_fields", None)
    if own is not None:  # a model that is an ONNX file already (psr2video/foreign/onnx_file.py)
        return own(precision, opset=opset, fp16_io=fp16_io)
    fields = {"variant": descriptor.variant, "scale": descriptor.scale, "precision": precision,
              "weights": descriptor.weights_hash or model_weights_hash(model), "module": module_structure(model),
              "opset": opset, "exporter": EXPORTER_VERSION, "alpha": descriptor.alpha}
    if precision == "fp16" and not descriptor.float_base:
        fields["fp16_io"] = bool(fp16_io)
    if precision == "int8":
        import onnxruntime

        fields["quantizer"] = f"onnxruntime-{onnxruntime.__version__}-{INT8_RECIPE}"
        prebuilt = prebuilt_calibration(cache, fields) if calibration is None and cache is not None else None
        fields["calibration"] = prebuilt or calibration_label(calibration)
    return fields


def _norm(fields: dict, drop: tuple[str, ...] = ()) -> str:
    """Key fields as they read back from a sidecar (JSON), minus ``drop``."""
    import json

    return json.dumps({k: v for k, v in fields.items() if k not in drop}, sort_keys=True, default=str)


def prebuilt_calibration(cache, fields: dict) -> str | None:
    """The calibration label of the newest valid int8 ONNX in ``cache`` whose key is ``fields`` but for the
    calibration (None when there is none): a run that names no calibration uses what was prebuilt."""
    want = _norm(fields, ("calibration",))
    found = [(c if isinstance(c := e.meta.get("created"), int | float) else 0, str(e.meta["fields"]["calibration"]))
             for e in cache.find("onnx", lambda f: "calibration" in f and _norm(f, ("calibration",)) == want)]
    return max(found)[1] if found else None


def cached_onnx(model: nn.Module, descriptor, precision: str, cache=None, opset: int = DEFAULT_OPSET,
                fp16_io: bool = True, calibration: str | Path | None = None, echo=None) -> Path:
    """The exported ONNX for ``model`` from the engine cache, exported (once) when absent or stale.

    int8 without ``calibration``: the int8 file already built for this model when there is one (whatever it
    was calibrated on), else one calibrated on the default pictures."""
    from .engine_cache import EngineCache, make_key

    cache = cache or EngineCache()
    fields = onnx_fields(model, descriptor, precision, opset, fp16_io, calibration, cache=cache)
    if precision == "int8" and calibration is None and cache.check(cache.path_for(fields, "onnx", ".onnx"),
                                                                   full_hash=False).problem is not None:
        fields = onnx_fields(model, descriptor, precision, opset, fp16_io)  # gone since: the default pictures

    check = getattr(model, "check_onnx", None)  # a foreign module: traced at one size, checked at others
    verdict = ""
    if check is not None:  # an export found to differ from PyTorch before is not made (and refused) again
        try:  # what runs the check: the verdict of an ONNX Runtime kernel's fault ends with that ONNX Runtime
            import onnxruntime

            ort = onnxruntime.__version__
        except ImportError:
            ort = "none"
        verdict = make_key({**fields, "kind": "onnx-check", "floor": PSNR_FLOOR.get(precision),
                            "torch": torch.__version__, "onnxruntime": ort})
        if (line := model.known_difference(verdict)) is not None:
            raise ExportError(line)

    def build(tmp: Path) -> None:
        writer = getattr(model, "write_onnx", None)
        if writer is not None:  # an ONNX file: rewritten into our graph contract, not exported
            writer(tmp, precision)
            return
        calib = None
        if precision == "int8":
            if calibration is None and fields["calibration"] != calibration_label(None):
                raise ExportError(f"the int8 model calibrated on {fields['calibration']} left the cache while "
                                  "this run started; run again")
            calib = calibration_tensors(calibration)
        export_onnx(model, tmp, precision, opset=opset, fp16_io=fp16_io, calibration=calib,
                    example_hw=descriptor.input_size(48, 48))  # what the Upscaler pads a 48x48 tile to
        if check is not None:
            check(tmp, verdict=verdict)

    return cache.get_or_build(fields, "onnx", ".onnx", build, describe=f"ONNX {descriptor.variant} "
                              f"x{descriptor.scale} {precision}", echo=echo,
                              found=getattr(model, "onnx_findings", None))
