"""``psr2video export``: a fused model to ONNX (fp32, fp16, int8), verified against PyTorch on real images."""

from __future__ import annotations

import errno
import functools
import os
import time
from pathlib import Path

import click

from ..errors import UserError, command_errors
from ..names import EXPORT_PRECISIONS
from .common import interruptible, load_for_command, model_options, options_given, split_list


@click.command("export")
@model_options(untrained="export an untrained net with random weights (for testing)",
               model="another project's checkpoint (.pth/.pt/.ckpt/.safetensors that spandrel knows) instead of a "
                     "variant: its scale comes from the file, and the export is checked at other sizes too")
@click.option("--precision", "-p", multiple=True, default=("fp32",), show_default=True,
              help="fp32, fp16, int8; repeat or comma-separate for several")
@click.option("--output", "-o", type=click.Path(), help="output .onnx (a folder when several precisions)")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--fp32-io", is_flag=True,
              help="fp16 export of a model without a float32 base path: float32 I/O (casts in the graph)")
@click.option("--calibration", type=click.Path(exists=True),
              help="int8: video file or image folder to calibrate on (default: validation images)")
@click.option("--calibration-frames", type=click.IntRange(min=1), default=16, show_default=True,
              help="int8: how many frames (or pictures) of --calibration to calibrate on")
@click.option("--verify-dir", type=click.Path(exists=True, file_okay=False),
              help="images to verify against PyTorch (default: ../shared/data/val/Set5)")
@click.option("--no-verify", is_flag=True, help="skip the PyTorch comparison")
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite an .onnx file that exists.")
@command_errors()
def export(variant, scale, weights, untrained, model_file, precision, output, opset, fp32_io, calibration,
           calibration_frames, verify_dir, no_verify, overwrite):
    """Export a fused model to ONNX (input "input", output "output", NCHW, dynamic batch/height/width).

    Every export is checked against PyTorch fp32 on real images at odd, non-multiple-of-16 sizes and the
    PSNR between them printed (floors: fp32 60 dB, fp16 45 dB; int8 is reported, aim 35 dB).
    """
    from ..runtime.engine_cache import short_label
    from ..runtime.export import (
        INT8_TARGET,
        ExportError,
        calibration_tensors,
        check_floor,
        check_opset,
        export_onnx,
        verify_images,
        verify_onnx,
    )

    interruptible()
    scale = int(scale)
    precisions = split_list(precision)
    for p in precisions:
        if p not in EXPORT_PRECISIONS:
            raise UserError(f"unknown precision {p!r}; choose from {', '.join(EXPORT_PRECISIONS)}")
    refuse_calibration_without_int8(precisions)
    check_opset(opset)  # before loading anything: torch's own refusal is a page of its IR and a traceback
    check_output(output, len(precisions) > 1, overwrite)
    inputs = [f for f in (model_file, weights) if f is not None]
    if output and _out_dir(output, len(precisions) > 1) is None:
        refuse_input_as_output([Path(output)], inputs)
        if Path(output).suffix.lower() != ".onnx":
            click.echo(f"note: {output} does not end in .onnx; it is written as ONNX all the same")
    if model_file is not None:
        model = load_model_file_for_export(model_file, weights, untrained, precisions)
        variant, scale = model.descriptor.variant, model.descriptor.scale
    else:
        model = load_for_command(variant, scale, weights, untrained)
    d = model.descriptor
    # a foreign module is traced where the Upscaler runs it (padded to its size multiple), and verified there
    example = {"example_hw": d.input_size(48, 48)} if model_file is not None else {}
    sizes = ((75, 93), (64, 100))
    if model_file is not None:
        sizes = tuple(d.input_size(h, w) for h, w in sizes)
    out_dir = _out_dir(output, len(precisions) > 1)

    label = default_label(variant, scale, d.weights_name)

    def onnx_path(p: str) -> Path:
        # a model file's stem can be as long as a file name may be: the default name is cut as the cache's are
        name = f"{short_label(label)}_{p}{'_fp32io' if p == 'fp16' and fp32_io else ''}.onnx"
        return (out_dir / name) if out_dir else Path(output) if output else Path(name)

    from .folder import refuse_existing

    refuse_existing([onnx_path(p) for p in precisions], overwrite, folder=False)  # the names the model gives
    refuse_input_as_output([onnx_path(p) for p in precisions], inputs)
    # every input is read before anything is written: a folder without pictures or a damaged picture is
    # refused (naming it) with no file left behind
    images, note = ([], "") if no_verify else verify_images(verify_dir, sizes=sizes)
    calib = calibration_tensors(calibration, calibration_frames) if "int8" in precisions else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"can't make the folder {out_dir}: {e.strerror or e}") from None
    if not no_verify:
        click.echo(f"verifying on {len(images)} crops: {note}")
    failures = []
    for p in precisions:
        path = onnx_path(p)
        t0 = time.perf_counter()
        check = getattr(model, "check_onnx", None)  # other sizes, batch 2: on the new file before it takes
        try:  # PATH's name, so a refused export leaves the file -y was to replace as it was
            export_onnx(model, path, p, opset=opset, fp16_io=not fp32_io, calibration=calib if p == "int8" else None,
                        check=None if check is None else functools.partial(check, precision=p), **example)
            if check is not None and getattr(model, "mixes_batch", False):  # found now or by an earlier run
                click.echo(f"note: {path.name} mixes the frames of a batch (its batch arithmetic was traced "
                           "at 1): run it one frame per call")
        except ExportError as e:
            from ..runtime.auto import pytorch_only, without_torch_hint

            line, hinted = without_torch_hint(str(e))
            raise UserError(pytorch_only(line, "export") if hinted else line) from None
        except RuntimeError as e:  # the exporter's own refusal of a foreign module (an operator it can't write)
            if model_file is None:
                raise
            from ..runtime.auto import export_error_line, pytorch_only

            raise UserError(pytorch_only(f"{Path(model_file).name} can't be exported to ONNX "
                                         f"({export_error_line(e)})", "export")) from None
        except OSError as e:  # named as the user wrote it, not our temporary file beside it
            why = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise UserError(f"can't write {path}: {why}") from None
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


def default_label(variant: str, scale: int, weights_name: str = "") -> str:
    """The default export name before its precision: ``{variant}_x{scale}``, and the stem of a weights file that
    was asked for (``--weights clean``: realtime_x2_clean; ``runs/a/best.safetensors``: realtime_x2_best), so
    the video and the clean weights of one variant no longer export to the same realtime_x2_fp32.onnx. A
    foreign ``--model`` file (its variant is its own stem; no weights name) and a stem that already starts with
    ``{variant}_x{scale}`` (the shipped files) are named as they were."""
    base = f"{variant}_x{scale}"
    if not weights_name or weights_name == base or weights_name.startswith(base + "_"):
        return weights_name or base
    return f"{base}_{weights_name}"


def refuse_calibration_without_int8(precisions) -> None:
    """--calibration (or --calibration-frames) given for precisions that are not int8: it was ignored without a
    word, the user believing the export calibrated on their video."""
    given = [] if "int8" in precisions else options_given("calibration", "calibration_frames")
    if given:
        raise UserError(f"{' and '.join(given)} {'are' if len(given) > 1 else 'is'} for int8 only (what int8 "
                        f"calibrates on); add -p int8 or drop {'them' if len(given) > 1 else 'it'}")


def _out_dir(output: str | None, several: bool) -> Path | None:
    """The folder ``--output`` names (OUT ending in a path separator, an existing folder, or any OUT for
    ``several`` precisions), or None for one file; a file where a folder must be is refused."""
    # OUT ending in a path separator names a folder (made if need be), like several precisions do
    as_folder = bool(output) and output.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep))
    if output and several and Path(output).suffix == ".onnx" and not as_folder:
        raise UserError("several precisions need --output to be a folder")
    if output and Path(output).exists() and not Path(output).is_dir() and (as_folder or several):
        raise UserError(f"--output {output} is a file, not a folder")
    return Path(output) if output and (as_folder or several or Path(output).is_dir()) else None


def refuse_input_as_output(outputs: list[Path], inputs: list[str]) -> None:
    """OUT naming the checkpoint being exported (``--model s.pth -o s.pth -y`` replaced it with its own ONNX)."""
    for out in outputs:
        for src in inputs:
            try:
                same = os.path.samefile(out, src)
            except OSError:  # OUT does not exist yet: it can't be IN
                same = False
            if same:
                raise UserError(f"OUT is the same file as IN ({src})")


def check_output(output: str | None, several: bool, overwrite: bool) -> None:
    """Before anything loads: a file where OUT's folder must be (the write said "File exists"), and an OUT file
    that exists without -y (it was replaced without a word, whatever it held)."""
    from .folder import out_folder_problem, refuse_existing

    if not output:
        return
    if (problem := out_folder_problem(output.rstrip(os.sep) or output)) is not None:
        raise UserError(problem)
    if _out_dir(output, several) is not None:  # the file names come with the model: checked once it is loaded
        return
    if os.path.exists(output) and not os.path.isfile(output):  # a device: said as the write says it
        raise UserError(f"can't write {output}: not a regular file")
    refuse_existing([Path(output)], overwrite, folder=False)


def load_model_file_for_export(model_file: str, weights: str | None, untrained: bool, precisions) -> object:
    """``--model FILE`` for ``export`` / ``engine build``: a model file (psr2video/foreign) that is not mixed with
    --weights/--untrained, in precisions it runs in (``precisions``: those asked for; empty: not checked)."""
    import click

    from ..foreign import load_model_file
    from ..models.registry import WeightsError

    ctx = click.get_current_context(silent=True)
    if weights is not None or untrained:
        raise UserError(f"give --model FILE alone, not with {'--weights' if weights is not None else '--untrained'}")
    if ctx is not None and "variant" in ctx.params and (
            ctx.get_parameter_source("variant") is not click.core.ParameterSource.DEFAULT):
        raise UserError("--model FILE says what the model is; drop --variant")
    try:
        model = load_model_file(model_file)
    except WeightsError as e:
        raise UserError(str(e)) from None
    d = model.descriptor
    if ctx is not None and "scale" in ctx.params and (  # as upscale does: checked, not refused when it agrees
            ctx.get_parameter_source("scale") is not click.core.ParameterSource.DEFAULT):
        asked = ctx.params["scale"]
        if str(asked) != str(d.scale):
            raise UserError(f"{Path(model_file).name} is a x{d.scale} model, not x{asked}")
    if ctx is not None and ctx.command.name == "export" and "torch" not in d.backends:
        raise UserError(f"{Path(model_file).name} is an ONNX file already: it runs with --model as it is "
                        "(engine build --model prebuilds its rewrite and engines)")
    for p in precisions:
        if p not in d.precisions:
            raise UserError(f"{d.variant} ({d.arch}) runs in {', '.join(d.precisions)}, not {p}")
    return model
