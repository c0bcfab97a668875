"""FastAPI service that publishes forecasts and reports (see the serving issue)."""
