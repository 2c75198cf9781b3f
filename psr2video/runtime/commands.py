"""CLI: ``psr2video export`` and ``psr2video engine list|clear|build``."""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from ..cli import UserError
from ..models.registry import BASELINES, SCALES, VARIANTS, WeightsError, build_model, load_model

ALL_VARIANTS = VARIANTS + BASELINES


def _load(variant: str, scale: int, weights: str | None, untrained: bool, seed: int = 0):
    """The model to export/build: shipped or given weights, or an untrained net when asked for."""
    try:
        if untrained or variant in BASELINES:
            torch.manual_seed(seed)
            return build_model(variant, scale)
        return load_model(variant, scale, weights=weights)
    except (WeightsError, ValueError) as e:
        raise UserError(f"{e} (or pass --untrained for random weights)" if isinstance(e, WeightsError)
                        else str(e)) from None


def _parse_shape(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--shape expects WIDTHxHEIGHT (e.g. 1280x720), got {text!r}") from None
    if w < 1 or h < 1:
        raise UserError(f"--shape must be positive, got {text!r}")
    return w, h


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


# ------------------------------------------------------------------------------------------------ export
@click.command("export")
@click.option("--variant", "-v", type=click.Choice(ALL_VARIANTS), default="realtime", show_default=True)
@click.option("--scale", "-s", type=click.Choice([str(s) for s in SCALES]), default="2", show_default=True)
@click.option("--weights", "-w", type=click.Path(dir_okay=False), help="weights file (default: shipped weights)")
@click.option("--untrained", is_flag=True, help="export an untrained net with random weights (for testing)")
@click.option("--precision", "-p", multiple=True, default=("fp32",), show_default=True,
              help="fp32, fp16, int8; repeat or comma-separate for several")
@click.option("--output", "-o", type=click.Path(), help="output .onnx (a folder when several precisions)")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--fp32-io", is_flag=True, help="fp16 export: keep float32 input/output (casts in the graph)")
@click.option("--calibration", type=click.Path(exists=True),
              help="int8: video file or image folder to calibrate on (default: validation images)")
@click.option("--calibration-frames", type=int, default=16, show_default=True)
@click.option("--verify-dir", type=click.Path(exists=True, file_okay=False),
              help="images to verify against PyTorch (default: ../shared/data/val/Set5)")
@click.option("--no-verify", is_flag=True, help="skip the PyTorch comparison")
def export(variant, scale, weights, untrained, precision, output, opset, fp32_io, calibration, calibration_frames,
           verify_dir, no_verify):
    """Export a fused model to ONNX (input "input", output "output", NCHW, dynamic batch/height/width).

    Every export is checked against PyTorch fp32 on real images at odd, non-multiple-of-16 sizes and the
    PSNR between them printed (floors: fp32 60 dB, fp16 45 dB; int8 is reported, aim 35 dB).
    """
    from .export import (
        EXPORT_PRECISIONS,
        INT8_TARGET,
        ExportError,
        calibration_tensors,
        check_floor,
        export_onnx,
        verify_images,
        verify_onnx,
    )

    scale = int(scale)
    precisions = _split(precision)
    for p in precisions:
        if p not in EXPORT_PRECISIONS:
            raise UserError(f"unknown precision {p!r}; choose from {', '.join(EXPORT_PRECISIONS)}")
    model = _load(variant, scale, weights, untrained)
    if output and len(precisions) > 1 and Path(output).suffix == ".onnx":
        raise UserError("several precisions need --output to be a folder")
    out_dir = Path(output) if output and (len(precisions) > 1 or Path(output).is_dir()) else None
    images, note = ([], "") if no_verify else verify_images(verify_dir, sizes=((75, 93), (64, 100)))
    if not no_verify:
        click.echo(f"verifying on {len(images)} crops: {note}")
    failures = []
    for p in precisions:
        name = f"{variant}_x{scale}_{p}{'_fp32io' if p == 'fp16' and fp32_io else ''}.onnx"
        path = (out_dir / name) if out_dir else Path(output) if output else Path(name)
        t0 = time.perf_counter()
        try:
            calib = calibration_tensors(calibration, calibration_frames) if p == "int8" else None
            export_onnx(model, path, p, opset=opset, fp16_io=not fp32_io, calibration=calib)
        except ExportError as e:
            raise UserError(str(e)) from None
        size = path.stat().st_size / 2**20
        click.echo(f"{p}: wrote {path} ({size:.2f} MiB, opset {opset}) in {time.perf_counter() - t0:.1f} s")
        if no_verify:
            continue
        checks = verify_onnx(path, model, images)
        for c in checks:
            click.echo(f"  {c.name:<28} PSNR {c.psnr:7.2f} dB   max |diff| {c.max_abs:.2e}")
        worst, problem = check_floor(p, checks)
        if p == "int8":
            verdict = "meets" if worst >= INT8_TARGET else "below"
            click.echo(f"{p}: PSNR vs PyTorch fp32 min {worst:.2f} dB ({verdict} the {INT8_TARGET:.0f} dB aim"
                       f"{'; untrained weights make the detail path large and noisy' if untrained else ''})")
        else:
            click.echo(f"{p}: PSNR vs PyTorch fp32 min {worst:.2f} dB ({'FAIL' if problem else 'ok'})")
        if problem:
            failures.append(problem)
    if failures:
        raise UserError("; ".join(failures))


# ------------------------------------------------------------------------------------------------ engine
@click.group("engine")
def engine():
    """Engine cache: list, clear, or prebuild ONNX Runtime / TensorRT artifacts."""


@engine.command("list")
@click.option("--verify", is_flag=True, help="hash every artifact (slower) to find corrupted ones")
def engine_list(verify):
    """List cached artifacts with their key fields, size and state."""
    from .engine_cache import EngineCache

    cache = EngineCache()
    entries = cache.entries(full_hash=verify)
    click.echo(f"engine cache: {cache.dir} ({len(entries)} artifacts)")
    total = 0
    for e in entries:
        f = (e.meta or {}).get("fields", {})
        kind = (e.meta or {}).get("kind", "?")
        extra = f.get("tensorrt") and f"trt {f['tensorrt']} {f.get('gpu', '')} {f.get('profile', '')}" or (
            f.get("ort") and f"ort {f['ort']} {f.get('provider', '')}") or f"opset {f.get('opset', '?')}"
        state = "ok" if e.problem is None else f"STALE: {e.problem}"
        total += e.size
        click.echo(f"  {e.path.name:<58} {kind:<8} {e.size / 2**20:8.2f} MiB  "
                   f"{(e.meta or {}).get('build_seconds', 0):6.1f} s  {extra}  [{state}]")
    click.echo(f"total {total / 2**20:.2f} MiB")


@engine.command("clear")
@click.option("--stale", is_flag=True, help="only remove stale or truncated artifacts")
def engine_clear(stale):
    """Remove cached artifacts."""
    from .engine_cache import EngineCache

    cache = EngineCache()
    n = cache.clear(stale_only=stale)
    click.echo(f"removed {n} {'stale ' if stale else ''}artifact(s) from {cache.dir}")


@engine.command("build")
@click.option("--variant", "-v", type=click.Choice(ALL_VARIANTS), default="realtime", show_default=True)
@click.option("--scale", "-s", type=click.Choice([str(s) for s in SCALES]), default="2", show_default=True)
@click.option("--weights", "-w", type=click.Path(dir_okay=False))
@click.option("--untrained", is_flag=True, help="build for an untrained net (random weights, for testing)")
@click.option("--precision", "-p", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="default: fp16 on CUDA, fp32 on the CPU")
@click.option("--profile", "profiles", multiple=True, help="named profile(s) from engines/profiles.toml, "
              "e.g. 480p,720p,1080p,1440p (default: dynamic)")
@click.option("--shape", help="a custom input size WxH instead of --profile")
@click.option("--dynamic", is_flag=True, help="dynamic shapes over the profile's min..max (default: static opt)")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--workspace", type=float, default=4.0, show_default=True, help="TensorRT workspace GiB")
@click.option("--opt-level", type=int, default=3, show_default=True, help="TensorRT builder optimisation level")
@click.option("--calibration", type=click.Path(exists=True), help="int8: video or image folder to calibrate on")
def engine_build(variant, scale, weights, untrained, precision, profiles, shape, dynamic, backend, device, workspace,
                 opt_level, calibration):
    """Prebuild artifacts into the engine cache so the first run starts at once.

    With CUDA and TensorRT: one TensorRT engine per profile. Otherwise the exported ONNX and the ONNX
    Runtime optimised graph (shape-independent, so profiles do not apply).
    """
    from ..runtime.upscaler import resolve_device
    from .backends import ORTBackend, TRTBackend
    from .engine_cache import EngineCache
    from .trt_backend import EngineBuildError, ShapeProfile, cached_engine, trt_available

    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise UserError(str(e)) from None
    scale = int(scale)
    precision = precision or ("fp16" if dev.type == "cuda" else "fp32")
    if shape and profiles:
        raise UserError("give --profile or --shape, not both")
    try:
        if shape:
            plist = [ShapeProfile.from_shape(*_parse_shape(shape), dynamic=dynamic)]
        else:
            plist = [ShapeProfile.named(n, dynamic=dynamic) for n in (_split(profiles) or ["dynamic"])]
    except ValueError as e:
        raise UserError(str(e)) from None
    has_trt, why = trt_available()
    if backend == "auto":
        backend = "tensorrt" if has_trt and dev.type == "cuda" else "onnxruntime"
    if backend == "tensorrt" and not (has_trt and dev.type == "cuda"):
        raise UserError(f"cannot build TensorRT engines here: {why}")
    model = _load(variant, scale, weights, untrained)
    if hasattr(model, "fuse_for_release"):
        model = model.fuse_for_release()
    cache = EngineCache()
    click.echo(f"engine cache: {cache.dir}")
    t_all = time.perf_counter()
    if backend == "tensorrt":
        cfg = TRTBackend(workspace_gib=workspace, opt_level=opt_level)
        for i, prof in enumerate(plist, 1):
            click.echo(f"[{i}/{len(plist)}] {variant} x{scale} {precision} profile {prof.name} ({prof.label()})")
            t0 = time.perf_counter()
            try:
                path = cached_engine(model, model.descriptor, precision, prof, dev, cfg, cache, calibration,
                                     echo=click.echo)
            except EngineBuildError as e:
                raise UserError(str(e)) from None
            click.echo(f"[{i}/{len(plist)}] ready: {path.name} ({time.perf_counter() - t0:.1f} s)")
    else:
        from .ort_backend import ORTRunner

        if len(plist) > 1 or plist[0].name != "dynamic":
            click.echo("note: ONNX Runtime artifacts are shape-independent; profiles apply to TensorRT only")
        click.echo(f"[1/1] {variant} x{scale} {precision} ONNX Runtime ({'CUDA' if dev.type == 'cuda' else 'CPU'})")
        try:
            runner = ORTRunner(ORTBackend(), model, model.descriptor, precision, dev, cache=cache,
                               calibration=calibration, echo=click.echo)
        except ValueError as e:
            raise UserError(str(e)) from None
        if dev.type == "cuda":  # ORT's TensorRT provider builds lazily per shape: warm each profile once
            for prof in plist:
                runner(torch.rand(prof.opt, device=dev))
        click.echo(f"[1/1] ready: {runner.model_path.name}")
    click.echo(f"done in {time.perf_counter() - t_all:.1f} s")
