"""The weekly briefing for command staff: what the forecast (auto by default, or a pinned version) expects this
week, where, why, what moved since last week, and how last week's forecast did against what was recorded, beside the
best baseline on the same week.

`build_briefing` computes the content (a plain data structure); `training/briefing_render.py` turns it into a
printable PDF or HTML page. Scoring last week reuses the rolling-origin backtest (`run_backtest`): every model is
fitted only on the weeks before the scored week and judged by the one definition of hits (`hits_at`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from hotspot.features.config import StudyConfig
from hotspot.features.errors import HotspotError
from hotspot.features.panel import Panel
from hotspot.features.prepared import Prepared
from hotspot.training import tracking
from hotspot.training.backtest import REFERENCE_ONLY, available_models, run_backtest
from hotspot.training.evaluation.metrics import hits_at
from hotspot.training.forecast import NOTE, forecast_cells
from hotspot.training.forecast_model import ForecastModel, NotForecastable
from hotspot.training.registry import version_forecaster, version_spec

# the models a forecast is never compared with as a "baseline": the LightGBM variants themselves, and auto (which
# chooses among LightGBM and the baselines)
NOT_BASELINES = ("lightgbm", "lightgbm_tuned", "auto", *REFERENCE_ONLY)


@dataclass(frozen=True)
class TopCell:
    rank: int
    cell: int  # compact index into the grid
    cell_id: int
    place: str
    expected: float  # expected recorded incidents this week
    reasons: tuple[str, ...]
    x: float  # cell centre, area CRS (metres)
    y: float
    new: bool = False  # not in last week's top N
    last_rank: int | None = None  # its rank last week (1 = highest)


@dataclass(frozen=True)
class ModelScore:
    model: str
    hits: float  # recorded incidents that fell in the model's top N cells (ties shared, as in every report)
    hit_rate: float  # hits / all recorded incidents of the week (NaN when none were recorded)


@dataclass(frozen=True)
class LastWeek:
    week_start: str
    week_end: str
    recorded: int  # incidents recorded in the study area that week (the model's target offences)
    n_cells: int
    forecast: ModelScore  # what forecast that week (auto as it was, or the pinned version's settings)
    forecast_cells: tuple[int, ...]  # the compact cells it flagged
    how: str  # how that forecast was made (auto, the version itself, or its settings refitted on the weeks before)
    baselines: tuple[ModelScore, ...]  # best first
    note: str = ""  # said when the scored week is not the week before the briefing's

    @property
    def best_baseline(self) -> ModelScore:
        """The baseline that caught the most that week (chosen after the fact, which favours the baselines)."""
        return self.baselines[0]


@dataclass(frozen=True)
class Briefing:
    area: str
    week_start: str
    week_end: str
    model: str
    model_version: str
    created_at: str
    data_fingerprint: str
    model_data_fingerprint: str | None
    code_version: str
    data_end: str
    n_cells: int
    cell_size_m: float
    expected_total: float  # expected recorded incidents in the whole area this week
    top: tuple[TopCell, ...]
    left: tuple[TopCell, ...]  # last week's top N cells no longer in it (rank = their rank this week)
    previous_week: str | None  # start of the week the changes are measured against
    last_week: LastWeek | None
    last_week_missing: str  # why there is no score of last week ("" when there is one)
    places_origin: str
    model_label: str = ""  # "auto (blend)" or "lightgbm v3"
    model_words: str = ""  # what forecast, for the provenance (auto's weights or choice and cadence, or the version)
    note: str = NOTE
    product: str | None = None  # the forecast product's title where the config lists [[products]]
    other_products: tuple[str, ...] = ()  # the titles of the area's other products
    # the live record (training.monitoring.live.live_record) of the product's published forecasts, where one is kept
    live: dict | None = None
    # what the map draws, in the area CRS: the study-area outline and the named areas (name, geometry, label_x/y)
    crs: str = ""
    outline: shapely.Geometry | None = field(default=None, repr=False)
    areas: gpd.GeoDataFrame | None = field(default=None, repr=False)

    @property
    def title(self) -> str:
        """The page title: product (where the area has several), area and week."""
        product = f"{self.product} · " if self.product else ""
        return f"Weekly briefing: {product}{self.area}, week of {self.week_start} to {self.week_end}"

    def to_dict(self) -> dict:
        """Everything but the map geometry, as plain JSON values."""
        import dataclasses

        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("outline", "areas")}
        data["top"] = [dataclasses.asdict(c) for c in self.top]
        data["left"] = [dataclasses.asdict(c) for c in self.left]
        data["last_week"] = dataclasses.asdict(self.last_week) if self.last_week else None
        data["title"] = self.title
        return data


def week_end(panel: Panel, t: int, freq: str) -> pd.Timestamp:
    """The last day of period t (Sunday for weeks starting Monday)."""
    start = panel.period_starts[t]
    following = panel.period_starts[t + 1] if t + 1 < len(panel.period_starts) else start + pd.tseries.frequencies \
        .to_offset(freq)
    return following - pd.Timedelta(days=1)


def _reasons(row) -> tuple[str, ...]:
    reasons = getattr(row, "reasons", None)
    if reasons is None or (isinstance(reasons, float) and np.isnan(reasons)):
        return ()
    return tuple(str(r) for r in reasons)


def _top_cells(cells: gpd.GeoDataFrame, panel: Panel, n: int) -> list[TopCell]:
    index = pd.Series(np.arange(panel.grid.n_cells), index=panel.grid.cell_id)
    top = []
    for row in cells.head(n).itertuples():
        c = int(index[row.cell_id])
        top.append(TopCell(rank=int(row.rank), cell=c, cell_id=int(row.cell_id), place=str(row.place),
                           expected=float(row.risk), reasons=_reasons(row), x=float(panel.grid.x[c]),
                           y=float(panel.grid.y[c])))
    return top


def _changes(now: list[TopCell], before: gpd.GeoDataFrame, panel: Panel, n: int) -> tuple[list[TopCell],
                                                                                      list[TopCell]]:
    """This week's top cells marked new or with last week's rank, and last week's top cells that left."""
    last_rank = dict(zip(before["cell_id"].astype(int), before["rank"].astype(int)))
    marked = [replace(c, new=last_rank[c.cell_id] > n, last_rank=last_rank[c.cell_id]) for c in now]
    kept = {c.cell_id for c in now}
    left = [c for c in _top_cells(before, panel, n) if c.cell_id not in kept]
    return marked, left


def score_week(cfg: StudyConfig, panel: Panel, chosen: ForecastModel, e: int, n: int) -> LastWeek:
    """How the forecast of period e did (`chosen`: what forecast e), beside every baseline, each fitted only on the
    weeks before e.

    `auto` forecasting e was fitted at e's refit week with only the weeks before it, so it is scored as it is. A
    pinned version trained on weeks before e is scored as it is; otherwise (it saw week e's incidents) its settings
    are refitted on the weeks before e, as the backtest does, so the score is out of sample."""
    model, ref = chosen.model, chosen.ref
    baselines = [factory() for name, factory in available_models(cfg).items() if name not in NOT_BASELINES]
    if chosen.selection:
        seen, last_trained = False, None
        how = (f"auto as it forecast that week ({chosen.label}), fitted at its refit week "
               f"{chosen.selection.get('refit_week')} with only the weeks before it")
    else:
        spec, _ = version_spec(cfg, ref.version)
        last_trained = spec.get("train_last_period")
        seen = last_trained is None or pd.Timestamp(last_trained) >= panel.period_starts[e]
    if seen:
        refit, _ = version_forecaster(cfg, ref.version)
        models = [refit, *baselines]
        how = (f"the settings of {ref.label} refitted on the weeks before {panel.period_starts[e].date()}, "
               f"as in the backtest, because the version itself was trained on that week's incidents")
    elif not chosen.selection:
        models = baselines
        how = f"{ref.label} as registered, trained on data up to {last_trained}, before that week"
    else:
        models = baselines
    result = run_backtest(panel, models, np.array([e]), refit_every=1, coverages=[n / panel.grid.n_cells])
    observed = panel.target[e].astype(np.float64)
    recorded = float(observed.sum())
    scores, risks = {}, {}
    for name, frame in result.predictions.groupby("model", observed=True, sort=False):
        risks[name] = frame["risk"].to_numpy(dtype=np.float64)
    if not seen:
        risks[chosen.label] = np.asarray(model.predict(panel.until(e)), dtype=np.float64)
    for name, risk in risks.items():
        hits = hits_at(risk, observed, n)
        scores[name] = ModelScore(str(name), hits, hits / recorded if recorded else float("nan"))
    forecast_name = models[0].name if seen else chosen.label
    forecast_risk = risks[forecast_name]
    flagged = tuple(int(c) for c in np.argsort(-forecast_risk, kind="stable")[:n])
    ranked = sorted((s for name, s in scores.items() if name != forecast_name), key=lambda s: -s.hits)
    return LastWeek(str(panel.period_starts[e].date()), str(week_end(panel, e, cfg.period.freq).date()),
                    int(recorded), n, ModelScore(chosen.label, scores[forecast_name].hits,
                                                 scores[forecast_name].hit_rate),
                    flagged, how, tuple(ranked))


def scored_week(panel: Panel, t: int, last_recorded: pd.Timestamp, freq: str) -> tuple[int | None, str, str]:
    """The week whose forecast the briefing of period t scores: the week before, or, when the records stop before
    that week ends (`last_recorded`, the latest incident's time), the latest week they cover to its end. Returns
    (index or None, note saying so, why none)."""
    e = min(t - 1, panel.n_periods - 1)
    while e >= 0 and week_end(panel, e, freq).normalize() > pd.Timestamp(last_recorded).normalize():
        e -= 1
    note = ""
    if 0 <= e < t - 1:
        note = (f"The week before ({panel.period_starts[t - 1].date()}) is not fully recorded: the records end on "
                f"{pd.Timestamp(last_recorded).date()}. Scored instead: the latest fully recorded week, "
                f"{panel.period_starts[e].date()}.")
    if e < 0:
        return None, "", "no week before this one is fully recorded"
    if e < panel.min_history + 1:
        return None, "", (f"the week of {panel.period_starts[e].date()} is within the features' look-back at the "
                          f"start of the data, so no forecast of it can be scored honestly")
    return e, note, ""


def _model_or_none(model_for: Callable[[int], ForecastModel], t: int) -> ForecastModel | None:
    """What forecast period t, or None where nothing can (auto before its first forecastable week)."""
    try:
        return model_for(t)
    except NotForecastable:
        return None


def build_briefing(cfg: StudyConfig, prepared: Prepared, model_for: Callable[[int], ForecastModel], week: str,
                   top: int = 10, live: dict | None = None) -> Briefing:
    """The briefing of `week` (a period start of the panel, up to the first unrecorded week); `model_for(t)` is
    what forecasts period t (training/forecast_model.py: auto by default, or a pinned version, the champion among
    them); `live`, a `live_record` of the product's published forecasts, adds how they did week by week."""
    panel = prepared.panel
    if top < 1:
        raise ValueError(f"--top must be at least 1, not {top}")
    try:
        t = panel.period_index(week)
    except ValueError as exc:
        raise HotspotError(f"week {week}: {str(exc).splitlines()[0]}") from None
    n = min(top, panel.grid.n_cells)
    chosen = model_for(t)
    cells = forecast_cells(panel, chosen.model, t, places=prepared.places)
    now = _top_cells(cells, panel, n)
    left: list[TopCell] = []
    previous = None
    earlier = _model_or_none(model_for, t - 1) if t >= 1 else None
    if earlier is not None:
        before = forecast_cells(panel, earlier.model, t - 1, reasons=0, places=prepared.places)
        now, left = _changes(now, before, panel, n)
        rank_now = dict(zip(cells["cell_id"].astype(int), cells["rank"].astype(int)))
        left = [replace(c, last_rank=c.rank, rank=rank_now[c.cell_id]) for c in left]
        previous = str(panel.period_starts[t - 1].date())
    accepted = prepared.incidents.accepted
    e, note, missing = scored_week(panel, t, accepted["occurred_at"].max(), cfg.period.freq)
    last_week = None
    scored = _model_or_none(model_for, e) if e is not None else None
    if e is not None and scored is None:
        missing = (f"auto has no forecast of the week of {panel.period_starts[e].date()}: it chooses on the "
                   f"{cfg.selection.validation_weeks} weeks before its refit week, after the features' look-back")
    if e is not None and scored is not None:
        last = score_week(cfg, panel, scored, e, n)
        last_week = replace(last, note=note)
    data_end = (pd.Timestamp(cfg.period.data_end) if cfg.period.data_end else accepted["occurred_at"].max())
    places = prepared.places
    area = prepared.incidents.area
    return Briefing(
        area=cfg.area.name, week_start=str(panel.period_starts[t].date()),
        week_end=str(week_end(panel, t, cfg.period.freq).date()), model=chosen.ref.name,
        model_version=chosen.ref.version, model_label=chosen.label, model_words=chosen.provenance_words,
        created_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        data_fingerprint=prepared.incidents.fingerprint, model_data_fingerprint=chosen.ref.data_fingerprint,
        code_version=tracking.code_version(), data_end=str(pd.Timestamp(data_end).date()),
        n_cells=panel.grid.n_cells, cell_size_m=float(panel.grid.cell_size_m),
        expected_total=float(cells["risk"].sum()), top=tuple(now), left=tuple(left), previous_week=previous,
        last_week=last_week, last_week_missing=missing,
        places_origin=places.origin if places is not None else "no place names configured (cell centres in degrees)",
        product=cfg.product.label if cfg.has_products else None,
        other_products=tuple(p.label for p in cfg.product_list if p.name != cfg.product.name),
        live=live if live and live.get("n_weeks") else None,
        crs=str(area.crs), outline=area.boundary,
        areas=places.areas[["name", "geometry", "label_x", "label_y"]] if places is not None else None,
    )
