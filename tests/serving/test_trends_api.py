"""GET /v1/trends: the full aggregated view for staff roles, the public view (coarse blocks, suppressed small counts)
for the `public` role, which may read nothing else."""

from __future__ import annotations

import math

from tests.conftest import run_cli
from tests.serving.test_api import READ_ENDPOINTS, publish

K = 5  # the default privacy.min_count_k


def _counts(rows: list[dict]) -> list:
    return [v for row in rows for key, v in row.items() if key == "count" or key.startswith(("count_", "last_5"))
            or key == "previous_52w"]


def _block_width_m(feature: dict) -> float:
    """Width of a WGS84 square in metres (east-west, at its latitude)."""
    ring = feature["geometry"]["coordinates"][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return (max(lons) - min(lons)) * 111_320 * math.cos(math.radians(sum(lats) / len(lats)))


def test_public_role_sees_only_the_suppressed_public_view(service):
    body = service.get("/v1/trends", "public").json()
    assert body["view"] == "public" and body["min_count_k"] == K
    assert body["cell_size_m"] >= 1000
    features = body["cells"]["features"]
    assert features and "cell_id" not in features[0]["properties"]
    assert all(_block_width_m(f) > 950 for f in features)  # no block finer than public_cell_size_m
    values = _counts(body["weekly"]) + _counts(body["yearly"]) + _counts([f["properties"] for f in features])
    assert f"< {K}" in values  # small counts exist on this area and are suppressed
    assert all(v == f"< {K}" or v is None or v >= K for v in values)
    # a public key cannot ask for the full view
    assert service.get("/v1/trends?view=full", "public").json()["view"] == "public"


def test_staff_roles_see_the_full_view(service):
    for role in ("viewer", "auditor", "analyst"):
        response = service.get("/v1/trends", role)
        assert response.status_code == 200, role
        body = response.json()
        assert body["view"] == "full"
        assert "cell_id" in body["cells"]["features"][0]["properties"]
        assert any(isinstance(v, int) and 0 < v < K for v in _counts(body["weekly"]) + _counts(body["yearly"])
                   + _counts([f["properties"] for f in body["cells"]["features"]]))
        assert {r["area"] for r in body["weekly"]} == {"Whole area"}
    assert service.get("/v1/trends?view=public", "viewer").json()["view"] == "public"
    assert service.get("/v1/trends?area=Atlantis", "viewer").status_code == 422
    assert service.get("/v1/trends").status_code == 401


def test_public_role_is_refused_everything_else(service):
    assert publish(service).status_code == 201
    for path in READ_ENDPOINTS:
        assert service.get(path, "public").status_code == 403, path
    assert service.get("/v1/forecasts/latest", "viewer").status_code == 200
    assert service.get("/v1/forecasts/latest", "public").status_code == 403  # not even from the fast path
    assert publish(service, new_version=True, role="public").status_code == 403


def test_keys_create_public_role(tmp_path):
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    proc = run_cli("keys", "create", "--role", "public", "--name", "open data portal", "--database-url", url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("hs_") and "created public key" in proc.stderr
