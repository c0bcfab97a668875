"""HTML pages from Jinja2 templates: the reports' in training/templates/ (the accuracy report, the fairness audit, and
the base layout and macros they share) and the service's in serving/templates/ (the map page). Values are escaped by
the templates (autoescape), so callers pass plain strings and numbers already formatted for reading; a missing
variable is an error, not an empty string (StrictUndefined)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def environment(folder: Path = TEMPLATES) -> jinja2.Environment:
    """The template environment of one templates folder: autoescaped, strict about undefined names."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, folder: Path = TEMPLATES, **context) -> str:
    """Render one template of `folder` (default training/templates/) with the given variables."""
    return environment(folder).get_template(template).render(**context)
