"""API keys (stored hashed), roles and the access log.

A key looks like `hs_<43 random characters>`. Only its SHA-256 and its first 11 characters (the key id, shown in
listings and logs) are stored; the key itself is printed once, at creation. The keys are 256-bit random, so a plain
SHA-256 is enough (no salt or slow hash is needed against guessing a random key).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from hotspot.serving.db import ApiKeyRow, now_utc, utc, write_access_log

KEY_PREFIX = "hs_"
KEY_ID_CHARS = 11  # "hs_" + 8 characters

ROLES = ("viewer", "auditor", "analyst", "public")
# `public` (a partner's or the public's key) may read only the public view of the trends: area units and coarse
# blocks with small counts suppressed; never forecasts, cells, reports or models. `live:read` is the live record
# (how published forecasts did, beside the baselines); `cycles:read` the weekly cycles' runs and their drift and decay
# flags, which are for the analysts who act on them.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"forecasts:read", "trends:read", "trends:public"}),
    "auditor": frozenset({"forecasts:read", "reports:read", "models:read", "live:read", "trends:read",
                          "trends:public"}),
    "analyst": frozenset({"forecasts:read", "reports:read", "models:read", "live:read", "cycles:read",
                          "forecasts:publish", "trends:read", "trends:public"}),
    "public": frozenset({"trends:public"}),
}

KEY_SCOPE = "hotspot.key"  # where a request's authenticated key record is left (ASGI scope) for the access log
REFUSED_KEY_SCOPE = "hotspot.refused_key_id"  # the id part of a key that was refused (unknown or revoked)
access_logger = logging.getLogger("hotspot.access")
_K = ApiKeyRow.__table__


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored (the key itself never is)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    role: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, ())


def _from_row(row) -> ApiKey:
    return ApiKey(row.key_id, row.role, row.name, utc(row.created_at), utc(row.revoked_at))


def create_key(engine: Engine, role: str, name: str | None = None) -> tuple[str, ApiKey]:
    """Make a new key with `role`; returns (the key, shown only now, and its stored record)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = {"key_id": key[:KEY_ID_CHARS], "key_hash": hash_key(key), "role": role, "name": name,
              "created_at": now_utc(), "revoked_at": None}
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        conn.execute(insert(_K).values(**record))
    return key, ApiKey(record["key_id"], role, name, record["created_at"], None)


def revoke_key(engine: Engine, key_or_id: str) -> ApiKey:
    """Revoke a key given the key itself or its id; LookupError when there is no such key."""
    key_id = key_or_id[:KEY_ID_CHARS]
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        row = conn.execute(select(_K).where(_K.c.key_id == key_id)).first()
        if row is None:
            raise LookupError(f"no API key with id {key_id!r}")
        if row.revoked_at is None:
            conn.execute(update(_K).where(_K.c.key_id == key_id).values(revoked_at=now_utc()))
        row = conn.execute(select(_K).where(_K.c.key_id == key_id)).first()
    return _from_row(row)


def list_keys(engine: Engine) -> list[ApiKey]:
    """Every key record, oldest first."""
    with engine.connect() as conn:
        return [_from_row(r) for r in conn.execute(select(_K).order_by(_K.c.created_at, _K.c.key_id)).all()]


class KeyVerifier:
    """Looks keys up by hash; a valid key's record is reused for `ttl_s` so hot paths do not query every time.

    A revoked key therefore stops working within `ttl_s` seconds in a server that saw it just before.
    """

    def __init__(self, engine: Engine, ttl_s: float = 1.0):
        self.engine, self.ttl_s = engine, ttl_s
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def digest(key: str | None) -> str | None:
        """The hash to look `key` up by, or None when it cannot be a key at all."""
        if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        return hash_key(key)

    def cached(self, digest: str) -> ApiKey | None:
        """The record of a key verified less than `ttl_s` ago (no database access), else None."""
        hit = self._cache.get(digest)
        if hit is not None and time.monotonic() - hit[1] < self.ttl_s:
            return hit[0]
        return None

    def lookup(self, digest: str) -> ApiKey | None:
        """The active key with this hash from the database (None for unknown or revoked), remembered `ttl_s`."""
        with self.engine.connect() as conn:
            row = conn.execute(select(_K).where(_K.c.key_hash == digest)).first()
        record = _from_row(row) if row is not None and row.revoked_at is None else None
        with self._lock:
            if record is None:
                self._cache.pop(digest, None)
            elif self.ttl_s > 0:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (record, time.monotonic())
        return record

    def verify(self, key: str | None) -> ApiKey | None:
        """The active key record for `key`, or None for a missing, malformed, unknown or revoked key."""
        digest = self.digest(key)
        if digest is None:
            return None
        return self.cached(digest) or self.lookup(digest)

    def refresh(self) -> int:
        """Re-check every remembered key in one query (run every ttl_s / 2), so keys in use stay verified without
        their requests waiting on the database, and a revoked one is dropped within ttl_s."""
        digests = list(self._cache)
        if not digests:
            return 0
        now = time.monotonic()
        active: dict[str, ApiKey] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(digests), 500):
                rows = conn.execute(select(_K).where(_K.c.key_hash.in_(digests[start:start + 500]))).all()
                active.update({r.key_hash: _from_row(r) for r in rows if r.revoked_at is None})
        with self._lock:
            for digest in digests:
                if digest in active:
                    self._cache[digest] = (active[digest], now)
                else:
                    self._cache.pop(digest, None)
        return len(active)

    def forget(self) -> None:
        self._cache.clear()


class AccessLog:
    """Who did what, when: one JSON line per request on the `hotspot.access` logger, and a row in the access_log
    table (buffered, written every few seconds in one transaction, so logging never slows a request down)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._buffer: list[dict] = []
        self._lock = threading.Lock()

    def record(self, *, key: ApiKey | None, method: str, path: str, status: int, duration_ms: float,
               refused_key_id: str | None = None) -> None:
        at = datetime.now(UTC)
        entry = {"at": at, "key_id": key.key_id if key else refused_key_id, "role": key.role if key else None,
                 "method": method, "path": path[:500], "status": status, "duration_ms": round(duration_ms, 3)}
        with self._lock:
            self._buffer.append(entry)
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info(json.dumps({**entry, "at": at.isoformat()}))

    def flush(self) -> int:
        with self._lock:
            entries, self._buffer = self._buffer, []
        return write_access_log(self.engine, entries)
