"""Reports and model versions, read from MLflow (the books the training steps keep).

Reports are served from MLflow rather than copied into the service's database: the backtest and the audit already
log them as run artifacts (`backtest/accuracy.json|html`, `audit/audit.json|html`), the run says what made them, and
a copy could drift from the record. The latest run of the area's experiment tagged with the step that has the
report is the one served. Runs are immutable once finished, so each run's report is downloaded and rendered (JSON
envelope and HTML page, as bytes) once, and requests are answered from those bytes: MLflow is asked only at start-up
and by the background refresh, never while a request waits.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.responses import Response

from hotspot.features.config import StudyConfig

REPORTS = {
    "accuracy": {"step": "backtest", "folder": "backtest", "json": "accuracy.json", "html": "accuracy.html",
                 "missing": "no accuracy report{of} yet: run `hotspot backtest --config {config}{option}`"},
    "fairness": {"step": "audit", "folder": "audit", "json": "audit.json", "html": "audit.html",
                 "missing": "no fairness audit{of} yet: run `hotspot audit --config {config}{option}`"},
}
RUNS_KEPT = 20  # the latest runs of each report step looked at (and their reports kept) per refresh
_IMG = re.compile(r'src="([A-Za-z0-9_.\-]+\.png)"')
_NO_REPORT = object()  # a finished run of the step that logged no report file (remembered like a report)


def finite(value: Any) -> Any:
    """The same structure with NaN and infinities as null (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def _client():
    from mlflow import MlflowClient

    from hotspot.training.tracking import ensure_store

    return MlflowClient(ensure_store())


def _ms_to_iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def json_bytes(content: Any) -> bytes:
    """JSON exactly as Starlette's JSONResponse writes it (compact, UTF-8, no NaN)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Body:
    """A response body, as is and gzipped (compressed once, when rendered; None where that would not be smaller)."""

    identity: bytes
    gzipped: bytes | None

    @classmethod
    def of(cls, data: bytes) -> Body:
        packed = gzip.compress(data, compresslevel=6, mtime=0)
        return cls(data, packed if len(packed) < len(data) else None)


@dataclass(frozen=True)
class Report:
    """One run's report, rendered: `json` is the envelope (the fields of schemas.ReportEnvelope, in order), `html`
    the page with its figures inlined (None when the run logged no page)."""

    kind: str
    run_id: str
    created_at: str | None
    tags: dict[str, str]
    json: Body
    html: Body | None


def render_report(kind: str, run_id: str, created_at: str | None, tags: dict[str, str], data: dict,
                  html: str) -> Report:
    """A report as the API serves it: the JSON envelope (run, provenance tags, data) and its HTML, encoded once."""
    envelope = {"kind": kind, "run_id": run_id, "created_at": created_at,
                "data_fingerprint": tags.get("data_fingerprint"), "code_version": tags.get("code_version"),
                "tags": tags, "report": data}
    return Report(kind, run_id, created_at, tags, Body.of(json_bytes(envelope)),
                  Body.of(html.encode("utf-8")) if html else None)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (its first mention, by name or `*`, without q=0)."""
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip()
            try:
                return not (q.startswith("q=") and float(q[2:]) == 0)
            except ValueError:
                return False
    return False


def report_response(report: Report, html: bool, accept_encoding: str) -> Response | None:
    """The response for a report in one form (None: the run has no HTML page); gzipped when the client accepts it.
    The report handler and hotpath.ReportFastPath both answer with this, so their answers are the same bytes."""
    body = report.html if html else report.json
    if body is None:
        return None
    gzipped = body.gzipped is not None and accepts_gzip(accept_encoding)
    headers = {"Vary": "Accept-Encoding", **({"Content-Encoding": "gzip"} if gzipped else {})}
    media_type = "text/html" if html else "application/json"  # Starlette adds charset=utf-8 to text/html
    return Response(body.gzipped if gzipped else body.identity, media_type=media_type, headers=headers)


class ReportsUnavailable(Exception):
    """MLflow could not be read at start-up and no refresh has succeeded since."""


class ReportSource:
    """The latest report of each kind, rendered once per run and served from memory.

    `refresh()` asks MLflow for the latest run of each kind (at start-up, then every `ttl_s` seconds from the
    service's background task) and swaps in the new set whole; `latest(kind)` only reads that set. A run seen
    before is never downloaded or rendered again. With `ttl_s = 0` nothing is kept: `latest` asks MLflow on every
    call (for tests that log a report and read it at once).
    """

    def __init__(self, cfg: StudyConfig, ttl_s: float = 5.0, default_product: bool = True):
        self.cfg, self.ttl_s = cfg, ttl_s
        self.default_product = default_product  # runs without a product tag (made before products) are its
        self.refreshed_at: float | None = None  # time.monotonic() of the last successful refresh
        self.error: str | None = None  # why the last refresh failed (None after a success)
        self._current: dict[str, Report | None] | None = None
        self._all: dict[str, list[Report]] = {kind: [] for kind in REPORTS}  # every report run kept, newest first
        self._by_run: dict[tuple[str, str], Report | object] = {}
        self._lock = threading.Lock()

    def missing_message(self, kind: str) -> str:
        product = self.cfg.product
        named = self.cfg.has_products
        return REPORTS[kind]["missing"].format(config=self.cfg.source_path or "AREA.toml",
                                               of=f" of {product.label}" if named else "",
                                               option=f" --product {product.name}" if named else "")

    def latest(self, kind: str) -> Report | None:
        """The latest report of `kind` (None when no run has one); ReportsUnavailable before a first refresh."""
        if self.ttl_s <= 0:
            self.refresh()
        current = self._current
        if current is None:
            raise ReportsUnavailable(f"reports not loaded from MLflow yet: {self.error or 'starting'}")
        return current[kind]

    def all(self, kind: str) -> list[Report]:
        """Every kept report of `kind` (the finished runs among the latest RUNS_KEPT of its step), newest first;
        ReportsUnavailable before a first refresh."""
        self.latest(kind)
        return self._all[kind]

    def for_version(self, kind: str, version: dict) -> Report | None:
        """The newest kept report of `kind` that belongs to a registered model version (see `belongs_to`)."""
        return next((r for r in self.all(kind) if belongs_to(r, version)), None)

    def due(self) -> bool:
        return self.refreshed_at is None or time.monotonic() - self.refreshed_at >= self.ttl_s

    def refresh(self) -> None:
        """Look up the latest run of each kind, rendering reports not seen before; on failure the reports already
        held stay served (and the error is raised for the caller to log)."""
        with self._lock:
            try:
                client = _client()
                experiment = client.get_experiment_by_name(self.cfg.area.name)
                found = {kind: self._find(client, experiment.experiment_id, kind) if experiment else []
                         for kind in REPORTS}
            except Exception as exc:
                self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise
            # runs no longer among the latest RUNS_KEPT are forgotten, so memory stays bounded
            seen = {(kind, r.run_id) for kind, reports in found.items() for r in reports}
            self._by_run = {k: v for k, v in self._by_run.items() if v is _NO_REPORT or k in seen}
            self._all = found
            self._current = {kind: (reports[0] if reports else None) for kind, reports in found.items()}
            self.refreshed_at, self.error = time.monotonic(), None

    def _find(self, client, experiment_id: str, kind: str) -> list[Report]:
        spec = REPORTS[kind]
        product = self.cfg.product.name.replace("'", "")  # a product name is [a-z0-9_-]+ (features.config)
        step = f"tags.step = '{spec['step']}' and attributes.status = 'FINISHED'"
        which = [f"tags.product = '{product}'"] + (["tags.product IS NULL"] if self.default_product else [])
        runs = [run for condition in which
                for run in client.search_runs([experiment_id], filter_string=f"{step} and {condition}",
                                              order_by=["attributes.start_time DESC"], max_results=RUNS_KEPT)]
        runs = sorted(runs, key=lambda r: -(r.info.start_time or 0))[:RUNS_KEPT]
        found = []
        for run in runs:
            key = (kind, run.info.run_id)
            known = self._by_run.get(key)
            if known is None:
                names = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, spec["folder"])}
                known = self._download(kind, run, names) if spec["json"] in names else _NO_REPORT
                self._by_run[key] = known
            if isinstance(known, Report):
                found.append(known)
        return found

    def _download(self, kind: str, run, names: set[str]) -> Report:
        import mlflow

        from hotspot.training.tracking import tracking_uri

        spec = REPORTS[kind]
        with tempfile.TemporaryDirectory(prefix="hotspot-report-") as folder:  # what is kept is the rendered bytes
            local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=spec["folder"],
                                                             dst_path=folder, tracking_uri=tracking_uri()))
            data = finite(json.loads((local / spec["json"]).read_text()))
            html = (local / spec["html"]).read_text() if spec["html"] in names else ""
            html = inline_images(html, local)
        tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
        return render_report(kind, run.info.run_id, _ms_to_iso(run.info.start_time), tags, data, html)


def belongs_to(report: Report, version: dict) -> bool:
    """Whether a report judges a registered model version (a `ModelSource.listing()` entry): a fairness audit names
    the version it audited (tag model_version); a backtest refits the model configuration week by week, so its
    accuracy report belongs to every version trained on the same data with the same config (data fingerprint and
    config hash equal)."""
    tags = report.tags
    if report.kind == "fairness":
        return tags.get("model_version") == version["version"]
    fingerprint = version.get("data_fingerprint")
    if not fingerprint or tags.get("data_fingerprint") != fingerprint:
        return False
    config, report_config = version.get("config_sha256"), tags.get("config_sha256")
    return not (config and report_config and config != report_config)


def inline_images(html: str, folder: Path) -> str:
    """The page with its PNG figures embedded (data: URIs), so it shows without further authenticated requests."""

    def embed(match: re.Match) -> str:
        path = folder / match.group(1)
        if not path.is_file():
            return match.group(0)
        return 'src="data:image/png;base64,' + base64.b64encode(path.read_bytes()).decode("ascii") + '"'

    return _IMG.sub(embed, html)


class ModelSource:
    """Registered versions of the area's model, the champion and each version's run metrics (cached `ttl_s`)."""

    def __init__(self, cfg: StudyConfig, ttl_s: float = 5.0):
        self.cfg, self.ttl_s = cfg, ttl_s
        self._cached: tuple[float, dict | None] | None = None
        self._lock = threading.Lock()

    def listing(self) -> dict | None:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl_s:
                return self._cached[1]
            listing = self._list()
            self._cached = (time.monotonic(), listing)
            return listing

    def _list(self) -> dict | None:
        from mlflow.exceptions import MlflowException

        from hotspot.training.registry import CHAMPION, registered_name

        client = _client()
        name = registered_name(self.cfg)
        try:
            registered = client.get_registered_model(name)
        except MlflowException:
            return None
        aliases: dict[str, list[str]] = {}
        for alias, version in (registered.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        champion = next((str(v) for a, v in (registered.aliases or {}).items() if a == CHAMPION), None)
        versions = []
        for mv in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda m: -int(m.version)):
            run = None
            if mv.run_id:
                try:
                    run = client.get_run(mv.run_id)
                except MlflowException:
                    run = None
            tags = run.data.tags if run else {}
            versions.append({
                "version": str(mv.version), "aliases": sorted(aliases.get(str(mv.version), [])),
                "champion": str(mv.version) == champion, "status": mv.status, "run_id": mv.run_id,
                "created_at": _ms_to_iso(mv.creation_timestamp), "description": mv.description or None,
                "data_fingerprint": tags.get("data_fingerprint"), "code_version": tags.get("code_version"),
                "config_sha256": tags.get("config_sha256"),  # for belongs_to; not in the /v1/models schema
                "metrics": finite(dict(run.data.metrics)) if run else {},
                "tags": dict(mv.tags or {}),
            })
        return {"name": name, "product": self.cfg.product.name, "champion": champion, "versions": versions}
