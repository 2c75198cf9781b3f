"""Scale-out benchmark: the same upscale single-process, then on Ray with 1 and N workers; speed-up of N over 1.

Workers are started (and the model loaded) before the timed runs, so the figures are steady-state segment
throughput plus the real split and join costs; Ray's own start-up is printed apart.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .driver import Job, run
from .tasks import Settings


def make_clip(path: Path, seconds: float = 8.0, size: tuple[int, int] = (320, 180), fps: int = 25,
              gop: int = 25) -> Path:
    """A moving test picture (libx264, a keyframe every ``gop`` frames) when no clip with keyframes is given."""
    import av
    import numpy as np

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"preset": "veryfast", "crf": "18", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i in range(int(seconds * fps)):
            img = 127 + 100 * np.sin((xx + 3 * i) / 13.0) * np.cos((yy - 2 * i) / 9.0)
            rgb = np.stack([img, np.roll(img, i, 1), 255 - img], -1).clip(0, 255).astype(np.uint8)
            for pkt in v.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(pkt)
        for pkt in v.encode(None):
            out.mux(pkt)
    return path


def _warm(ray: Any, n: int) -> float:
    """Start ``n`` workers and import what a segment task imports (torch, PyAV, the pipeline)."""

    def load() -> int:
        import psr2video.scaleout.tasks  # noqa: F401
        import psr2video.video.pipeline  # noqa: F401

        time.sleep(0.5)  # hold the slot so the next task lands on another worker
        return os.getpid()

    t = time.perf_counter()
    ray.get([ray.remote(num_cpus=1)(load).remote() for _ in range(n)])
    return time.perf_counter() - t


def bench_scaleout(clip: str | None, variant: str, scale: int, codec: str, workers: list[int], segment_seconds: float,
                   device: str = "cpu", backend: str = "torch", preset: str | None = None,
                   out_dir: str | None = None) -> dict[str, Any]:
    """Time the runs; returns the figures (also printed)."""
    import ray
    import torch

    from ..runtime.upscaler import Upscaler
    from ..video import pipeline

    tmp = tempfile.TemporaryDirectory(prefix="psr2video-bench-") if out_dir is None else None
    outd = Path(out_dir or tmp.name)  # type: ignore[union-attr]
    if clip is None:
        clip = str(make_clip(outd / "clip.mkv"))
    res: dict[str, Any] = {"clip": clip, "variant": variant, "scale": scale, "codec": codec, "preset": preset,
                           "runs": []}
    try:
        up = Upscaler(variant=variant, scale=scale, backend=backend, device=device)
        t = time.perf_counter()
        r = pipeline.run(pipeline.Options(input=clip, output=str(outd / "single.mkv"), codec=codec,
                                                  preset=preset), up,
                         warn=lambda m: None)
        single = time.perf_counter() - t
        res["frames"] = r.frames
        res["runs"].append({"mode": "single process", "threads": torch.get_num_threads(), "seconds": single,
                            "fps": r.frames / single})
        print(f"single process ({torch.get_num_threads()} threads): {single:.1f} s, {r.frames / single:.2f} fps",
              flush=True)
        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count() or 1, num_gpus=torch.cuda.device_count() if device != "cpu" else 0,
                 include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        res["ray_start_s"] = time.perf_counter() - t
        res["worker_start_s"] = _warm(ray, max(workers))
        print(f"Ray start {res['ray_start_s']:.1f} s, {max(workers)} workers ready in {res['worker_start_s']:.1f} s",
              flush=True)
        settings = Settings(variant, scale, None, backend, None, 0, 1, codec, None, preset, None)
        for n in workers:
            job = Job(clip, str(outd / f"ray{n}.mkv"), settings, device=device, workers=n,
                      segment_seconds=segment_seconds)
            s = run(job, warn=lambda m: None, quiet=True)
            entry = {"mode": f"ray, {n} worker(s)", "workers": n, "threads": s.placement.threads,
                     "segments": s.segments, "seconds": s.seconds, "fps": s.frames / s.seconds,
                     **{f"{k}_s": v for k, v in s.timings.items()}}
            res["runs"].append(entry)
            print(f"ray {n} worker(s) x {s.placement.threads} thread(s): {s.seconds:.1f} s "
                  f"({s.frames / s.seconds:.2f} fps; {s.segments} segments; plan {s.timings['plan']:.2f} s, "
                  f"upscale {s.timings['upscale']:.1f} s, join {s.timings['join']:.2f} s)", flush=True)
        ray.shutdown()
        by = {e.get("workers"): e for e in res["runs"] if "workers" in e}
        if 1 in by:
            for n, e in by.items():
                if n != 1:
                    res[f"speedup_{n}_over_1"] = by[1]["seconds"] / e["seconds"]
                    print(f"speed-up of {n} workers over 1: {res[f'speedup_{n}_over_1']:.2f}x", flush=True)
        return res
    finally:
        if tmp is not None:
            tmp.cleanup()


def save(res: dict[str, Any], path: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(res, indent=1))
