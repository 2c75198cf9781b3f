"""``psr2video`` command line: ``psr2video IN OUT`` upscales a video; subcommands do the rest.

Every command lives in the ``psr2video.commands`` package (one module each) and is imported only when
used, so ``--help`` stays fast and a missing optional dependency only affects its own command.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
import threading
from pathlib import Path

import click

# name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "upscale": "psr2video.commands.upscale:upscale",
    "eval": "psr2video.commands.eval:eval_cmd",
    "train": "psr2video.commands.train:train",
    "export": "psr2video.commands.export:export",
    "engine": "psr2video.commands.engine:engine",
    "bench": "psr2video.commands.bench:bench",
    "info": "psr2video.commands.info:info",
    "vs": "psr2video.commands.vs:vs",
}
DEFAULT = "upscale"


def load_command(target: str | None) -> click.Command | None:
    """Import ``module:attribute``; None when that module is absent (a missing dependency elsewhere raises)."""
    if target is None:
        return None
    mod, attr = target.split(":")
    try:
        return getattr(importlib.import_module(mod), attr)
    except ModuleNotFoundError as e:
        if e.name and (e.name == mod or mod.startswith(e.name + ".")):
            return None  # that part of psr2video is not there
        raise


class LazyGroup(click.Group):
    """A group whose subcommands (``table``: name -> "module:attribute") are imported on first use."""

    table: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n in self.table if self.get_command(ctx, n) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return load_command(self.table.get(name))


class PsrGroup(LazyGroup):
    """The top level, with ``upscale`` as the default when the first word isn't a subcommand."""

    table = COMMANDS

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in COMMANDS and args[0] not in ("--help", "-h", "--version"):
            args = [DEFAULT, *args]
        return super().parse_args(ctx, args)


@click.group(cls=PsrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="psr2video")
def cli() -> None:
    """Real-time video super-resolution with ParagonSR2.

    \b
    psr2video IN OUT [options]      upscale a video (same as 'psr2video upscale IN OUT')
    psr2video COMMAND --help        help for one command
    """


def quit_now(signum: int, frame: object) -> None:
    """Ctrl-C before a command takes it over (while torch imports, a model loads): one line, exit 130.
    ``os._exit``: a KeyboardInterrupt raised inside an import leaves half-initialised modules behind ("cannot
    load module more than once") and click would turn it into "Aborted!"."""
    import os

    os.write(2, b"\npsr2video: interrupted\n")
    os._exit(130)


def main(argv: list[str] | None = None) -> None:
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, quit_now)  # first thing: Ctrl-C at any moment is one line and 130
    from .errors import Interrupted

    try:
        cli.main(args=argv, prog_name="psr2video", standalone_mode=True)
    except (KeyboardInterrupt, Interrupted):
        click.echo("psr2video: interrupted", err=True)
        sys.exit(130)
    except OSError as e:  # a name the file system can't hold, met wherever a path is first looked at
        if e.errno != errno.ENAMETOOLONG:
            raise
        name = Path(str(e.filename or "")).name
        click.echo(f"Error: file name too long ({len(os.fsencode(name))} bytes; file systems hold 255): "
                   f"{name[:60]}{'...' if len(name) > 60 else ''}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
