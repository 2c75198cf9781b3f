"""``psr2video bench``: speed figures printed with the machine and the command, next to peers.

``bench model`` (runtime/bench_model.py) times a model alone against Real-ESRGAN Compact peers;
``bench pipeline`` (video/bench_pipeline.py) times the whole decode -> upscale -> encode pipeline
against the model alone and FFmpeg's own decode + scale + encode.
"""

from __future__ import annotations

import importlib

import click

SUBCOMMANDS = {
    "model": "psr2video.runtime.bench_model:bench_model",
    "pipeline": "psr2video.video.bench_pipeline:bench_pipeline",
}


class _LazyBench(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n in SUBCOMMANDS if self.get_command(ctx, n) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        mod, attr = target.split(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except ModuleNotFoundError as e:
            if e.name and (e.name == mod or mod.startswith(e.name + ".")):
                return None
            raise


@click.group(cls=_LazyBench)
def bench() -> None:
    """Benchmarks (figures, not pass/fail): model speed and end-to-end pipeline speed."""
