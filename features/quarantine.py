"""The quarantine table: every row set aside, with its source, its row number in that source, the reason and a
detail, followed by the columns of the row that the quarantine file may show (personal fields never among them).

One constructor for the record-level checks (features.sources), the cross-source duplicates (features.candidates)
and the spatial checks (features.ingest), so that the quarantine file has one shape whichever check set a row aside.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# the leading columns of every quarantine table, in this order; the shown columns of the row follow
QUARANTINE_COLUMNS = ["source", "source_row", "reason", "detail"]


def quarantine_frame(source: str, source_row: np.ndarray, reason: np.ndarray | str, detail: np.ndarray | str,
                     shown: pd.DataFrame) -> pd.DataFrame:
    """Rows of one source set aside: QUARANTINE_COLUMNS, then `shown` (one row each, in the same order)."""
    q = shown.reset_index(drop=True)
    # inserted one by one at the front, as before this module existed: the dtypes pandas infers for each column
    # (a scalar reason, an object array of details) are what the quarantine files were written with
    for name, values in zip(QUARANTINE_COLUMNS[::-1], (detail, reason, source_row, source)):
        q.insert(0, name, values)
    return q


def no_quarantine() -> pd.DataFrame:
    """An empty quarantine table (for rows that passed the record-level checks when they were stored)."""
    return pd.DataFrame(columns=QUARANTINE_COLUMNS)


def combine_quarantine(parts: Sequence[pd.DataFrame], sources: Sequence[str]) -> pd.DataFrame:
    """The quarantine tables of several checks as one, in source order (as configured), then row order."""
    order = {name: k for k, name in enumerate(sources)}
    quarantine = pd.concat(list(parts), ignore_index=True)
    return quarantine.sort_values(["source", "source_row"], key=lambda c: c.map(order) if c.name == "source" else c,
                                  kind="stable").reset_index(drop=True)
