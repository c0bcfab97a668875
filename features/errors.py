"""Errors raised at the input boundary; each message names the file, row or field and what was expected."""


class HotspotError(Exception):
    """Base class for errors a user can act on (the CLI prints them as one line and exits non-zero)."""


class InputError(HotspotError):
    """An input file that cannot be read as configured (missing column, unreadable file, empty layer)."""


class GridError(HotspotError):
    """A study area whose grid would be unusable (too many cells, no cells)."""


class RejectedInput(InputError):
    """No row can be used (every row failed a check, or a whole source is placed wrongly). Carries what was read
    and quarantined, so that the caller still writes the quarantine file and a summary before it stops."""

    def __init__(self, message: str, quarantine, read_by_source: dict[str, int]):
        super().__init__(message)
        self.quarantine = quarantine  # pandas.DataFrame: source, source_row, reason, detail + raw columns
        self.read_by_source = dict(read_by_source)
