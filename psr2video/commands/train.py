"""``psr2video train``: train a variant from a TOML config (see psr2video/train/configs/)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import UserError, command_errors
from .common import check_device_name


@click.command("train")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="TOML config, e.g. psr2video/train/configs/realtime_x2.toml.")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from OUT/last.pt.")
@click.option("--overwrite", is_flag=True,
              help="Start over in an OUT that holds a run: deletes its last.pt, log.jsonl, best/final.safetensors "
                   "and curves.png (without it, such an OUT is refused).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Total steps (overrides train.steps).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default runs/<config name>).")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (default: train.device, auto).")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: train.threads).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@command_errors()
def train(config: Path, resume: bool, overwrite: bool, steps: int | None, out: Path | None, device: str | None,
          threads: int | None, quiet: bool) -> None:
    """Train a model; writes OUT/log.jsonl, OUT/curves.png, OUT/last.pt, OUT/best.safetensors, OUT/final.safetensors.

    Everything the run reads (the config, the data folders and pictures, the init weights, the checkpoint) is
    checked before anything in OUT changes and before step 1."""
    if resume and overwrite:
        raise UserError("--resume continues the run in OUT and --overwrite deletes it: give one of them")
    if device is not None:
        check_device_name(device)  # a typo is one line before torch loads
    from ..train.trainer import Trainer, load_config

    over: dict = {}
    if device:
        over["train__device"] = device
    if threads:
        over["train__threads"] = threads
    argv = sys.argv[sys.argv.index("train") + 1:] if "train" in sys.argv else sys.argv[1:]
    try:
        cfg = load_config(config, **over)
        trainer = Trainer(cfg, out=out, resume=resume, overwrite=overwrite, quiet=quiet,
                          command=shlex.join(["psr2video", "train", *argv]))
        trainer.fit(steps)
    except KeyboardInterrupt:
        click.echo("interrupted; continue with --resume", err=True)
        sys.exit(130)
