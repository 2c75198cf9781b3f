"""``psr2video bench pipeline``: the whole decode -> upscale -> encode pipeline next to its two ceilings.

1. pipeline: ``psr2video IN OUT`` end to end (three threads, colour on the device, stream copy);
2. model alone: the same Upscaler on the same frames, already decoded and on the device (batch as given);
3. FFmpeg alone: PyAV decode -> ``scale`` filter (bicubic, same output size) -> same encoder and settings
   (or the ``ffmpeg`` binary when one is on PATH and ``--ffmpeg-binary`` is given).
All three run in the same process on the same machine; the machine and the command are printed.
"""

from __future__ import annotations

import subprocess
import time

import av
import torch


def load_frames(path: str, n: int, up, info) -> list[torch.Tensor]:
    from .color import yuv_to_rgb
    from .reader import frame_planes, main_video

    out = []
    with av.open(path) as c:
        s = main_video(c)
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
    from .reader import main_video

    t0 = time.perf_counter()
    frames = 0
    with av.open(path) as inp, av.open(out, "w") as o:
        s = main_video(inp)
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
