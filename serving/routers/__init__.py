"""One router per resource: health, forecasts, reports, models, map."""
