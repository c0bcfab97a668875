"""Security headers sent with every response, and the Content-Security-Policy of each kind of page."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

# Everything the API and the report pages need: the reports are HTML with an inline <style> and their figures as
# data: images, and no script at all. The map and the API docs get their own policies (below).
_BASE = {
    "default-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "style-src": ("'self'", "'unsafe-inline'"),
    "object-src": ("'none'",),
    "base-uri": ("'none'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
}
# /docs (Swagger UI) and /redoc load their scripts and styles from this server (the fastapi-offline package's
# copies, routers/pages.py); Swagger UI starts with one inline script (allowed by its hash, set by the route) and
# both set inline styles; ReDoc runs its search in a blob: worker. Nothing external.
_DOCS = {
    **_BASE,
    "script-src": ("'self'",),
    "style-src": ("'self'", "'unsafe-inline'"),
    "worker-src": ("'self'", "blob:"),
    "connect-src": ("'self'",),
}
DOCS_PATHS = ("/docs", "/redoc")


def _policy(directives: dict[str, tuple[str, ...]]) -> str:
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


DEFAULT_POLICY = _policy(_BASE)
DOCS_POLICY = _policy(_DOCS)

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def tile_source(url_template: str | None) -> str | None:
    """The CSP source of an XYZ tile URL template (`https://{s}.tile.example.org/{z}/{x}/{y}.png` ->
    `https://*.tile.example.org`); the scheme alone when a placeholder sits elsewhere in the host."""
    if not url_template:
        return None
    parts = urlsplit(url_template)
    if not parts.scheme or not parts.netloc:
        return None
    host = re.sub(r"^\{[^}]*\}(?=\.)", "*", parts.netloc)
    return f"{parts.scheme}:" if "{" in host or "}" in host else f"{parts.scheme}://{host}"


def map_policy(inline_script: str, tiles: str | None) -> str:
    """The map page: its bundled scripts and one inline script (by hash), its own styles, and map tiles from the
    configured tile server, if any."""
    images = ("'self'", "data:", *((tiles,) if tiles else ()))
    return _policy({**_BASE, "script-src": ("'self'", script_hash(inline_script)), "style-src": ("'self'",),
                    "img-src": images, "connect-src": ("'self'",)})


def docs_policy(inline_scripts: list[str]) -> str:
    """/docs and /redoc: their bundled scripts and their own inline scripts (by hash), nothing external."""
    return _policy({**_DOCS, "script-src": ("'self'", *(script_hash(s) for s in inline_scripts))})


def report_page_policy() -> str:
    """The report pages of routers/pages.py: their own script (no inline one), styles and API calls; the report
    they fetch is shown in a sandboxed srcdoc frame, which inherits this policy, so its inline <style> and data:
    figures are allowed here and nothing else is."""
    return _policy({**_BASE, "script-src": ("'self'",), "connect-src": ("'self'",), "frame-src": ("'self'",)})


def policy_for(path: str) -> bytes:
    """The Content-Security-Policy header value for a path (the API docs need a looser one)."""
    return (DOCS_POLICY if path.startswith(DOCS_PATHS) else DEFAULT_POLICY).encode()
