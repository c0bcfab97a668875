"""Study-area configuration: one TOML file per area, validated by pydantic.

Relative paths in a config are resolved against the folder of the config file, so a config works from any
working directory. Everything city-specific lives here, never in code.
"""

from __future__ import annotations

import hashlib
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
    duplicate_columns: list[str] | None = Field(None, description="columns that define an exact duplicate; absent = all")
    premises: str | None = Field(None, description="optional column with the premises type (feeds the premises mix)")
    hour_known: bool = Field(True, description="timestamps carry a real time of day (feeds the time-of-day mix)")

    @field_validator("path", mode="before")
    @classmethod
    def _path_exists(cls, v, info: ValidationInfo):
        return _resolve(v, info)

    @model_validator(mode="after")
    def _coordinates(self) -> "IncidentsConfig":
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
    def _known_families(self) -> "FeaturesConfig":
        if not (self.families or self.exclude):
            return self
        import features.families  # noqa: F401  (registers the families)
        from features.registry import FAMILIES

        unknown = [f for f in sorted(set(self.families or []) | set(self.exclude)) if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown feature family {unknown}; known: {sorted(FAMILIES)}")
        return self


class LightGBMConfig(_Section):
    objective: Literal["poisson", "tweedie", "regression"] = "poisson"
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


class FairnessConfig(_Section):
    areas: Path
    population: str
    groups: list[str]

    @field_validator("areas", mode="before")
    @classmethod
    def _areas_exists(cls, v, info: ValidationInfo):
        return _resolve(v, info)


class ContextLayerConfig(_Section):
    """A context layer (Risk Terrain Modeling style): points (schools, stops) or polygons with attributes."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]
    path: Path
    attributes: list[str] = Field([], description="polygon layers: numeric columns to area-weight onto cells")
    lon: str | None = Field(None, description="point layers: build the points from these WGS84 columns instead of "
                                              "the file's geometry (also for CSV files)")
    lat: str | None = None

    @model_validator(mode="after")
    def _lonlat_pair(self) -> "ContextLayerConfig":
        if (self.lon is None) != (self.lat is None):
            raise ValueError("give both lon and lat, or neither")
        if self.lon and self.attributes:
            raise ValueError("lon/lat build a point layer; attributes are for polygon layers")
        return self

    @field_validator("path", mode="before")
    @classmethod
    def _path_exists(cls, v, info: ValidationInfo):
        return _resolve(v, info)


class StudyConfig(_Section):
    area: AreaConfig
    incidents: IncidentsConfig
    period: PeriodConfig = PeriodConfig()
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    backtest: BacktestConfig = BacktestConfig()
    fairness: FairnessConfig | None = None
    context: list[ContextLayerConfig] = []

    source_path: Path | None = Field(None, exclude=True)
    source_sha256: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _demographics_not_features(self) -> "StudyConfig":
        if self.fairness and not self.features.demographics_as_features:
            for layer in self.context:
                if layer.path == self.fairness.areas:
                    raise ValueError(
                        f"context layer '{layer.name}' is the fairness areas file: demographics are audit inputs, "
                        "not model features, unless features.demographics_as_features = true"
                    )
        return self

    @model_validator(mode="after")
    def _targets_in_offenses(self) -> "StudyConfig":
        targets = self.model.target_offenses
        if targets and self.incidents.offenses:
            unknown = sorted(set(targets) - set(self.incidents.offenses))
            if unknown:
                raise ValueError(f"model.target_offenses {unknown} are not in incidents.offenses")
        return self


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
