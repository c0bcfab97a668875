"""The inputs of a run as MLflow datasets: the validated incidents and the cell x period panel, logged by their
metadata (source, digest, schema) and a profile of counts, never their rows, so the UI's dataset column names what
a train, tune or backtest run was made from."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from hotspot.features.config import StudyConfig


def _dataset_source(path: Path | str):
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # several local sources claim file URIs; MLflow picks the first and says so
        warnings.simplefilter("ignore")
        return resolve_dataset_source(Path(path).resolve().as_uri())


def _schema(columns: dict[str, str]):
    from mlflow.types import ColSpec, Schema

    return Schema([ColSpec(kind, name) for name, kind in columns.items()])


def _column_kind(dtype) -> str:
    kind = getattr(dtype, "kind", "O")
    return {"M": "datetime", "f": "double", "b": "boolean"}.get(kind, "long" if kind in "iu" else "string")


def log_inputs(cfg: StudyConfig, incidents, panel, context: str = "training") -> None:
    """Log the validated incidents (fingerprint as digest, source, row counts; not the rows) and the cell x period
    panel (shape, feature names) as MLflow datasets of the active run, so the UI's dataset column names them."""
    import hashlib
    import json

    import mlflow

    sources = [s.path for s in cfg.sources]
    accepted = incidents.accepted
    when = accepted["occurred_at"] if "occurred_at" in accepted and len(accepted) else None
    incidents_ds = profiled_dataset(
        source=_dataset_source(incidents.history or sources[0]), name=f"{cfg.area.name} incidents",
        digest=incidents.fingerprint,
        schema=_schema({c: _column_kind(accepted[c].dtype) for c in accepted.columns}),
        profile={"rows_read": int(incidents.n_read), "rows_accepted": int(len(accepted)),
                 "rows_quarantined": int(len(incidents.quarantine)),
                 "first_incident": str(when.min())[:19] if when is not None else None,
                 "last_incident": str(when.max())[:19] if when is not None else None,
                 "sources": [str(s) for s in sources]})
    T1, C, F = panel.X.shape
    shape = {"periods_observed": int(panel.n_periods), "cells": int(C), "features": int(F),
             "rows": int(panel.n_periods * C), "first_period": str(panel.period_starts[0].date()),
             "last_period": str(panel.period_starts[panel.n_periods - 1].date()), "label": panel.target_noun}
    digest = hashlib.sha256(json.dumps([incidents.fingerprint, cfg.source_sha256, list(panel.feature_names), shape],
                                       default=str).encode()).hexdigest()[:16]
    panel_ds = profiled_dataset(source=_dataset_source(cfg.source_path or sources[0]), name=f"{cfg.area.name} panel",
                               digest=digest, schema=_schema(dict.fromkeys(panel.feature_names, "double")),
                               profile=shape)
    mlflow.log_input(incidents_ds, context=context)
    mlflow.log_input(panel_ds, context=context)


@lru_cache(maxsize=1)
def _profiled_dataset_class():
    from mlflow.data.meta_dataset import MetaDataset

    class _ProfiledDataset(MetaDataset):
        """A dataset logged by its metadata (source, digest, schema) and a profile of counts, never its rows."""

        def __init__(self, source, name: str, digest: str, schema, profile: dict):
            self._profile = profile
            super().__init__(source=source, name=name, digest=digest, schema=schema)

        @property
        def profile(self):
            return self._profile

        def to_dict(self) -> dict[str, str]:
            import json

            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    return _ProfiledDataset


def profiled_dataset(**kwargs):
    """A metadata-only MLflow dataset with a profile (see `log_inputs`); its class is made on first use, so
    importing this module does not import MLflow."""
    return _profiled_dataset_class()(**kwargs)
