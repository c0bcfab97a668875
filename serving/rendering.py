"""Published forecasts rendered as GeoJSON or CSV bytes, once: publications never change, so neither do responses.

A publication's cells are read from the database once and kept as pre-serialised GeoJSON features and CSV lines
in rank order; a response is those pieces joined, cached per (publication, top, bbox, format).
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from hotspot.features.safe_csv import safe_cell
from hotspot.serving.db import CellRecord, Publication

GEOJSON = "application/geo+json"
CSV = "text/csv; charset=utf-8"
CSV_COLUMNS = ("rank", "cell_id", "lon", "lat", "risk", "percentile", "reasons")
REASON_SEPARATOR = " | "

BBox = tuple[float, float, float, float]


def provenance_headers(pub: Publication) -> dict[str, str]:
    """What made a forecast, as response headers (the CSV body has no room for it)."""
    meta = pub.metadata
    return {"X-Hotspot-Week": pub.week, "X-Hotspot-Publication-Version": str(pub.version),
            "X-Hotspot-Model": pub.model_name, "X-Hotspot-Model-Version": pub.model_version,
            "X-Hotspot-Data-Fingerprint": pub.data_fingerprint or "",
            "X-Hotspot-Code-Version": pub.code_version or "",
            "X-Hotspot-Created-At": str(meta.get("created_at", pub.created_at.isoformat()))}


def _bounds(geometry_json: str) -> tuple[float, float, float, float]:
    coords = np.asarray(json.loads(geometry_json)["coordinates"][0], dtype=np.float64)
    return coords[:, 0].min(), coords[:, 1].min(), coords[:, 0].max(), coords[:, 1].max()


class RenderedPublication:
    """One publication's cells, pre-serialised; `render(top, bbox, fmt)` joins the selected ones."""

    def __init__(self, pub: Publication, cells: list[CellRecord]):
        self.pub = pub
        self.headers = provenance_headers(pub)
        self.features = [f'{{"type":"Feature","geometry":{c.geometry_json},"properties":{c.properties_json}}}'
                         for c in cells]
        self.bounds = np.array([_bounds(c.geometry_json) for c in cells], dtype=np.float64).reshape(-1, 4)
        self.csv_lines = [self._csv_line(c) for c in cells]
        self._meta = dict(pub.metadata)
        self._meta.update({"publication_id": pub.id, "publication_version": pub.version})

    @staticmethod
    def _csv_line(cell: CellRecord) -> str:
        reasons = json.loads(cell.properties_json).get("reasons") or []
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [cell.rank, safe_cell(cell.cell_id), cell.lon, cell.lat, cell.risk, cell.percentile,
             safe_cell(REASON_SEPARATOR.join(reasons))])
        return buf.getvalue()

    def select(self, top: int | None, bbox: BBox | None) -> np.ndarray:
        """Positions (rank order) of the cells that intersect bbox, the first `top` of them."""
        if bbox is None:
            idx = np.arange(len(self.features))
        else:
            minlon, minlat, maxlon, maxlat = bbox
            b = self.bounds
            idx = np.flatnonzero((b[:, 2] >= minlon) & (b[:, 0] <= maxlon) & (b[:, 3] >= minlat) & (b[:, 1] <= maxlat))
        return idx[:top] if top is not None else idx

    def render(self, top: int | None, bbox: BBox | None, fmt: str) -> bytes:
        idx = self.select(top, bbox)
        if fmt == "csv":
            return (",".join(CSV_COLUMNS) + "\n" + "".join(self.csv_lines[i] for i in idx)).encode("utf-8")
        meta = {**self._meta, "returned_cells": int(len(idx)), "top": top, "bbox": list(bbox) if bbox else None}
        return ('{"type":"FeatureCollection","metadata":' + json.dumps(meta, separators=(",", ":"))
                + ',"features":[' + ",".join(self.features[i] for i in idx) + "]}").encode("utf-8")


class LRU:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


@dataclass
class Rendered:
    body: bytes
    media_type: str
    headers: dict[str, str]


class Renderer:
    """Responses for publications, cached; cells are loaded through `load_cells(publication_id)` on a miss."""

    def __init__(self, load_cells: Callable[[int], list[CellRecord]], cache_size: int = 512):
        self.load_cells = load_cells
        self._publications = LRU(8)
        self._responses = LRU(cache_size)

    def cached(self, pub: Publication, top: int | None, bbox: BBox | None, fmt: str) -> Rendered | None:
        return self._responses.get((pub.id, top, bbox, fmt))

    def render(self, pub: Publication, top: int | None, bbox: BBox | None, fmt: str) -> Rendered:
        """Render (blocking on a first read of the publication's cells); callers try `cached` first."""
        key = (pub.id, top, bbox, fmt)
        hit = self._responses.get(key)
        if hit is not None:
            return hit
        rendered_pub = self._publications.get(pub.id)
        if rendered_pub is None:
            rendered_pub = RenderedPublication(pub, self.load_cells(pub.id))
            self._publications.put(pub.id, rendered_pub)
        out = Rendered(rendered_pub.render(top, bbox, fmt), GEOJSON if fmt == "geojson" else CSV,
                       rendered_pub.headers)
        self._responses.put(key, out)
        return out
