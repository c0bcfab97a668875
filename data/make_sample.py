"""Rebuild data/toronto_sample/incidents.parquet from the full file (provenance of the bundled sample).

Usage: python data/make_sample.py ../shared/data/toronto/incidents_mci_2014_2021.parquet
"""

import sys
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent / "toronto_sample" / "incidents.parquet"


def main(source: Path) -> None:
    """Cut the sample out of the full Toronto file and write it beside this script."""
    df = pd.read_parquet(source)
    in_box = df["Lat"].between(43.635, 43.700) & df["Long"].between(-79.44, -79.34)
    when = df["datetime_local"]
    # 2016-2019 downtown, plus the rows that occurred before 2014 so the sample keeps real dates to quarantine
    keep = in_box & (((when >= "2016-01-01") & (when < "2020-01-01")) | (when < "2014-01-01"))
    columns = ["row_id", "datetime_local", "occurrencehour", "premises_type", "MCI", "Neighbourhood", "hood_id",
               "Lat", "Long"]
    df.loc[keep, columns].reset_index(drop=True).to_parquet(OUT, compression="zstd", index=False)
    print(f"wrote {int(keep.sum()):,} rows to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/toronto/incidents_mci_2014_2021.parquet"))
