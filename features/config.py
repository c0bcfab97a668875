"""Study-area configuration: one TOML file per area, validated by pydantic.

Relative paths in a config are resolved against the folder of the config file, so a config works from any
working directory. Everything city-specific lives here, never in code.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A study-area config that cannot be used; the message names the file and the key path."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(value: str | None, info: ValidationInfo, must_exist: bool = True) -> Path | None:
    if value is None:
        return None
    base = (info.context or {}).get("base_dir", Path.cwd())
    path = (Path(base) / Path(value).expanduser()).resolve()
    if must_exist and not path.exists():
        raise ValueError(f"file not found: {path}")
    return path


class AreaConfig(_Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", description="study-area name (MLflow experiment)")]
    boundary: Path | None = Field(None, description="polygon file; absent = buffered hull of the incidents")
    crs: str | None = Field(None, description="projected CRS in metres; absent = UTM zone of the area")
    cell_size_m: Annotated[float, Field(gt=0, le=100_000)] = 250.0
    max_cells: Annotated[int, Field(gt=0)] = 250_000
    hull_buffer_m: Annotated[float, Field(ge=0)] = 250.0
    hull_outlier_iqr: Annotated[float, Field(gt=0)] = Field(
        3.0, description="derived areas leave out points beyond the quartiles by this many interquartile ranges"
    )

    @field_validator("boundary", mode="before")
    @classmethod
    def _boundary_exists(cls, v, info: ValidationInfo):
        return _resolve(v, info)

    @field_validator("crs")
    @classmethod
    def _crs_projected(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            crs = CRS.from_user_input(v)
        except CRSError as exc:
            raise ValueError(f"not a CRS pyproj knows: {v!r} ({exc})") from None
        if not crs.is_projected:
            raise ValueError(f"{v!r} is not a projected CRS in metres (cells are measured in metres)")
        return v


class IncidentsConfig(_Section):
    name: str = Field("incidents", description="source name kept on every accepted row")
    path: Path
    format: Literal["csv", "parquet", "geojson"] | None = Field(None, description="absent = from the file suffix")
    timestamp: str = Field(description="column holding the occurrence time")
    timestamp_format: str | None = Field(None, description="strftime format; absent = ISO 8601 / inferred")
    lon: str | None = None
    lat: str | None = None
    x: str | None = None
    y: str | None = None
    crs: str = Field("EPSG:4326", description="CRS of lon/lat or x/y in the source")
    offense: str = Field(description="column holding the offence category")
    offenses: list[str] | None = Field(None, description="accepted offences; others are quarantined")
    earliest_date: date | None = Field(None, description="occurrences before this are quarantined")
    latest_date: date | None = Field(None, description="occurrences after this are quarantined; absent = today")
    duplicate_columns: list[str] | None = Field(None, description="columns that define an exact duplicate; "
                                                                  "absent = all")
    premises: str | None = Field(None, description="optional column with the premises type (feeds the premises mix)")
    place: str | None = Field(
        None, description="optional column naming the area each incident is in (neighbourhood, beat): names the "
                          "cells on the map and in the briefing when [places] gives no polygons")
    hour_known: bool = Field(True, description="timestamps carry a real time of day (feeds the time-of-day mix)")
    offense_map: dict[str, str] | None = Field(
        None, description="source offence label -> the area's offence group; absent = labels are the groups. "
                          "Unmapped labels are quarantined (offense_not_mapped)")
    key: str | None = Field(None, description="column with a unique record id (makes appends idempotent); "
                                              "absent = a hash of the row's contents")
    allow_columns: list[str] = Field(
        [], description="columns that look like personal data but may be read; personal fields are never written "
                        "out, case numbers only to the quarantine file (to trace a rejected row)")

    @field_validator("path", mode="before")
    @classmethod
    def _path_exists(cls, v, info: ValidationInfo):
        return _resolve(v, info)

    @field_serializer("offense_map")
    def _map_as_text(self, v: dict[str, str] | None) -> str | None:
        # one value, not a key per label: labels like "B&E" are not valid MLflow parameter names
        return None if v is None else json.dumps(v, sort_keys=True, ensure_ascii=False)

    @model_validator(mode="after")
    def _coordinates(self) -> IncidentsConfig:
        has_lonlat = self.lon is not None and self.lat is not None
        has_xy = self.x is not None and self.y is not None
        if has_lonlat == has_xy:
            raise ValueError("give either lon and lat, or x and y (with crs), for the incident coordinates")
        if self.offenses is not None and len(self.offenses) == 0:
            raise ValueError("offenses is empty: leave it out to accept every offence")
        if self.earliest_date and self.latest_date and self.earliest_date > self.latest_date:
            raise ValueError("earliest_date is after latest_date")
        return self

    @property
    def file_format(self) -> str:
        if self.format:
            return self.format
        suffixes = "".join(self.path.suffixes).lower()
        for fmt, endings in (("parquet", (".parquet", ".pq")), ("geojson", (".geojson", ".json")),
                             ("csv", (".csv", ".csv.gz", ".txt"))):
            if suffixes.endswith(endings):
                return fmt
        raise ConfigError(f"incidents.path: cannot tell the format of {self.path.name}; set incidents.format")


class DedupeConfig(_Section):
    """Records of one incident reported by two sources: same offence group, close in time and place."""

    enabled: bool = Field(True, description="false = keep every source's rows (e.g. sources that cannot overlap)")
    time_tolerance_minutes: Annotated[float, Field(ge=0)] = 15.0
    distance_m: Annotated[float, Field(ge=0)] = 25.0


class HistoryConfig(_Section):
    """The stored incident history that `hotspot ingest` builds and `--append` extends."""

    path: Path | None = Field(None, description="folder of the history [default: history/AREA next to the config]")

    @field_validator("path", mode="before")
    @classmethod
    def _folder(cls, v, info: ValidationInfo):
        return _resolve(v, info, must_exist=False)


class PersonalDataConfig(_Section):
    """Columns that look like personal data are refused at ingest unless a source lists them in allow_columns
    (features/privacy.py). Public views of the outputs are [privacy]."""

    patterns: list[str] = Field([], description="extra regular expressions for personal column names "
                                                "(matched case-insensitively, added to the built-in ones)")
    content_checks: bool = Field(True, description="also look at a sample of text values for e-mails and phone "
                                                   "numbers")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {pattern!r} ({exc})") from None
        return v


class PeriodConfig(_Section):
    freq: str = Field("W-MON", description="pandas offset alias; W-MON = weeks starting Monday")
    data_end: date | None = Field(None, description="last day the data covers; absent = day of the last incident")

    @field_validator("freq")
    @classmethod
    def _freq(cls, v: str) -> str:
        import pandas as pd

        try:
            pd.tseries.frequencies.to_offset(v)
        except ValueError:
            raise ValueError(f"not a pandas frequency alias: {v!r} (e.g. 'W-MON', 'D', 'MS')") from None
        return v


# The feature families a config may name, in the order they are built (features.families.FAMILIES has the builders;
# it checks at import that it lists exactly these).
FAMILY_NAMES = ("temporal", "offense_groups", "spatial", "near_repeat", "time_of_day", "premises", "calendar",
                "context")


class FeaturesConfig(_Section):
    """Which feature families to build (see `hotspot features --list`) and their parameters."""

    families: list[str] | None = Field(None, description="families to build; absent = every family whose inputs exist")
    exclude: list[str] = Field([], description="families to leave out")
    windows: list[Annotated[int, Field(gt=0)]] = [1, 2, 4, 8, 13, 26, 52]
    ewm_halflives: list[Annotated[float, Field(gt=0)]] = [2.0, 8.0, 26.0, 52.0]
    group_windows: list[Annotated[int, Field(gt=0)]] = [4, 13, 52]
    rings: list[Annotated[int, Field(ge=1, le=5)]] = [1, 2, 3]
    ring_windows: list[Annotated[int, Field(gt=0)]] = [1, 4, 13, 52]
    kernel_bandwidths_m: list[Annotated[float, Field(gt=0)]] = [250.0, 500.0, 1000.0]
    kernel_windows: list[Annotated[int, Field(gt=0)]] = [4, 52]
    idw_window: Annotated[int, Field(gt=0)] = 13
    near_repeat_windows: list[Annotated[int, Field(gt=0)]] = [1, 2]
    mix_window: Annotated[int, Field(gt=0)] = 52
    holidays_country: str | None = Field(None, description="ISO country code for public holidays, e.g. 'CA'")
    holidays_subdivision: str | None = Field(None, description="state/province code, e.g. 'ON'")
    context_bandwidths_m: list[Annotated[float, Field(gt=0)]] = [500.0]
    demographics_as_features: bool = Field(
        False, description="allow the fairness areas' demographic columns as model inputs (reports then say so)"
    )

    @model_validator(mode="after")
    def _known_families(self) -> FeaturesConfig:
        if not (self.families or self.exclude):
            return self
        unknown = [f for f in sorted(set(self.families or []) | set(self.exclude)) if f not in FAMILY_NAMES]
        if unknown:
            raise ValueError(f"unknown feature family {unknown}; known: {sorted(FAMILY_NAMES)}")
        return self


class LightGBMConfig(_Section):
    objective: Literal["poisson", "tweedie", "regression", "lambdarank", "rank_xendcg"] = Field(
        "poisson", description="poisson/tweedie/regression fit expected counts; lambdarank/rank_xendcg learn to rank "
                               "the cells of each period (CrimeRank-style) and are calibrated to counts afterwards")
    tweedie_variance_power: Annotated[float, Field(gt=1, lt=2)] = 1.5
    lambdarank_truncation_level: Annotated[int, Field(ge=1)] = 100
    bagging_freq: Annotated[int, Field(ge=0)] = 0
    lambda_l1: Annotated[float, Field(ge=0)] = 0.0
    num_boost_round: Annotated[int, Field(gt=0)] = 300
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.05
    num_leaves: Annotated[int, Field(ge=2)] = 31
    min_data_in_leaf: Annotated[int, Field(ge=1)] = 200
    feature_fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    bagging_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    lambda_l2: Annotated[float, Field(ge=0)] = 1.0
    num_threads: Annotated[int, Field(ge=0)] = 0
    seed: int = 42
    zero_row_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        1.0, description="share of empty cell-weeks kept for fitting (weighted back up); 1 = all"
    )


class ModelConfig(_Section):
    target_offenses: list[str] | None = Field(None, description="offences the label counts; absent = all accepted")
    train_periods: Annotated[int, Field(gt=0)] | None = Field(
        156, description="most recent periods used to fit; None = all with full look-back"
    )
    lightgbm: LightGBMConfig = LightGBMConfig()


class BacktestConfig(_Section):
    weeks: Annotated[int, Field(gt=0)] = 26
    refit_every: Annotated[int, Field(gt=0)] = 4
    naive_weeks: list[Annotated[int, Field(gt=0)]] = [4, 52]
    ewm_halflife: Annotated[float, Field(gt=0)] = 26.0
    kde_bandwidth_m: Annotated[float, Field(gt=0)] = 250.0
    prospective_bandwidth_cells: Annotated[int, Field(ge=0, le=10)] = 2
    prospective_weeks: Annotated[int, Field(gt=0)] = 8
    sepp_train_days: Annotated[float, Field(gt=0)] = 730.0
    coverages: list[Annotated[float, Field(gt=0, le=1)]] = [0.005, 0.01, 0.02, 0.05, 0.10]
    end: date | None = Field(
        None, description="the backtest covers the weeks starting before this date (`--end` overrides it); tuning's "
                          "folds end where that backtest starts [default: the end of the data]")
    limit_weeks: Annotated[int, Field(gt=0)] = Field(
        52, description="clairvoyant limit (a reference that uses future data): periods averaged on each side of "
                        "the target week, the week itself left out")
    limit_min_after: Annotated[int, Field(ge=0)] = Field(
        26, description="recorded periods the limit needs after every backtest week; fewer and the report says why "
                        "it shows no limit")


class TuneConfig(_Section):
    """Optuna study over rolling-origin folds: `folds` consecutive blocks of `fold_weeks` periods that end where the
    backtest window starts, each scored by a model fitted only on the periods before the block."""

    trials: Annotated[int, Field(gt=0)] = 30
    metric: Literal["pai@0.5%", "pai@1%", "pai@2%", "pai@5%", "pai@10%", "pei@1%", "poisson_deviance"] = Field(
        "pai@1%", description="what the study optimises (mean over fold weeks); deviance is minimised")
    folds: Annotated[int, Field(gt=0, le=20)] = 3
    fold_weeks: Annotated[int, Field(gt=0)] = 8
    storage: str = Field("sqlite:///optuna.db", description="Optuna storage URL (the study resumes from it)")
    heartbeat_s: Annotated[int, Field(ge=1)] = Field(
        30, description="trial heartbeat; a trial silent for twice this is taken as killed and run again")
    study_name: str | None = Field(None, description="[default: AREA-lightgbm-TARGET]")
    seed: int = 0
    objectives: list[Literal["poisson", "tweedie", "regression", "lambdarank", "rank_xendcg"]] = [
        "poisson", "tweedie", "lambdarank"]
    train_periods: list[Annotated[int, Field(gt=0)]] = Field([52, 104, 156], description="choices of history")
    zero_row_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        0.1, description="share of empty cell-periods kept while tuning (weighted back up)")
    max_boost_round: Annotated[int, Field(ge=50)] = 500
    pruner_startup_trials: Annotated[int, Field(ge=0)] = 5
    timeout_s: Annotated[float, Field(gt=0)] | None = None


class PromotionConfig(_Section):
    """The gate a registered model passes to become the champion: its backtest against the champion's, same weeks."""

    metric: Literal["pai@0.5%", "pai@1%", "pai@2%", "pai@5%", "pai@10%", "pei@1%", "poisson_deviance"] = "pai@1%"
    margin: Annotated[float, Field(ge=0)] = Field(
        0.0, description="relative improvement required, e.g. 0.02 = 2% better than the champion")
    require_significant: bool = Field(
        False, description="also require the 95% interval of the paired weekly difference to exclude 0")
    weeks: Annotated[int, Field(gt=0)] | None = Field(None, description="[default: backtest.weeks]")
    refit_every: Annotated[int, Field(gt=0)] | None = Field(None, description="[default: backtest.refit_every]")
    renew_same_settings: bool = Field(
        True, description="a candidate with exactly the champion's settings (model, hyper-parameters, features), "
                          "fitted on later weeks, replaces it without a backtest: a backtest refits both alike, so "
                          "their scores would be identical and a tie would keep the older fit forever")


class EngineConfig(_Section):
    """`[engine]`: where validate, ingest, features, train, tune, backtest and audit run their heavy parts
    (features/engine.py); `--engine` and `--scheduler` win over it. 'local' runs in the command's process; 'dask'
    on the Dask cluster at `scheduler`, or on a LocalCluster the command starts and stops itself without one."""

    kind: Literal["local", "dask"] = Field("local", description="'local' (one process) or 'dask'")
    scheduler: str | None = Field(None, description="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                                                    "[default: start a LocalCluster]")
    connect_timeout_s: Annotated[float, Field(gt=0)] = Field(30, description="seconds to reach the scheduler")
    workers: Annotated[int, Field(gt=0)] = Field(2, description="LocalCluster: worker processes")
    threads_per_worker: Annotated[int, Field(gt=0)] = Field(1, description="LocalCluster: threads per worker")
    memory_limit: str = Field("auto", description="LocalCluster: memory per worker, as Dask writes it ('6GB'); "
                                                  "'auto' shares the machine's memory among the workers")
    processes: bool = Field(True, description="LocalCluster: workers are processes (False: threads of this one)")
    tile_cells: Annotated[int, Field(ge=8)] = Field(
        128, description="rows and columns of cells per tile when the panel is built by tiles (plus a halo); halved "
                         "while there are fewer than 3 tiles per worker, down to 4 halos")
    partition_rows: Annotated[int, Field(gt=0)] = Field(
        250_000, description="rows per part of a partitioned read or check (Parquet row groups are kept whole)")
    retries: Annotated[int, Field(ge=0)] = Field(
        2, description="times a feature tile or a LightGBM fit is run again after the cluster loses a worker (its "
                       "process killed or its machine gone); an error of the work itself is never retried")
    wait_for_workers_s: Annotated[float, Field(gt=0)] = Field(
        120, description="seconds to wait for the cluster to have its workers back before a retry")
    partitioned: Literal["auto", "always", "never"] = Field(
        "auto", description="keep the panel's features partitioned on disk (a Parquet file per tile, written by the "
                            "workers and read by parts) instead of putting the whole cube together in the command's "
                            "process; 'auto': when it has more than partition_above cell-periods")
    partition_above: Annotated[int, Field(gt=0)] = Field(
        10_000_000, description="cell-periods above which 'auto' keeps the panel partitioned (10 million cell-periods "
                                "of 100 features are 4 GB)")
    parts_dir: Path | None = Field(
        None, description="where a partitioned panel's files go: a folder every worker and the command reach "
                          "[default: the panel cache folder, or a temporary folder with HOTSPOT_CACHE=off]")

    @field_validator("parts_dir", mode="before")
    @classmethod
    def _parts_folder(cls, v, info: ValidationInfo):
        return _resolve(v, info, must_exist=False)


class FreshnessConfig(_Section):
    """When `hotspot cycle` refuses a week's data as stale or incomplete (exit code 3, nothing changed)."""

    max_silent_days: Annotated[int, Field(ge=0)] = Field(
        2, description="refuse when the records stop more than this many days before the end of the last week")
    min_volume_share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="refuse when the last week recorded less than this share of the incidents expected for "
                         "its weekdays (mean of the same weekdays over lookback_weeks) and below its 99% interval")
    lookback_weeks: Annotated[int, Field(gt=0)] = Field(52, description="the weeks 'usual' is measured over")


class DriftConfig(_Section):
    """What `hotspot cycle` watches each week (training/monitoring/drift.py) and what it does about decay."""

    lookback_weeks: Annotated[int, Field(gt=0)] = Field(52, description="the reference weeks for volume, offence "
                                                                        "mix and feature distributions")
    volume_level: Annotated[float, Field(gt=0, lt=1)] = Field(0.99, description="interval of the week's volume")
    mix_alpha: Annotated[float, Field(gt=0, lt=1)] = Field(0.001, description="significance of the offence-mix test")
    outside_share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.05, description="flag when more than this share of the week's incidents fall in cells with none before "
                          "(and significantly more than usual over the lookback weeks, outside_alpha)")
    outside_alpha: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.001, description="significance of the binomial test of the week's share in new cells against its usual")
    psi_threshold: Annotated[float, Field(gt=0)] = Field(0.25, description="population stability index above which "
                                                                           "a feature has moved")
    window_weeks: Annotated[int, Field(gt=0)] = Field(8, description="live weeks the decay check compares")
    min_weeks: Annotated[int, Field(gt=1)] = Field(4, description="live weeks needed before decay is judged")
    decay_alpha: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.05, description="significance of the decay test (one-sided paired t-test, divided by the number of "
                          "baselines the best was picked from)")
    on_decay: Literal["flag", "retrain", "baseline"] = Field(
        "retrain", description="what the next cycle does when the published forecasts fall significantly below the "
                               "best baseline: only flag it, retrain, or register the winning baseline and put it "
                               "through the promotion gate")
    on_drift: Literal["flag", "retrain"] = Field("flag", description="what the next cycle does on data drift")


class CycleConfig(_Section):
    """`hotspot cycle`: one idempotent run of the week (append, check, retrain when due, publish, score, watch)."""

    inbox: Path | None = Field(None, description="folder the weekly extracts arrive in; each is appended once, then "
                                                 "moved to inbox/processed [default: inbox/AREA next to the config]")
    source: str | None = Field(None, description="the source whose mapping the extracts use [default: the first]")
    pattern: str = Field("*", description="which files of the inbox are extracts (glob)")
    products: list[str] | None = Field(None, description="products to publish [default: every product]")
    model: str = Field("auto", description="what forecasts: auto, champion or a version number")
    retrain_every: Annotated[int, Field(ge=0)] = Field(
        4, description="retrain and run the promotion gate when the product's newest registered version is this "
                       "many weeks old or more (0 = never)")
    retrain_model: str = Field("lightgbm", description="the model a retrain registers")
    freshness: FreshnessConfig = FreshnessConfig()
    drift: DriftConfig = DriftConfig()

    @field_validator("inbox", mode="before")
    @classmethod
    def _folder(cls, v, info: ValidationInfo):
        return _resolve(v, info, must_exist=False)


class SelectionConfig(_Section):
    """`--model auto`: at each refit, a rolling-origin backtest of every candidate on the `validation_weeks` weeks
    before it (scored by promotion.metric) picks the one that forecasts; see training/selection.py."""

    candidates: list[str] | None = Field(
        None, description="model names as `hotspot backtest --model` takes them [default: lightgbm and every count "
                          "baseline: naive_*w, history, ewm_hl*]")
    validation_weeks: Annotated[int, Field(gt=0)] = Field(8, description="weeks each choice is scored on")
    refit_every: Annotated[int, Field(gt=0)] | None = Field(
        None, description="refit each candidate every K validation weeks [default: backtest.refit_every]")
    forecast_refit_every: Annotated[int, Field(gt=0)] | None = Field(
        None, description="weeks between auto's refits when it forecasts (cycle, publish, service): it is refitted "
                          "on the weeks whose number since 1970-01-01 is a multiple of K and forecasts the weeks up "
                          "to the next one, as a backtest refits it; 1 refits every week [default: refit_every]")
    sticky: bool = Field(
        True, description="a refit keeps the previous choice unless another candidate beats it distinguishably "
                          "(95% paired interval over the validation weeks)")
    combine: Literal["choose", "blend", "average"] = Field(
        "choose", description="'choose': forecast with the chosen candidate; 'blend': with a weighted sum of the "
                              "candidates, non-negative weights minimising the Poisson deviance over the validation "
                              "weeks; 'average': the candidates' mean, each brought to the recorded level of the "
                              "validation weeks")


class ProductConfig(_Section):
    """One forecast product (`[[products]]`): a label, the offences it counts, with its own registered model
    (AREA-NAME), champion, backtests, reports, publications and exports. Chosen with `--product NAME` and
    `?product=NAME` (default: the first product)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$",
                               description="lower-case name: --product, ?product=, the registry's AREA-NAME")]
    title: str | None = Field(None, description="the name readers see [default: the offences, or 'All offences']")
    offenses: list[str] | None = Field(None, description="offences the label counts; absent = every accepted one")
    exclude_families: list[str] = Field([], description="feature families left out for this product")

    @field_validator("offenses")
    @classmethod
    def _some_offenses(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("list at least one offence, or leave `offenses` out for every accepted offence")
        return v

    @field_validator("exclude_families")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(FAMILY_NAMES))
        if unknown:
            raise ValueError(f"unknown feature family {unknown}; known: {sorted(FAMILY_NAMES)}")
        return v

    @property
    def label(self) -> str:
        """The title readers see: the config's, else the offences, else 'All offences'."""
        if self.title:
            return self.title
        return ", ".join(self.offenses) if self.offenses else "All offences"


def _offense_slug(offenses: list[str] | None) -> str:
    """The implicit product name of a config without [[products]]: 'all', or the target offences joined."""
    if not offenses:
        return "all"
    return "+".join(re.sub(r"[^a-z0-9_-]+", "_", o.lower()) for o in offenses)


class GroupDefinition(_Section):
    """One way of dividing residents into groups: each polygon of the fairness areas gets one label.

    majority: the label is the largest of `columns` (shares of residents); quantile: population-weighted quantile
    bins of `column` (labels Q1 = lowest .. Qn); bins: `column` cut at `edges` (right edge of the last bin included).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$", description="name of the definition in reports")]
    kind: Literal["majority", "quantile", "bins"]
    column: str | None = Field(None, description="quantile/bins: the numeric column of the areas file")
    columns: list[str] | None = Field(None, description="majority: the share columns; the largest names the group")
    quantiles: Annotated[int, Field(ge=2, le=20)] = 5
    edges: list[float] | None = Field(None, description="bins: increasing bin edges")
    labels: list[str] | None = Field(None, description="group labels in order [default: column names, Q1..Qn, "
                                                       "or the bin ranges]")
    reference: str | None = Field(None, description="label of the reference group for flag-rate ratios "
                                                    "[default: majority: the group with the most residents; "
                                                    "quantile/bins: the first group]")

    @model_validator(mode="after")
    def _consistent(self) -> GroupDefinition:
        if self.kind == "majority":
            if not self.columns or len(self.columns) < 2 or self.column:
                raise ValueError(f"group definition '{self.name}': kind 'majority' needs `columns` (two or more share "
                                 "columns) and no `column`")
        elif not self.column or self.columns:
            raise ValueError(f"group definition '{self.name}': kind '{self.kind}' needs `column` (one column), "
                             "not `columns`")
        if self.kind == "bins":
            if not self.edges or len(self.edges) < 2 or any(b <= a for a, b in zip(self.edges, self.edges[1:])):
                raise ValueError(f"group definition '{self.name}': kind 'bins' needs `edges`, at least two, "
                                 "strictly increasing")
        elif self.edges:
            raise ValueError(f"group definition '{self.name}': `edges` are only for kind 'bins'")
        n = len(self.default_labels())
        if self.labels is not None and (len(self.labels) != n or len(set(self.labels)) != n):
            raise ValueError(f"group definition '{self.name}': `labels` must be {n} distinct names, one per group")
        if self.reference is not None and self.reference not in self.group_labels:
            raise ValueError(f"group definition '{self.name}': reference {self.reference!r} is not one of its "
                             f"groups {self.group_labels}")
        return self

    def default_labels(self) -> list[str]:
        if self.kind == "majority":
            return list(self.columns or [])
        if self.kind == "quantile":
            return [f"Q{i + 1}" for i in range(self.quantiles)]
        edges = self.edges or []
        return [f"{a:g}-{b:g}" for a, b in zip(edges, edges[1:])]

    @property
    def group_labels(self) -> list[str]:
        return list(self.labels) if self.labels is not None else self.default_labels()


class FeedbackSimulationConfig(_Section):
    """Feedback-loop simulation (after Ensign et al. 2018): patrols follow the forecast and record what they find."""

    rounds: Annotated[int, Field(gt=0, le=1000)] = 52
    replications: Annotated[int, Field(gt=0, le=100)] = 5
    history_weeks: Annotated[int, Field(gt=0)] = Field(
        156, description="recorded weeks before the audit that give the true rates and the starting model")
    report_rate: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="share of true incidents that residents report wherever patrols are "
                         "(per group from fairness.reporting_rates when given)")
    detection_rate: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="share of the unreported incidents in a patrolled cell that patrols discover")
    base_detection_rate: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="the same share in cells without patrols")
    true_rate_multipliers: dict[str, Annotated[float, Field(gt=0)]] = Field(
        {}, description="primary group label -> multiplier of its cells' recorded rate to give the true rate")
    halflife_weeks: Annotated[float, Field(gt=0)] | None = Field(
        None, description="memory of the simulated count model [default: backtest.ewm_halflife]")
    discovered_weight: Annotated[float, Field(ge=0, le=1)] = Field(
        0.25, description="mitigation 'downweight': weight of incidents discovered by patrols")
    decay_halflife_weeks: Annotated[float, Field(gt=0)] = Field(
        4.0, description="mitigation 'decay': the shorter memory that lets old records fade")
    seed: int = 0


PLACES_DEFINITION = "place"  # the name of the group definition made of the cells' place names


class FairnessConfig(_Section):
    """The fairness audit: which groups it compares (demographic areas apportioned onto cells, or the cells' place
    names), and how it measures them.

    groups_from = "areas" (the default when `areas` is given): polygons with residents and demographic columns, one
    or more group definitions. groups_from = "places" (the default without `areas`, and what an absent [fairness]
    section means): each place name of the cells (features/places.py: `[places]` polygons or the incidents' own
    area labels) is a group, compared with all cells together; no residents, so no population shares.
    """

    groups_from: Literal["areas", "places"] | None = Field(
        None, description="'areas': demographic polygons; 'places': the cells' place names [default: 'areas' when "
                          "`areas` is given, else 'places']")
    areas: Path | None = Field(None, description="groups_from = 'areas': polygons with demographic columns")
    population: str | None = Field(None, description="column of the areas file holding each polygon's residents")
    groups: list[GroupDefinition] = Field(
        [], description="group definitions; a plain column name means population-weighted quintiles of that column")
    primary: str | None = Field(None, description="definition used by the simulation, the reporting-rate "
                                                  "sensitivity and the trade-off [default: the first]")
    coverage: Annotated[float, Field(gt=0, lt=1)] = Field(0.01, description="share of cells flagged each week")
    bootstrap_reps: Annotated[int, Field(ge=100, le=100_000)] = 1000
    small_group_cells: Annotated[int, Field(ge=1)] = Field(
        30, description="groups with fewer cells are warned about (their figures move in large steps)")
    small_group_population_share: Annotated[float, Field(ge=0, lt=1)] = 0.02
    reporting_rates: dict[str, Annotated[float, Field(gt=0, le=1)]] = Field(
        {}, description="primary group label -> assumed share of its incidents that get recorded")
    sensitivity_relative_rates: list[Annotated[float, Field(gt=0)]] = Field(
        [0.5, 0.75], description="each group in turn recorded at this rate relative to the others")
    tradeoff_steps: Annotated[int, Field(ge=2, le=50)] = 6
    simulation: FeedbackSimulationConfig = FeedbackSimulationConfig()

    @field_validator("areas", mode="before")
    @classmethod
    def _areas_exists(cls, v, info: ValidationInfo):
        return _resolve(v, info)

    @field_validator("groups", mode="before")
    @classmethod
    def _shorthand(cls, v):
        if not isinstance(v, list):
            return v
        return [{"name": re.sub(r"[^A-Za-z0-9_]", "_", g), "kind": "quantile", "column": g} if isinstance(g, str)
                else g for g in v]

    @field_validator("groups", mode="after")
    @classmethod
    def _definitions(cls, v: list[GroupDefinition]) -> list[GroupDefinition]:
        names = [d.name for d in v]
        if len(set(names)) != len(names):
            raise ValueError(f"group definition names repeat: {names}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_source(cls, data):
        if isinstance(data, dict) and data.get("groups_from") is None:
            given = any(data.get(k) for k in ("areas", "population", "groups"))
            data = {**data, "groups_from": "areas" if given else "places"}
        return data

    @model_validator(mode="after")
    def _source_of_groups(self) -> FairnessConfig:
        if self.groups_from == "areas":
            missing = [k for k, v in (("areas", self.areas), ("population", self.population)) if v is None]
            if not self.groups:
                missing.append("groups")
            if missing:
                raise ValueError(f"groups_from = 'areas' needs {', '.join(missing)} (demographic polygons, their "
                                 "residents column and at least one group definition); or set groups_from = "
                                 "'places' to compare the cells' place names")
        else:
            given = [k for k, v in (("areas", self.areas), ("population", self.population), ("groups", self.groups))
                     if v]
            if given:
                raise ValueError(f"groups_from = 'places' takes its groups from the cells' place names; remove "
                                 f"{', '.join(given)} (or set groups_from = 'areas')")
            if self.primary not in (None, PLACES_DEFINITION):
                raise ValueError(f"primary {self.primary!r}: with groups_from = 'places' the only definition is "
                                 f"'{PLACES_DEFINITION}'")
        return self

    @model_validator(mode="after")
    def _primary_labels(self) -> FairnessConfig:
        if self.groups_from == "places":  # the place names are known only once the incidents are read
            return self
        names = [d.name for d in self.groups]
        if self.primary is not None and self.primary not in names:
            raise ValueError(f"primary {self.primary!r} is not a group definition; choose from {names}")
        labels = self.primary_definition.group_labels
        for key, mapping in (("reporting_rates", self.reporting_rates),
                             ("simulation.true_rate_multipliers", self.simulation.true_rate_multipliers)):
            unknown = sorted(set(mapping) - set(labels))
            if unknown:
                raise ValueError(f"{key}: {unknown} are not groups of the primary definition "
                                 f"'{self.primary_definition.name}' ({labels})")
        return self

    @property
    def primary_definition(self) -> GroupDefinition:
        """The definition the simulation, the sensitivity and the trade-off use (groups_from = 'areas' only)."""
        return next((d for d in self.groups if d.name == self.primary), self.groups[0])

    @property
    def primary_name(self) -> str:
        """Name of the primary group definition ('place' when the groups are the place names)."""
        return PLACES_DEFINITION if self.groups_from == "places" else self.primary_definition.name


class ContextLayerConfig(_Section):
    """A context layer (Risk Terrain Modeling style): points (schools, stops) or polygons with attributes."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]
    path: Path
    attributes: list[str] = Field([], description="polygon layers: numeric columns to area-weight onto cells")
    lon: str | None = Field(None, description="point layers: build the points from these WGS84 columns instead of "
                                              "the file's geometry (also for CSV files)")
    lat: str | None = None
    label: str | None = Field(None, description="plural noun for the layer in per-cell reasons, e.g. 'subway and "
                                                "bus stops' [default: the name with spaces]")

    @model_validator(mode="after")
    def _lonlat_pair(self) -> ContextLayerConfig:
        if (self.lon is None) != (self.lat is None):
            raise ValueError("give both lon and lat, or neither")
        if self.lon and self.attributes:
            raise ValueError("lon/lat build a point layer; attributes are for polygon layers")
        return self

    @field_validator("path", mode="before")
    @classmethod
    def _path_exists(cls, v, info: ValidationInfo):
        return _resolve(v, info)


class TrendsConfig(_Section):
    """hotspot trends: counts and rates per offence group, for the whole area and per area unit."""

    areas: Path | None = Field(None, description="polygons (e.g. neighbourhoods); each cell belongs to the polygon "
                                                 "containing its centre [default: the whole area only]")
    name_column: str = Field("name", description="column of the areas file naming each unit")
    population: str | None = Field(None, description="column of residents: adds rates per 1,000 residents")
    recent_weeks: Annotated[int, Field(ge=1, le=52)] = Field(13, description="window compared with the same weeks "
                                                                             "a year earlier")

    @field_validator("areas", mode="before")
    @classmethod
    def _areas_exists(cls, v, info: ValidationInfo):
        return _resolve(v, info)


class PlacesConfig(_Section):
    """Place names for cells (map labels, the top list, the briefing): polygons with a name column, or, where none
    are given, the incidents' own area column (`incidents.place`)."""

    areas: Path | None = Field(None, description="polygons naming parts of the area (neighbourhoods, beats); each "
                                                 "cell takes the name of the polygon holding its centre")
    name_column: str = Field("name", description="column of the areas file naming each polygon")

    @field_validator("areas", mode="before")
    @classmethod
    def _areas_exists(cls, v, info: ValidationInfo):
        return _resolve(v, info)


class PrivacyConfig(_Section):
    """Public views: aggregated to coarse cells or area units, small counts suppressed."""

    public: bool = Field(False, description="outputs of this area are public: trends apply the public view")
    min_count_k: Annotated[int, Field(ge=1)] = Field(5, description="published counts below k are shown as '< k'")
    public_cell_size_m: Annotated[float, Field(gt=0)] = Field(1000.0, description="block size of public cells")


class StudyConfig(_Section):
    area: AreaConfig
    incidents: IncidentsConfig = Field(description="the (first) incident source; [[incidents]] may repeat")
    more_sources: list[IncidentsConfig] = Field(
        [], description="the second and later [[incidents]] tables (filled from the array form)")
    dedupe: DedupeConfig = DedupeConfig()
    history: HistoryConfig = HistoryConfig()
    personal_data: PersonalDataConfig = PersonalDataConfig()
    period: PeriodConfig = PeriodConfig()
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    tune: TuneConfig = TuneConfig()
    promotion: PromotionConfig = PromotionConfig()
    selection: SelectionConfig = SelectionConfig()
    cycle: CycleConfig = CycleConfig()
    engine: EngineConfig = EngineConfig()
    trends: TrendsConfig = TrendsConfig()
    places: PlacesConfig = PlacesConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    backtest: BacktestConfig = BacktestConfig()
    fairness: FairnessConfig | None = None
    context: list[ContextLayerConfig] = []
    products: list[ProductConfig] = Field(
        [], description="[[products]]: forecast products; absent = one product, the label of model.target_offenses, "
                        "named as before (registry AREA-lightgbm, outputs/AREA/STEP)")

    source_path: Path | None = Field(None, exclude=True)
    source_sha256: str | None = Field(None, exclude=True)
    selected_product: str | None = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _incident_sources(cls, data):
        """`[[incidents]]` (an array of tables) becomes the first source plus `more_sources`."""
        if isinstance(data, dict) and isinstance(data.get("incidents"), list):
            tables = data["incidents"]
            if not tables:
                raise ValueError("incidents: list at least one source")
            data = {**data, "incidents": tables[0], "more_sources": [*tables[1:], *data.get("more_sources", [])]}
        return data

    @model_validator(mode="after")
    def _source_names_unique(self) -> StudyConfig:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"incidents: every source needs its own name; got {names}")
        return self

    @property
    def sources(self) -> list[IncidentsConfig]:
        """Every incident source, in the order of the config (the first one wins a cross-source duplicate)."""
        return [self.incidents, *self.more_sources]

    @property
    def history_dir(self) -> Path | None:
        if self.history.path is not None:
            return self.history.path
        return None if self.source_path is None else self.source_path.parent / "history" / self.area.name

    @property
    def inbox_dir(self) -> Path | None:
        """The folder `hotspot cycle` takes weekly extracts from: cycle.inbox, else inbox/AREA beside the config."""
        if self.cycle.inbox is not None:
            return self.cycle.inbox
        return None if self.source_path is None else self.source_path.parent / "inbox" / self.area.name

    @model_validator(mode="after")
    def _demographics_not_features(self) -> StudyConfig:
        if self.fairness and not self.features.demographics_as_features:
            for layer in self.context:
                if layer.path == self.fairness.areas:
                    raise ValueError(
                        f"context layer '{layer.name}' is the fairness areas file: demographics are audit inputs, "
                        "not model features, unless features.demographics_as_features = true"
                    )
        return self

    @model_validator(mode="after")
    def _targets_in_offenses(self) -> StudyConfig:
        listed = [s.offenses for s in self.sources if s.offenses]
        known = {o for offenses in listed for o in offenses}
        every_source_lists = len(listed) == len(self.sources)
        targets = self.model.target_offenses
        if targets and every_source_lists:
            unknown = sorted(set(targets) - known)
            if unknown:
                raise ValueError(f"model.target_offenses {unknown} are not in incidents.offenses")
        for i, product in enumerate(self.products):
            unknown = sorted(set(product.offenses or []) - known) if every_source_lists else []
            if unknown:
                raise ValueError(f"products[{i}] ({product.name}): offences {unknown} are not in incidents.offenses "
                                 f"(expected some of {sorted(known)})")
        return self

    @model_validator(mode="after")
    def _products_consistent(self) -> StudyConfig:
        names = [p.name for p in self.products]
        if len(set(names)) != len(names):
            raise ValueError(f"products: every product needs its own name; got {names}")
        # a config made by for_product carries its product's offences in model.target_offenses; anything else is two
        # answers to one question
        if self.products and self.model.target_offenses is not None and \
                self.model.target_offenses not in [p.offenses for p in self.products]:
            raise ValueError("model.target_offenses: with [[products]], give each product's offences there instead")
        return self

    @property
    def has_products(self) -> bool:
        """Whether the config lists [[products]] (names then carry the product: AREA-PRODUCT, outputs/AREA/PRODUCT)."""
        return bool(self.products)

    @property
    def product_list(self) -> list[ProductConfig]:
        """The config's products; without [[products]], the one implicit product of model.target_offenses."""
        if self.products:
            return list(self.products)
        return [ProductConfig(name=_offense_slug(self.model.target_offenses), offenses=self.model.target_offenses)]

    @property
    def product_names(self) -> list[str]:
        """The names `--product` and `?product=` take, the default first."""
        return [p.name for p in self.product_list]

    @property
    def product(self) -> ProductConfig:
        """The product this config forecasts: the one chosen by for_product, else the one whose offences the label
        counts, else the first."""
        products = self.product_list
        for p in products:
            if p.name == self.selected_product:
                return p
        for p in products:
            if p.offenses == self.model.target_offenses:
                return p
        return products[0]

    @property
    def model_key(self) -> str:
        """The name of this config's product within the area: AREA-PRODUCT with [[products]], else AREA (as before
        products existed, so that single-product stores, registries and outputs keep their names)."""
        return f"{self.area.name}-{self.product.name}" if self.products else self.area.name

    def for_product(self, name: str | None) -> StudyConfig:
        """This config forecasting product `name` (None = the default, the first): its label's offences and feature
        exclusions applied. Raise ConfigError naming the products there are when `name` is not one of them."""
        products = self.product_list
        found: ProductConfig | None
        if name is None:
            found = self.product if self.selected_product else products[0]
        else:
            found = next((p for p in products if p.name == name), None)
            if found is None:
                where = f"{self.source_path}: " if self.source_path else ""
                raise ConfigError(f"{where}no product named {name!r}; expected one of {', '.join(self.product_names)}"
                                  + ("" if self.products else " (this config lists no [[products]])"))
        product = found
        if not self.products:
            return self.model_copy(update={"selected_product": product.name})
        model = self.model.model_copy(update={"target_offenses": product.offenses})
        features = self.features
        if product.exclude_families:
            extra = [f for f in product.exclude_families if f not in features.exclude]
            features = features.model_copy(update={"exclude": [*features.exclude, *extra]})
        return self.model_copy(update={"model": model, "features": features, "selected_product": product.name})


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {len(exc.errors())} problem(s) in the study-area config"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {loc}: {msg}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path) -> StudyConfig:
    """Read, validate and return a study-area config; raise ConfigError naming the key path on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        cfg = StudyConfig.model_validate(raw, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    return cfg.model_copy(
        update={"source_path": path.resolve(), "source_sha256": hashlib.sha256(raw_bytes).hexdigest()}
    )
