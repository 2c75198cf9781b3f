"""``psr2video eval``: PSNR-Y / SSIM-Y tables for variants, weights files and plain resamplers."""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import click

from .. import paths
from ..errors import UserError, command_errors
from .common import check_device_name, check_writable, options_given

BASELINE_METHODS = ("bicubic", "lanczos", "mks")


def _datasets(root: Path, names: tuple[str, ...]) -> list[Path]:
    """The dataset folders, each checked to hold pictures before anything is measured."""
    from ..names import IMAGE_EXTS
    from ..pictures import list_images

    out = []
    for n in names:
        p = _dataset_path(root, n)
        if not p.is_dir():
            raise UserError(f"dataset {n!r} not found (looked for {p}); pass a folder or --data-root")
        try:
            list_images(p)
        except FileNotFoundError:
            raise UserError(f"dataset {n!r} has no images ({', '.join(sorted(IMAGE_EXTS))}) in {p}") from None
        out.append(p)
    return out


def _dataset_path(root: Path, name: str) -> Path:
    """Where dataset ``name`` is: a folder, else a name under ``root`` (not checked)."""
    return Path(name) if Path(name).is_dir() else root / name


def _check_fit(models, folders: list[Path], scale: int, suites: list[tuple[str, int, int]] = ()) -> None:
    """Refuse up front, in the one line the picture CLI and ``bench model`` give (``Upscaler.check_size``), a
    fixed-size graph that can't take a dataset's LR pictures whole when no --tile was given; likewise the
    (what, LR height, LR width) inputs of the --stress and --video suites (it failed after the clean table)."""
    from PIL import Image

    from ..pictures import list_images
    from ..runtime.upscaler import FitError

    fixed = [up for _, up in models if getattr(up.descriptor, "fixed_size", None) and not up.tile]
    if not fixed:
        return
    for what, h, w in suites:
        for up in fixed:
            try:
                up.check_size(h, w)
            except FitError as e:
                raise UserError(f"{what}: {e}") from None
    for folder in folders:
        for path in list_images(folder):
            try:
                with Image.open(path) as im:  # the header only
                    w, h = im.size
            except Exception:  # noqa: BLE001 - a damaged picture is reported by name when it is evaluated
                continue
            for up in fixed:
                up.check_size(h // scale, w // scale)  # make_lr's LR size


@click.command("eval")
@click.option("--variant", "variants", multiple=True,
              help="Variant(s) with shipped weights, or a baseline: bicubic, lanczos, mks.")
@click.option("--weights", "weights", multiple=True, type=click.Path(dir_okay=False),
              help="psr2video .safetensors weights file(s) to evaluate.")
@click.option("--model", "model_files", multiple=True, type=click.Path(dir_okay=False),
              help="Any model file: .onnx, or a .pth/.pt/.ckpt/.safetensors spandrel knows (repeatable).")
@click.option("--tile", type=click.IntRange(0), default=0, show_default=True,
              help="Tile size for --model files that need it (fixed-size ONNX graphs).")
@click.option("--baselines", is_flag=True, help="Also evaluate bicubic, lanczos and mks.")
@click.option("--scale", type=click.IntRange(2, 4), default=None,
              help="x2 (default), x3 or x4; with --model/--weights files and no --scale: the first file's")
@click.option("--dataset", "datasets", multiple=True, default=("Set5", "Set14", "B100"), show_default=True,
              help="Dataset names under --data-root, or image folders.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding the datasets [default: $PSR2VIDEO_DATA/val, else ../shared/data/val].")
@click.option("--degraded", is_flag=True, help="JPEG-compress the LR at quality 75 (robustness check).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Sharpening blend for the mks baseline.")
@click.option("--no-ssim", is_flag=True, help="Skip SSIM (faster).")
@click.option("--tta", is_flag=True,
              help="Also measure every model with --tta (the mean over its three mirror images), in the same run.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write results here: the clean table's rows (a list), or with --video/--stress/--shipped an "
                   "object {clean, video, stress, stress_aliased}; unmeasured or infinite values are null.")
@click.option("--record", is_flag=True,
              help="Store the results in each --weights file's metadata (validation), e.g. before shipping it.")
@click.option("--video", "video", is_flag=True,
              help="Also the compressed-video table: panning clips from --video-dataset, x2 down, libx264 --crf.")
@click.option("--video-dataset", default="B100", show_default=True, help="Dataset (or folder) the pans are cut from.")
@click.option("--crf", type=click.IntRange(0, 51), default=23, show_default=True, help="CRF of the --video clips.")
@click.option("--clips", type=click.IntRange(1), default=None, help="At most this many --video clips (default: all).")
@click.option("--stress", "stress", is_flag=True,
              help="Also the stress table (text, 1-px lines, UI, flat colour; fp32 and fp16) for every model, "
                   "then its aliased section (hard-edged cards at LR size).")
@click.option("--picture", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --stress: write a side-by-side PNG of the text card (HR, MKS2021, each model).")
@click.option("--shipped", is_flag=True,
              help="Every shipped weights file and the baselines, with the clean, --video and --stress tables.")
@command_errors()
def eval_cmd(variants, weights, model_files, tile, baselines, scale, datasets, data_root, degraded, alpha, no_ssim,
             tta, device, json_out, record, video, video_dataset, crf, clips, stress, picture, shipped) -> None:
    """Measure PSNR-Y / SSIM-Y with the standard SR protocol (bicubic LR, Y channel, shaved border).

    With --video, also on H.264-compressed panning clips (PSNR/SSIM and temporal error); with --stress,
    the stress suite every shipped model must pass (exit 1 if one fails), then its aliased section (hard-edged
    content at LR size, a bar too)."""
    from rich.console import Console

    from ..models.magic import MagicKernelSharp2021

    if record and degraded:  # before minutes of evaluation, not after
        raise UserError("--record stores clean-protocol results only; drop --degraded")
    if picture and not (stress or shipped):  # refused, not ignored (it wrote nothing and exited 0)
        raise UserError("--picture draws the stress suite's text card: add --stress")
    if stress and not (variants or weights or model_files or shipped):  # it ran nothing and exited 0
        raise UserError("--stress tests models: name them (--variant, --weights, --model) or use --shipped")
    _refuse_unused_options(video or shipped, record, weights or shipped)
    check_device_name(device)  # a typo is refused even when only the baselines run (they ignore the device)
    data_root = data_root or paths.data_path("val")
    outputs = {"--json": json_out, "--picture": picture}
    # before check_writable makes --json's folders: one inside a dataset is refused, not made
    _refuse_writing_into(outputs, [_dataset_path(data_root, n)
                                   for n in datasets + ((video_dataset,) if video or shipped else ())])
    check_writable(json_out, "--json")
    check_writable(picture, "--picture")
    weights = _resolve_presets(weights, variants, scale)  # --weights clean: the --variant's clean file, by name
    if scale is None:  # the files say what they are (a x4 ONNX file needs no --scale 4)
        scale = _file_scale(model_files, weights) or 2
    if shipped:
        from ..models.registry import list_shipped, read_metadata, shipped_files

        baselines = video = stress = True
        found = tuple(str(p) for p in shipped_files().values() if read_metadata(p)["scale"] == scale)
        if not found:  # it ran the baselines only and exited 0 without a word
            have = ", ".join(list_shipped()) or "none"
            raise UserError(f"--shipped: no shipped weights at x{scale} (shipped: {have}); name the models instead "
                            "(--weights, --model) with --baselines --video --stress")
        weights = tuple(weights) + found
    _refuse_overwriting(outputs, list(weights) + list(model_files))
    names = list(variants) + (list(BASELINE_METHODS) if baselines else [])
    if not names and not weights and not model_files:
        names = list(BASELINE_METHODS)
    methods, models = _methods(names, weights, model_files, scale, alpha, device, tile)
    if tta:  # each model's twin with the self-ensemble, next to it (the stress suite takes the models as shipped)
        from ..evaluate import tensor_fn

        twins = {n: copy.copy(u) for n, u in models}
        for u in twins.values():
            u.tta = True
        methods = [m for name, fn in methods
                   for m in ([(name, fn)] + ([(f"{name} +tta", tensor_fn(twins[name]))] if name in twins else []))]
    folders = _datasets(data_root, datasets)
    # checked now, not after the whole clean table
    video_folder = _video_folder(data_root, video_dataset) if video else None
    from ..evaluate import check_folder_sizes

    for f in folders:  # a picture too small for the crop, shave and SSIM window: one line before any model runs
        check_folder_sizes(f, scale, ssim=not no_ssim)
    real = None
    if stress:  # decoded once: their sizes are checked now, the suite runs on them later
        from ..stress import real_frames

        real = real_frames()
    _check_fit(models, folders, scale, _suite_sizes(scale, real if stress else None, video))
    made = _build_clips(video_folder, scale, crf, clips) if video else None  # a folder without pans: said now
    results, table = _clean_table(methods, folders, scale, no_ssim, degraded)
    console = Console()
    console.print(table)
    report: dict = {"clean": [r.__dict__ for r in results]}
    if video:
        report["video"] = _video_table(console, methods, video_folder, made, scale, crf, no_ssim)
    failed: list[str] = []
    if stress:
        report["stress"], report["stress_aliased"], failed = _stress_tables(console, models, real)
        if picture:
            from ..stress import side_by_side

            mks = MagicKernelSharp2021(scale, 1.0)
            fns = [("MKS2021", mks)] + [(n, u.model if _torch_runs(u) else u) for n, u in models]
            click.echo(f"wrote {side_by_side(fns, picture, scale=scale)}")
    if json_out:
        # NaN (SSIM under --no-ssim) and Infinity (PSNR of an exact match) are not JSON: null
        json_out.write_text(json.dumps(_finite(report if (video or stress) else report["clean"]), indent=2,
                                       allow_nan=False))
        click.echo(f"wrote {json_out}")
    if record:
        from ..evaluate import record_validation

        for w in weights:
            rows = {r.dataset: {"psnr": round(r.psnr, 4), **({} if no_ssim else {"ssim": round(r.ssim, 5)})}
                    for r in results if r.method == _label(w, weights)}
            record_validation(Path(w), rows)
            click.echo(f"recorded {', '.join(rows)} in {w}")
    if failed:
        raise UserError(f"stress suite failed: {'; '.join(failed[:3])}{' ...' if len(failed) > 3 else ''}")


def _methods(names, weights, model_files, scale: int, alpha: float, device: str, tile: int) -> tuple[list, list]:
    """(label, fn) for every method to measure, and (label, Upscaler) for the models the stress suite takes;
    a bad weights or model file is one line."""
    from ..evaluate import pil_resize, tensor_fn
    from ..models import WeightsError
    from ..models.magic import MagicKernelSharp2021
    from ..runtime.upscaler import Upscaler

    methods: list[tuple[str, object]] = []
    models: list[tuple[str, object]] = []
    try:
        for n in dict.fromkeys(names):
            if n in ("bicubic", "lanczos"):
                methods.append((n, pil_resize(n)))
            elif n == "mks":
                methods.append((f"mks a={alpha:g}", tensor_fn(MagicKernelSharp2021(scale, alpha))))
            else:
                up = Upscaler(variant=n, scale=scale, device=device, backend="torch", precision="fp32")
                methods.append((n, tensor_fn(up)))
                models.append((n, up))
        for w in weights:
            up = Upscaler(variant=None, scale=None, weights=w, device=device, backend="torch", precision="fp32")
            if up.scale != scale:
                raise UserError(f"{w} is a x{up.scale} model; run eval with --scale {up.scale}")
            methods.append((_label(w, weights), tensor_fn(up)))
            models.append((_label(w, weights), up))
        for f in model_files:
            up = model_file_upscaler(f, scale, device, tile)
            methods.append((Path(f).name, tensor_fn(up)))
            models.append((Path(f).name, up))
    except (WeightsError, ValueError) as e:
        raise UserError(str(e)) from None
    return methods, models


def _clean_table(methods, folders: list[Path], scale: int, no_ssim: bool, degraded: bool):
    """The benchmark-protocol results of every method on every folder, and their table."""
    from rich.table import Table

    from ..evaluate import evaluate

    results = []
    for name, fn in methods:
        for folder in folders:
            _progress(f"measuring {name} on {folder.name} ...")
            results.append(evaluate(fn, folder, scale, name, ssim=not no_ssim,
                                    jpeg_quality=75 if degraded else None))
    table = Table(title=f"x{scale} PSNR-Y" + ("" if no_ssim else " / SSIM-Y") + (" (LR JPEG q75)" if degraded else ""))
    table.add_column("method")
    for f in folders:
        table.add_column(f.name, justify="right")
    for name, _ in methods:
        table.add_row(name, *[f"{r.psnr:.2f}" + ("" if no_ssim else f" / {r.ssim:.4f}")
                              for r in results if r.method == name])
    return results, table


def _label(w: str, weights) -> str:
    """A weights file's name in the tables: its stem, or folder/stem when two files share a stem."""
    p = Path(w)
    clash = sum(Path(o).stem == p.stem for o in weights) > 1
    return f"{p.parent.name}/{p.stem}" if clash else p.stem


def _video_folder(root: Path, name: str) -> Path:
    """--video-dataset's folder, checked as the datasets are (it was looked for after the whole clean table)."""
    try:
        return _datasets(root, (name,))[0]
    except UserError as e:
        raise UserError(f"--video-dataset: {e}") from None


def _build_clips(folder: Path, scale: int, crf: int, clips: int | None) -> list:
    """The --video pans of ``folder``, made before any model runs (a folder with no picture large enough for them
    was refused after the whole clean table)."""
    from ..video_eval import build_clips

    _progress(f"making the --video pans of {folder.name} ...")
    try:
        return build_clips(folder, scale, crf, limit=clips)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--video-dataset: {e}") from None


def _video_table(console, methods, folder: Path, made: list, scale: int, crf: int, no_ssim: bool) -> list:
    from rich.table import Table

    from ..video_eval import evaluate_clips

    rows = []
    for name, fn in methods:
        _progress(f"measuring {name} on {len(made)} pans of {folder.name} ...")
        rows.append(evaluate_clips(fn, made, scale, name, ssim=not no_ssim))
    ref = next((r for r in rows if r.method == "lanczos"), None)
    caption = None
    if ref is None:  # the "vs lanczos" column needs it: measured on the same clips (a resize: cheap), not listed
        from ..evaluate import pil_resize

        ref = evaluate_clips(pil_resize("lanczos"), made, scale, "lanczos", ssim=False)
        caption = (f"vs lanczos: against lanczos on the same clips (PSNR-Y {ref.psnr:.2f}, temporal err "
                   f"{ref.temporal:.3f}; not listed: add --variant lanczos or --baselines for its row)")
    t = Table(title=f"x{scale} compressed video: {len(made)} pans of {folder.name}, libx264 CRF {crf} "
                    f"({rows[0].frames} frames)", caption=caption)
    for col in ("method", "PSNR-Y", "SSIM-Y", "temporal err", "vs lanczos"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        rel = f"{r.psnr - ref.psnr:+.2f} dB, {r.temporal / ref.temporal:.2f}x"
        t.add_row(r.method, f"{r.psnr:.2f}", "-" if no_ssim else f"{r.ssim:.4f}", f"{r.temporal:.3f}", rel)
    console.print(t)
    return [{**{k: v for k, v in r.__dict__.items() if k != "per_clip"},
             "psnr_vs_lanczos": r.psnr - ref.psnr, "temporal_vs_lanczos": r.temporal / ref.temporal} for r in rows]


def _suite_sizes(scale: int, real, video: bool) -> list[tuple[str, int, int]]:
    """(what, LR height, LR width) of the pictures the --stress suite (its cards and ``real`` frames) and the --video
    pans hand the models."""
    import inspect

    from ..stress import ALIASED_SIZE, run_suite
    from ..video_eval import build_clips

    out = []
    if real is not None:
        cw, ch = inspect.signature(run_suite).parameters["size"].default
        out.append(("--stress (its test cards)", ch // scale, cw // scale))
        out.append(("--stress (its aliased cards)", ALIASED_SIZE[1], ALIASED_SIZE[0]))  # drawn at LR size
        out += [(f"--stress (frame {name})", int(t.shape[-2]) // scale, int(t.shape[-1]) // scale) for name, t in real]
    if video:
        vw, vh = inspect.signature(build_clips).parameters["size"].default
        out.append(("--video (its pans)", vh // scale, vw // scale))
    return out


def _stress_tables(console, models, real=None) -> tuple[list, list, list[str]]:
    """The stress suite per model: PyTorch models in fp32 and fp16 on the raw (unclamped) output; any
    other runner (e.g. an ONNX file) through its Upscaler as configured. After each model's table, the aliased
    section's (reported, not a bar, unless ``stress.ALIASED_IS_A_BAR``). Returns (rows, aliased rows, failures)."""

    from ..stress import (
        ALIASED_IS_A_BAR,
        SPECKLE_CODES,
        aliased_failures,
        aliased_model,
        aliased_table,
        failures,
        real_frames,
        run_aliased,
        run_suite,
        stress_model,
        table,
    )

    real, out, aliased, failed = real_frames() if real is None else real, [], [], []
    for name, up in models:
        _progress(f"stress suite: {name} ...")
        net = getattr(up, "model", None)
        if _torch_runs(up):
            rows = stress_model(net, real=real)
            arows = aliased_model(net)
        else:  # e.g. an ONNX file: its Upscaler, on the raw (unclamped) output
            up.clamp = False
            rows = run_suite(up, up.scale, up.precision, real=real)
            arows = run_aliased(up, up.scale, up.precision)
        console.print(table(rows, f"stress: {name} (bar: |detail| <= 1 everywhere; text/UI >= MKS2021)"))
        what = "a bar" if ALIASED_IS_A_BAR else "reported, not a bar"
        console.print(aliased_table(arows, f"stress, aliased: {name} (hard-edged cards at LR size; pixels > "
                                           f"{SPECKLE_CODES} codes off a flat 3x3 LR neighbourhood; {what})"))
        out += [{"model": name, **r.to_dict()} for r in rows]
        aliased += [{"model": name, **r.to_dict()} for r in arows]
        failed += [f"{name}: {f}" for f in failures(rows)]
        failed += [f"{name}: aliased {f}" for f in aliased_failures(arows)]
    return out, aliased, failed


def _torch_runs(up) -> bool:
    """Whether ``up.model`` is a PyTorch module that PyTorch can run (an ONNX file's module is not)."""
    import torch

    return isinstance(getattr(up, "model", None), torch.nn.Module) and "torch" in up.descriptor.backends


def _file_scale(model_files, weights) -> int | None:
    """The scale of the first --model or --weights file (None: no file, or one that can't be read: the
    later load says why)."""
    from ..foreign import load_model_file
    from ..models.registry import read_metadata

    try:
        if model_files:
            return int(load_model_file(model_files[0]).descriptor.scale)
        if weights and Path(weights[0]).is_file():
            return int(read_metadata(weights[0])["scale"])
    except Exception:  # noqa: BLE001 - reported with its own message when the file is loaded for real
        return None
    return None


def model_file_upscaler(path: str, scale: int, device: str, tile: int = 0):
    """An fp32 Upscaler for a model file: PyTorch when it can run it, else ONNX Runtime (ONNX files)."""
    from ..foreign import load_model_file
    from ..runtime.upscaler import Upscaler

    net = load_model_file(path)
    if net.descriptor.scale != scale:
        raise UserError(f"{path} is a x{net.descriptor.scale} model; run eval with --scale {net.descriptor.scale}")
    backend = "torch" if "torch" in net.descriptor.backends else "onnxruntime"
    return Upscaler(model=net, device=device, backend=backend, precision="fp32", tile=tile)


def _progress(line: str) -> None:
    """One line to stderr per model and dataset while a long evaluation runs, on a terminal only (the tables on
    stdout, and what scripts read, stay as they are)."""
    if _stderr_is_terminal():
        click.echo(line, err=True)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _finite(value):
    """``value`` (dicts, lists, numbers) with NaN and +-Infinity as None: ``--json`` writes valid JSON (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _refuse_unused_options(video: bool, record: bool, weights) -> None:
    """Options that only act with another one, refused when it is missing (as --picture without --stress is):
    they did nothing, without a word."""
    if not video:
        given = options_given("clips", "crf", "video_dataset")
        if given:
            raise UserError(f"{', '.join(given)} set{'s' if len(given) == 1 else ''} the compressed-video table: "
                            "add --video")
    if record and not weights:
        raise UserError("--record stores the results in --weights files: name one (--weights FILE)")


def _resolve_presets(weights, variants, scale: int | None) -> tuple:
    """``--weights`` with its shipped presets (``clean``, ``video``) as the files they name: of the one model
    --variant given (stream when none), so ``--variant realtime --weights clean`` measures realtime's clean file,
    labelled with its name, and ``--record`` writes into that file."""
    from ..models import WeightsError
    from ..models.registry import resolve_weights
    from ..paths import weights_preset

    presets = [w for w in weights if weights_preset(w)]
    if not presets:
        return tuple(weights)
    named = [v for v in dict.fromkeys(variants) if v not in BASELINE_METHODS]
    if len(named) > 1:
        raise UserError(f"--weights {presets[0]} names a shipped file of one variant, and --variant names "
                        f"{', '.join(named)}: give one model --variant per run, or weights files by path")
    try:
        return tuple(str(resolve_weights(named[0] if named else None, scale, w)) if weights_preset(w) else w
                     for w in weights)
    except WeightsError as e:
        raise UserError(str(e)) from None


def _refuse_overwriting(outputs: dict, inputs: list[str]) -> None:
    """--json/--picture naming a weights or model file being evaluated (it was replaced by the results)."""
    from .export import refuse_input_as_output

    for flag, out in outputs.items():
        if out is None:
            continue
        for src in inputs:
            try:
                refuse_input_as_output([out], [src])
            except UserError:
                raise UserError(f"{flag} {out} is the file being evaluated ({src}); write the results elsewhere") \
                    from None


def _refuse_writing_into(outputs: dict, folders: list[Path]) -> None:
    """--json/--picture inside a dataset folder (or --video-dataset's): it replaced a picture being measured, or
    added one to the next run's. A --json file that is no picture (r.json) is neither: it is let through."""
    from ..names import IMAGE_EXTS

    for flag, out in outputs.items():
        if out is None or flag == "--json" and Path(out).suffix.lower() not in IMAGE_EXTS:
            continue
        where = Path(out).resolve()
        for folder in folders:
            if where.is_relative_to(folder.resolve()):
                raise UserError(f"{flag} {out} is inside the dataset folder {folder}; write it elsewhere")
