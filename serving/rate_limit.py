"""Rate limits for the public role, per API key and per client address (the `limits` library, moving windows).

The counts live in this process's memory: each `hotspot serve --workers N` worker keeps its own, so a client can
make up to N times the limit, and a restart forgets them. Staff roles (viewer, auditor, analyst) are not limited:
their keys are few, known and handed out by hand; a public key may be shared with anyone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

LIMITED_ROLES = frozenset({"public"})
RETRY_AFTER = {"Retry-After": {"description": "seconds until the request may be made again",
                               "schema": {"type": "integer", "minimum": 1}}}


def parse_limits(text: str | None) -> list[RateLimitItem]:
    """'600/minute' or '600/minute;10000/day' as limit items; empty or '0' means no limit."""
    text = (text or "").strip()
    if text in ("", "0"):
        return []
    items = parse_many(text)
    if any(item.amount < 1 for item in items):
        raise ValueError(f"rate limit {text!r}: amounts must be at least 1 (or '0' / empty for no limit)")
    return items


@dataclass(frozen=True)
class Refusal:
    detail: str
    retry_after_s: int


class RateLimiter:
    """Counts the requests of each limited key and of each client address that uses one."""

    def __init__(self, per_key: str | None, per_address: str | None):
        self.per_key, self.per_address = parse_limits(per_key), parse_limits(per_address)
        self._window = MovingWindowRateLimiter(MemoryStorage())

    def check(self, role: str, key_id: str, address: str | None) -> Refusal | None:
        """Count one request; a Refusal when it goes over a limit (None: let it through)."""
        if role not in LIMITED_ROLES:
            return None
        for scope, who, items in (("key", key_id, self.per_key), ("address", address or "unknown", self.per_address)):
            for item in items:
                if not self._window.hit(item, scope, who):
                    reset = self._window.get_window_stats(item, scope, who).reset_time
                    return Refusal(f"rate limit of the {role} role exceeded: {item} per {scope}",
                                   max(1, math.ceil(reset - time.time())))
        return None


def document_429(schema: dict) -> None:
    """Every operation that takes an API key can answer 429 (a public key over its limit); say so in the spec."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("security"):
                operation.setdefault("responses", {}).setdefault("429", {
                    "description": "too many requests from this public key or address; retry after `Retry-After` "
                                   "seconds",
                    "headers": RETRY_AFTER,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
