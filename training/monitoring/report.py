"""The cycle report as a page: what one weekly cycle did (records in, week published, weeks scored), what it flagged
and what the next cycle will do about it, with the live record of each product and a chart of it.

Input: the JSON-able report of `hotspot cycle` (hotspot/steps/cycle.py). The page is self-contained (the chart is an
inline PNG), so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import io

from hotspot.training.pages import render

KINDS = {"volume": "Incident volume", "mix": "Offence mix", "outside": "Incidents in new places",
         "features": "Feature distributions", "decay": "Live accuracy (decay)"}

FRESHNESS = {"week": "week to publish", "last_week": "last observed week", "last_day": "its last day",
             "latest_record": "newest record", "silent_days": "days without records at its end",
             "max_silent_days": "allowed days without records", "recorded": "records in the last observed week",
             "reference_weeks": "weeks it is compared with", "days_expected": "days of it the extract reaches",
             "expected": "expected for those weekdays",
             "share_of_usual": "share of the expected", "lower_99": "lowest usual count (99%)",
             "min_volume_share": "refused below this share"}


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def live_chart(live: dict, title: str) -> str | None:
    """PAI at 1% per scored week, published against the best baseline, as a data: URI (None with no scored week)."""
    rows = [w for w in live.get("weeks", []) if w.get("published")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weeks = [w["week"] for w in rows]
    fig, ax = plt.subplots(figsize=(7.5, 2.6), dpi=110)
    ax.plot(weeks, [w["published"].get("pai@1%") for w in rows], marker="o", color="#b91c1c", label="published")
    best = (live.get("best_baseline") or {}).get("model")
    if best:
        ax.plot(weeks, [(w.get("best_baseline") or {}).get("pai@1%") for w in rows], marker="s", linestyle="--",
                color="#374151", label=f"best baseline ({best})")
    ax.set_ylabel("PAI at 1% of cells")
    ax.set_title(title, fontsize=10)
    step = max(1, len(weeks) // 6)
    ax.set_xticks(range(0, len(weeks), step), [weeks[i] for i in range(0, len(weeks), step)], fontsize=8)
    ax.tick_params(axis="x", labelrotation=20)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _product_view(name: str, entry: dict) -> dict:
    live = entry.get("live") or {}
    pub = entry.get("published")
    rows = []
    for w in live.get("weeks", [])[-12:]:
        p, b = w.get("published") or {}, w.get("best_baseline") or {}
        rows.append([w["week"], _fmt(w.get("observed_total")), _pct(p.get("hit_rate@1%")), _fmt(p.get("pai@1%")),
                     _fmt(p.get("pei@1%")), _pct(p.get("hit_rate@5%")), _fmt(p.get("pai@5%")),
                     _fmt(b.get("pai@1%"))])
    summary = live.get("summary") or {}
    summary_rows = []
    for metric in ("hit_rate@1%", "pai@1%", "pei@1%", "hit_rate@5%", "pai@5%", "pei@5%"):
        s = summary.get(metric)
        if not s:
            continue
        pct = metric.startswith("hit_rate")
        show = _pct if pct else _fmt
        lo, hi = s.get("ci95") or [None, None]
        summary_rows.append([metric, show(s.get("published")), show(s.get("best_baseline")),
                             show(s.get("difference")) if not pct else
                             ("n/a" if s.get("difference") is None else f"{100 * s['difference']:+.1f} pts"),
                             "n/a" if lo is None else (f"{100 * lo:+.1f} to {100 * hi:+.1f} pts" if pct
                                                       else f"{lo:+.2f} to {hi:+.2f}"),
                             f"{s.get('weeks_better')} of {s.get('weeks')}" if s.get("weeks_better") is not None
                             else _fmt(s.get("weeks"))])
    checks = [[KINDS.get(c.get("kind"), c.get("kind")), "FLAG" if c.get("flag") else "ok", c.get("sentence", "")]
              for c in (entry.get("drift") or {}).get("checks", [])]
    rescored = [[r["week"], _fmt(r.get("observed_before")), _fmt(r.get("observed_now")),
                 _fmt(r.get("pai@1%_before")), _fmt(r.get("pai@1%_now"))] for r in entry.get("rescored") or []]
    return {"name": name, "published": pub, "already": entry.get("already_published"),
            "retrain": entry.get("retrain"), "next": entry.get("next"), "live": live,
            "live_rows": rows, "summary_rows": summary_rows, "checks": checks,
            "check_classes": ["flag" if c[1] == "FLAG" else "" for c in checks], "rescored": rescored,
            "scored_weeks": entry.get("scored_weeks") or [],
            "chart": live_chart(live, f"{name}: live PAI at 1%, published forecasts and the best baseline")}


def render_cycle_html(report: dict) -> str:
    """The cycle report page (self-contained HTML)."""
    history = report.get("history") or {}
    appended = [[a["file"], _fmt(a.get("added")), _fmt(a.get("already_stored")), _fmt(a.get("quarantined")),
                 _fmt(a.get("late")), ", ".join(a.get("late_periods") or []) or "-"]
                for a in history.get("appended", [])]
    fresh = report.get("freshness") or {}
    figures = [[FRESHNESS.get(k, k.replace("_", " ")), _fmt(v)] for k, v in (fresh.get("figures") or {}).items()
               if not isinstance(v, (dict, list))]
    mix = report.get("offence_mix") or {}
    seconds = [[k, _fmt(v, 1)] for k, v in (report.get("seconds") or {}).items()]
    products = [_product_view(name, entry) for name, entry in (report.get("products") or {}).items()]
    return render("cycle.html.j2", title=f"Weekly cycle: {report.get('area')}, week of {report.get('week')}",
                  report=report, history=history, appended=appended, fresh=fresh, fresh_figures=figures, mix=mix,
                  seconds=seconds, products=products, flags=report.get("flags") or [],
                  publications=report.get("publications") or [], kinds=KINDS)
