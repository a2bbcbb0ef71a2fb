"""Errors meant for the user: the command line prints their message and exits 2, no traceback."""


class TriglotError(Exception):
    """Base of errors the user fixes (a config value, a missing input)."""


class ConfigError(TriglotError, ValueError):
    """A config the user has to fix; the message names the key and how to fix it."""


class InputError(TriglotError):
    """An input path or file the user has to fix; the message names it."""
