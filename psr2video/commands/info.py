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


def _plugin_state() -> str:
    """Whether ``core.psr2`` will autoload (the shim is built into VapourSynth's plugin folder)."""
    if importlib.util.find_spec("vapoursynth") is None:
        return "no VapourSynth (pip install 'psr2video[vapoursynth]')"
    try:
        from ..vs.install import installed_path

        path = installed_path()
    except Exception as e:  # noqa: BLE001 - e.g. a vapoursynth without get_plugin_dir
        return f"unknown ({e})"
    return f"installed ({path})" if path.is_file() else "not installed (psr2video vs install)"


@click.command()
def info() -> None:
    """Show versions, devices, backends and the shipped weights."""
    import torch

    from ..models import SPECS, VARIANTS, list_shipped

    click.echo(f"psr2video {_version('psr2video')} on Python {platform.python_version()} ({platform.machine()})")
    for mod in ("torch", "av", "onnxruntime", "tensorrt", "vapoursynth", "spandrel"):
        click.echo(f"  {mod:12s} {_version(mod)}")
    if importlib.util.find_spec("onnxruntime") is not None:
        try:
            from ..runtime.ort_backend import available_providers

            click.echo("  ORT providers: " + ", ".join(p.removesuffix("ExecutionProvider")
                                                      for p in available_providers()))
        except Exception as e:  # noqa: BLE001 - a broken optional install must not break 'info'
            click.echo(f"  ORT providers: unknown ({type(e).__name__})")
    click.echo(f"  VapourSynth plugin: {_plugin_state()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            click.echo(f"  cuda:{i} {p.name} ({p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor})")
    else:
        click.echo("  CUDA: not available (CPU fallback)")
    click.echo("variants: " + ", ".join(f"{v} (C={SPECS[v].width}, {SPECS[v].groups}x{SPECS[v].blocks})"
                                        for v in VARIANTS))
    click.echo("shipped weights: " + (", ".join(list_shipped()) or "none"))
