"""User-facing errors: a user mistake is one line and exit code 1; a bug in our code keeps its traceback."""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """A user mistake: printed as one line, exit code 1, no traceback."""
