"""Helpers shared by the model commands (export, engine build): load the model asked for, parse lists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from ..names import BASELINES, MODELS, SCALES, device_name_problem


def model_options(untrained: str, model: str) -> Callable[[Any], Any]:
    """The options that name the model a command works on (``--variant``, ``--scale``, ``--weights``,
    ``--untrained``, ``--model``), alike in export and engine build; ``untrained``/``model``: their help."""
    options = [
        click.option("--variant", "-v", type=click.Choice(MODELS), default="realtime", show_default=True),
        click.option("--scale", "-s", type=click.Choice([str(s) for s in SCALES]), default="2", show_default=True),
        click.option("--weights", "-w", type=click.Path(dir_okay=False),
                     help="weights file or shipped preset (clean, video) (default: the video-trained weights)"),
        click.option("--untrained", is_flag=True, help=untrained),
        click.option("--model", "model_file", type=click.Path(dir_okay=False), help=model)]

    def wrap(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f
    return wrap


def load_for_command(variant: str, scale: int, weights: str | None, untrained: bool, seed: int = 0):
    """The model to export/build: shipped or given weights, or an untrained net when asked for."""
    import torch

    from ..models.registry import WeightsError, build_model, load_model

    if weights and (untrained or variant in BASELINES):  # (they were accepted and ignored)
        why = "--untrained takes none" if untrained else f"{variant} is a fixed resampler with no weights"
        raise UserError(f"--weights is for a trained model; {why}")
    try:
        if untrained or variant in BASELINES:
            torch.manual_seed(seed)
            return build_model(variant, scale)
        return load_model(variant, scale, weights=weights)
    except (WeightsError, ValueError) as e:
        # (not after "a training checkpoint, use best/final": random weights are no answer to that)
        plain = not isinstance(e, WeightsError) or "training checkpoint" in str(e)
        raise UserError(str(e) if plain else f"{e} (or pass --untrained for random weights)") from None


def parse_shape(text: str, flag: str = "--shape", example: str = "1280x720") -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (w, h), or a one-line UserError naming ``flag``."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"{flag} expects WIDTHxHEIGHT (e.g. {example}), got {text!r}") from None
    if w < 1 or h < 1:
        raise UserError(f"{flag} must be positive, got {text!r}")
    return w, h


def check_device_name(device: str, flag: str = "--device") -> None:
    """A one-line UserError for a device name no machine has (checked without torch: milliseconds); whether
    this machine has the device is asked later, when torch is loaded."""
    if (problem := device_name_problem(device)) is not None:
        raise UserError(f"{flag}: {problem}")


def split_list(values: tuple[str, ...]) -> list[str]:
    """Repeated and comma-separated option values as one list."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def interruptible() -> None:
    """Ctrl-C (and SIGTERM, as a video run takes it) from here on unwinds (``errors.Interrupted``: ``finally``
    blocks remove temporary files; the entry point says "interrupted", exit 130) instead of the start-up handler's
    immediate exit, or, for SIGTERM, dying with a temporary file left behind."""
    import signal
    import threading

    import click

    from ..errors import Interrupted

    def unwind(signum: int, frame: object) -> None:
        raise Interrupted

    if threading.current_thread() is not threading.main_thread():
        return
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)
           if signal.getsignal(sig) is not signal.SIG_IGN}
    for sig in old:
        signal.signal(sig, unwind)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # the command's end gives them back (a caller running commands in-process keeps its own)
        ctx.call_on_close(lambda: [signal.signal(sig, h) for sig, h in old.items()])


def check_writable(path: str | Path | None, flag: str) -> None:
    """A one-line UserError now when a result file can't be written, not a traceback after minutes of work.
    Creates missing folders (as the later write does) and removes them again when the file can't be written; an
    existing file is left as it is."""
    if path is None:
        return
    p = Path(path)
    created = [d for d in (p.parent, *p.parent.parents) if not d.exists()]
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        existed = p.exists()
        with p.open("a"):
            pass
        if not existed:
            p.unlink()
    except OSError as e:
        for d in created:  # deepest first: only the folders made here, and only while empty
            try:
                d.rmdir()
            except OSError:
                break
        raise UserError(f"can't write {flag} {path}: {e.strerror or e}") from None


def options_given(*names: str) -> list[str]:
    """The options among ``names`` (click parameter names) that the command line set, not left at their
    defaults, as ``--flag`` words: for refusing options that do nothing without another one."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return []
    return [f"--{n.replace('_', '-')}" for n in names if n in ctx.params
            and ctx.get_parameter_source(n) not in (None, click.core.ParameterSource.DEFAULT)]
