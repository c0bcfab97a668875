"""The weekly briefing as a printable page: HTML (Jinja2, training/templates/briefing.html.j2, with the map as inline
SVG and print rules for A4 or Letter) or PDF.

PDF is laid out with ReportLab: pure Python from PyPI, no system libraries (unlike WeasyPrint's Pango or a headless
browser), and its flowables wrap table cells, break pages and repeat the table's header row, which matplotlib's
PdfPages would leave to hand-written layout code. The map is drawn by matplotlib in both formats (the area CRS, so
cells are true squares; no tiles, nothing fetched). Both formats take their wording from `briefing_text`, so they
say the same thing.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hotspot.features.locking import replace_atomically
from hotspot.training.briefing import Briefing, LastWeek, ModelScore
from hotspot.training.pages import render

FORMATS = ("pdf", "html")
PAPERS = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}  # width, height in mm
MARGIN_MM = 14.0


def briefing_format(path: Path, fmt: str | None = None) -> str:
    """'pdf' or 'html', from `fmt` when given, else from the file's suffix; ValueError naming the file otherwise."""
    if fmt:
        if fmt.lower() not in FORMATS:
            raise ValueError(f"--format must be pdf or html, not {fmt!r}")
        return fmt.lower()
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("htm", "html"):
        return "html"
    if suffix == "pdf":
        return "pdf"
    raise ValueError(f"{path}: cannot tell the briefing's format from the suffix {path.suffix!r}; name the file .pdf "
                     f"or .html, or give --format pdf|html")


def paper_size(paper: str) -> tuple[float, float]:
    """Width and height in mm of 'a4' or 'letter'; ValueError otherwise."""
    try:
        return PAPERS[paper.lower()]
    except KeyError:
        raise ValueError(f"--paper must be a4 or letter, not {paper!r}") from None


# ---------------------------------------------------------------------------------------------------------- wording

BASELINE_WORDS = {
    "history": "average of all past weeks",
    "prospective": "prospective hotspotting (recent incidents nearby)",
    "sepp": "self-exciting point process",
    "rtm": "risk terrain model",
}


def baseline_label(name: str) -> str:
    """A baseline's name with what it does, e.g. 'naive_4w (average of the last 4 weeks)'."""
    if found := re.fullmatch(r"naive_(\d+)w", name):
        words = f"average of the last {found.group(1)} weeks"
    elif found := re.fullmatch(r"ewm_hl([\d.]+)", name):
        words = f"weighted average of past weeks, half-life {found.group(1)} weeks"
    elif found := re.fullmatch(r"kde_([\d.]+)m", name):
        words = f"density of past incidents, {found.group(1)} m bandwidth"
    else:
        words = BASELINE_WORDS.get(name.split("_")[0], "")
    return f"{name} ({words})" if words else name


def _day(iso: str) -> str:
    import pandas as pd

    return pd.Timestamp(iso).strftime("%a %-d %b %Y")


def _count(value: float) -> str:
    """An incident count: whole numbers as such, a share from tied cells with one decimal."""
    return f"{value:,.0f}" if abs(value - round(value)) < 0.05 else f"{value:,.1f}"


def _share(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.0f}%"


@dataclass(frozen=True)
class BriefingText:
    title: str
    subtitle: str
    others: str  # the area's other forecast products, in a sentence (HTML only: on paper there is nothing to pick)
    summary: str
    table_head: tuple[str, ...]
    table_rows: tuple[tuple[str, str, str, str, tuple[str, ...]], ...]  # rank, place, expected, change, reasons
    changes_title: str
    new_lines: tuple[str, ...]
    left_lines: tuple[str, ...]
    changes_empty: str
    score_title: str
    score_lines: tuple[str, ...]
    score_how: str
    score_head: tuple[str, ...]
    score_rows: tuple[tuple[str, str, str], ...]
    score_bold: int  # index of the forecast's row in score_rows
    caveat: str
    provenance: tuple[tuple[str, str], ...]
    map_caption: str
    # the live record (absent: live_title ""): the last weeks' rows (week, recorded, forecast's and best baseline's
    # share in the top 1% of cells), its sentence, and the one line the PDF prints when the table leaves no room
    live_title: str = ""
    live_lines: tuple[str, ...] = ()
    live_head: tuple[str, ...] = ()
    live_rows: tuple[tuple[str, str, str, str], ...] = ()
    live_elsewhere: str = ""


def _score_section(lw: LastWeek, counted: str = "") -> tuple[list[str], str, list[tuple[str, str, str]]]:
    """The score of last week's forecast in words, how it was made (small print), and the table beside baselines."""
    n, best = lw.n_cells, lw.best_baseline
    diff = lw.forecast.hits - best.hits
    verdict = ("the same as the forecast" if abs(diff) < 0.05 else
               f"{_count(abs(diff))} {'fewer' if diff > 0 else 'more'} than the forecast")
    lines = [lw.note] if lw.note else []
    lines.append(f"{lw.recorded:,} incidents{counted} were recorded in the area in the week of "
                 f"{_day(lw.week_start)} to {_day(lw.week_end)}. Last week's top {n} cells held "
                 f"{_count(lw.forecast.hits)} of them "
                 f"({_share(lw.forecast.hit_rate)}). The best simple baseline that week, {baseline_label(best.model)}, "
                 f"held {_count(best.hits)} ({_share(best.hit_rate)}) in its own top {n} cells: {verdict}. One week "
                 f"is a small sample; the backtest over many weeks is the firmer guide.")
    how = (f"How it was scored: the forecast is {lw.how}. Each baseline was fitted only on the weeks before that "
           f"week, and the best of them is picked after the fact, which favours the baselines. Where cells of equal "
           f"risk straddle the top {n}, each is credited its share of the remaining places, hence fractions.")
    rows = [(f"forecast ({lw.forecast.model})", _count(lw.forecast.hits), _share(lw.forecast.hit_rate))]
    rows += [(baseline_label(s.model), _count(s.hits), _share(s.hit_rate)) for s in lw.baselines]
    return lines, how, rows


LIVE_WEEKS = 8  # the live record's weeks shown (the latest); its sentence covers every week scored


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _live_section(live: dict) -> dict:
    """The live record's title, sentence and table of its latest weeks (the published forecast beside the best
    baseline's share of recorded incidents in the top 1% of cells)."""
    weeks = [w for w in live["weeks"] if w.get("published")][-LIVE_WEEKS:]
    best = (live.get("best_baseline") or {}).get("model")
    shown = f"the last {len(weeks)} of {live['n_weeks']} weeks" if live["n_weeks"] > len(weeks) else \
        f"{len(weeks)} week{'s' if len(weeks) != 1 else ''}"
    rows = tuple((_short_day(w["week"]), f"{w['observed_total']:,}", _percent(w["published"].get("hit_rate@1%")),
                  _percent((w.get("best_baseline") or {}).get("hit_rate@1%")) if best else "n/a") for w in weeks)
    lines = [live["sentence"]]
    moved = [r for r in live.get("rescored") or [] if r["week"] in {w["week"] for w in weeks}]
    if moved:
        changes = "; ".join(f"{_short_day(r['week'])}: {r['first_observed_total']:,} then {r['observed_total']:,}"
                            for r in moved[:3])
        lines.append(f"Late records changed the recorded count of {len(moved)} of these weeks after they were first "
                     f"scored ({changes}{'; ...' if len(moved) > 3 else ''}); the table shows the current figures.")
    return {"live_title": f"The live record: how the published forecasts did ({shown})",
            "live_lines": tuple(lines),
            "live_head": ("week of", "recorded", "forecast: share in top 1% of cells",
                          f"best baseline ({best}): share" if best else "best baseline"),
            "live_rows": rows,
            "live_elsewhere": _live_compact(live)}


def _live_compact(live: dict) -> str:
    """The live record in two lines, for a PDF with no room for its table."""
    hit = (live.get("summary") or {}).get("hit_rate@1%") or {}
    best = (live.get("best_baseline") or {}).get("model")
    n = live["n_weeks"]
    head = f"Live record ({n} published week{'s' if n != 1 else ''} scored): the forecasts caught " \
           f"{_percent(hit.get('published'))} of recorded incidents in their top 1% of cells"
    if not best:
        return head + "; no baseline was scored on the same weeks. Week by week in the HTML briefing."
    lo, hi = hit.get("ci95") or [None, None]
    verdict = ("too few weeks to tell" if (hit.get("weeks") or 0) < 4 else "the forecasts did better" if lo and lo > 0
               else "the baseline did better" if hi is not None and hi < 0 else "within chance")
    return (f"{head}, the best baseline ({best}) {_percent(hit.get('best_baseline'))}: {verdict}. Week by week in "
            "the HTML briefing.")


def _short_day(iso: str) -> str:
    """A week start as '23 Dec 2019'."""
    import pandas as pd

    return pd.Timestamp(iso).strftime("%-d %b %Y")


def _short_weeks(days: tuple[str, ...]) -> tuple[str, list[str]]:
    """'23 Dec 2019' as '23 Dec', with the years they span ('2019' or '2019-20') said once (narrow columns)."""
    years = sorted({day.split()[-1] for day in days})
    span = years[0] if len(years) == 1 else f"{years[0]}-{years[-1][-2:]}"
    return span, [day.rsplit(" ", 1)[0] for day in days]


def briefing_text(b: Briefing) -> BriefingText:
    """Every sentence and table cell of the briefing, formatted once for both the PDF and the HTML."""
    n = len(b.top)
    top_expected = sum(c.expected for c in b.top)
    share = top_expected / b.expected_total if b.expected_total > 0 else float("nan")
    counted = f" ({b.product})" if b.product else ""
    summary = (f"Expected this week: {b.expected_total:,.0f} recorded incidents{counted} across the area's "
               f"{b.n_cells:,} cells of {b.cell_size_m:g} m. The top {n} cells below are {100 * n / b.n_cells:.1f}% "
               f"of the area and expect {top_expected:,.1f} ({_share(share)}) of them.")
    rows = []
    for c in b.top:
        if b.previous_week is None or c.last_rank is None:
            change = ""
        elif c.new:
            change = f"new (was {c.last_rank})"
        elif c.last_rank == c.rank:
            change = "same"
        else:
            change = f"{'up' if c.last_rank > c.rank else 'down'} from {c.last_rank}"
        rows.append((str(c.rank), c.place, f"{c.expected:.1f}", change,
                     c.reasons or ("no reasons from this model",)))
    new = tuple(f"#{c.rank} {c.place} (was #{c.last_rank}, {c.expected:.1f} expected)" for c in b.top if c.new)
    left = tuple(f"{c.place} (was #{c.last_rank}, now #{c.rank})" for c in b.left)
    if b.previous_week is None:
        changes_title, empty = "What changed since last week", "There is no earlier week in the data to compare with."
    else:
        changes_title = f"What changed since last week ({_day(b.previous_week)})"
        empty = f"The same {n} cells as last week's top {n}." if not new else ""
    if b.last_week is None:
        score_title = "How last week's forecast did"
        score_lines, score_how, score_rows = [f"Not scored: {b.last_week_missing}."], "", []
    else:
        score_title = f"How last week's forecast did (week of {_day(b.last_week.week_start)})"
        score_lines, score_how, score_rows = _score_section(b.last_week, counted)
    model = b.model_label or f"{b.model} v{b.model_version}"
    provenance = (
        ("model", b.model_words or f"{b.model} v{b.model_version}"),
        ("data fingerprint", b.data_fingerprint + (f" (model trained on {b.model_data_fingerprint})"
                                                   if b.model_data_fingerprint and
                                                   b.model_data_fingerprint != b.data_fingerprint else "")),
        ("data recorded to", b.data_end),
        ("code version", b.code_version),
        ("place names", b.places_origin),
        ("made", b.created_at),
    )
    return BriefingText(
        title=f"Weekly briefing: {b.product} · {b.area}" if b.product else f"Weekly briefing: {b.area}",
        others=(f"Other forecast products for {b.area}: {', '.join(b.other_products)}." if b.other_products else ""),
        subtitle=(f"Week of {_day(b.week_start)} to {_day(b.week_end)}  ·  model {model}  ·  "
                  f"made {b.created_at}"),
        summary=summary,
        table_head=("Rank", "Place", "Expected", "Since last week", "Main reasons"),
        table_rows=tuple(rows),
        changes_title=changes_title,
        new_lines=new, left_lines=left, changes_empty=empty,
        score_title=score_title, score_lines=tuple(score_lines), score_how=score_how,
        score_head=("model", f"incidents in its top {n} cells", "share of recorded"),
        score_rows=tuple(score_rows), score_bold=0,
        caveat=(b.note + " They show where crime was reported and recorded, which depends on where officers were "
                "and on who reports, and a forecast learnt from them can repeat that pattern. A high-risk cell is a "
                "place to look at, not a judgement about the people there."),
        provenance=provenance,
        map_caption=(f"The top {n} cells (numbers are ranks; colour is expected incidents this week) with the "
                     f"named areas that hold them; inset: the whole study area."),
        **(_live_section(b.live) if b.live and b.live.get("n_weeks") else {}),
    )


# -------------------------------------------------------------------------------------------------------------- map

MAP_SHARE = 0.84  # of the figure's width; the colour scale and legend take the rest
NEW_COLOUR = "#1f5fbf"

def map_figure(b: Briefing, width_in: float, height_in: float):
    """The top cells as coloured squares with their ranks (new ones outlined in blue, last week's that left dashed),
    the study-area outline, the named areas with labels (bold: those holding top cells), zoomed to the top cells,
    with an inset of the whole area, a colour scale, a legend and a scale bar. Drawn in the area CRS (metres)."""
    import matplotlib

    matplotlib.use("Agg")
    import geopandas as gpd
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch, Rectangle

    fig = plt.figure(figsize=(width_in, height_in))
    ax = fig.add_axes((0.0, 0.0, MAP_SHARE, 1.0))
    half = b.cell_size_m / 2
    shown = [*b.top, *b.left]
    xs, ys = np.array([c.x for c in shown]), np.array([c.y for c in shown])
    bounds = b.outline.bounds if b.outline is not None else (xs.min(), ys.min(), xs.max(), ys.max())
    # the view: the cells with room around them for labels, at least a fifth of the area's width
    span_min = max(0.2 * max(bounds[2] - bounds[0], bounds[3] - bounds[1]), 8 * b.cell_size_m)
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    w = max(xs.max() - xs.min() + 6 * b.cell_size_m, span_min)
    h = max(ys.max() - ys.min() + 6 * b.cell_size_m, span_min)
    aspect = (MAP_SHARE * width_in) / height_in
    w, h = max(w, h * aspect), max(h, w / aspect)
    view = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    ax.set_facecolor("#d9d9d9")  # outside the study area
    if b.outline is not None:
        gpd.GeoSeries([b.outline], crs=b.crs).plot(ax=ax, facecolor="#fbfaf6", edgecolor="#333333", linewidth=1.6,
                                                   zorder=1)
    holding = {c.place for c in b.top}
    if b.areas is not None and len(b.areas):
        b.areas[b.areas["name"].isin(holding)].plot(ax=ax, facecolor="#efe6cf", edgecolor="none", zorder=1.5)
        b.areas.plot(ax=ax, facecolor="none", edgecolor="#8c8c8c", linewidth=0.6, zorder=2)
    norm = Normalize(vmin=0.0, vmax=max(c.expected for c in b.top))
    cmap = plt.get_cmap("YlOrRd")
    patches = PatchCollection([Rectangle((c.x - half, c.y - half), 2 * half, 2 * half) for c in b.top], cmap=cmap,
                              norm=norm, edgecolor="black", linewidth=0.8, zorder=4)
    patches.set_array(np.array([c.expected for c in b.top]))
    ax.add_collection(patches)
    for c in b.top:
        if c.new:
            ax.add_patch(Rectangle((c.x - half, c.y - half), 2 * half, 2 * half, fill=False, edgecolor=NEW_COLOUR,
                                   linewidth=2.4, zorder=5))
    for c in b.left:
        ax.add_patch(Rectangle((c.x - half, c.y - half), 2 * half, 2 * half, fill=False, edgecolor="#555555",
                               linewidth=1.2, linestyle=(0, (2, 1.5)), zorder=4))
    ax.set_xlim(view[0], view[2])
    ax.set_ylim(view[1], view[3])
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor="#333333", linewidth=0.8,
                           zorder=9))
    # rank numbers inside the squares, sized to the square on paper
    square_pt = 2 * half / w * MAP_SHARE * width_in * 72
    size = float(np.clip(square_pt * 0.55, 6.5, 10.0))
    halo = [pe.withStroke(linewidth=2.2, foreground="white")]
    for c in b.top:
        ax.text(c.x, c.y, str(c.rank), ha="center", va="center", fontsize=size, fontweight="bold", zorder=6,
                color="black", path_effects=halo)
    _scale_bar(ax, view)
    _place_labels(ax, fig, b, holding)
    _inset(fig, b, view)
    cax = fig.add_axes((MAP_SHARE + 0.03, 0.04, 0.025, 0.3))
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    cax.set_title("expected\nincidents", fontsize=7.5, loc="left", pad=4)
    bar.ax.tick_params(labelsize=7.5)
    handles = [Patch(facecolor="#fd8d3c", edgecolor="black", label="top cell")]
    if any(c.new for c in b.top):
        handles.append(Patch(facecolor="none", edgecolor=NEW_COLOUR, linewidth=2.2, label="new this week"))
    if b.left:
        handles.append(Patch(facecolor="none", edgecolor="#555555", linestyle=(0, (2, 1.5)), linewidth=1.2,
                             label="left the list"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(MAP_SHARE + 0.005, 0.68), frameon=False,
               fontsize=7, labelspacing=0.6, handlelength=1.4, handletextpad=0.4, borderaxespad=0.2)
    return fig


def _free_boxes(ax, fig, b: Briefing):
    """What labels must not cover, in display units: the rank numbers and every drawn square."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    taken = [t.get_window_extent(renderer).expanded(1.15, 1.15) for t in ax.texts]
    taken += [line.get_window_extent(renderer).expanded(1.1, 3.0) for line in ax.lines]  # the scale bar
    for c in (*b.top, *b.left):
        (x0, y0), (x1, y1) = ax.transData.transform([(c.x - b.cell_size_m / 2, c.y - b.cell_size_m / 2),
                                                     (c.x + b.cell_size_m / 2, c.y + b.cell_size_m / 2)])
        taken.append(Bbox([[x0 - 2, y0 - 2], [x1 + 2, y1 + 2]]))
    return renderer, taken


def _place_labels(ax, fig, b: Briefing, holding: set[str]) -> None:
    """Area labels that cover no square, rank or other label. The areas holding top cells come first, bold, each at
    the free spot nearest its label point; then, in grey, the other areas in view whose own label point is free."""
    if b.areas is None:
        return
    import matplotlib.patheffects as pe
    import shapely

    fig.canvas.draw()
    renderer, taken = _free_boxes(ax, fig, b)
    frame = ax.get_window_extent(renderer)
    step = b.cell_size_m * 0.6
    offsets = [(0.0, 0.0)] + [(r * step * np.cos(a), r * step * np.sin(a)) for r in range(1, 10)
                              for a in np.linspace(0, 2 * np.pi, 8 + 4 * r, endpoint=False)]
    areas = b.areas.assign(key=~b.areas["name"].isin(holding)).sort_values(["key", "name"])
    for row in areas.itertuples():
        main = not row.key
        text = ax.text(row.label_x, row.label_y, str(row.name), ha="center", va="center",
                       fontsize=8.5 if main else 7, fontweight="bold" if main else "normal",
                       color="#1a1a1a" if main else "#6f6f6f", zorder=7 if main else 3,
                       path_effects=[pe.withStroke(linewidth=3 if main else 2, foreground="#fbfaf6")])
        placed = False
        for dx, dy in offsets if main else offsets[:1]:
            if main and not shapely.contains_xy(row.geometry, row.label_x + dx, row.label_y + dy):
                continue  # a label stays over its own area, so it never seems to name a neighbour's cells
            text.set_position((row.label_x + dx, row.label_y + dy))
            box = text.get_window_extent(renderer)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(t) for t in taken):
                placed = True
                break
        if not placed and not main:
            text.remove()
            continue
        taken.append(text.get_window_extent(renderer).expanded(1.05, 1.15))


def _scale_bar(ax, view) -> None:
    width = view[2] - view[0]
    length = 1000.0 if width > 3000 else 500.0
    x0, y0 = view[0] + 0.04 * width, view[1] + 0.05 * (view[3] - view[1])
    ax.plot([x0, x0 + length], [y0, y0], color="black", linewidth=3, solid_capstyle="butt", zorder=8)
    ax.text(x0 + length / 2, y0 + 0.03 * (view[3] - view[1]), f"{length / 1000:g} km", ha="center", va="bottom",
            fontsize=8, zorder=8)


def _inset(fig, b: Briefing, view) -> None:
    import geopandas as gpd
    from matplotlib.patches import Rectangle

    if b.outline is None:
        return
    ax = fig.add_axes((MAP_SHARE + 0.01, 0.71, 1 - MAP_SHARE - 0.015, 0.28))
    ax.set_title("whole area", fontsize=7.5, pad=2)
    gpd.GeoSeries([b.outline], crs=b.crs).plot(ax=ax, facecolor="#fbfaf6", edgecolor="#333333", linewidth=0.8)
    ax.add_patch(Rectangle((view[0], view[1]), view[2] - view[0], view[3] - view[1], fill=False, edgecolor="#c0392b",
                           linewidth=1.2))
    ax.plot([c.x for c in b.top], [c.y for c in b.top], "s", color="#c0392b", markersize=2)
    ax.set_aspect("equal")
    ax.set_axis_off()


def map_svg(b: Briefing, width_in: float, height_in: float) -> str:
    """The map as an SVG document (text kept as text, so it prints sharp and can be searched)."""
    import matplotlib.pyplot as plt

    fig = map_figure(b, width_in, height_in)
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]  # the XML prolog and DOCTYPE cannot stand inside HTML


def map_png(b: Briefing, width_in: float, height_in: float, dpi: int = 220) -> bytes:
    """The map as a PNG (for the PDF)."""
    import matplotlib.pyplot as plt

    fig = map_figure(b, width_in, height_in)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()




def map_height_mm(paper: str) -> float:
    """The map's height on the page: what leaves room on page 1 for the changes, the score and the caveat."""
    return paper_size(paper)[1] - 202.0 - (8.0 if paper.lower() == "letter" else 0.0)  # 95 mm A4, 69 mm Letter


# ------------------------------------------------------------------------------------------------------------- HTML

def render_html(b: Briefing, paper: str = "a4") -> str:
    """The briefing as one self-contained HTML page (inline SVG map, no external files), printable on `paper`."""
    width_mm, height_mm = paper_size(paper)
    inner = width_mm - 2 * MARGIN_MM
    return render("briefing.html.j2", text=briefing_text(b), paper=paper.lower(), margin_mm=MARGIN_MM,
                  width_mm=inner, map_svg=map_svg(b, inner / 25.4, (map_height_mm(paper) - 6) / 25.4))


# -------------------------------------------------------------------------------------------------------------- PDF

def _fonts() -> tuple[str, str, str]:
    """DejaVu Sans (regular, bold, oblique) from matplotlib's own files: every place name's letters, no system fonts."""
    from matplotlib import font_manager
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.pdfmetrics import registerFontFamily
    from reportlab.pdfbase.ttfonts import TTFont

    names = ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique")
    for name, weight, style in zip(names, ("normal", "bold", "normal"), ("normal", "normal", "oblique")):
        if name not in pdfmetrics.getRegisteredFontNames():
            path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight=weight,
                                                                     style=style), fallback_to_default=True)
            pdfmetrics.registerFont(TTFont(name, path))
    registerFontFamily(names[0], normal=names[0], bold=names[1], italic=names[2], boldItalic=names[1])
    return names


def render_pdf(b: Briefing, paper: str = "a4") -> bytes:
    """The briefing as a PDF of one or two pages on `paper` ('a4' or 'letter'). When every cell's reasons would push
    the provenance onto a third page (long reasons, a long top list), the table keeps each cell's first reasons and
    says so; the HTML briefing always lists them all."""
    body, pages = _render_pdf(b, paper, None)
    # the live record yields first (its table and sentence without the small print, then one line saying it is in
    # the HTML), then the reasons beyond the first ones
    tries = [(None, "short"), (None, "line"), (2, "line"), (1, "line")] if b.live is not None else [(2, ""), (1, "")]
    for keep, live in tries:
        if pages <= 2:
            break
        body, pages = _render_pdf(b, paper, keep, live)
    return body


def _render_pdf(b: Briefing, paper: str, keep_reasons: int | None, live: str = "full") -> tuple[bytes, int]:
    """The PDF with at most `keep_reasons` reasons per cell (None: all), the live record ('full': table, sentence
    and small print; 'short': table and sentence; 'line': one line saying where it is), and its page count."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.enums import TA_RIGHT
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import (
        CondPageBreak,
        Image,
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )
    from reportlab.platypus.flowables import HRFlowable

    regular, bold, italic = _fonts()
    text = briefing_text(b)
    width_mm, height_mm = paper_size(paper)
    inner = (width_mm - 2 * MARGIN_MM) * mm
    body = ParagraphStyle("body", fontName=regular, fontSize=9.5, leading=12.5, spaceAfter=3)
    small = ParagraphStyle("small", parent=body, fontSize=8.5, leading=11, spaceAfter=1)
    cell = ParagraphStyle("cell", parent=body, fontSize=8.5, leading=10.5, spaceAfter=0)
    head = ParagraphStyle("head", parent=cell, fontName=bold, textColor=colors.white)
    h1 = ParagraphStyle("h1", parent=body, fontName=bold, fontSize=17, leading=21, spaceAfter=2)
    h2 = ParagraphStyle("h2", parent=body, fontName=bold, fontSize=12, leading=15, spaceBefore=8, spaceAfter=4)
    caption = ParagraphStyle("caption", parent=small, fontName=italic, textColor=colors.HexColor("#444444"))

    cell_right = ParagraphStyle("cell_right", parent=cell, alignment=TA_RIGHT)
    cell_bold = ParagraphStyle("cell_bold", parent=cell, fontName=bold)
    head_small = ParagraphStyle("head_small", parent=small, fontName=bold, textColor=colors.white, spaceAfter=0)
    tiny = ParagraphStyle("tiny", parent=small, fontSize=8, leading=9.5, spaceAfter=0)
    tiny_right = ParagraphStyle("tiny_right", parent=tiny, alignment=TA_RIGHT)

    def p(value: str, style=body, raw: bool = False) -> Paragraph:
        """A paragraph of plain text (escaped: ReportLab reads a small markup), or of markup made here (`raw`)."""
        return Paragraph(value if raw else escape(value), style)

    def table(rows: list, widths: list, extra: list) -> Table:
        flowable = Table(rows, colWidths=widths, repeatRows=1)
        flowable.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#333333")), ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LINEBELOW", (0, 0), (-1, -1), 0.3, colors.HexColor("#bbbbbb")), *extra]))
        return flowable

    n = len(b.top)
    # page 1: the week at a glance (map, what moved, how last week went)
    story = [p(text.title, h1), p(text.subtitle, small), HRFlowable(width="100%", thickness=1, color=colors.black,
                                                                   spaceBefore=3, spaceAfter=5),
             p(text.summary),
             Image(io.BytesIO(map_png(b, inner / mm / 25.4, map_height_mm(paper) / 25.4)), width=inner,
                   height=map_height_mm(paper) * mm),
             p(text.map_caption, caption)]
    changes = [p(text.changes_title, h2)]
    if text.changes_empty:
        changes.append(p(text.changes_empty))
    if text.new_lines:
        changes.append(p(f"<b>New in the top {n}:</b> " + escape("; ".join(text.new_lines)) + ".", raw=True))
    if text.left_lines:
        changes.append(p(f"<b>Left the top {n}:</b> " + escape("; ".join(text.left_lines)) + ".", raw=True))
    story.append(KeepTogether(changes))
    score = [p(text.score_title, h2)] + [p(line) for line in text.score_lines]
    if text.score_rows:
        rows = [[p(h, head_small) for h in text.score_head]] + [
            [p(m, tiny), p(hits, tiny_right), p(share, tiny_right)] for m, hits, share in text.score_rows]
        score += [table(rows, [inner * 0.64, inner * 0.2, inner * 0.16], [
            ("BACKGROUND", (0, 1 + text.score_bold), (-1, 1 + text.score_bold), colors.HexColor("#fdebd0")),
            ("TOPPADDING", (0, 0), (-1, -1), 0.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]),
            Spacer(1, 1.5 * mm), p(text.score_how, caption)]
    story.append(KeepTogether(score))
    caveat = Table([[p(text.caveat, small)]], colWidths=[inner])
    caveat.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 1.0, colors.HexColor("#b9770e")),
                                ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fef5e7")),
                                ("TOPPADDING", (0, 0), (-1, -1), 3), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]))
    story.append(KeepTogether([p("Read with care", h2), caveat]))
    # page 2 (on from page 1 when a short list leaves room): the top cells and why, then provenance
    story.append(CondPageBreak(110 * mm))
    table_head = list(text.table_head)
    if keep_reasons is not None and any(len(r) > keep_reasons for *_, r in text.table_rows):
        table_head[-1] += f" (the first {keep_reasons}; all in the HTML briefing)" if keep_reasons > 1 else \
            " (the first; all in the HTML briefing)"
    rows = [[p(h, head) for h in table_head]] + [
        [p(rank, cell_bold), p(place, cell), p(expected, cell_right), p(change, cell),
         p("  ".join("• " + escape(r) for r in reasons[:keep_reasons]), cell, raw=True)]
        for rank, place, expected, change, reasons in text.table_rows]
    widths = [13 * mm, 34 * mm, 21 * mm, 23 * mm]
    story += [p(f"Top {n} cells this week, and why", h2), table(rows, [*widths, inner - sum(widths)], [
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f2f2f2")]),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)])]
    if text.live_title and live in ("full", "short"):
        # on paper the weeks run across (a row per figure): four rows where a row per week would take nine
        columns = list(zip(*text.live_rows))
        years, days = _short_weeks(columns[0])
        head_tiny = ParagraphStyle("head_tiny", parent=tiny_right, fontName=bold, textColor=colors.white)
        rows = [[p(f"{text.live_head[0]} ({years})", head_small)] + [p(d, head_tiny) for d in days]]
        rows += [[p(label, tiny)] + [p(v, tiny_right) for v in values]
                 for label, values in zip(text.live_head[1:], columns[1:])]
        label_w = inner * 0.3
        story.append(KeepTogether([p(text.live_title, h2), table(
            rows, [label_w] + [(inner - label_w) / LIVE_WEEKS] * len(text.live_rows), [
                ("BACKGROUND", (0, 2), (-1, 2), colors.HexColor("#fdebd0")),
                ("TOPPADDING", (0, 0), (-1, -1), 0.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ("LEFTPADDING", (1, 0), (-1, -1), 2), ("RIGHTPADDING", (1, 0), (-1, -1), 4)]),
            Spacer(1, 1.5 * mm), p(text.live_lines[0], small),
            *(p(line, caption) for line in text.live_lines[1:] if live == "full")]))
    elif text.live_title:
        story.append(p(text.live_elsewhere, caption))
    prov = Table([[p(k, small), p(v, small)] for k, v in text.provenance], colWidths=[32 * mm, inner - 32 * mm])
    prov.setStyle(TableStyle([("TOPPADDING", (0, 0), (-1, -1), 0.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 0.5),
                              ("LEFTPADDING", (0, 0), (-1, -1), 0), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story.append(KeepTogether([p("Provenance", h2), prov]))

    def footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(regular, 7.5)
        canvas.setFillColor(colors.HexColor("#555555"))
        # the product says which forecast a loose page belongs to
        model = b.model_label or f"{b.model} v{b.model_version}"
        product = f" · {b.product}" if b.product else ""
        canvas.drawString(MARGIN_MM * mm, 8 * mm, f"{b.area}{product}, week of {b.week_start}: {model}, data "
                                                  f"{b.data_fingerprint}. Policing data, not ground truth.")
        canvas.drawRightString((width_mm - MARGIN_MM) * mm, 8 * mm, f"page {doc.page}")
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=(width_mm * mm, height_mm * mm), leftMargin=MARGIN_MM * mm,
                            rightMargin=MARGIN_MM * mm, topMargin=MARGIN_MM * mm, bottomMargin=MARGIN_MM * mm,
                            title=text.title + f", week of {b.week_start}", author="hotspot",
                            subject="weekly briefing")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue(), doc.page


def write_briefing(b: Briefing, path: Path, fmt: str | None = None, paper: str = "a4") -> Path:
    """Write the briefing to `path` as PDF or HTML (from `fmt` or the suffix), replacing it whole."""
    kind = briefing_format(path, fmt)
    data = render_pdf(b, paper) if kind == "pdf" else render_html(b, paper).encode("utf-8")
    return replace_atomically(Path(path), lambda tmp: tmp.write_bytes(data))


__all__ = ["FORMATS", "PAPERS", "BriefingText", "ModelScore", "briefing_format", "briefing_text", "map_figure",
           "paper_size", "render_html", "render_pdf", "write_briefing"]
