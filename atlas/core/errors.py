"""Errors that the CLI turns into a clear message and a non-zero exit (no traceback)."""


class AtlasError(Exception):
    """Base class: the message is meant for the user and says what to fix."""


class InputError(AtlasError):
    """Bad input data: the message names the file, row and field, one line per problem."""


class ConfigError(AtlasError, ValueError):
    """A configuration that cannot be used; the message says which key and how to fix it."""


class GateFailed(AtlasError):
    """The evaluation gate did not pass; the message names each failing metric and its threshold."""
