"""``psr2video train``: train a variant from a TOML config (see psr2video/train/configs/)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import UserError


@click.command("train")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="TOML config, e.g. psr2video/train/configs/realtime_x2.toml.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt if it exists.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Total steps (overrides train.steps).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default runs/<config name>).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: train.device, auto).")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: train.threads).")
@click.option("--quiet", is_flag=True, help="No progress output.")
def train(config: Path, resume: bool, steps: int | None, out: Path | None, device: str | None,
          threads: int | None, quiet: bool) -> None:
    """Train a model; writes OUT/log.jsonl, OUT/curves.png, OUT/last.pt, OUT/best.safetensors, OUT/final.safetensors."""
    from ..train.trainer import ConfigError, Trainer, load_config

    over = {}
    if device:
        over["train__device"] = device
    if threads:
        over["train__threads"] = threads
    argv = sys.argv[sys.argv.index("train") + 1:] if "train" in sys.argv else sys.argv[1:]
    try:
        cfg = load_config(config, **over)
        trainer = Trainer(cfg, out=out, resume=resume, quiet=quiet, command=shlex.join(["psr2video", "train", *argv]))
        trainer.fit(steps)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        click.echo("interrupted; continue with --resume", err=True)
        sys.exit(130)
