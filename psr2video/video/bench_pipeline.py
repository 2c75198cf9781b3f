"""``psr2video bench pipeline``: the whole decode -> upscale -> encode pipeline next to its two ceilings.

1. pipeline: ``psr2video IN OUT`` end to end (three threads, colour on the device, stream copy);
2. model alone: the same Upscaler on the same frames, already decoded and on the device (batch as given);
3. FFmpeg alone: PyAV decode -> ``scale`` filter (bicubic, same output size) -> same encoder and settings
   (or the ``ffmpeg`` binary when one is on PATH and ``--ffmpeg-binary`` is given).
All three run in the same process on the same machine; the machine and the command are printed.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import click
import torch

from ..cli import UserError

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "bbb_480x270.mkv"


def machine() -> str:
    from ..runtime.engine_cache import cpu_name

    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    try:
        load = " load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = ""
    lavc = ".".join(map(str, av.library_versions["libavcodec"]))
    return (f"{cpu}, {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable, torch threads "
            f"{torch.get_num_threads()}),{load}; {gpu}; Python {platform.python_version()}, torch "
            f"{torch.__version__}, PyAV {av.__version__} (libavcodec {lavc})")


def load_frames(path: str, n: int, up, info) -> list[torch.Tensor]:
    from .color import yuv_to_rgb
    from .reader import frame_planes

    out = []
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for fr in c.decode(s):
            planes, bits, _, _, _ = frame_planes(fr)
            t = [torch.from_numpy(p.copy())[None].to(up.device) for p in planes]
            u, v = (t[1], t[2]) if len(t) >= 3 else (None, None)
            out.append(yuv_to_rgb(t[0], u, v, bits, info.color, dtype=up.dtype))
            if n and len(out) >= n:
                break
    return out


def time_model(up, frames: list[torch.Tensor], batch: int) -> float:
    sync = torch.cuda.synchronize if up.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        up(torch.cat(frames[:batch]))  # warm-up (allocations, ORT/TRT set-up)
        sync()
        t0 = time.perf_counter()
        done = 0
        for i in range(0, len(frames), batch):
            chunk = frames[i:i + batch]
            up(torch.cat(chunk) if len(chunk) > 1 else chunk[0])
            done += len(chunk)
        sync()
    return done / (time.perf_counter() - t0)


def time_ffmpeg_pyav(path: str, out: str, size: tuple[int, int], codec: str, options: dict[str, str], n: int,
                     pix_fmt: str) -> float:
    t0 = time.perf_counter()
    frames = 0
    with av.open(path) as inp, av.open(out, "w") as o:
        s = inp.streams.video[0]
        s.thread_type = "AUTO"
        vs = o.add_stream(codec, rate=s.average_rate or 25)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], pix_fmt
        vs.time_base = s.time_base
        vs.codec_context.time_base = s.time_base
        vs.options = options
        g = av.filter.Graph()
        src = g.add_buffer(template=s)
        sc = g.add("scale", f"{size[0]}:{size[1]}:flags=bicubic")
        fmt = g.add("format", pix_fmt)
        sink = g.add("buffersink")
        src.link_to(sc)
        sc.link_to(fmt)
        fmt.link_to(sink)
        g.configure()
        for fr in inp.decode(s):
            g.push(fr)
            while True:
                try:
                    f2 = g.pull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    break
                o.mux(vs.encode(f2))
            frames += 1
            if n and frames >= n:
                break
        o.mux(vs.encode(None))
    return frames / (time.perf_counter() - t0)


def time_ffmpeg_binary(ffmpeg: str, path: str, out: str, size: tuple[int, int], codec: str,
                       options: dict[str, str], n: int, pix_fmt: str) -> float:
    cmd = [ffmpeg, "-v", "error", "-y", "-i", path, "-map", "0:v:0", "-vf",
           f"scale={size[0]}:{size[1]}:flags=bicubic,format={pix_fmt}", "-c:v", codec]
    for k, v in options.items():
        cmd += [f"-{k}", v]
    if n:
        cmd += ["-frames:v", str(n)]
    cmd.append(out)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    dt = time.perf_counter() - t0
    with av.open(out) as c:
        frames = sum(1 for _ in c.demux(c.streams.video[0]) if _.size)
    return frames / dt


@click.command("bench_pipeline")
@click.argument("clip", required=False)
@click.option("--variant", default="mks", show_default=True, help="Model (mks needs no weights).")
@click.option("--scale", type=int, default=2, show_default=True)
@click.option("--weights", default=None, help="Weights file for a real variant.")
@click.option("--backend", default="auto", show_default=True)
@click.option("--precision", default=None)
@click.option("--device", default="auto", show_default=True)
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--codec", default="libx264", show_default=True)
@click.option("--preset", default="ultrafast", show_default=True, help="Encoder preset (same for both encodes).")
@click.option("--crf", type=float, default=20, show_default=True)
@click.option("--frames", "n", type=int, default=0, help="Frames to run (0 = the whole clip).")
@click.option("--ffmpeg-binary", is_flag=True, help="Time the ffmpeg binary instead of a PyAV filter graph.")
def bench_pipeline(clip: str | None, variant: str, scale: int, weights: str | None, backend: str,
                   precision: str | None, device: str, batch: int, codec: str, preset: str, crf: float, n: int,
                   ffmpeg_binary: bool) -> None:
    """Pipeline fps vs the model alone vs FFmpeg's own decode + scale + encode (CLIP: default the sample)."""
    from . import pipeline
    from .command import make_upscaler
    from .reader import open_input, stream_info
    from .writer import Writer, pick_pix_fmt

    clip = clip or str(SAMPLE)
    if not Path(clip).exists():
        raise UserError(f"clip not found: {clip}")
    up = make_upscaler(variant, scale, weights, backend, precision, device, 0)
    with open_input(clip) as c:
        info = stream_info(c)
    pix_fmt = pick_pix_fmt(codec, info.bits, 1, 1, False, None)
    size = pipeline.output_size(info.width, info.height, up.scale, pix_fmt)
    options = Writer._codec_options(codec, crf, preset)
    click.echo(f"machine: {machine()}")
    click.echo(f"command: psr2video bench pipeline {' '.join(sys.argv[3:]) if len(sys.argv) > 3 else ''}".rstrip())
    click.echo(f"clip: {clip} ({info.width}x{info.height} {info.pix_fmt} {info.codec}, {info.frames} frames) -> "
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
