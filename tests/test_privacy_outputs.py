"""Privacy of every output: trends (full and public), exports (GeoPackage, GeoJSON, CSV) and the intervention
evaluation, made through the real CLI on a synthetic area, never hold an incident's coordinates (at 5 or 6
decimals) or a personal field, and public outputs show no count below k."""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from tests.conftest import ORIGIN_LAT, ORIGIN_LON, run_cli, synthetic_incidents, write_config

K = 5
NUMBER = re.compile(r"-?\d+\.\d+")


class Incidents:
    """Looks for incident coordinates in text: two neighbouring numbers that print an incident's lon and lat."""

    def __init__(self, frame: pd.DataFrame):
        self.lon: dict[str, set[int]] = {}
        self.lat: dict[str, set[int]] = {}
        for i, (lon, lat) in enumerate(zip(frame["lon"], frame["lat"])):
            for value, table in ((lon, self.lon), (lat, self.lat)):
                # rounded (printed at 5 or 6 decimals) and truncated (the start of a longer print)
                forms = {f"{value:.{d}f}" for d in (5, 6)} | set(self._prefixes(repr(float(value))))
                for form in forms:
                    table.setdefault(form, set()).add(i)

    @staticmethod
    def _prefixes(token: str) -> list[str]:
        """The token at 5 and 6 decimals as printed (a longer number printing the same point starts with them)."""
        dot = token.index(".")
        return [token[:dot + 1 + d] for d in (5, 6) if len(token) >= dot + 1 + d]

    def _ids(self, token: str, table: dict[str, set[int]]) -> set[int]:
        return set().union(*(table.get(p, set()) for p in self._prefixes(token)))

    def leaks(self, text: str) -> set[int]:
        tokens = NUMBER.findall(text)
        found: set[int] = set()
        for a, b in zip(tokens, tokens[1:]):
            found |= self._ids(a, self.lon) & self._ids(b, self.lat)
            found |= self._ids(a, self.lat) & self._ids(b, self.lon)
        return found


def file_text(path: Path) -> str:
    """What a user could read out of the file: text as is, every GeoPackage layer as GeoJSON or CSV."""
    if path.suffix == ".gpkg":
        parts = []
        for layer, geometry_type in pyogrio.list_layers(path):
            frame = gpd.read_file(path, layer=layer) if geometry_type else pyogrio.read_dataframe(path, layer=layer,
                                                                                                  read_geometry=False)
            parts.append(frame.to_json() if geometry_type else pd.DataFrame(frame).to_csv(index=False))
        return "\n".join(parts)
    return path.read_text(errors="replace")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Run trends (full and public), train + export in three formats and evaluate-intervention; return the files,
    the printed outputs and the incidents."""
    root = tmp_path_factory.mktemp("privacy")
    rng = np.random.default_rng(11)
    incidents = synthetic_incidents(n=3000, weeks=110, seed=11)
    # a record id the config lets ingest read (tests/conftest.py allow_columns): it must still never come out
    incidents["case_ref"] = [f"CASE-{rng.integers(10**8, 10**9)}" for _ in range(len(incidents))]
    config = write_config(root / "area", incidents, extra=f"[privacy]\nmin_count_k = {K}\npublic_cell_size_m = 1000")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    out = root / "out"
    hotspot_box = shapely.box(ORIGIN_LON + 0.024, ORIGIN_LAT + 0.018, ORIGIN_LON + 0.036, ORIGIN_LAT + 0.027)
    cells_file = root / "patrol_zone.geojson"
    gpd.GeoDataFrame({"zone": ["A"]}, geometry=[hotspot_box], crs="EPSG:4326").to_file(cells_file)
    commands = [
        ("trends", "--config", str(config), "--out", str(out / "trends_full"), "--format", "csv,gpkg,geojson"),
        ("trends", "--config", str(config), "--out", str(out / "trends_public"), "--public", "--format",
         "csv,gpkg,geojson"),
        ("train", "--config", str(config)),
        ("export", "--config", str(config), "--week", "2022-02-14", "--format", "gpkg", "--out",
         str(out / "export" / "forecast.gpkg")),
        ("export", "--config", str(config), "--week", "2022-02-14", "--format", "geojson", "--out",
         str(out / "export" / "forecast.geojson")),
        ("export", "--config", str(config), "--week", "2022-02-14", "--format", "csv", "--out",
         str(out / "export" / "forecast.csv")),
        ("evaluate-intervention", "--config", str(config), "--cells", str(cells_file), "--start", "2021-09-06",
         "--out", str(out / "intervention")),
    ]
    printed = []
    for args in commands:
        proc = run_cli(*args, env=env, cwd=root)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        printed.append(proc.stdout + proc.stderr)
    files = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".png"]
    return files, printed, incidents, out


def test_the_checker_finds_a_leak(outputs, tmp_path):
    _, _, incidents, _ = outputs
    leaky = tmp_path / "leak.csv"
    incidents.head(20).to_csv(leaky, index=False)
    assert len(Incidents(incidents).leaks(leaky.read_text())) == 20
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(incidents["lon"].head(5), incidents["lat"].head(5)),
                              crs="EPSG:4326")
    points.to_file(tmp_path / "leak.gpkg", layer="points")
    assert len(Incidents(incidents).leaks(file_text(tmp_path / "leak.gpkg"))) == 5


def test_no_incident_coordinate_or_personal_field_in_any_output(outputs):
    files, printed, incidents, _ = outputs
    kinds = {p.suffix for p in files}
    assert {".json", ".csv", ".geojson", ".gpkg"} <= kinds
    assert any(p.name == "intervention.json" for p in files) and any(p.name == "forecast.gpkg" for p in files)
    checker = Incidents(incidents)
    refs = set(incidents["case_ref"].head(300))
    for text, where in [*((file_text(p), str(p)) for p in files), *((t, "CLI output") for t in printed)]:
        leaked = checker.leaks(text)
        assert not leaked, f"{where}: incident coordinates of rows {sorted(leaked)[:5]}"
        assert "case_ref" not in text and "CASE-" not in text, where
        assert not any(r in text for r in refs), where


def _count_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if (c == "count" or c.startswith(("count_", "last_", "previous_", "same_")))
            and "rate" not in c]


def test_public_outputs_suppress_every_small_count(outputs):
    files, _, _, out = outputs
    public = [p for p in files if "trends_public" in p.parts]
    assert public
    checked = 0
    for path in public:
        if path.suffix == ".csv":
            frames = [pd.read_csv(path, dtype=str)]
        elif path.suffix == ".gpkg":
            frames = [pd.DataFrame(pyogrio.read_dataframe(path, layer=layer, read_geometry=False)).astype(str)
                      for layer, _ in pyogrio.list_layers(path)]
        elif path.suffix in (".geojson", ".json"):
            frames = [gpd.read_file(path).drop(columns="geometry").astype(str)] if path.suffix == ".geojson" else []
        for frame in frames:
            for col in _count_columns(frame):
                for v in frame[col].dropna():
                    if v in ("None", "nan", "<NA>"):
                        continue
                    assert v == f"< {K}" or float(v) >= K, (path.name, col, v)
                    checked += 1
    assert checked > 100
    public_cells = gpd.read_file(out / "trends_public" / "trends.gpkg", layer="cells")
    assert "cell_id" not in public_cells.columns and (public_cells["cell_size_m"] >= 1000).all()
    full_cells = gpd.read_file(out / "trends_full" / "trends.gpkg", layer="cells")
    assert len(public_cells) < len(full_cells)
