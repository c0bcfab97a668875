"""Request and response schemas (pydantic); they are also the OpenAPI contract schemathesis checks."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TOP = 10_000
WEEK_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# The ranges are in the pattern, so the spec rules out what the server refuses; only min <= max (which no JSON
# Schema can say about two parts of one string) is left to the description and the server's 422.
_LON = r"-?(180(\.0+)?|(1[0-7][0-9]|[1-9]?[0-9])(\.[0-9]+)?)"
_LAT = r"-?(90(\.0+)?|[1-8]?[0-9](\.[0-9]+)?)"
BBOX_PATTERN = rf"^{_LON},{_LAT},{_LON},{_LAT}$"


def check_week(value: str) -> str:
    """A YYYY-MM-DD string that is a real date (the pattern alone lets 2019-02-30 through)."""
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (expected YYYY-MM-DD, e.g. 2019-12-30)") from None
    return value


# a date string (format: date on the string itself, so a generator of valid data makes real dates)
Week = Annotated[str, Field(pattern=WEEK_PATTERN, json_schema_extra={"format": "date"})]


# --- errors ---------------------------------------------------------------------------------------------------------

class Problem(BaseModel):
    detail: str = Field(description="what went wrong, in one sentence")


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where: 'query', 'path' or 'body', then the field")
    msg: str
    type: str


class ValidationProblem(BaseModel):
    detail: str = Field(description="every issue in one line: 'query.top: Input should be less than or equal to "
                                    "10000'")
    errors: list[ValidationIssue]


# --- health ---------------------------------------------------------------------------------------------------------

class Health(BaseModel):
    status: Literal["ok"] = "ok"
    code_version: str


class ChampionInfo(BaseModel):
    name: str
    version: str


class PublishedWeek(BaseModel):
    week: str
    version: int


class Readiness(BaseModel):
    ready: bool
    area: str | None
    champion: ChampionInfo | None
    forecasts_with: str | None = Field(None, description="what forecasts new weeks: 'auto' (the selection rule, "
                                       "no champion needed), 'champion' or 'version N' (HOTSPOT_FORECAST_MODEL)")
    latest_forecast: PublishedWeek | None
    problems: list[str] = Field(description="why the service is not ready (empty when ready)")


# --- forecasts ------------------------------------------------------------------------------------------------------

class PublishRequest(BaseModel):
    """Compute the forecast of one week (with auto, or the model HOTSPOT_FORECAST_MODEL pins) and publish it."""

    # strict: `"new_version": "yes"` or `1` is a mistake to report (422), not a true to guess
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"week": "2019-12-30"}]})

    week: Week | None = Field(None, description="YYYY-MM-DD start of a period of the study area's data (with the "
                                                "default `[period] freq = \"W-MON\"`, a Monday), from the first "
                                                "period to the first week after the data; any other date gets 422 "
                                                "naming the nearest starts. Default: the first week after the data")
    new_version: bool = Field(False, description="publish again as a new version when the week is already "
                                                 "published (otherwise 409); a JSON true or false")

    @field_validator("week")
    @classmethod
    def _real_date(cls, value: str | None) -> str | None:
        return None if value is None else check_week(value)


class PublicationSummary(BaseModel):
    id: int
    area: str
    product: str | None = Field(description="the forecast product (`products` of /v1/areas)")
    week: str
    version: int
    model: str
    model_version: str
    model_run_id: str | None
    data_fingerprint: str | None
    code_version: str | None
    created_at: datetime
    published_by: str | None = Field(description="id of the API key that published it (never the key)")
    cells: int
    url: str = Field(description="where to read this version")


class PublicationList(BaseModel):
    area: str
    product: str = Field(description="the forecast product listed (`?product=`)")
    product_title: str = Field(description="its title, as readers see it")
    publications: list[PublicationSummary]


class Polygon(BaseModel):
    type: Literal["Polygon"]
    coordinates: list[list[list[float]]] = Field(description="lon, lat (WGS84), first point repeated last")


class CellProperties(BaseModel):
    cell_id: int
    rank: int = Field(ge=1, description="1 = highest risk")
    risk: float = Field(ge=0, description="expected recorded incidents in the week")
    percentile: float = Field(ge=0, le=100, description="share of cells with lower risk, in percent")
    lon: float
    lat: float
    period_start: str
    reasons: list[str] = Field(description="up to three plain-English reasons for the cell's risk")
    place: str | None = Field(None, description="the named area the cell lies in (see /v1/areas), or its centre in "
                                                "degrees where the config names no places; absent in forecasts "
                                                "published before cells had place names")


class CellFeature(BaseModel):
    type: Literal["Feature"]
    geometry: Polygon
    properties: CellProperties


class ForecastMetadata(BaseModel):
    period_start: str
    model: str
    model_version: str
    model_run_id: str | None
    data_fingerprint: str | None
    code_version: str | None
    created_at: str = Field(description="when the forecast was made and published (UTC, ISO 8601)")
    area: str
    publication_id: int
    publication_version: int
    published_by: str | None
    cells: int = Field(description="cells in the whole forecast")
    returned_cells: int = Field(description="cells in this response (after top and bbox)")
    top: int | None
    bbox: list[float] | None
    note: str


class ForecastCollection(BaseModel):
    """RFC 7946 FeatureCollection (WGS84 lon/lat) of cells in rank order; provenance in the `metadata` member."""

    type: Literal["FeatureCollection"]
    metadata: ForecastMetadata
    features: list[CellFeature]


# --- areas ---------------------------------------------------------------------------------------------------------

class AreaProperties(BaseModel):
    kind: Literal["outline", "area"] = Field(description="outline: the study area's edge; area: a named area")
    name: str = Field(description="the area's name ('study area' for the outline)")
    n_cells: int | None = Field(None, ge=0, description="grid cells named after this area (areas only)")
    label: list[float] | None = Field(None, min_length=2, max_length=2,
                                      description="[lon, lat] of a point inside the area where its name goes "
                                                  "(areas only)")


class AreaFeature(BaseModel):
    type: Literal["Feature"]
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon, lon/lat (WGS84), simplified by "
                                                 "about 10 m")
    properties: AreaProperties


class ProductInfo(BaseModel):
    name: str = Field(description="what `?product=` takes")
    title: str = Field(description="the name readers see")
    offenses: list[str] | None = Field(description="the offences it counts; null = every accepted offence")
    default: bool = Field(description="served when a request names no product")


class AreaCollection(BaseModel):
    """RFC 7946 FeatureCollection (WGS84) of the study-area outline, then the named areas cells are called after."""

    type: Literal["FeatureCollection"]
    origin: str = Field(description="where the area names came from (a polygon file and its name column, or the "
                                    "incidents' own area labels); 'none' when the config names no places")
    products: list[ProductInfo] = Field(description="the area's forecast products, the default first: what "
                                                    "`?product=` takes on the forecast, briefing, report and model "
                                                    "routes")
    features: list[AreaFeature]


# --- reports and models ---------------------------------------------------------------------------------------------

class ReportEnvelope(BaseModel):
    kind: Literal["accuracy", "fairness"]
    run_id: str = Field(description="the MLflow run that logged the report")
    created_at: str | None
    data_fingerprint: str | None
    code_version: str | None
    tags: dict[str, str]
    report: dict[str, Any]


class ModelVersion(BaseModel):
    version: str
    aliases: list[str]
    champion: bool
    status: str
    run_id: str | None
    created_at: str | None
    description: str | None
    data_fingerprint: str | None
    code_version: str | None
    metrics: dict[str, float | None]
    tags: dict[str, str]


class ModelList(BaseModel):
    name: str
    product: str | None = Field(None, description="the forecast product whose registered model this is")
    champion: str | None
    versions: list[ModelVersion]


class ReportLink(BaseModel):
    run_id: str = Field(description="the MLflow run that logged the report")
    created_at: str | None = Field(description="when that run started (UTC)")
    data_fingerprint: str | None
    code_version: str | None
    json_url: str = Field(alias="json", description="the report's JSON envelope (API, auditor key)")
    html: str = Field(description="the report's HTML page (API, auditor key)")
    page: str = Field(description="the browser page that asks for the key and shows the report")


class VersionReports(BaseModel):
    version: str
    champion: bool
    aliases: list[str]
    status: str
    created_at: str | None
    run_id: str | None
    data_fingerprint: str | None
    reports: dict[Literal["accuracy", "fairness"], ReportLink | None] = Field(
        description="accuracy: the newest backtest on this version's data and config (a backtest refits the model "
                    "configuration week by week); fairness: the newest audit of this version; null where none")


class TrendsLink(BaseModel):
    areas: list[str] = Field(description="the values of `?area=` of /v1/trends")
    json_url: str = Field(alias="json")
    page: str
    made: str


class ReportIndex(BaseModel):
    area: str | None
    product: str | None = Field(None, description="the forecast product whose versions and reports these are")
    product_title: str | None = None
    model: str | None = Field(description="the registered model's name (null before the first `hotspot train`)")
    champion: str | None
    versions: list[VersionReports] = Field(description="newest first")
    latest: dict[Literal["accuracy", "fairness"], ReportLink | None]
    trends: TrendsLink
    note: str | None


# --- the live record and the weekly cycles --------------------------------------------------------------------------

class LiveWeek(BaseModel):
    week: str = Field(description="start of the week forecast")
    observed_total: int = Field(description="incidents recorded in the week when it was last scored")
    published: dict[str, float | None] | None = Field(
        description="the published forecast's metrics (hit_rate, pai and pei at 1% and 5%, poisson_deviance); "
                    "null where only baselines were scored")
    best_baseline: dict[str, float | None] | None = Field(description="the best baseline's metrics that week")
    baselines: dict[str, float | None] = Field(description="each baseline's PAI at 1% that week")


class LiveBaseline(BaseModel):
    model: str
    mean_pai_1: float = Field(alias="mean_pai@1%", description="its mean PAI at 1% over the weeks compared")
    weeks: int = Field(description="weeks where it and the published forecast were both scored")
    chosen: str = Field(description="how it was chosen (in hindsight, which favours the baselines)")


class LiveMetricSummary(BaseModel):
    published: float | None = Field(description="the published forecasts' mean over the weeks compared")
    best_baseline: float | None = Field(description="the best baseline's mean over the same weeks")
    difference: float | None = Field(description="mean weekly difference, published minus best baseline")
    ci95: list[float | None] = Field(description="95% percentile-bootstrap interval of the difference (weeks "
                                                 "resampled)")
    weeks_better: int | None = Field(description="weeks the published forecast did better")
    weeks: int = Field(description="weeks compared")


class RescoredWeek(BaseModel):
    week: str
    model: str
    times_scored: int
    first_scored_at: str | None
    scored_at: str | None
    first_observed_total: int
    observed_total: int
    observed_change: int = Field(description="incidents recorded late, after the first score")
    first_pai_1: float | None = Field(alias="first_pai@1%")
    pai_1: float | None = Field(alias="pai@1%")
    pai_change: float | None


class CycleFlag(BaseModel):
    model_config = ConfigDict(extra="allow")

    product: str | None = None
    kind: str
    sentence: str
    flag: bool = True


class CycleBrief(BaseModel):
    id: int
    week: str
    status: str
    sentence: str | None = Field(description="the cycle's outcome in one sentence")
    flags: list[CycleFlag] = Field(description="drift and decay flagged that week (on /v1/reports/live only this "
                                               "product's and the area's own)")


class LiveReport(BaseModel):
    area: str
    product: str
    n_weeks: int = Field(description="weeks whose published forecast has been scored (within `?weeks=`)")
    window: int | None = Field(description="`?weeks=`: only the last N weeks scored [null: all]")
    weeks: list[LiveWeek] = Field(description="oldest first")
    best_baseline: LiveBaseline | None
    summary: dict[str, LiveMetricSummary] = Field(description="per metric (hit_rate, pai, pei at 1% and 5%); empty "
                                                              "when nothing is scored yet")
    sentence: str = Field(description="the record in plain English, or that nothing is scored yet")
    rescored: list[RescoredWeek] = Field(description="weeks whose figures moved when late records were scored")
    note: str = Field(description="recorded incidents are policing data, not ground truth")
    cycles: list[CycleBrief] = Field(description="the latest weekly cycles, newest first")


class CycleRecord(BaseModel):
    id: int
    week: str
    status: str
    started_at: datetime
    finished_at: datetime
    data_fingerprint: str | None
    sentence: str | None
    flags: list[CycleFlag]
    products: dict[str, Any] = Field(description="what the cycle did for each product (its report, unchanged)")


class CycleList(BaseModel):
    area: str
    cycles: list[CycleRecord] = Field(description="newest first")
