"""Error types. Every message says what was wrong, where, and how to fix it, in one line.

All subclass ValueError so callers that catch ValueError keep working; the CLI turns any
GraftkitError into a one-line message and exit code 2.
"""


class GraftkitError(ValueError):
    """Base class for every error graftkit raises on bad input or bad configuration."""


class DataError(GraftkitError):
    """The data (a file, a row, a column, a label) is unusable as given."""


class BackboneError(GraftkitError):
    """A backbone cannot be found, reached or loaded."""


class ConfigError(GraftkitError):
    """A strategy, flag or parameter value is invalid."""


class ArtifactError(GraftkitError):
    """A model directory cannot be written or read."""
