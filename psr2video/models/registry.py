"""Variant table, model descriptors, and safetensors weights I/O.

Every consumer (Upscaler, tiling, exporters, the VapourSynth plugin) reads the ``ModelDescriptor`` that
travels with a model instead of guessing its scale, alignment or tile overlap. Weights files carry the
full architecture in their metadata, so inference can never disagree with training.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import PsrError, SettingError, first_line
from ..fileio import atomic_path
from ..names import BASELINES, SCALES, VARIANTS
from ..paths import weights_preset
from .magic import MagicKernelSharp2021
from .paragonsr2 import ArchSpec, ParagonSR2, count_params

FORMAT_VERSION = 1
STREAM_REVISION = 2  # first Stream block revision whose weights this release loads (see StreamBlock)
META_KEY = "psr2video"

SPECS: dict[str, ArchSpec] = {
    "realtime": ArchSpec("realtime", width=16, groups=1, blocks=3, block="nano", ls_init=0.1),
    "stream": ArchSpec("stream", width=32, groups=2, blocks=3, block="stream", ls_init=0.1),
    "photo": ArchSpec("photo", width=64, groups=4, blocks=4, block="photo", window=16, heads=4),
    "pro": ArchSpec("pro", width=64, groups=6, blocks=6, block="pro", window=16, heads=4, tokens=32),
}
# Overlap (in input pixels) that makes tiled inference match untiled: >= the detail path's receptive
# field radius (conv variants), rounded up. Photo's 16 shifted-window blocks reach further than a window:
# measured (tile 48, 192 px, untrained with LayerScale 1) 4e-3 off at 32, 3e-4 at 48, 5e-6 at 64. Pro's
# 36 reach as far, and it pools globally besides (below): 64 is about 3 dB closer to the whole frame than 48.
TILE_OVERLAP = {"realtime": 16, "stream": 32, "photo": 64, "pro": 64, "mks": 8, "bicubic": 8}
# Variants whose output at a pixel depends on the whole input (pro: squeeze-excitation pools over the whole
# frame): tiled output only approximates the whole frame at any overlap (spandrel's "discouraged").
GLOBAL_CONTEXT = frozenset({"pro"})


class WeightsError(PsrError, ValueError):
    """A weights file is missing, unreadable, or does not match what was asked for."""


@dataclass(frozen=True)
class ModelDescriptor:
    """What a consumer needs to know about a model, without looking inside it."""

    variant: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    alpha: float = 1.0
    width: int = 0
    window: int = 0  # attention window (0 = convolution only); the graph pads itself
    size_multiple: int = 1  # required input H/W multiple (1: any size works)
    min_size: int = 1
    tile_overlap: int = 8  # input pixels of context a tile needs to match untiled output
    tile_align: int = 1  # tile origins should be multiples of this (attention window grid)
    fused: bool = False
    params: int = 0
    # Foreign models (psr2video/foreign/) fill these in; our own models keep the defaults.
    fixed_size: tuple[int, int] | None = None  # (H, W) the graph only accepts (tile and pad to it)
    square: bool = False  # input must be square (padded to it)
    fixed_batch: int = 0  # the batch the graph only accepts (0: any); batches are split and padded to it
    tiling: str = "supported"  # supported | discouraged | internal (spandrel's ModelTiling)
    precisions: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")  # what the model can run in
    backends: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")  # what can run it (ONNX files: no torch)
    arch: str = "ParagonSR2"  # architecture name for tables and messages
    source: str = ""  # the model file a foreign model came from
    source_sha256: str = ""  # its hash: part of every engine cache key
    layout: str = "NCHW"  # the file's own input layout (the runners always see NCHW)
    io_dtype: str = "fp32"  # the file's own input/output dtype
    # The fixed resampling base path (and so the output) stays float32 in every precision; feed it float32.
    float_base: bool = False
    weights_hash: str = ""  # of the fused float weights: computed once (the Upscaler), keys every cached export
    weights_name: str = ""  # the weights file's stem when one was asked for (not the default): for headers

    @property
    def dynamic_shapes(self) -> bool:
        """Any input size works (within size_multiple/min_size/square)."""
        return self.fixed_size is None

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """The (H, W) an ``h`` x ``w`` input is padded to: fixed size, minimum, multiple, squareness."""
        if self.fixed_size:
            return tuple(self.fixed_size)
        m = max(1, self.size_multiple)
        th, tw = max(h, self.min_size), max(w, self.min_size)
        th, tw = -(-th // m) * m, -(-tw // m) * m
        if self.square:
            th = tw = max(th, tw)
        return th, tw

    def with_(self, **kw) -> ModelDescriptor:
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)


class Bicubic(nn.Module):
    """Plain bicubic upscale (a baseline and a free model for pipeline benchmarks)."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


def _check(variant: str, scale: int) -> None:
    if variant not in VARIANTS + BASELINES:
        raise SettingError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS + BASELINES)}")
    if scale not in SCALES:
        raise SettingError(f"unsupported scale {scale!r}; choose one of {', '.join(map(str, SCALES))}")


def _mismatch(net: nn.Module, state: dict) -> str:
    """Which tensors a file lacks, has extra or holds in another shape, in one line (torch's message puts only
    its header on the first line: "Error(s) in loading state_dict for ParagonSR2:")."""
    want = net.state_dict()
    parts = []
    for what, names in (("missing", [k for k in want if k not in state]),
                        ("unexpected", [k for k in state if k not in want]),
                        ("of another shape", [f"{k} {tuple(state[k].shape)}, not {tuple(v.shape)}"
                                              for k, v in want.items() if k in state and state[k].shape != v.shape])):
        if names:
            parts.append(f"{len(names)} tensor(s) {what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    return "; ".join(parts)


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of the tensors of a state dict that hold NaN or inf."""
    return [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def describe(net: nn.Module, variant: str, scale: int, fused: bool = False) -> ModelDescriptor:
    spec = SPECS.get(variant)
    return ModelDescriptor(
        variant=variant, scale=scale,
        alpha=spec.alpha if spec else getattr(net, "alpha", 1.0),
        width=spec.width if spec else 0,
        window=spec.window if spec else 0,
        tile_overlap=TILE_OVERLAP.get(variant, 16),  # a module of the caller's own: the convolutional default
        tile_align=spec.window if spec and spec.window else 1,
        tiling="discouraged" if variant in GLOBAL_CONTEXT else "supported",
        fused=fused, params=count_params(net), float_base=getattr(net, "float_base", False),
    )


def build_model(variant: str, scale: int = 2, alpha: float | None = None, **overrides) -> nn.Module:
    """An untrained model of ``variant`` (or a weight-free baseline: ``mks``, ``bicubic``)."""
    _check(variant, scale)
    if variant == "mks":
        net: nn.Module = MagicKernelSharp2021(scale, 1.0 if alpha is None else alpha)
    elif variant == "bicubic":
        net = Bicubic(scale)
    else:
        spec = SPECS[variant]
        if alpha is not None:
            overrides["alpha"] = alpha
        if overrides:
            spec = replace(spec, **overrides)
        net = ParagonSR2(spec, scale)
        net.descriptor = describe(net, variant, scale).with_(alpha=spec.alpha)
        return net
    net.descriptor = describe(net, variant, scale)
    return net


def shipped_weights_path(variant: str, scale: int, preset: str | None = None) -> Path | None:
    """A shipped file: ``{variant}_x{scale}.safetensors`` (the default, trained for video; preset ``video`` names
    it) or a named preset such as ``clean`` (``realtime_x2_clean.safetensors``: trained on clean bicubic LR
    only)."""
    name = f"{variant}_x{scale}" + (f"_{preset}" if preset and preset != VIDEO_PRESET else "")
    p = resources.files("psr2video.models") / "weights" / f"{name}.safetensors"
    return Path(str(p)) if p.is_file() else None


VIDEO_PRESET = "video"  # --weights video: the variant's default file, trained for compressed video


def picture_preset(variant: str, scale: int) -> str | None:
    """The shipped weights a still picture (or an animated one) gets when none are named: the clean file where there
    is one. Pictures are not compressed video: on clean pictures the video-trained files soften low-contrast detail
    (6 % contrast: 2-4 dB under MKS2021 for stream_x2, the clean file within 0.04 dB or above; Set5/Set14/B100:
    stream_x2_clean 37.03 / 32.71 / 31.57 against stream_x2's 36.50 / 32.29 / 31.33)."""
    return "clean" if shipped_weights_path(variant, scale, "clean") is not None else None


def resolve_weights(variant: str | None, scale: int | None, weights: str | Path) -> Path:
    """``weights`` as given: a file path, or a shipped preset name (``--weights clean``) of ``variant``, else of
    stream (the product's default, as on the command line)."""
    preset = weights_preset(weights)
    if preset:
        variant = variant or "stream"
        p = shipped_weights_path(variant, scale or 2, preset)
        if p is None:
            stem = f"{variant}_x{scale or 2}_"
            presets = [n.removeprefix(stem) for n in list_shipped() if n.startswith(stem)]
            presets += [VIDEO_PRESET] if shipped_weights_path(variant, scale or 2) else []
            raise WeightsError(f"no weights file or shipped preset {str(weights)!r} for {variant} x{scale or 2} "
                               f"(presets: {', '.join(presets) or 'none'})")
        return p
    return Path(weights)


def read_metadata(path: str | Path) -> dict:
    """The ``psr2video`` metadata of a weights file (raises WeightsError if absent or unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a damaged header
        suffix = path.suffix.lower()
        if (ours := training_checkpoint(path)) is not None:
            raise WeightsError(ours) from None
        hint = ("; an ONNX file runs with --model" if suffix == ".onnx" else
                "; another project's checkpoint runs with --model (model= in Python/VapourSynth)"
                if suffix in (".pth", ".pt", ".ckpt") else "")
        raise WeightsError(f"{path} is not a readable .safetensors file ({e}){hint}") from None
    if META_KEY not in meta:
        raise WeightsError(f"{path} has no psr2video metadata (variant, scale, architecture); a model from "
                           "another project runs with --model (model= in Python/VapourSynth)")
    return json.loads(meta[META_KEY])


# the top-level keys of psr2video's own training checkpoint (a run's last.pt, train/trainer.py save_checkpoint)
TRAINING_CHECKPOINT_KEYS = frozenset({"step", "model", "ema", "opt", "config"})


def training_checkpoint_line(path: str | Path, state: object) -> str | None:
    """The line saying that ``state`` (read from ``path``) is psr2video's own training checkpoint, not a weights
    file, and what to give instead; None when it is not one (its keys, and a config naming the model)."""
    if not isinstance(state, dict) or not TRAINING_CHECKPOINT_KEYS <= set(state):
        return None
    try:
        model = json.loads(state["config"])["model"]
        what = f"{model['variant']} x{model.get('scale', 2)}, step {int(state['step'])}"
    except (TypeError, ValueError, KeyError):  # another project's {"step", "model", "ema", ...}: not ours
        return None
    path = Path(path)
    best, final = (path.parent / n for n in ("best.safetensors", "final.safetensors"))
    return (f"{path} is a psr2video training checkpoint ({what}), not a weights file: use {best} or {final} "
            "instead ('psr2video train --resume' continues the training)")


def training_checkpoint(path: str | Path) -> str | None:
    """``training_checkpoint_line`` of a file, read without running anything from it: only a zip archive (what
    torch.save writes), through torch.load(weights_only=True) memory-mapped (its tensors are not read)."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - whatever the safe unpickler refuses or can't read is not ours
        return None
    return training_checkpoint_line(path, state)


def save_weights(net: ParagonSR2, path: str | Path, **info) -> Path:
    """Save ``net`` with its full architecture and ``info`` (training data, steps...) in the header."""
    path = Path(path)
    meta = {"format": FORMAT_VERSION, "variant": net.spec.variant, "scale": net.scale, "fused": net.fused,
            "arch": net.spec.to_dict(), **info}
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return path


def load_model(variant: str | None = None, scale: int | None = None, weights: str | Path | None = None,
               fuse: bool = True) -> nn.Module:
    """A trained model: shipped weights for ``variant``/``scale``, or any psr2video weights file.

    The architecture comes from the file's metadata; a ``variant``/``scale`` that disagrees with the
    file is an error rather than a silent mismatch. Fused and unfused files both load.
    """
    asked = weights is not None
    if variant in BASELINES:
        if asked:  # never ignore what the user gave: a fixed resampler has nothing to load
            raise WeightsError(f"variant {variant!r} is a fixed resampler and takes no weights")
        return build_model(variant, scale or 2)
    if weights is None:
        if variant is None:
            raise WeightsError("give a variant or a weights file")
        _check(variant, scale or 2)
        weights = shipped_weights_path(variant, scale or 2)
        if weights is None:
            shipped = ", ".join(list_shipped()) or "none"
            raise WeightsError(f"no shipped weights for {variant} x{scale or 2} (shipped: {shipped}); "
                               "give a weights file (--weights FILE) or train one "
                               "with 'psr2video train'")
    else:
        weights = resolve_weights(variant, scale, weights)
    meta = read_metadata(weights)
    if variant is not None and meta["variant"] != variant:
        raise WeightsError(f"{weights} holds variant {meta['variant']!r}, not {variant!r}")
    if scale is not None and meta["scale"] != scale:
        raise WeightsError(f"{weights} is a x{meta['scale']} model, not x{scale}")
    arch = dict(meta["arch"])
    arch.setdefault("revision", 1)  # files written before the field existed
    if arch.get("block") == "stream" and int(arch["revision"]) < STREAM_REVISION:
        raise WeightsError(f"{weights} is a stream model of architecture revision {arch['revision']} (unbounded "
                           "gate: it turns text, 1-px lines and UI into noise), which this release refuses; use "
                           "the shipped stream weights or retrain with 'psr2video train'")
    unknown = set(arch) - set(ArchSpec.__dataclass_fields__)
    if unknown:
        raise WeightsError(f"{weights} needs a newer psr2video (unknown architecture fields: "
                           f"{', '.join(sorted(unknown))})")
    spec = ArchSpec(**arch)
    net = ParagonSR2(spec, int(meta["scale"]))
    net.descriptor = describe(net, spec.variant, net.scale).with_(alpha=spec.alpha)
    if meta.get("fused"):
        net = net.fuse_for_release()
    state = load_file(str(weights))
    bad = non_finite(state)
    if bad:  # a diverged training run's output: every picture would come out black, with exit 0
        raise WeightsError(f"{weights} holds NaN/inf values ({len(bad)} tensor(s), e.g. {bad[0]}): the output of a "
                           "training run that diverged; use an earlier checkpoint's or best weights")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{weights} does not match its own metadata: {_mismatch(net, state) or first_line(e)}"
                           ) from None
    net.eval()
    if fuse and not net.fused:
        net = net.fuse_for_release()
    net.descriptor = net.descriptor.with_(params=count_params(net), weights_name=Path(weights).stem if asked else "")
    return net


def shipped_files() -> dict[str, Path]:
    """Every shipped weights file by name (``stream_x2``, ``realtime_x2_clean``, ...)."""
    d = resources.files("psr2video.models") / "weights"
    return {p.name.removesuffix(".safetensors"): Path(str(p))
            for p in sorted(d.iterdir(), key=lambda q: q.name) if p.name.endswith(".safetensors")}


def list_shipped() -> list[str]:
    return list(shipped_files())
