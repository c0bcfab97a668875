"""Service settings, read from HOTSPOT_* environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hotspot.serving import DEFAULT_DATABASE_URL
from hotspot.training.tracking import tracking_uri


class Settings(BaseSettings):
    """Everything the service reads from its environment; `HOTSPOT_` + the upper-case field name."""

    model_config = SettingsConfigDict(env_prefix="HOTSPOT_", extra="ignore")

    config: Path | None = Field(None, description="study-area TOML file (HOTSPOT_CONFIG)")
    database_url: str = Field(DEFAULT_DATABASE_URL, description="publications and keys; SQLite file or "
                                                                  "postgresql+psycopg://user@host/db")
    forecast_model: str = Field("auto", description="which model forecasts published weeks: 'auto' (the "
                                "selection rule, fitted for each week with only the weeks before it), 'champion' or "
                                "a registered version number (HOTSPOT_FORECAST_MODEL)")
    max_top: int = Field(10_000, ge=1, description="largest ?top a client may ask for")
    max_body_bytes: int = Field(4_096, ge=64, description="largest request body accepted (413 above)")
    cache_ttl_s: float = Field(1.0, ge=0, description="how long the latest-publication pointer and API-key "
                                                      "look-ups are reused before the database is asked again")
    render_cache_size: int = Field(512, ge=0, description="rendered responses kept per (publication, top, bbox, "
                                                          "format)")
    access_log_lines: bool = Field(True, description="one JSON line per request on stderr (logger hotspot.access); "
                                                     "the access_log table is written either way")
    access_log_flush_s: float = Field(1.0, gt=0, description="how often buffered access-log rows are written")
    reports_refresh_s: float = Field(5.0, ge=0, description="how often MLflow is asked for new backtest and audit "
                                                            "runs (a new report is served within this time); 0: "
                                                            "asked on every report request (not for production)")
    warm_panel: bool = Field(True, description="build the study area's panel in the background at start-up, so the "
                                               "first publication does not wait for it")
    # HOTSPOT_TILE_URL / HOTSPOT_TILE_ATTRIBUTION are accepted too (the names the issue and deployments use)
    map_tile_url: str | None = Field(None, description="optional XYZ tile URL template for the map background "
                                                       "(none by default: the map works offline)",
                                     validation_alias=AliasChoices("map_tile_url", "HOTSPOT_MAP_TILE_URL",
                                                                   "HOTSPOT_TILE_URL"))
    map_tile_attribution: str | None = Field(
        None, validation_alias=AliasChoices("map_tile_attribution", "HOTSPOT_MAP_TILE_ATTRIBUTION",
                                            "HOTSPOT_TILE_ATTRIBUTION"),
        description="the tile server's attribution, shown on the map beside its tiles (plain text, e.g. "
                    "'© OpenStreetMap contributors'); used with map_tile_url")
    rate_limit_public_key: str = Field("600/minute", description="requests each public-role key may make, e.g. "
                                                                 "'600/minute' or '600/minute;20000/day'; "
                                                                 "empty or 0: no limit (counted per process)")
    rate_limit_public_address: str = Field("600/minute", description="requests with public-role keys each client "
                                                                     "address may make; likewise")

    @field_validator("rate_limit_public_key", "rate_limit_public_address")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from hotspot.serving.rate_limit import parse_limits

        parse_limits(value)  # ValueError names the text that does not parse
        return value

    @property
    def mlflow_tracking_uri(self) -> str:
        return tracking_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The service settings, read from the environment."""
    return Settings()
