"""Build and install the psr2 VapourSynth plugin shim; configure vspipe.

    psr2video vs install [--quiet] [--force] [--plugin-dir DIR] [--no-check] [--no-config]
    psr2video vs install --uninstall

1. Compiles plugins/vapoursynth/psr2_shim.c with the C compiler ($CC, else cc/gcc) against the headers
   shipped in the vapoursynth wheel (no libpython link) into
   <site-packages>/vapoursynth/plugins/psr2video/libpsr2video.so, where the core autoloads it.
   Rebuilds only when the source, headers or compiler command changed (or with --force).
2. Runs ``python -m vapoursynth config`` so that vspipe finds this Python.
3. Checks in a fresh process that ``core.psr2.Upscale`` autoloads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import PsrError
from ..fileio import atomic_path, write_atomic

LIB_NAME = "libpsr2video.so"
STAMP_NAME = ".psr2video-build"
SOURCE_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "plugins" / "vapoursynth" / "psr2_shim.c",  # source checkout
    Path(sys.prefix) / "share" / "psr2video" / "plugins" / "vapoursynth" / "psr2_shim.c",  # wheel data-files
)
SOURCE = next((p for p in SOURCE_CANDIDATES if p.is_file()), SOURCE_CANDIDATES[0])


class InstallError(PsrError, RuntimeError):
    """One-line reason the plugin could not be installed."""


def vs_paths() -> tuple[Path, Path]:
    """(include dir, autoload plugin dir) of the installed vapoursynth wheel."""
    try:
        import vapoursynth as vs
    except ImportError as e:
        raise InstallError(f"vapoursynth is not importable ({e}); pip install 'psr2video[vapoursynth]'") from None
    if not hasattr(vs, "get_include") or not hasattr(vs, "get_plugin_dir"):
        raise InstallError("this vapoursynth has no get_include/get_plugin_dir: install the PyPI wheel (R73+)")
    inc = Path(vs.get_include())
    if not (inc / "VapourSynth4.h").is_file():
        raise InstallError(f"VapourSynth4.h not found in {inc}")
    return inc, Path(vs.get_plugin_dir())


def find_compiler() -> str:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc.split()[0]):
            return cc
    raise InstallError("no C compiler found (install gcc, or set CC)")


def compile_command(cc: str, include: Path, out: Path, source: Path = SOURCE) -> list[str]:
    return [*cc.split(), "-O2", "-std=gnu11", "-Wall", "-shared", "-fPIC", f"-I{include}", str(source),
            "-o", str(out), "-ldl"]


def installed_path(plugin_dir: Path | None = None) -> Path:
    return (plugin_dir or vs_paths()[1] / "psr2video") / LIB_NAME


def build(out: Path, quiet: bool = False, force: bool = False) -> bool:
    """Compile the shim to ``out`` (atomically). Returns False when it was already up to date."""
    if not SOURCE.is_file():
        raise InstallError(f"shim source psr2_shim.c not found (looked in {', '.join(map(str, SOURCE_CANDIDATES))}); "
                           "install psr2video from a source checkout")
    include, _ = vs_paths()
    cc = find_compiler()
    cmd = compile_command(cc, include, out)
    digest = hashlib.sha256(SOURCE.read_bytes() + (include / "VapourSynth4.h").read_bytes()
                            + " ".join(cmd).encode()).hexdigest()
    stamp = out.parent / STAMP_NAME
    if not force and out.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        if not quiet:
            print(f"psr2 plugin up to date: {out}")
        return False
    with atomic_path(out) as tmp_out:  # a running process keeps its mapping of the old file
        r = subprocess.run(compile_command(cc, include, tmp_out), capture_output=True, text=True)
        if r.returncode != 0:
            raise InstallError(f"compiling {SOURCE.name} failed:\n{r.stderr.strip()}")
    write_atomic(stamp, digest + "\n")
    if not quiet:
        print(f"psr2 plugin built: {out}")
    return True


def configure_vspipe(quiet: bool = False) -> None:
    """``vapoursynth config``: records this Python for vspipe/VSScript (idempotent)."""
    r = subprocess.run([sys.executable, "-m", "vapoursynth", "config"], capture_output=True, text=True)
    text = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or "Failed" in text:
        raise InstallError(f"'vapoursynth config' failed: {text}")
    if not quiet:
        print(f"vspipe: {text}")


def check_autoload(plugin_dir: Path | None = None) -> str:
    """Verify in a fresh interpreter (no psr2video import) that core.psr2.Upscale exists."""
    env = dict(os.environ)
    if plugin_dir is not None:
        env["VAPOURSYNTH_EXTRA_PLUGIN_PATH"] = str(plugin_dir)
    code = "from vapoursynth import core; print(core.psr2.Upscale.signature)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/")
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise InstallError(f"the plugin was installed but core.psr2 did not autoload: {last}")
    return r.stdout.strip()


def install(quiet: bool = False, force: bool = False, plugin_dir: Path | None = None, check: bool = True,
            configure: bool = True) -> Path:
    out = installed_path(plugin_dir)
    build(out, quiet=quiet, force=force)
    if configure:
        configure_vspipe(quiet=quiet)
    if check:
        sig = check_autoload(plugin_dir)
        if not quiet:
            print(f"psr2.Upscale({sig})")
    if plugin_dir is not None and not quiet:
        print(f"note: set VAPOURSYNTH_EXTRA_PLUGIN_PATH={plugin_dir} so the core autoloads it")
    return out


def uninstall(plugin_dir: Path | None = None, quiet: bool = False) -> None:
    out = installed_path(plugin_dir)
    was = out.is_file()
    for p in (out, out.parent / STAMP_NAME):
        p.unlink(missing_ok=True)
    if out.parent.is_dir() and not any(out.parent.iterdir()):
        out.parent.rmdir()
    if not quiet:
        print(f"removed {out}" if was else f"not installed: {out} (nothing to remove)")


def extra_plugin_paths() -> list[Path]:
    """The plugin folders of ``VAPOURSYNTH_EXTRA_PLUGIN_PATH`` (where ``vs install --plugin-dir`` asks for it)."""
    return [Path(d) for d in os.environ.get("VAPOURSYNTH_EXTRA_PLUGIN_PATH", "").split(os.pathsep) if d]
