"""What is kept about model files beside the engine cache (export verdicts, ONNX probe results): one folder,
``CACHE/foreign``, whose files are found again at the next load when removed (``engine clear``)."""

from __future__ import annotations

from pathlib import Path


def kept_folder() -> Path:
    from ..paths import cache_root

    return cache_root() / "foreign"


def kept_path(key: str, suffix: str) -> Path:
    """The file a finding about a model file is kept in: a key's first 32 hex digits and the finding's kind."""
    return kept_folder() / f"{key[:32]}{suffix}"


def clear_kept(suffixes: tuple[str, ...]) -> int:
    """Remove the kept files of these kinds (``engine clear``); how many were removed."""
    folder = kept_folder()
    n = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.suffix in suffixes and p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n
