"""Errors meant for the user: the command line prints their message and exits 2, no traceback."""


class TriglotError(Exception):
    """Base of errors the user fixes (a config value, a missing input)."""


class ConfigError(TriglotError, ValueError):
    """A config the user has to fix; the message names the key and how to fix it."""


class InputError(TriglotError):
    """An input path or file the user has to fix; the message names it."""


def number_hint(value: object) -> str:
    """For a number written as text (YAML 1.1 reads 5e8 as a string): "; ..." saying how to write it, else ""."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    return f"; YAML reads {value} as text: write {int(number) if number.is_integer() else number}"
