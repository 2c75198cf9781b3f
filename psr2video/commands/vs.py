"""``psr2video vs install|bench``: the VapourSynth plugin's installer and benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import UserError
from ..names import BACKENDS, MODELS, PRECISIONS, SCALES


@click.group("vs")
def vs() -> None:
    """VapourSynth: install the psr2 plugin, benchmark vspipe through it."""


@vs.command("install")
@click.option("--quiet", is_flag=True, help="print only errors")
@click.option("--force", is_flag=True, help="rebuild even when up to date")
@click.option("--plugin-dir", type=click.Path(file_okay=False, path_type=Path),
              help="install here instead (then set VAPOURSYNTH_EXTRA_PLUGIN_PATH)")
@click.option("--no-check", is_flag=True, help="skip the autoload check")
@click.option("--no-config", is_flag=True, help="skip 'vapoursynth config'")
@click.option("--uninstall", is_flag=True, help="remove the installed plugin")
def install(quiet: bool, force: bool, plugin_dir: Path | None, no_check: bool, no_config: bool,
            uninstall: bool) -> None:
    """Build and install the psr2 VapourSynth plugin shim; configure vspipe.

    \b
    1. Compiles plugins/vapoursynth/psr2_shim.c against the vapoursynth wheel's headers into
       <site-packages>/vapoursynth/plugins/psr2video/ (rebuilt only when something changed).
    2. Runs 'python -m vapoursynth config' so that vspipe finds this Python.
    3. Checks in a fresh process that core.psr2.Upscale autoloads.
    """
    from ..vs import install as inst

    try:
        if uninstall:
            inst.uninstall(plugin_dir, quiet)
        else:
            inst.install(quiet=quiet, force=force, plugin_dir=plugin_dir, check=not no_check,
                         configure=not no_config)
    except inst.InstallError as e:
        raise UserError(str(e)) from None


@vs.command("bench")
@click.option("--clip", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="input video (default: samples/*.mkv)")
@click.option("--variant", type=click.Choice(MODELS), default="realtime", show_default=True)
@click.option("--scale", type=click.Choice([str(s) for s in SCALES]), default="2", show_default=True)
@click.option("--weights", help="weights file or shipped preset (clean) (default: shipped, else untrained weights "
                                "of the variant)")
@click.option("--frames", type=click.IntRange(min=1), help="frames to time (default 16 on CPU, 200 on CUDA)")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default=None)
@click.option("--repeat", type=click.IntRange(min=1), default=2, show_default=True,
              help="best of N runs for each side")
def bench(clip: Path | None, variant: str, scale: str, weights: str | None, frames: int | None, backend: str,
          device: str, precision: str | None, repeat: int) -> None:
    """vspipe through core.psr2.Upscale vs the Upscaler alone, on the same frames."""
    from ..errors import user_errors
    from ..vs.bench import run

    argv = sys.argv[sys.argv.index("bench") + 1:] if "bench" in sys.argv else []
    with user_errors():  # a missing/damaged clip, a device or weights mistake: one line
        run(clip, variant, int(scale), weights, frames, backend, device, precision, repeat,
            command=" ".join(["psr2video vs bench", *argv]), echo=click.echo)
