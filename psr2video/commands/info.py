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
    """Whether ``core.psr2`` will autoload (the shim is built into VapourSynth's plugin folder, or into a folder
    ``VAPOURSYNTH_EXTRA_PLUGIN_PATH`` names: ``vs install --plugin-dir``)."""
    if importlib.util.find_spec("vapoursynth") is None:
        return "no VapourSynth (pip install 'psr2video[vapoursynth]')"
    from ..vs.install import LIB_NAME, extra_plugin_paths, installed_path

    try:
        path = installed_path()
    except Exception as e:  # noqa: BLE001 - e.g. a vapoursynth without get_plugin_dir
        return f"unknown ({e})"
    if path.is_file():
        return f"installed ({path})"
    # vs install --plugin-dir DIR, with VAPOURSYNTH_EXTRA_PLUGIN_PATH=DIR set as it says
    extra = next((d / LIB_NAME for d in extra_plugin_paths() if (d / LIB_NAME).is_file()), None)
    if extra is not None:
        return f"installed ({extra}, through VAPOURSYNTH_EXTRA_PLUGIN_PATH)"
    return "not installed (psr2video vs install)"


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
