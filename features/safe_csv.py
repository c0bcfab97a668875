"""CSV that a spreadsheet cannot execute: every CSV the project writes (quarantine, trends, exports, tuning
trials, the API's CSV responses) goes through here.

A text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula by Excel, LibreOffice
and Google Sheets (CSV injection, OWASP). Such cells get a leading `'`, which spreadsheets show as a plain text
marker. Numeric columns are left as numbers: only text (object, string, category) cells are touched, so `-3.5` in
a float column stays `-3.5`. A text cell that is a plain negative number (`-79.38`, `-1e-3`: raw coordinates
as read from a CSV) stays too: a spreadsheet reads it as that number and runs nothing. Anything else starting
with one of those characters (`+1`, `-1+1`, `-HYPERLINK(...)`) is marked.

Written by hand: pandas and the csv module have no such option, and the rule is one line."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from hotspot.features.locking import replace_atomically

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def safe_cell(value: object) -> object:
    """`value` with a leading `'` if it is text a spreadsheet would run as a formula; anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _is_text(column: pd.Series) -> bool:
    return (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)
            or isinstance(column.dtype, pd.CategoricalDtype))


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells (and text column names) cannot run as spreadsheet formulas."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if not _is_text(column):
            continue
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(object)
        text = column.astype("string")
        risky = (text.str.startswith(FORMULA_STARTS, na=False)
                 & ~text.str.fullmatch(PLAIN_NUMBER.pattern, na=False)).to_numpy(dtype=bool)
        if risky.any():
            column = column.astype(object).where(~risky, "'" + text.astype(object))
        out[name] = column
    out.columns = [safe_cell(c) for c in out.columns]
    if out.index.dtype == object:
        out.index = out.index.map(safe_cell)
    return out


def write_csv(frame: pd.DataFrame, path: Path, index: bool = False) -> Path:
    """Write `frame` as spreadsheet-safe CSV, atomically (a reader sees the old file or the new one)."""
    safe = neutralise(frame)
    # every text cell quoted: a carriage return inside a cell (which the csv module leaves bare) cannot split a row
    return replace_atomically(Path(path), lambda tmp: safe.to_csv(tmp, index=index, quoting=csv.QUOTE_NONNUMERIC))
