"""``psr2video IN OUT`` (= ``psr2video upscale IN OUT``): decode, upscale every frame, encode."""

from __future__ import annotations

import io
import os
import sys
from fractions import Fraction
from pathlib import Path

import click

from ..errors import UserError, user_errors
from ..names import BACKENDS, CODECS, DEFAULT_CRF, DEFAULT_PRESET, MODELS, PRECISIONS, SCALES
from ..paths import weights_preset
from .common import interruptible
from .video_run import as_user_error, ctrl_c_stops, report, run_video
from .video_run import warn as _warn


def make_upscaler(variant: str, scale: int | None, weights: str | None, backend: str, precision: str | None,
                  device: str, tile: int, profile: str | None = None, model_file: str | None = None,
                  tta: bool = False):
    """The Upscaler the options ask for; a bad option, a weights file or a missing backend is one line."""
    from ..models.registry import WeightsError
    from ..runtime.upscaler import Upscaler

    cfg: object = backend
    if profile:  # a pinned TensorRT profile: inputs it can't take are refused before the run
        if backend not in ("auto", "tensorrt"):
            raise UserError("--profile is a TensorRT engine profile; use it with --backend tensorrt")
        from ..runtime.backends import TRTBackend
        from ..runtime.trt_backend import load_profiles

        try:
            names = load_profiles()
        except ValueError as e:
            raise UserError(str(e)) from None
        if profile not in names:
            raise UserError(f"unknown --profile {profile!r}; choose one of {', '.join(names)}")
        cfg = TRTBackend(profile=profile)
    # the Upscaler checks its arguments with ValueError; ImportError = an optional backend is not installed
    with user_errors(WeightsError, ValueError, ImportError):
        if model_file is not None:
            return Upscaler(model_file=model_file, scale=scale, backend=cfg, precision=precision, device=device,
                            tile=tile, tta=tta)
        return Upscaler(variant=variant, scale=scale, weights=weights, backend=cfg, precision=precision,
                        device=device, tile=tile, tta=tta)


def check_model_file_options(ctx: click.Context, model_file: str | None, weights: str | None) -> None:
    """--model replaces --variant/--weights: refuse a mix rather than silently ignoring one of them."""
    if model_file is None:
        return
    if weights is not None:
        raise UserError("give --model FILE or --weights FILE, not both")
    if ctx.get_parameter_source("variant") is not click.core.ParameterSource.DEFAULT:
        raise UserError("--model FILE says what the model is; drop --variant")
    if not Path(model_file).is_file():
        raise UserError(f"model file not found: {model_file}")


@click.command("upscale", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input", metavar="IN")
@click.argument("output", metavar="OUT")
@click.option("--variant", type=click.Choice(MODELS), default="stream", show_default=True,
              help="Model: realtime/stream (video), photo/pro (slow, stills), mks/bicubic (no network).")
@click.option("--scale", type=int, default=None, help="Upscale factor (2, 3 or 4) [default: 2; a --model file's own].")
@click.option("--size", "size_text", default=None, metavar="WxH",
              help="Output size: the model's output resampled to fit WxH as the picture is shown (aspect ratio "
                   "kept, square pixels): 1920x1080, or one side: x1080, 1920x. 720p -> 1080p with a x2 model.")
@click.option("--crop", "crop_text", default=None, metavar="auto|T:B:L:R",
              help="Cut edges off the frames before upscaling: auto (the black bars, found on frames across the "
                   "video) or TOP:BOTTOM:LEFT:RIGHT pixels of the stored frame (e.g. 140:140:0:0).")
@click.option("--start", "start_text", default=None, metavar="TIME",
              help="Upscale from this time of the video (seconds, MM:SS or HH:MM:SS[.ms]); the output starts at 0, "
                   "with its sound, subtitles and chapters cut to match. Into a picture (.png, .jpg): the frame at "
                   "TIME.")
@click.option("--end", "end_text", default=None, metavar="TIME",
              help="Upscale up to this time of the video (not included).")
@click.option("--duration", "duration_text", default=None, metavar="TIME",
              help="Upscale this long a part (from --start, or the beginning); instead of --end.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="A psr2video .safetensors file, or a shipped preset of the variant (clean: trained on clean "
                   "LR only, the default for pictures; video: trained for compressed video, the default for "
                   "videos). A file says its own variant and scale (--variant/--scale, when given, must match it).")
@click.option("--model", "model_file", type=click.Path(dir_okay=False), default=None,
              help="Any model file instead of a variant: .onnx, or .pth/.pt/.ckpt/.safetensors that spandrel knows "
                   "(Real-ESRGAN, Compact, SPAN, SwinIR, HAT, OmniSR...); its scale comes from the file.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto",
              show_default=True, help="Inference backend.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Compute precision [default: fp16 on CUDA, fp32 on CPU].")
@click.option("--tile", type=int, default=0, show_default=True, help="Tile size in input pixels (0 = whole frame).")
@click.option("--tta", is_flag=True,
              help="Self-ensemble: the mean of the model's outputs for the frame and its three mirror images. 4x "
                   "the model time for about +0.1 dB (measured; for stills and offline encodes).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True, help="Frames per model call.")
@click.option("--profile", default=None,
              help="TensorRT: run only with engines of this profile (runtime/profiles.toml); inputs or --batch it "
                   "can't take are refused before the run. Default: any cached engine that fits, else build one.")
@click.option("--codec", default=None,
              help=f"Video encoder ({', '.join(CODECS)}; *_nvenc if the GPU has NVENC) [default: libx264; "
                   "libsvtav1 where the container can't hold H.264 (.webm)].")
@click.option("--crf", type=float, default=None,
              help="Quality (lower = better; NVENC: its -cq) [default: "
                   + ", ".join(f"{crf} {codec}" for codec, crf in DEFAULT_CRF.items()) + "; ffv1 is lossless].")
@click.option("--preset", default=None,
              help="Encoder preset (x264/x265: ultrafast..veryslow; svtav1: -2..13; nvenc: p1-p7) [default: "
                   + ", ".join(f"{p} {codec}" for codec, p in DEFAULT_PRESET.items())
                   + "; libvpx-vp9 and ffv1 take none].")
@click.option("--quality", type=click.IntRange(1, 100), default=None,
              help="Quality of pictures written .jpg, .webp or .avif (animated WebP too), 1-100 [default: 95; a "
                   "lossless WebP stays lossless]. A video's is --crf.")
@click.option("--pix-fmt", "pix_fmt", default=None,
              help="Output pixel format [default: the input's subsampling; 10-bit in -> 10-bit out if the codec "
                   "can].")
@click.option("--format", "fmt", default=None,
              help="Output container format (e.g. matroska, mp4, webm, nut); needed to pick one for '-' (stdout, "
                   "default matroska).")
@click.option("--input-format", "in_fmt", default=None, help="Input container format (for '-' = stdin).")
@click.option("--fps", "in_fps", default=None,
              help="Frame rate of a picture-sequence IN (frames/f_%04d.png; e.g. 24, 30000/1001) [default: 25].")
@click.option("-y", "--overwrite", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--skip-existing", is_flag=True,
              help="IN a folder: leave out the files whose OUT exists (go on after a stop).")
@click.option("--overlay-fps", is_flag=True, help="Burn the live fps into the output frames.")
@click.option("--ignore-errors", is_flag=True,
              help="Exit 0 even when the input is damaged (the frames that decode are still written).")
@click.option("--max-frames", type=click.IntRange(0), default=0, help="Stop after this many frames (0 = all).")
@click.option("--hwaccel", default=None, help="Decode on the GPU, e.g. 'cuda' (NVDEC); falls back to software.")
@click.option("--deinterlace", is_flag=True,
              help="Deinterlace (FFmpeg's bwdif) before upscaling; without it interlaced input keeps its field order.")
@click.option("--quiet", "-q", is_flag=True,
              help="No live progress (panel or periodic lines); the start line, notes, warnings, errors and the "
                   "final summary are still written to stderr.")
@click.option("--workers", type=int, default=None,
              help="Scale out on a local Ray instance: N workers (one per GPU, else CPU processes); 0 = auto. "
                   "Needs psr2video[ray].")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Scale out on an existing Ray cluster ('auto' = the one 'ray start' made).")
@click.option("--segment-seconds", type=float, default=60.0, show_default=True,
              help="Scale out: about this much video per task (cut at keyframes).")
@click.option("--keep-work", is_flag=True, help="Scale out: keep the work folder of segments after the join.")
@click.pass_context
def upscale(ctx: click.Context, input: str, output: str, variant: str, scale: int | None, size_text: str | None,
            crop_text: str | None, start_text: str | None, end_text: str | None, duration_text: str | None,
            weights: str | None, model_file: str | None, backend: str,
            precision: str | None, tile: int, tta: bool, device: str, batch: int, profile: str | None,
            codec: str | None, crf: float | None,
            preset: str | None, quality: int | None, pix_fmt: str | None, fmt: str | None, in_fmt: str | None,
            in_fps: str | None,
            overwrite: bool, skip_existing: bool,
            overlay_fps: bool, ignore_errors: bool, max_frames: int, hwaccel: str | None, deinterlace: bool,
            quiet: bool, workers: int | None = None, ray_address: str | None = None, segment_seconds: float = 60.0,
            keep_work: bool = False) -> None:
    """Upscale a video (or pictures): decode IN, run the model on every frame, encode OUT.

    \b
    IN and OUT can be '-' for stdin/stdout (give --format for stdout; default matroska):
      psr2video in.mp4 out.mkv --variant stream --scale 2
      psr2video in.mp4 - --variant mks -q | ffplay -
      psr2video in.mkv out.mkv --model 2x_SomeModel.onnx     (any ONNX or spandrel model file)
      psr2video photo.jpg photo_x2.png                      (a picture; a folder: pics/ pics_x2/)
      psr2video anim.gif anim_x2.gif                        (an animation: GIF, APNG, WebP; a video into .gif/.webp)
      psr2video ep01_720p.mkv ep01.mkv --size x1080         (720p -> 1080p: the x2 model, then Lanczos)
      psr2video season/ season_x2/                          (every video and picture under a folder)
      psr2video film.mkv try.mkv --start 42:10 --duration 20  (a part: sound, subtitles, chapters cut with it)
    Audio, subtitles, fonts, data streams, chapters and metadata are copied unchanged (audio the
    container can't hold is re-encoded, said); every frame keeps its timestamp (VFR stays VFR). The
    output is written under a temporary name and renamed at the end; Ctrl-C stops cleanly and leaves a
    playable file.
    """
    check_model_file_options(ctx, model_file, weights)
    weights_file = weights is not None and not weights_preset(weights)
    if weights_file and ctx.get_parameter_source("variant") is click.core.ParameterSource.DEFAULT:
        variant = None  # a psr2video weights file says which variant and scale it is (as in VapourSynth)
    if model_file is None and not weights_file and scale is None:  # (--scale 0 is refused below, not taken as 2)
        scale = 2
    if model_file is not None and (workers is not None or ray_address is not None):
        raise UserError("--model with --workers/--ray is not supported yet; run it without scale-out")
    if profile is not None and (workers is not None or ray_address is not None):  # refused, not ignored
        raise UserError("--profile can't be combined with --workers/--ray (each worker picks its own engines)")
    if workers is None and ray_address is None:  # scale-out settings are refused alone, not ignored
        source = ctx.get_parameter_source
        for name, flag in (("segment_seconds", "--segment-seconds"), ("keep_work", "--keep-work")):
            if source(name) is not click.core.ParameterSource.DEFAULT:
                raise UserError(f"{flag} is a scale-out setting: add --workers N (or --ray ADDRESS)")
    check_args(scale, tile, weights)  # before any heavy import: a mistake costs milliseconds, not a torch import
    check_std_streams(input, output)
    if codec is not None:  # FFmpeg's encoder for the name (hevc -> libx265): every check and table keys on it
        from ..video.output_checks import resolve_encoder

        codec, problem = resolve_encoder(codec)
        if problem is not None:
            raise UserError(problem)
    size = parse_size(size_text)
    crop = parse_crop(crop_text)
    trim = parse_trim(start_text, end_text, duration_text)
    if crop == "auto" and (input == "-" or (Path(input).exists() and not Path(input).is_file()
                                            and not Path(input).is_dir())):
        raise UserError("--crop auto looks at frames across the video, which a pipe or stdin can't give (they can "
                        "be read once); give the edges (--crop T:B:L:R) or a file")
    rate = sequence_rate(input, in_fps)
    if rate is not None and (workers is not None or ray_address is not None):
        raise UserError("--workers/--ray cut a video file at its keyframes; a picture sequence runs in one process")
    from ..image_upscale import is_picture, readable_picture

    if input == "-" and is_picture(output):
        raise UserError(f"{output} is a picture (or an animation): those are made from a file, not stdin (save the "
                        "input to a file first)")
    if skip_existing and (input == "-" or not Path(input).is_dir()):
        raise UserError("--skip-existing is for a folder IN (its files whose OUT exists are left out); one file "
                        "is refused without -y, or overwritten with it")
    if skip_existing and overwrite:
        raise UserError("give -y (overwrite every OUT) or --skip-existing (leave those files out), not both")
    tree = None  # a folder IN, walked once: its files, and the folders OUT must not be in
    if input != "-" and output != "-" and Path(input).is_dir():
        from ..fileio import walk
        from .folder import folder_videos, upscale_folder

        tree = walk(input)
        if folder_videos(tree.files):  # a folder of videos (and maybe pictures): one Upscaler for every file
            return upscale_folder(
                ctx, input, output, tree, overwrite=overwrite, skip_existing=skip_existing, quiet=quiet,
                ignore_errors=ignore_errors,
                make_up=lambda: make_upscaler(variant, scale, weights, backend, precision, device, tile, profile,
                                              model_file, tta),
                video=dict(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, batch=batch, overlay_fps=overlay_fps,
                           max_frames=max_frames, hwaccel=hwaccel, deinterlace=deinterlace, crop=crop, trim=trim),
                size=size, quality=quality, say_backend=backend == "auto",
                after_load=lambda up: cpu_stream_note(ctx, up, model_file))
    if input != "-" and output != "-" and (is_picture(output) or Path(input).is_dir()):
        return upscale_pictures(ctx, input, output, overwrite, quiet, variant, scale, weights, backend, precision,
                                device, tile, profile, model_file, tta, max_frames, size, skip_existing, trim,
                                tree, quality)
    if quality is not None:  # refused, not ignored
        raise UserError("--quality is for pictures written .jpg, .webp or .avif; a video's quality is --crf")
    check_paths(input, output, overwrite)
    if trim is not None and input != "-" and rate is None and (is_picture(input) or readable_picture(input)):
        # (a numbered sequence, its rate known, is read as a video: a part of it is cut like any video's)
        from ..animation import frame_count

        if frame_count(Path(input)) <= 1:
            raise UserError(f"--start/--end cut a part of a video; {input} is a still picture")
    from ..video.output_checks import container_problem, default_codec, encoder_problem, output_format_problem

    if (problem := output_format_problem(output, fmt)) is not None:
        if fmt is None and input != "-" and rate is None and (is_picture(input) or readable_picture(input)):
            ext = Path(output).suffix
            what = f"extension {ext!r}" if ext else "a name without an extension"
            problem = (f"can't tell what to write for {output} ({what}); {Path(input).name} is a picture: name OUT "
                       f"as one (.png, .jpg, .webp, .avif, .tif, .bmp, .tga or .gif, e.g. {Path(output).stem}.png), or "
                       "a video file (.mkv, .mp4, .mov or .webm)")
        raise UserError(problem)
    codec_default = codec is None  # (a 10-bit source into 10-bit H.264 gets a note: few devices play it)
    if codec is None:
        codec, note = default_codec(output, fmt)
        if note:
            _warn(note)
    if (problem := encoder_problem(codec, crf, preset) or container_problem(output, fmt, codec)) is not None:
        raise UserError(problem)
    if (workers is not None or ray_address is not None) and codec in ("mpeg1video", "mpeg2video"):
        # a frame per tick: each segment would leave out its own frames, and the join would refuse them
        raise UserError(f"{codec} (MPEG video) numbers frames at the frame rate, which --workers segments can't "
                        "share; run it without --workers/--ray, or pick --codec libx264")
    if crop == "auto":
        from ..video.crop import resolve

        crop = resolve(crop, input, _warn, in_fmt, rate, trim)
    if workers is not None or ray_address is not None:  # scale out on Ray (psr2video/scaleout)
        from ..scaleout.cli import scaleout_upscale

        if crop or size is not None:  # each segment would fail on its own (and be retried): say it once, now
            from ..errors import PsrError
            from ..scaleout.split import check_geometry

            with user_errors(PsrError):
                check_geometry(input, crop, size, in_fmt)
        probe = make_upscaler(variant, scale, weights, "torch", None, "cpu", tile)  # the model exists: say so
        variant, scale = probe.descriptor.variant, probe.scale  # here, once (and what a weights file holds)
        return scaleout_upscale(input, output, workers=workers or 0, address=ray_address,
                                segment_seconds=segment_seconds, keep_work=keep_work, variant=variant, scale=scale,
                                weights=weights, backend=backend, precision=precision, tile=tile, tta=tta,
                                device=device,
                                batch=batch, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, fmt=fmt,
                                hwaccel=hwaccel, ignore_errors=ignore_errors, quiet=quiet, error=UserError,
                                max_frames=max_frames, overlay_fps=overlay_fps, in_fmt=in_fmt,
                                deinterlace=deinterlace, size=size, crop=crop, trim=trim)
    up = make_upscaler(variant, scale, weights, backend, precision, device, tile, profile, model_file, tta)
    scale = up.scale
    if model_file is not None:
        variant = f"{up.descriptor.variant} ({up.descriptor.arch})"
    else:
        variant = up.descriptor.variant
    from ..video import pipeline

    opts = pipeline.Options(input=input, output=output, scale=scale, codec=codec, crf=crf, preset=preset,
                            pix_fmt=pix_fmt, fmt=fmt, in_fmt=in_fmt, in_fps=rate, batch=batch, overlay_fps=overlay_fps,
                            max_frames=max_frames, hwaccel=hwaccel, deinterlace=deinterlace, size=size, crop=crop,
                            trim=trim, codec_default=codec_default)
    with ctrl_c_stops() as stop:
        try:
            res, snapshot = run_video(up, opts, f"psr2video {variant} x{scale}", quiet, stop,
                                      say_backend=backend == "auto",  # the CPU note once IN is read: a bad IN
                                      first_note=lambda: cpu_stream_note(ctx, up, model_file))  # is one line
        except KeyboardInterrupt:
            _warn("psr2video: aborted; partial output removed")
            sys.exit(130)
    report(res, snapshot, output, ignore_errors, stopped_by=stop.by)


def cpu_stream_note(ctx: click.Context, up, model_file: str | None) -> None:
    """The default is made for a GPU: say what the CPU fallback costs before the user waits for it."""
    if (str(up.device) == "cpu" and up.descriptor.variant == "stream" and model_file is None
            and ctx.get_parameter_source("variant") is click.core.ParameterSource.DEFAULT):
        _warn("note: no GPU here: the default stream model runs on the CPU (3.1 s per 720p frame on 2 cores); "
              "--variant realtime is about 7x faster")




# options that mean something for a video only: refused with a picture, not ignored
VIDEO_ONLY = ("codec", "crf", "preset", "pix_fmt", "fmt", "in_fmt", "batch", "overlay_fps", "ignore_errors",
              "crop_text", "start_text", "end_text", "duration_text", "max_frames", "hwaccel", "deinterlace",
              "workers", "ray_address", "segment_seconds",
              "keep_work")


def upscale_pictures(ctx: click.Context, input: str, output: str, overwrite: bool, quiet: bool, variant, scale,
                     weights, backend, precision, device, tile, profile, model_file, tta: bool = False,
                     max_frames: int = 0, size=None, skip_existing: bool = False, trim=None, tree=None,
                     quality: int | None = None) -> None:
    """``psr2video in.png out.png`` / ``psr2video pics/ out/``: still pictures through the same Upscaler
    (``tree``: a folder IN's ``fileio.walk``, which the caller made)."""
    from ..animation import ANIMATION_EXTS, FROM_VIDEO_EXTS, frame_count
    from ..image_upscale import PictureError, avif_problem, is_picture, plan, readable_picture, run

    if not Path(input).exists():
        from ..names import image_sequence

        if image_sequence(input) is not None:
            raise UserError(f"a picture sequence ({input}) is read as a video: write it to a video file (e.g. "
                            ".mkv), or upscale the folder of pictures into another folder")
        raise UserError(f"input not found: {input}")
    video_in = Path(input).is_file() and not is_picture(input) and not readable_picture(input)
    grab = video_in and Path(output).suffix.lower() not in FROM_VIDEO_EXTS  # a video into a still picture
    if grab and (trim is None or trim.end is not None):
        if trim is not None:
            raise UserError(f"{output} is a still picture, one frame: give --start TIME alone (the frame at TIME), "
                            "or write the part to .gif or .webp for an animation")
        raise UserError(f"{output} is a picture but {input} is not; write the video to a video file (e.g. .mkv), "
                        "to .gif or .webp for an animation, or add --start TIME for the frame at TIME")
    if video_in and not _has_video(input):  # said before the model loads, not after "an animation"
        raise UserError(f"{input} is neither a picture nor a video FFmpeg can read")
    if video_in and trim is not None:  # a part past the end: said before the model loads
        check_part(input, trim)
    if video_in and ctx.get_parameter_source("crop_text") is not click.core.ParameterSource.DEFAULT:
        raise UserError("--crop is not taken for a video into an animation; crop it into a video file first "
                        "(psr2video IN cropped.mkv --crop ...), then make the animation of that")
    for name in VIDEO_ONLY:
        if name in ("max_frames", "start_text", "end_text", "duration_text") and video_in:
            continue  # a video into an animation: its first N frames, or a part of it
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            flag = next(o for p in ctx.command.params if p.name == name for o in p.opts if o.startswith("--"))
            if name in ("start_text", "end_text", "duration_text"):
                raise UserError(f"{flag} cuts a part of a video (into a video, GIF or WebP); a picture or an "
                                "animated picture is upscaled whole")
            raise UserError(f"{flag} is a video option; a picture is written lossless (PNG, TIFF, BMP, TGA; WebP "
                            "from a lossless WebP) or at quality 95 (JPEG, WebP, AVIF; --quality to choose), by "
                            "OUT's extension")
    from .folder import (
        check_out_outside_in,
        check_quality,
        out_folder_problem,
        out_folder_unwritable,
        refuse_existing,
        refuse_inputs_as_outputs,
    )

    folder = Path(input).is_dir()
    if (problem := out_folder_problem(output) or avif_problem(output)) is not None:  # "File exists" came after
        raise UserError(problem)  # the model loaded
    try:
        jobs = plan(input, output, tree.files if folder else None)  # OUTs that exist: refused below
    except PictureError as e:
        raise UserError(str(e)) from None
    if folder:  # links resolved: a linked folder under IN that leads to OUT, an OUT that is one of IN's files
        # (with no picture, IN itself only: "no pictures" is said before a linked folder's problem)
        check_out_outside_in(input, output, tree.folders if jobs else {})
        if not jobs:  # (a folder with videos is upscaled by the folder command)
            what = f" ({len(tree.files)} other file(s), e.g. {tree.files[0].name})" if tree.files else " (it is empty)"
            raise UserError(f"no videos or pictures in {input}{what}")
        refuse_inputs_as_outputs(jobs, [j.src for j in jobs])
    check_quality(quality, jobs, folder)  # (before --skip-existing: a finished folder is "nothing to do")
    if skip_existing:
        jobs = [j for j in jobs if not os.path.lexists(j.dst)]
    refuse_existing([j.dst for j in jobs], overwrite, folder=folder)
    if not jobs:
        _warn(f"every picture under {input} has its OUT already (--skip-existing); nothing to do")
        return
    if folder and (problem := out_folder_unwritable(output)) is not None:  # not after every picture is upscaled
        raise UserError(problem)
    if weights is None and model_file is None and not video_in:  # pictures are not compressed video: the clean
        from ..models.registry import picture_preset  # file where the variant has one (the start line names it:

        weights = picture_preset(variant, scale or 2)  # Upscaler(stream x2 [stream_x2_clean], ...))
    up = make_upscaler(variant, scale, weights, backend, precision, device, tile, profile, model_file, tta)
    what = f"{len(jobs)} pictures" if len(jobs) > 1 else "1 picture"
    if grab:
        from ..video.trim import clock

        what = f"the frame at {clock(trim.start)}"
    elif len(jobs) == 1 and Path(output).suffix.lower() in ANIMATION_EXTS and (video_in or
                                                                              frame_count(Path(input)) > 1):
        what = "an animation"
    _warn(f"{input} -> {output}: {up!r}, {what}")
    interruptible()
    try:
        n, frames, seconds = run(up, jobs, _warn, quiet=quiet, max_frames=max_frames, size=size, trim=trim,
                                 quality=quality)
    except PictureError as e:
        raise UserError(str(e)) from None
    except Exception as e:  # a model that can't take the picture (a fixed-size graph without --tile): one line
        err = as_user_error(e, output)
        if err is e:
            raise
        raise err from None
    rate = f", {frames / seconds:.1f} frames/s" if frames > n and seconds else ""
    _warn(f"done: {n} file{'s' if n != 1 else ''}, {frames} frame{'s' if frames != 1 else ''} in {seconds:.1f} s"
          f"{rate} -> {output}" if frames != n else
          f"done: {n} picture{'s' if n != 1 else ''} in {seconds:.1f} s -> {output}")


def check_part(path: str, trim) -> None:
    """Refuse, in one line and before any model loads, a part that starts at or past the end of the video."""
    from ..video.reader import InputError, open_input, shown_length
    from ..video.trim import TrimError

    try:
        with open_input(path) as c:
            trim.check(shown_length(c), path)
    except (InputError, TrimError) as e:
        raise UserError(str(e)) from None


def _has_video(path: str) -> bool:
    """Whether the video path's reader opens ``path`` (FFmpeg finds a video stream in it)."""
    from ..video.reader import InputError, open_input

    try:
        open_input(path).close()
        return True
    except InputError:
        return False


def check_args(scale: int | None, tile: int, weights: str | None) -> None:
    """The option checks that need no model and no video library."""
    if scale is not None and scale not in SCALES:
        raise UserError(f"unsupported --scale {scale}; choose one of {', '.join(map(str, SCALES))}")
    if tile < 0:
        raise UserError("--tile must be >= 0")
    if weights is not None and not weights_preset(weights) and not Path(weights).is_file():
        raise UserError(f"weights file not found: {weights}")  # a preset name is checked with the model


def parse_size(text: str | None):
    """``--size`` as a SizeSpec (None when not given); a malformed one is one line."""
    from ..output_size import SizeSpec

    return _parsed(text, SizeSpec.parse)


def parse_crop(text: str | None):
    """``--crop`` as a Crop, "auto" or None; a malformed one is one line."""
    from ..video.crop import Crop

    return _parsed(text, Crop.parse)


def parse_trim(start: str | None, end: str | None, duration: str | None):
    """``--start``/``--end``/``--duration`` as a Trim (None when none is given); a malformed one is one line."""
    from ..video.trim import Trim, TrimError

    try:
        return Trim.from_options(start, end, duration)
    except TrimError as e:
        raise UserError(str(e)) from None


def _parsed(text: str | None, parse):
    """``parse(text)``, None for an option not given, a ValueError as the user's one-line error."""
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as e:
        raise UserError(str(e)) from None


def sequence_rate(input: str, fps: str | None) -> Fraction | None:
    """The frame rate of a picture-sequence IN (``--fps``, default 25), or None when IN is not a sequence;
    ``--fps`` for any other IN is refused, not ignored."""
    from ..names import image_sequence

    seq = image_sequence(input)
    if seq is None:
        if fps is not None:
            raise UserError("--fps is the frame rate of a picture sequence (frames/f_%04d.png); a video has its own")
        return None
    first, run, total = seq
    if run < total:  # FFmpeg's image2 fails at a missing number, losing the frames still in the decoder
        raise UserError(f"{input}: number {first + run} is missing ({run} picture{'s' if run > 1 else ''} from "
                        f"{first}, {total - run} after the gap); fill the gap or move the later pictures to their "
                        "own sequence")
    try:
        rate = Fraction(fps or "25")
    except (ValueError, ZeroDivisionError):
        rate = Fraction(0)
    if not Fraction(1, 100) <= rate <= 1000:
        raise UserError(f"--fps {fps}: give a frame rate such as 24, 25 or 30000/1001")
    return rate


def check_std_streams(input: str, output: str) -> None:
    """'-' with that stream closed (``<&-``, ``>&-``): one line now, not a traceback after the model loaded."""
    if input == "-" and _closed(sys.stdin):
        raise UserError("IN is '-' but stdin is closed; pipe the video in (... | psr2video - OUT) or give a file")
    if output == "-" and _closed(sys.stdout):
        raise UserError("OUT is '-' but stdout is closed; pipe it on (psr2video IN - | ...) or give a file name")


def _closed(stream) -> bool:
    """Whether a standard stream is gone: None (its descriptor was closed when Python started), closed, or a
    descriptor that is no longer open. A stream without a descriptor (a test runner's) is open."""
    if stream is None or getattr(stream, "closed", False):
        return True
    try:
        fd = stream.fileno()
    except io.UnsupportedOperation:
        return False
    except (OSError, ValueError):
        return True
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def check_paths(input: str, output: str, overwrite: bool) -> None:
    """Refuse what can't work before anything is loaded: missing input, OUT = IN, OUT exists, no folder."""
    if output != "-":
        from .folder import out_folder_problem, refuse_existing

        out = Path(output)
        if (problem := out_folder_problem(output)) is not None:  # before "does not exist" and FFmpeg's ENOTDIR
            raise UserError(problem)
        if input != "-" and out.exists() and Path(input).exists() and out.resolve() == Path(input).resolve():
            raise UserError("OUT is the same file as IN")
        if out.is_dir():  # before "exists; use -y", which -y could not cure
            example = out / (Path(input).name if input != "-" else "out.mkv")
            raise UserError(f"{output} is a directory, not an output file; name the file, e.g. {example}")
        if out.exists() and not out.is_file():  # a device or FIFO: the finished file's rename would replace it
            raise UserError(f"{output} is not a regular file (a device or a FIFO), which writing a file there "
                            f"would replace; write to stdout and redirect instead: psr2video IN - > {output}")
        refuse_existing([out], overwrite, folder=False)
        if not out.parent.exists():
            raise UserError(f"can't write {output}: folder {out.parent} does not exist")
    from ..names import image_sequence

    if input != "-" and not Path(input).exists() and image_sequence(input) is None:
        hint = " (no pictures match that numbered pattern)" if "%" in Path(input).name else ""
        raise UserError(f"input not found: {input}{hint}")
    if input != "-" and Path(input).is_dir():
        raise UserError(f"input is a directory, not a video: {input}")
