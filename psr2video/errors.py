"""User-facing errors: a user mistake is one line and exit code 1; a bug in our code keeps its traceback.

- ``UserError``: raised by a command for a mistake it found itself (click prints ``Error: ...``, exit 1);
- ``PsrError``: base of the library's errors that a user can fix (a bad input file, missing weights, a
  wrong setting); its message is written for the user;
- ``user_line(exc)``: the one function that decides whether an exception is the user's to fix and, if so,
  the line to show; ``user_errors()`` applies it around a command's work.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

import click


class UserError(click.ClickException):
    """A user mistake: printed as one line, exit code 1, no traceback."""


class Interrupted(BaseException):
    """Ctrl-C in a command that cleans up after itself; not a KeyboardInterrupt, which click would turn into
    "Aborted!" and exit 1: the entry point says "interrupted" and exits 130."""


class PsrError(Exception):
    """A problem the user can fix (bad file, missing weights, wrong setting); the message says how."""


class SettingError(PsrError, ValueError):
    """A setting that can't work (a device, backend, precision, tile, variant or scale the choice doesn't fit);
    a ValueError too, as Python callers of the Upscaler have caught."""


def first_line(exc: BaseException, with_type: bool = False) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line reports."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {line}" if with_type and text else line


def user_line(exc: BaseException, user_types: tuple[type[BaseException], ...] = ()) -> str | None:
    """The line a user sees for ``exc``, or None when it is not a user mistake (a bug: keep the traceback).

    User mistakes are: ``UserError``/click errors, ``PsrError`` and the ``user_types`` a caller names,
    operating-system errors about a named file (not found, permission denied, disk full), FFmpeg's own
    errors about a file (``av.error.*``), and running out of GPU memory.
    """
    if isinstance(exc, click.ClickException):
        return exc.format_message()
    if isinstance(exc, (PsrError, *user_types)):
        return str(exc)
    mod, name = type(exc).__module__, type(exc).__name__
    if mod == "av" or mod.startswith("av."):
        return f"FFmpeg: {exc}"
    if name == "OutOfMemoryError" and mod.startswith("torch"):
        return f"out of GPU memory: {str(exc).split('. ')[0]} (try --tile, a smaller --batch or fp16)"
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "disk full"
    return None


@contextlib.contextmanager
def user_errors(*user_types: type[BaseException]) -> Iterator[None]:
    """Turn user mistakes raised inside into one-line ``UserError``s; anything else propagates unchanged."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        line = user_line(e, user_types)
        if line is None:
            raise
        raise UserError(line) from None


def command_errors(*user_types: type[BaseException]):
    """Decorator: a command's body under ``user_errors`` (the library's user-facing errors become one line)."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with user_errors(*user_types):
                return fn(*args, **kwargs)

        return inner

    return wrap

