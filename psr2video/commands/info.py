"""``psr2video info``: what this installation can do (devices, backends, shipped weights, variants)."""

from __future__ import annotations

import importlib.util
import platform

import click


def _version(mod: str) -> str:
    if importlib.util.find_spec(mod) is None:
        return "not installed"
    try:
        return getattr(importlib.import_module(mod), "__version__", "installed")
    except Exception as e:  # a broken optional install must not break 'info'
        return f"broken ({type(e).__name__})"


@click.command()
def info() -> None:
    """Show versions, devices, backends and the shipped weights."""
    import torch

    from ..models import SPECS, VARIANTS, list_shipped

    click.echo(f"psr2video {_version('psr2video')} on Python {platform.python_version()} ({platform.machine()})")
    for mod in ("torch", "av", "onnxruntime", "tensorrt", "vapoursynth"):
        click.echo(f"  {mod:12s} {_version(mod)}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            click.echo(f"  cuda:{i} {p.name} ({p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor})")
    else:
        click.echo("  CUDA: not available (CPU fallback)")
    click.echo("variants: " + ", ".join(f"{v} (C={SPECS[v].width}, {SPECS[v].groups}x{SPECS[v].blocks})"
                                        for v in VARIANTS))
    click.echo("shipped weights: " + (", ".join(list_shipped()) or "none"))
