"""The exception raised for problems in the user's data."""

__all__ = ["CacheFullError", "DataError"]


class DataError(ValueError):
    """A problem with the user's data, worded for the person who owns it.

    The message names the offending file or folder, and the line number when the problem is in a
    text file, so that it can be shown as it is without a traceback.
    """


class CacheFullError(DataError):
    """The disk under a cache has no room for a new entry; nothing partial is left behind."""
