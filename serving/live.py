"""The live record of a product read from the publication store: its live scores as the plain dicts
`training.monitoring.live` takes, and the record built from them (for the API, the briefing and the command line)."""

from __future__ import annotations

from hotspot.serving.db import LiveScore, PublicationStore
from hotspot.training.monitoring.live import live_record


def score_dicts(scores: list[LiveScore]) -> list[dict]:
    """Stored live scores as {publication_id, week, model, observed_total, metrics, scored_at (ISO)}."""
    return [{"publication_id": s.publication_id, "week": s.week, "model": s.model,
             "observed_total": s.observed_total, "metrics": s.metrics,
             "scored_at": s.scored_at.isoformat() if s.scored_at else None} for s in scores]


def stored_live_record(store: PublicationStore, area: str, product: str, window: int | None = None) -> dict:
    """The product's live record: its current scores, with every score made for the weeks re-scored after late
    records."""
    current = score_dicts(store.live_scores(area, product))
    history = score_dicts(store.live_scores(area, product, current=False))
    return live_record(current, window, history=history)
