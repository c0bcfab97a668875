"""Errors raised at the input boundary; each message names the file, row or field and what was expected."""


class HotspotError(Exception):
    """Base class for errors a user can act on (the CLI prints them as one line and exits non-zero)."""


class InputError(HotspotError):
    """An input file that cannot be read as configured (missing column, unreadable file, empty layer)."""


class GridError(HotspotError):
    """A study area whose grid would be unusable (too many cells, no cells)."""
