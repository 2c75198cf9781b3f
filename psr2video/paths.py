"""Every path rule in one place: the data folder, the cache, the shape profiles, the sample clip.

- data: ``$PSR2VIDEO_DATA``, else ``../shared/data`` beside the checkout (train/, val/, video/ inside);
- cache: ``$PSR2VIDEO_CACHE``, else the user cache folder (platformdirs: ``$XDG_CACHE_HOME/psr2video``,
  ``~/.cache/psr2video`` on Linux, ``~/Library/Caches/psr2video`` on macOS); engine artifacts live in
  its ``engines/`` folder;
- shape profiles: the built-in ``psr2video/runtime/profiles.toml``, extended or overridden by the file
  named in ``$PSR2VIDEO_PROFILES``.

Every function reads the environment when called (never at import), so a test or a caller can change it.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .errors import PsrError

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent  # the repository root in a source checkout (site-packages when installed)
BUILTIN_PROFILES = PACKAGE / "runtime" / "profiles.toml"
SAMPLE_CLIP = CHECKOUT / "samples" / "bbb_480x270.mkv"


def data_root() -> Path:
    """``$PSR2VIDEO_DATA``, else ``<checkout>/../shared/data`` (it may not exist: callers say so)."""
    env = os.environ.get("PSR2VIDEO_DATA")
    return Path(env).expanduser() if env else CHECKOUT.parent / "shared" / "data"


def data_path(*parts: str) -> Path:
    """A path under the data folder, e.g. ``data_path("val", "Set5")``."""
    return data_root().joinpath(*parts)


def cache_root() -> Path:
    """``$PSR2VIDEO_CACHE``, else the user cache folder for psr2video."""
    env = os.environ.get("PSR2VIDEO_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("psr2video", appauthor=False))


class CacheError(PsrError, OSError):
    """The cache folder can't be made or written: one line naming it and $PSR2VIDEO_CACHE."""


def cache_problem(folder: Path, e: OSError) -> str:
    """Why ``folder`` (in the cache) can't be used, naming the variable that moves the cache."""
    why = e.strerror or str(e)
    where = "$PSR2VIDEO_CACHE" if os.environ.get("PSR2VIDEO_CACHE") else "the user cache folder"
    return f"can't write the cache folder {folder} ({why}; from {where}): set $PSR2VIDEO_CACHE to a writable folder"


def engines_dir() -> Path:
    """Where the engine cache keeps its artifacts."""
    return cache_root() / "engines"


def weights_preset(weights: str | os.PathLike) -> str | None:
    """``weights`` as a shipped preset name (``--weights clean``), or None when it is a file path: a preset is
    a bare word (no folder, no suffix) that names no existing file. The CLI's early checks, the VapourSynth
    plugin and the registry all ask here, so a preset never reads as a missing file in one front end only."""
    w = Path(weights)
    return str(weights) if not w.suffix and len(w.parts) == 1 and not w.exists() else None


def profile_files() -> list[Path]:
    """The shape-profile files to read, in order: the built-in one, then ``$PSR2VIDEO_PROFILES`` if set."""
    env = os.environ.get("PSR2VIDEO_PROFILES")
    return [BUILTIN_PROFILES] + ([Path(env).expanduser()] if env else [])
