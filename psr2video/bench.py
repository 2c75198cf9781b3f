"""``psr2video bench``: speed figures printed with the machine and the command, next to peers.

``bench model`` (runtime/bench_model.py) times a model alone against Real-ESRGAN Compact peers;
``bench pipeline`` (video/bench_pipeline.py) times the whole decode -> upscale -> encode pipeline
against the model alone and FFmpeg's own decode + scale + encode.
"""

from __future__ import annotations

import click

from .cli import LazyGroup

SUBCOMMANDS = {
    "model": "psr2video.runtime.bench_model:bench_model",
    "pipeline": "psr2video.video.bench_pipeline:bench_pipeline",
}


class _LazyBench(LazyGroup):
    table = SUBCOMMANDS


@click.group(cls=_LazyBench)
def bench() -> None:
    """Benchmarks (figures, not pass/fail): model speed and end-to-end pipeline speed."""
