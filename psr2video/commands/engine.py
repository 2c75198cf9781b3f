"""``psr2video engine list|clear|build``: the engine cache of ONNX Runtime / TensorRT artifacts."""

from __future__ import annotations

import time

import click

from ..errors import UserError, command_errors
from ..names import ENGINE_BACKENDS, EXPORT_PRECISIONS
from .common import load_for_command, model_options, parse_shape, split_list


@click.group("engine")
def engine():
    """Engine cache: list, clear, or prebuild ONNX Runtime / TensorRT artifacts."""


@engine.command("list")
@click.option("--verify", is_flag=True, help="hash every artifact (slower) to find corrupted ones")
@command_errors()
def engine_list(verify):
    """List cached artifacts with their key fields, size and state."""
    from ..runtime.engine_cache import EngineCache

    cache = EngineCache()
    entries = cache.entries(full_hash=verify)
    click.echo(f"engine cache: {cache.dir} ({len(entries)} artifacts)")
    total = 0
    for e in entries:
        f = (e.meta or {}).get("fields", {})
        kind = (e.meta or {}).get("kind", "?")
        extra = f.get("tensorrt") and f"trt {f['tensorrt']} {f.get('gpu', '')} {f.get('profile', '')}" or (
            f.get("ort") and f"ort {f['ort']} {f.get('provider', '')}") or f"opset {_opset(e, f)}"
        state = "ok" if e.problem is None else f"STALE: {e.problem}"
        total += e.size
        click.echo(f"  {e.path.name:<58} {kind:<8} {e.size / 2**20:8.2f} MiB  "
                   f"{(e.meta or {}).get('build_seconds', 0):6.1f} s  {extra}  [{state}]")
    click.echo(f"total {total / 2**20:.2f} MiB")


def _opset(entry, fields: dict) -> str:
    """The opset of an ONNX artifact: its key's (our exports), what the build recorded (a rewritten model file),
    else read from the file (an entry written before either)."""
    found = (entry.meta or {}).get("found")
    opset = fields.get("opset") or (found.get("opset") if isinstance(found, dict) else None)
    if not opset and entry.path.suffix == ".onnx" and entry.problem is None:
        from ..runtime.export import onnx_opset

        opset = onnx_opset(entry.path)
    return str(opset or "?")


@engine.command("clear")
@click.option("--stale", is_flag=True, help="only remove stale or truncated artifacts")
@command_errors()
def engine_clear(stale):
    """Remove cached artifacts (all: and what the exports of model files were found to need)."""
    from ..runtime.engine_cache import EngineCache

    cache = EngineCache()
    n = cache.clear(stale_only=stale)
    click.echo(f"removed {n} {'stale ' if stale else ''}artifact(s) from {cache.dir}")
    if not stale:  # the kept export verdicts of --model files (psr2video/foreign): found again at the next export
        from ..foreign.checkpoint import clear_verdicts

        if v := clear_verdicts():
            click.echo(f"removed {v} export verdict(s) of model files")
        from ..foreign.onnx_file import clear_probes

        if n := clear_probes():  # what the probe runs measured of ONNX files (measured again at the next load)
            click.echo(f"removed {n} ONNX probe result(s) of model files")


@engine.command("build")
@model_options(untrained="build for an untrained net (random weights, for testing)",
               model="a model file of your own instead of a variant (.onnx, or a .pth/.pt/.ckpt/.safetensors that "
                     "spandrel knows): what upscale --model then finds ready")
@click.option("--precision", "-p", type=click.Choice(EXPORT_PRECISIONS), default=None,
              help="default: fp16 on CUDA, fp32 on the CPU")
@click.option("--profile", "profiles", multiple=True,
              help="named profile(s), built in or from $PSR2VIDEO_PROFILES, e.g. 480p,720p,1080p,1440p "
                   "(default: dynamic)")
@click.option("--shape", help="a custom input size WxH instead of --profile")
@click.option("--dynamic", is_flag=True, help="dynamic shapes over the profile's min..max and batch range "
              "(default: static opt)")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True,
              help="TensorRT: frames per call the engine takes (static: exactly; --dynamic: widens the range)")
@click.option("--backend", type=click.Choice(ENGINE_BACKENDS), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--workspace", type=float, default=4.0, show_default=True, help="TensorRT workspace GiB")
@click.option("--opt-level", type=int, default=3, show_default=True, help="TensorRT builder optimisation level")
@click.option("--calibration", type=click.Path(exists=True),
              help="int8: video or image folder to calibrate on (later int8 runs of this model use what it builds)")
@command_errors()
def engine_build(variant, scale, weights, untrained, model_file, precision, profiles, shape, dynamic, batch, backend,
                 device, workspace, opt_level, calibration):
    """Prebuild artifacts into the engine cache so the first run starts at once.

    With CUDA and TensorRT: one TensorRT engine per profile; `upscale`/`vspipe` load it for any input it
    takes (no rebuild). Otherwise the exported ONNX and the ONNX Runtime optimised graph
    (shape-independent, so profiles do not apply).
    """
    import torch

    from ..runtime.backends import ORTBackend, TRTBackend
    from ..runtime.engine_cache import EngineCache
    from ..runtime.export import with_weights_hash
    from ..runtime.trt_backend import EngineBuildError, ShapeProfile, cached_engine, trt_available
    from ..runtime.upscaler import default_precision, resolve_device

    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise UserError(str(e)) from None
    scale = int(scale)
    from .export import refuse_calibration_without_int8

    refuse_calibration_without_int8([precision])  # the default precision is never int8
    if shape and profiles:
        raise UserError("give --profile or --shape, not both")
    try:
        if shape:
            plist = [ShapeProfile.from_shape(*parse_shape(shape), dynamic=dynamic, batch=batch)]
        else:
            plist = [ShapeProfile.named(n, dynamic=dynamic, batch=batch) for n in (split_list(profiles) or ["dynamic"])]
    except ValueError as e:
        raise UserError(str(e)) from None
    has_trt, why = trt_available()
    if backend == "auto":
        backend = "tensorrt" if has_trt and dev.type == "cuda" else "onnxruntime"
    if backend == "tensorrt" and not (has_trt and dev.type == "cuda"):
        raise UserError(f"cannot build TensorRT engines here: {why}")
    if model_file is not None:
        from .export import load_model_file_for_export

        model = load_model_file_for_export(model_file, weights, untrained, [precision] if precision else [])
        variant, scale = model.descriptor.variant, model.descriptor.scale
    else:
        model = load_for_command(variant, scale, weights, untrained)
    if hasattr(model, "fuse_for_release"):
        model = model.fuse_for_release()
    model.descriptor = with_weights_hash(model.descriptor, model)  # once for every profile's cache key
    precision = precision or default_precision(model.descriptor, dev, backend)  # the same default as upscale
    cache = EngineCache(fallback=False)  # prebuilding is the point: an unwritable cache is one line, not a temp folder
    click.echo(f"engine cache: {cache.dir}")
    t_all = time.perf_counter()
    if backend == "tensorrt":
        cfg = TRTBackend(workspace_gib=workspace, opt_level=opt_level)
        for i, prof in enumerate(plist, 1):
            click.echo(f"[{i}/{len(plist)}] {variant} x{scale} {precision} profile {prof.name} ({prof.describe()})")
            t0 = time.perf_counter()
            try:
                path = cached_engine(model, model.descriptor, precision, prof, dev, cfg, cache, calibration,
                                     echo=click.echo)
            except EngineBuildError as e:
                raise UserError(str(e)) from None
            except RuntimeError as e:  # a foreign module the exporter can't write
                raise UserError(_export_failure(model_file, e)) from None
            click.echo(f"[{i}/{len(plist)}] ready: {path.name} ({time.perf_counter() - t0:.1f} s)")
    else:
        from ..runtime.ort_backend import ORTRunner

        if len(plist) > 1 or plist[0].name != "dynamic":
            click.echo("note: ONNX Runtime artifacts are shape-independent; profiles apply to TensorRT only")
        click.echo(f"[1/1] {variant} x{scale} {precision} ONNX Runtime ({'CUDA' if dev.type == 'cuda' else 'CPU'})")
        try:
            runner = ORTRunner(ORTBackend(), model, model.descriptor, precision, dev, cache=cache,
                               calibration=calibration, echo=click.echo)
        except ValueError as e:
            raise UserError(str(e)) from None
        except RuntimeError as e:  # a foreign module the exporter can't write
            raise UserError(_export_failure(model_file, e)) from None
        if dev.type == "cuda":  # ORT's TensorRT provider builds lazily per shape: warm each profile once
            for prof in plist:
                runner(torch.rand(prof.opt, device=dev))
        click.echo(f"[1/1] ready: {runner.model_path.name}")
    click.echo(f"done in {time.perf_counter() - t_all:.1f} s")


def _export_failure(model_file: str | None, e: RuntimeError) -> str:
    """One line for an export that failed: the refusal itself (ExportError: check_onnx), or the exporter's error
    for a model file; anything else is a bug, re-raised by the caller's handler."""
    from pathlib import Path

    from ..errors import PsrError
    from ..runtime.auto import export_error_line, pytorch_only, without_torch_hint

    if isinstance(e, PsrError):  # check_onnx ends its refusal "use --backend torch", an option engine build lacks
        line, hinted = without_torch_hint(str(e))
        return pytorch_only(line, "prebuild") if hinted else line
    if model_file is None:
        raise e
    return pytorch_only(f"{Path(model_file).name} can't be exported to ONNX ({export_error_line(e)})", "prebuild")
