"""GET /v1/briefing: the weekly briefing for viewers, as PDF or HTML, documented in the OpenAPI spec."""

from __future__ import annotations


def test_briefing_needs_a_viewer_key_and_serves_pdf_and_html(service):
    assert service.get("/v1/briefing").status_code == 401
    pdf = service.get("/v1/briefing", "viewer")
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    week = pdf.headers["x-hotspot-week"]
    assert week == str(service.state.forecaster.panel().panel.next_period_start.date())
    html = service.get(f"/v1/briefing?week={week}&format=html&top=3&paper=letter", "viewer")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "Weekly briefing: synthetic" in html.text and "not ground truth" in html.text
    assert html.text.count('<tr><td class="rank">') == 3
    # the synthetic area names no places: cells are named by their centre in degrees
    assert " N " in html.text and " W" in html.text


def test_briefing_refuses_a_week_outside_the_panel(service):
    bad = service.get("/v1/briefing?week=2030-01-07", "viewer")
    assert bad.status_code == 404 and "2030-01-07" in bad.json()["detail"] and "periods run" in bad.json()["detail"]
    assert service.get("/v1/briefing?format=docx", "viewer").status_code == 422
    assert service.get("/v1/briefing?week=2021-02-30", "viewer").status_code == 422


def test_briefing_is_in_the_openapi_spec(service):
    spec = service.client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/briefing"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {"application/pdf", "text/html"}
    assert {p["name"] for p in operation["parameters"]} >= {"week", "format", "top", "paper"}
