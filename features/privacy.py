"""Columns that look like personal data: refused at ingest unless allowed, and never written to any output.

Two kinds: `personal` fields (names, narratives, addresses, dates of birth, phones, e-mails, plates) are only ever
read to tell exact duplicates apart and are dropped straight after; `identifier` fields (case, report, occurrence
numbers) may also reach the quarantine file, where a data steward needs them to trace a rejected row. Neither kind
reaches the accepted rows, the stored history, the panel or anything published.
"""

from __future__ import annotations

import re

import pandas as pd

from hotspot.features.config import IncidentsConfig, PersonalDataConfig
from hotspot.features.errors import InputError

# (kind, what it looks like, pattern on the column name lower-cased with every non-alphanumeric run as "_",
# wrapped in "_" so patterns can anchor on word edges)
NAME_PATTERNS: list[tuple[str, str, str]] = [
    ("personal", "a person's name", r"_(first|last|full|given|family|middle|sur|maiden|nick|victim|suspect|"
                                    r"offender|person|complainant|witness|officer)?_?names?_"),
    ("personal", "a person's name", r"_(victim|suspect|offender|complainant|witness|accused)s?_"),
    ("personal", "free text", r"_(narrative|description|desc|free_?text|comments?|notes?|remarks?|summary|"
                              r"synopsis|statement)_"),
    ("personal", "an exact address", r"_(address|addr|street|street_?name|house_?(no|num|number)|"
                                     r"post_?code|postal_?code|zip(_?code)?|apartment_?(no|number))_"),
    ("personal", "a date of birth", r"_(dob|birth_?date|date_?of_?birth|birthday|born)_"),
    ("personal", "a phone number", r"_(phone|telephone|tel|mobile|cell_?phone)(_?(no|number))?_"),
    ("personal", "an e-mail address", r"_e_?mail(_?address)?_"),
    ("personal", "a licence or plate", r"_(licen[cs]e|plate|licen[cs]e_?plate|vin|passport|ssn|sin|"
                                       r"driver_?licen[cs]e)(_?(no|num|number))?_"),
    ("identifier", "a case number", r"_(case|report|occurrence|incident|event|crime|complaint|file|ticket|"
                                    r"arrest|booking)_?(no|nr|num|number|id|ref|reference)_"),
    ("identifier", "a case number", r"_event_unique_id_"),
]

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
PHONE = re.compile(r"^\+?[\d(][\d\s().-]{7,}\d$")


def _normalise(column: str) -> str:
    return "_" + re.sub(r"[^a-z0-9]+", "_", str(column).lower()).strip("_") + "_"


def mapped_columns(src: IncidentsConfig) -> set[str]:
    """Columns the config maps (time, place, offence, premises, key): read by design, never refused."""
    mapped = (src.timestamp, src.lon, src.lat, src.x, src.y, src.offense, src.premises, src.place, src.key)
    return {c for c in mapped if c}


def classify(df: pd.DataFrame, src: IncidentsConfig, privacy: PersonalDataConfig) -> dict[str, tuple[str, str]]:
    """Column -> (kind, what it looks like) for every column that looks personal, mapped columns excepted."""
    extra = [("personal", f"pattern {p!r}", p) for p in privacy.patterns]
    found: dict[str, tuple[str, str]] = {}
    skip = mapped_columns(src)
    for column in df.columns:
        if column in skip or str(column).startswith("__"):
            continue
        norm = _normalise(column)
        for kind, what, pattern in NAME_PATTERNS:
            if re.search(pattern, norm):
                found[column] = (kind, what)
                break
        else:
            for kind, what, pattern in extra:
                if re.search(pattern, str(column), flags=re.IGNORECASE):
                    found[column] = (kind, what)
                    break
        if column in found or not privacy.content_checks:
            continue
        if df[column].dtype == object or isinstance(df[column].dtype, pd.StringDtype):
            sample = df[column].dropna().astype(str).str.strip()
            sample = sample[sample != ""].head(500)
            if len(sample) and sample.str.contains(EMAIL).mean() > 0.2:
                found[column] = ("personal", "e-mail addresses in its values")
            elif len(sample) and sample.str.match(PHONE).mean() > 0.5:
                found[column] = ("personal", "phone numbers in its values")
    return found


def screen(df: pd.DataFrame, src: IncidentsConfig, privacy: PersonalDataConfig) -> dict[str, str]:
    """Refuse a source with personal-looking columns it does not allow; return the allowed ones with their kind."""
    found = classify(df, src, privacy)
    refused = {c: what for c, (_, what) in found.items() if c not in src.allow_columns}
    if refused:
        listed = ", ".join(f"'{c}' ({what})" for c, what in refused.items())
        raise InputError(
            f"source '{src.name}' ({src.path.name}): column(s) {listed} look like personal data; remove them from "
            f"the file, or list them in that source's allow_columns to read them anyway (they are never written "
            f"to any output)")
    return {c: kind for c, (kind, _) in found.items()}
