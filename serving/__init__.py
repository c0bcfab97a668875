"""FastAPI service that publishes forecasts and reports (see the serving issue)."""

DEFAULT_DATABASE_URL = "sqlite:///hotspot.db"  # the commands' and the service's store unless told otherwise
