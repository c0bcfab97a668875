"""The error responses each endpoint documents (so the OpenAPI spec lists every status it can answer)."""

from __future__ import annotations

from hotspot.serving.schemas import Problem, ValidationProblem

_DESCRIPTIONS = {
    400: "the body is not readable JSON (bad encoding)",
    401: "missing, unknown or revoked API key",
    403: "the key's role may not do this",
    404: "nothing published or logged yet (the message says what to run)",
    409: "the week is already published (publications are immutable; ask for a new version)",
    413: "request body too large",
    422: "invalid request (every problem listed)",
    503: "the service is not set up for this yet (no study area or no champion model)",
}


def errors(*codes: int) -> dict[int, dict]:
    """The OpenAPI `responses=` entries for these error status codes."""
    return {code: {"model": ValidationProblem if code == 422 else Problem, "description": _DESCRIPTIONS[code]}
            for code in codes}
