"""User-facing errors: one line that says what is wrong, where, and how to fix it.

The command-line entry points catch :class:`MedsegError` and print its message without a
traceback; anything else is a bug and keeps its traceback.
"""


class MedsegError(Exception):
    """Base class for errors caused by the user's input (config, data, paths)."""


class ConfigError(MedsegError):
    """A config key is unknown, has the wrong type, or an invalid value."""


class DataError(MedsegError):
    """An input file or folder is missing, unreadable or contradicts itself."""


class TrainingError(MedsegError):
    """Training cannot go on (for example the loss became NaN)."""
