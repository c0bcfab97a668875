"""Fast paths for the hottest requests: the same client asking again for the latest forecast, and any reader of
a report.

The handler for GET /v1/forecasts/latest remembers each response it sends, keyed by the raw query string and Accept
header (the query names the product, if any, so each product's answers are kept apart). When the same request comes
again, with a key the service verified less than HOTSPOT_CACHE_TTL_S ago and while that product's latest-publication
pointer is that fresh too, this middleware replays the remembered bytes without going
through routing and dependency resolution (most of a request's cost in FastAPI). Anything else (an unknown or
stale key, a role without forecasts:read, a new publication, a query never answered before) goes the normal way, so
the answers are the handler's own, byte for byte.

The reports are rendered (and gzipped) bytes already (serving/artifacts.py); for a recently verified key whose role
may read them and a plain query (none, ?format=json or ?format=html: the default product's), ReportFastPath
answers with the report handler's own `report_response`; a missing report, an unverified key or any other query
goes the normal way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from hotspot.serving.artifacts import ReportsUnavailable, report_response
from hotspot.serving.auth import KEY_SCOPE

PATH = "/v1/forecasts/latest"
MAX_ENTRIES = 512
REPORT_PATHS = {"/v1/reports/accuracy": "accuracy", "/v1/reports/fairness": "fairness"}
REPORT_QUERIES = {b"": None, b"format=json": False, b"format=html": True}  # query -> wants HTML (None: by Accept)


@dataclass(frozen=True)
class Remembered:
    product: str  # the product the query asked for (its latest pointer says whether the answer is still current)
    publication_id: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ResponseMemo:
    """Responses of the latest-forecast handler, by (query string, Accept)."""

    def __init__(self):
        self._entries: dict[tuple[bytes, bytes], Remembered] = {}
        self._lock = threading.Lock()

    def remember(self, query: bytes, accept: bytes, product: str, publication_id: int, response) -> None:
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[(query, accept)] = Remembered(product, publication_id, list(response.raw_headers),
                                                        response.body)

    def get(self, query: bytes, accept: bytes) -> Remembered | None:
        return self._entries.get((query, accept))


def _header(scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return b""


def _verified(state, scope, permission: str):
    """The key record of a request whose key was verified less than cache_ttl_s ago and may do `permission`."""
    key = _header(scope, b"x-api-key")
    if not key:
        auth = _header(scope, b"authorization")
        key = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
    digest = state.keys.digest(key.decode("latin-1")) if key else None
    record = state.keys.cached(digest) if digest else None
    return record if record is not None and record.can(permission) else None


class LatestForecastFastPath:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            remembered = self._lookup(scope)
            if remembered is not None:
                await send({"type": "http.response.start", "status": 200, "headers": remembered.headers})
                await send({"type": "http.response.body", "body": remembered.body})
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _lookup(scope) -> Remembered | None:
        state = getattr(scope["app"].state, "hotspot", None)
        if state is None:
            return None
        record = _verified(state, scope, "forecasts:read")
        if record is None:
            return None
        remembered = state.memo.get(scope["query_string"], _header(scope, b"accept"))
        if remembered is None:
            return None
        fresh, pub = state.latest_cached(remembered.product)
        if not fresh or pub is None or remembered.publication_id != pub.id:
            return None
        scope[KEY_SCOPE] = record  # for the access log
        return remembered


class ReportFastPath:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in REPORT_PATHS:
            response = self._lookup(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _lookup(scope):
        state = getattr(scope["app"].state, "hotspot", None)
        query = scope["query_string"]
        if state is None or state.reports is None or state.reports.ttl_s <= 0 or query not in REPORT_QUERIES:
            return None
        record = _verified(state, scope, "reports:read")
        if record is None:
            return None
        try:
            report = state.reports.latest(REPORT_PATHS[scope["path"]])
        except ReportsUnavailable:  # the handler answers (503)
            return None
        if report is None:
            return None
        wants_html = REPORT_QUERIES[query]
        if wants_html is None:
            wants_html = b"text/html" in _header(scope, b"accept")
        response = report_response(report, wants_html, _header(scope, b"accept-encoding").decode("latin-1"))
        if response is not None:
            scope[KEY_SCOPE] = record  # for the access log
        return response
