"""``psr2video bench``: speed figures printed with the machine and the command, next to peers.

``bench model`` times a model alone against Real-ESRGAN Compact peers (timing in runtime/bench_model.py);
``bench pipeline`` times the whole decode -> upscale -> encode pipeline against the model alone and
FFmpeg's own decode + scale + encode (timing in video/bench_pipeline.py); ``bench resize`` measures ``--size``'s
resampler against antialiased bicubic (runtime/bench_resize.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from .. import paths
from ..errors import UserError, command_errors
from ..names import BACKENDS, BASELINES, PRECISIONS, SCALES, VARIANTS
from .common import check_device_name, check_writable, parse_shape, split_list


@click.group()
def bench() -> None:
    """Benchmarks (figures, not pass/fail): model speed and end-to-end pipeline speed."""


@bench.command("model")
@click.option("--variant", "-v", "variants", multiple=True, default=("realtime,stream",), show_default=True,
              help=f"ParagonSR2 variants ({', '.join(VARIANTS)}); repeat or comma-separate")
@click.option("--model", "-m", "models", multiple=True, type=click.Path(dir_okay=False),
              help="A model file to time in the same table (.onnx, or a .pth/.pt/.ckpt/.safetensors spandrel "
                   "knows); runs at its own scale. Repeatable.")
@click.option("--scale", "-s", type=click.Choice([str(s) for s in SCALES]), default="2", show_default=True)
@click.option("--size", default="320x180", show_default=True, help="input frame size WxH")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--tile", type=click.IntRange(min=0), default=0, show_default=True,
              help="time tiled runs (0: whole frames); a fixed-size ONNX graph larger than --size needs one")
@click.option("--backend", "-b", type=click.Choice(BACKENDS), default="auto",
              show_default=True)
@click.option("--precision", "-p", type=click.Choice(PRECISIONS), default=None,
              help="default: fp16 on CUDA, fp32 on the CPU")
@click.option("--device", default="auto", show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--min-seconds", type=float, default=0.0, help="keep timing until this long has passed")
@click.option("--peers/--no-peers", default=True, show_default=True, help="Real-ESRGAN Compact family")
@click.option("--baselines/--no-baselines", default=True, show_default=True, help="bicubic and MKS2021")
@click.option("--threads", type=click.IntRange(min=0), default=0,
              help="CPU threads: torch's, and ONNX Runtime's intra-op threads per session (0: leave as is)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default="runs/bench_model.json",
              show_default=True)
@command_errors()
def bench_model(variants, models, scale, size, batch, tile, backend, precision, device, warmup, iters, min_seconds,
                peers, baselines, threads, json_path):
    """Model speed: fps, ms/frame and peak memory next to Real-ESRGAN Compact peers (same backend)."""
    w, h = parse_shape(size, "--size", "320x180")  # argument mistakes first: milliseconds, not a torch import
    check_device_name(device)
    check_writable(json_path, "--json")  # said before minutes of timing, not after
    if not split_list(variants) and not models:  # -v "": nothing of ours to time
        raise UserError(f"--variant is empty; give one or more of {', '.join(VARIANTS + BASELINES)} (or a --model "
                        "file)")
    import torch

    from ..machine import describe, machine_info
    from ..runtime.bench_model import format_table, target_lines, time_entries
    from ..runtime.peers import PEERS
    from ..runtime.upscaler import resolve_device

    try:
        dev = resolve_device(device)  # the name is good; this machine may still lack it (no CUDA, cuda:7)
    except ValueError as e:
        raise UserError(f"--device: {e}") from None
    if threads:
        torch.set_num_threads(threads)
    names = split_list(variants)
    for n in names:
        if n not in VARIANTS + BASELINES:
            raise UserError(f"unknown variant {n!r}; choose from {', '.join(VARIANTS + BASELINES)}")
    for f in models:
        from ..foreign import MODEL_EXTS

        if not Path(f).is_file():
            raise UserError(f"model file not found: {f}")
        if Path(f).suffix.lower() not in MODEL_EXTS:
            raise UserError(f"{f}: unknown model file type; --model takes {', '.join(MODEL_EXTS)} files")
    names += list(dict.fromkeys(models))
    if peers:
        names += list(PEERS)[::-1]
    if baselines:
        names += [b for b in ("bicubic", "mks") if b not in names]
    if backend == "auto":  # as the Upscaler resolves it: an explicit bf16 picks torch, the only bf16 backend
        from ..runtime.auto import resolve

        cfg, reason = resolve("auto", dev, precision)
        backend = cfg.name
        click.echo(f"backend auto -> {backend}: {reason}")
    info = machine_info(dev)
    command = "psr2video bench model " + " ".join(sys.argv[3:] if sys.argv[1:3] == ["bench", "model"] else [])
    click.echo(f"machine: {describe(info)}")
    click.echo(f"command: {command.strip()}")
    try:
        rows = time_entries(names, int(scale), backend, precision, dev, (w, h), batch, warmup, iters, min_seconds,
                            echo=lambda m: click.echo(m, err=True), tile=tile, threads=threads)
    except ValueError as e:
        raise UserError(str(e)) from None
    click.echo(format_table(rows))
    for line in target_lines(rows):
        click.echo(line)
    out = {"machine": info, "command": command.strip(), "device": str(dev), "scale": int(scale),
           "warmup": warmup, "iters": iters, "results": rows, "targets": target_lines(rows),
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    p = Path(json_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=1))
    click.echo(f"wrote {p}")


@bench.command("resize")
@click.argument("folder", required=False)
@click.option("--variant", "-v", default="realtime", show_default=True, type=click.Choice(VARIANTS),
              help="The x2 model whose output is resampled.")
@click.option("--limit", type=click.IntRange(min=1), default=24, show_default=True, help="At most this many pictures.")
@click.option("--device", default="auto", show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=10, show_default=True)
@command_errors()
def bench_resize(folder: str | None, variant: str, limit: int, device: str, iters: int) -> None:
    """--size's resampler vs antialiased bicubic: PSNR-Y at x1.5 (the x2 model, then resampled) and ms per
    2560x1440 -> 1920x1080 frame. FOLDER: HR pictures (default: the data folder's val/Set14)."""
    check_device_name(device)
    given = folder is not None
    folder = folder if given else str(paths.data_path("val", "Set14"))
    files: list[Path] = []
    if Path(folder).is_dir():
        from ..names import IMAGE_EXTS

        files = sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in IMAGE_EXTS)[:limit]
    if given and not Path(folder).is_dir():
        raise UserError(f"not a folder of pictures: {folder}")
    if given and not files:
        raise UserError(f"no pictures in {folder}")
    from ..machine import describe
    from ..runtime.bench_resize import PEERS, quality, speed
    from .upscale import make_upscaler

    up = make_upscaler(variant, 2, None, "auto", None, device, 0)
    command = "psr2video bench resize " + " ".join(sys.argv[3:] if sys.argv[1:3] == ["bench", "resize"] else [])
    click.echo(f"machine: {describe()}")
    click.echo(f"command: {command.strip()}")
    if files:
        click.echo(f"x1.5 on {len(files)} pictures of {folder} (HR shrunk by 2/3, {up!r}, resampled to the HR "
                   "size)")
        q = quality(up, files)
    else:  # a machine without the data folder (a GPU lent for a run): the speed rows alone
        click.echo(f"no HR pictures at {folder} (give FOLDER, or set PSR2VIDEO_DATA): speed only")
        q = {name: float("nan") for name in (*PEERS, "lanczos3 from the LR (no model)")}
    ms = speed(up.device, iters)
    base = "bicubic, antialiased (torch)"
    click.echo(f"{'method':<36}{'PSNR-Y dB':>10}{'ms/frame':>10}{'time ratio':>12}")
    for name, db in q.items():
        t = f"{ms[name]:>10.1f}{ms[name] / ms[base]:>12.2f}" if name in ms else f"{'-':>10}{'-':>12}"
        click.echo(f"{name:<36}{db:>10.3f}{t}" if db == db else f"{name:<36}{'-':>10}{t}")
    click.echo(f"device: {up.device}; ms: 2560x1440 -> 1920x1080, mean of {iters}")


@bench.command("pipeline")
@click.argument("clip", required=False)
@click.option("--variant", default="mks", show_default=True, help="Model (mks needs no weights).")
@click.option("--scale", type=click.Choice([str(s) for s in SCALES]), default="2", show_default=True)
@click.option("--weights", default=None, help="Weights file or shipped preset (clean) for a real variant.")
@click.option("--backend", default="auto", show_default=True)
@click.option("--precision", default=None)
@click.option("--device", default="auto", show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--codec", default="libx264", show_default=True)
@click.option("--preset", default=None,
              help="Encoder preset (same for both encodes; default: ultrafast for libx264/libx265, else the "
                   "encoder's own).")
@click.option("--crf", type=float, default=None,
              help="Quality (same for both encodes; default: 20 where the encoder takes a CRF, else none).")
@click.option("--frames", "n", type=click.IntRange(min=0), default=0, help="Frames to run (0 = the whole clip).")
@click.option("--ffmpeg-binary", is_flag=True, help="Time the ffmpeg binary instead of a PyAV filter graph.")
@command_errors()
def bench_pipeline(clip: str | None, variant: str, scale: str, weights: str | None, backend: str,
                   precision: str | None, device: str, batch: int, codec: str, preset: str | None,
                   crf: float | None, n: int, ffmpeg_binary: bool) -> None:
    """Pipeline fps vs the model alone vs FFmpeg's own decode + scale + encode (CLIP: default the sample).

    x264/x265 encode at preset ultrafast and CRF 20 unless told (the encode should not hide the pipeline); other
    encoders get only what is given (ffv1 takes neither, libvpx-vp9 no preset)."""
    import shutil
    import tempfile
    import threading

    from ..machine import describe, machine_info
    from ..video import pipeline
    from ..video.bench_pipeline import load_frames, time_ffmpeg_binary, time_ffmpeg_pyav, time_model
    from ..video.output_checks import CRF_RANGE, encoder_problem, resolve_encoder
    from ..video.reader import open_input, stream_info
    from ..video.writer import Writer
    from .upscale import make_upscaler

    clip = clip or str(paths.SAMPLE_CLIP)
    if not Path(clip).exists():
        raise UserError(f"clip not found: {clip}")
    if ffmpeg_binary and not shutil.which("ffmpeg"):
        raise UserError("--ffmpeg-binary: there is no ffmpeg on PATH (leave it out to time FFmpeg through PyAV)")
    codec, problem = resolve_encoder(codec)
    if problem is not None:
        raise UserError(problem)
    if codec in ("libx264", "libx265"):  # the figures in the README: the encode kept cheap next to the model
        preset = preset or "ultrafast"
    if crf is None and codec in CRF_RANGE:
        crf = 20.0
    if (problem := encoder_problem(codec, crf, preset)) is not None:
        raise UserError(problem)
    up = make_upscaler(variant, int(scale), weights, backend, precision, device, 0)
    with open_input(clip) as c:
        info = stream_info(c)
    # what the pipeline itself writes (the source's subsampling and depth where the codec has them), for the label
    # and for FFmpeg's run: a 4:4:4 source was labelled and encoded 4:2:0 by the peer against our 4:4:4
    pix_fmt = pipeline.output_pix_fmt(info.color, codec, None)
    size = pipeline.output_size(info.width, info.height, up.scale, pix_fmt)
    options = Writer._codec_options(codec, crf, preset)
    click.echo(f"machine: {describe(machine_info(up.device))}")
    click.echo(f"command: psr2video bench pipeline {' '.join(sys.argv[3:]) if len(sys.argv) > 3 else ''}".rstrip())
    count = f"{info.frames} frames" if info.frames else "frame count unknown"  # a raw stream says none (not 0)
    click.echo(f"clip: {clip} ({info.width}x{info.height} {info.pix_fmt} {info.codec}, {count}) -> "
               f"{size[0]}x{size[1]} {pix_fmt} {codec} {options}; {up!r}, batch {batch}")
    with tempfile.TemporaryDirectory(prefix="psr2bench") as d:
        # 1. the pipeline (twice: the first run warms caches, builds engines)
        opts = pipeline.Options(input=clip, output=str(Path(d) / "p.mkv"), scale=up.scale, codec=codec, crf=crf,
                                preset=preset, batch=batch, max_frames=n)
        pipeline.run(opts, up, stop=threading.Event(), warn=lambda m: None)
        res = pipeline.run(opts, up, stop=threading.Event(), warn=lambda m: None)
        fps_pipe = res.frames / res.seconds
        # 2. the model alone on the same frames, decoded and converted beforehand
        frames = load_frames(clip, n or res.frames, up, info)
        fps_model = time_model(up, frames, batch)
        del frames
        # 3. FFmpeg decode + scale + encode of the same clip
        ff = shutil.which("ffmpeg") if ffmpeg_binary else None
        out = str(Path(d) / "f.mkv")
        if ff:
            fps_ff, how = time_ffmpeg_binary(ff, clip, out, size, codec, options, n, pix_fmt), ff
        else:
            time_ffmpeg_pyav(clip, out, size, codec, options, n, pix_fmt)  # warm-up
            fps_ff, how = time_ffmpeg_pyav(clip, out, size, codec, options, n, pix_fmt), "PyAV graph"
    click.echo(f"{'run':<44}{'fps':>9}")
    click.echo(f"{'pipeline (decode -> upscale -> encode)':<44}{fps_pipe:>9.1f}")
    click.echo(f"{'model alone (same frames, on device)':<44}{fps_model:>9.1f}")
    click.echo(f"{'FFmpeg decode + bicubic scale + encode (' + how + ')':<44}{fps_ff:>9.1f}")
    click.echo(f"pipeline / model alone:  {fps_pipe / fps_model:.2f}  (target >= 0.9 when the model is the "
               "bottleneck)")
    click.echo(f"pipeline / FFmpeg:       {fps_pipe / fps_ff:.2f}  (target >= 0.8 with --variant mks)")


@bench.command("scaleout")
@click.argument("clip", required=False)
@click.option("--variant", default="realtime", show_default=True)
@click.option("--scale", type=int, default=2, show_default=True)
@click.option("--codec", default="libx264", show_default=True)
@click.option("--preset", default="ultrafast", show_default=True, help="Encoder preset (every run).")
@click.option("--workers", "workers", default="1,2", show_default=True, help="Worker counts to time (comma list).")
@click.option("--segment-seconds", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default="runs/bench_scaleout.json",
              show_default=True)
@command_errors()
def bench_scaleout(clip: str | None, variant: str, scale: int, codec: str, preset: str, workers: str,
                   segment_seconds: float, device: str, json_path: str) -> None:
    """Scale out on Ray: single process vs 1 and N workers, split/join overhead, speed-up.

    CLIP needs keyframes every few seconds to split; without one a 320x180 clip is made (8 s, a keyframe a second).
    """
    from ..machine import describe, machine_info

    if clip is not None and not Path(clip).exists():  # before importing Ray: a typo costs milliseconds
        raise UserError(f"clip not found: {clip}")
    try:
        counts = sorted({int(w) for w in split_list((workers,))})
    except ValueError:
        raise UserError(f"--workers takes whole numbers (e.g. 1,2,4), got {workers!r}") from None
    if not counts or min(counts) < 1:
        raise UserError(f"--workers takes counts of 1 or more, got {workers!r}")
    check_writable(json_path, "--json")  # said before minutes of timing, not after
    try:
        import ray  # noqa: F401
    except ImportError:
        from ..scaleout import RAY_HINT

        raise UserError(RAY_HINT) from None
    from ..scaleout.bench import bench_scaleout as run_bench
    from ..scaleout.bench import save

    info = machine_info(device)  # the driver's machine; its GPU only where the workers are given one
    click.echo(f"machine: {describe(info)}")
    click.echo(f"command: psr2video bench scaleout {' '.join(sys.argv[3:]) if len(sys.argv) > 3 else ''}".rstrip())
    what = clip or "made now: 320x180 libx264, 8 s, a keyframe every second"
    click.echo(f"clip: {what}; {variant} x{scale} ({device}), {codec} {preset}, segments of ~{segment_seconds:g} s")
    res = run_bench(clip, variant, scale, codec, counts, segment_seconds, device=device, preset=preset)
    res["machine"] = info
    save(res, json_path)
    click.echo(f"figures written to {json_path}")
