"""Reports and model versions, read from MLflow (the books the training steps keep).

Reports are served from MLflow rather than copied into the service's database: the backtest and the audit already
log them as run artifacts (`backtest/accuracy.json|html`, `audit/audit.json|html`), the run says what made them, and
a copy could drift from the record. The latest run of the area's experiment tagged with the step that has the
report is the one served. Runs are immutable once finished, so downloaded files are cached per run.
"""

from __future__ import annotations

import base64
import json
import math
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.config import StudyConfig

REPORTS = {
    "accuracy": {"step": "backtest", "folder": "backtest", "json": "accuracy.json", "html": "accuracy.html",
                 "missing": "no accuracy report yet: run `hotspot backtest --config {config}`"},
    "fairness": {"step": "audit", "folder": "audit", "json": "audit.json", "html": "audit.html",
                 "missing": "no fairness audit yet: run `hotspot audit --config {config}`"},
}
_IMG = re.compile(r'src="([A-Za-z0-9_.\-]+\.png)"')


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

    from training.tracking import tracking_uri

    return MlflowClient(tracking_uri())


def _ms_to_iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@dataclass(frozen=True)
class Report:
    kind: str
    run_id: str
    created_at: str | None
    tags: dict[str, str]
    data: dict
    html: str


class ReportSource:
    """The latest report of each kind; the run search is repeated at most every `ttl_s` seconds."""

    def __init__(self, cfg: StudyConfig, ttl_s: float = 5.0):
        self.cfg, self.ttl_s = cfg, ttl_s
        self._latest: dict[str, tuple[float, Report | None]] = {}
        self._by_run: dict[tuple[str, str], Report] = {}
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="hotspot-reports-"))

    def missing_message(self, kind: str) -> str:
        return REPORTS[kind]["missing"].format(config=self.cfg.source_path or "AREA.toml")

    def latest(self, kind: str) -> Report | None:
        with self._lock:
            hit = self._latest.get(kind)
            if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
            report = self._find(kind)
            self._latest[kind] = (time.monotonic(), report)
            return report

    def _find(self, kind: str) -> Report | None:
        spec = REPORTS[kind]
        client = _client()
        experiment = client.get_experiment_by_name(self.cfg.area.name)
        if experiment is None:
            return None
        runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.step = '{spec['step']}' and "
                                  "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                                  max_results=20)
        for run in runs:
            cached = self._by_run.get((kind, run.info.run_id))
            if cached is not None:
                return cached
            names = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, spec["folder"])}
            if spec["json"] not in names:
                continue
            report = self._download(kind, run, names)
            self._by_run[(kind, run.info.run_id)] = report
            return report
        return None

    def _download(self, kind: str, run, names: set[str]) -> Report:
        import mlflow

        from training.tracking import tracking_uri

        spec = REPORTS[kind]
        local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=spec["folder"],
                                                         dst_path=str(self._dir / run.info.run_id),
                                                         tracking_uri=tracking_uri()))
        data = finite(json.loads((local / spec["json"]).read_text()))
        html = (local / spec["html"]).read_text() if spec["html"] in names else ""
        return Report(kind, run.info.run_id, _ms_to_iso(run.info.start_time),
                      {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
                      data, inline_images(html, local))


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

        from training.registry import CHAMPION, registered_name

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
                "metrics": finite(dict(run.data.metrics)) if run else {},
                "tags": {k: v for k, v in (mv.tags or {}).items()},
            })
        return {"name": name, "champion": champion, "versions": versions}
