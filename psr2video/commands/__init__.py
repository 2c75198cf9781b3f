"""Every ``psr2video`` command, one module each; ``psr2video/cli.py`` imports them lazily by name.

A command parses options, turns user mistakes into ``errors.UserError`` and calls the library
(``runtime``, ``video``, ``train``, ``vs``, ``evaluate``); the work itself lives in the library so that
Python callers and tests get it without click.
"""
