"""Benchmark (issue 16): the accuracy matrix, products x periods, every baseline, LightGBM and `auto` on the same weeks.

For each case (a product, i.e. the offences its label counts, and 26 weeks ending 2019-12-30 or 2021-12-27 on full
Toronto, refit every 4 weeks): PAI@1% and Poisson deviance of every model; the clairvoyant long-run-rate limit
(training/evaluation/limit.py; it needs recorded weeks after the judged ones, so the weeks ending at the end of the
data have none, and the table says so); `auto`'s ratio to the best baseline (best by mean PAI@1% on those weeks) with
the paired 95% bootstrap intervals of the ratio and of the weekly difference; the share of the headroom (limit minus
best baseline) that LightGBM and `auto` close; seconds per case and the load average beside them.

Work is shared, models are not dropped: the panel is built once per product (and cached, features/cache.py) and
serves both periods; every model is wrapped in training/shared.py's SharedFit, so `auto`'s rolling validation reuses
the fits and forecasts its candidates made for their own columns (only its first refit's validation weeks, before
the judged ones, are new fits).

Usage: python benchmarks/accuracy_matrix.py [--cases all:2019,break-and-enter:2021] [--products all,assault]
                                             [--out /tmp/accuracy_matrix.json] [--config configs/toronto.toml]
Needs ../shared/data for the Toronto config. The products are the config's [[products]] when it has them, else the
five of issue 16.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRODUCTS = {"all": None, "assault": ["Assault"], "break-and-enter": ["Break and Enter"],
                    "robbery": ["Robbery"], "auto-theft": ["Auto Theft"]}
DEFAULT_PERIODS = {"2019": "2019-12-30", "2021": "2021-12-27"}  # the judged weeks start before these dates
LIGHTGBM, AUTO = "lightgbm", "auto"


def load() -> str:
    """The 1-minute load average (/proc/loadavg), for reading the times beside it."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def product_config(cfg, name: str, offenses: list[str] | None):
    """The config of one product: `cfg.for_product(name)` where the config defines products, else the offences
    applied with `with_overrides` (None = every offence)."""
    from hotspot.steps.common import with_overrides

    names = [getattr(p, "name", None) for p in (getattr(cfg, "products", None) or [])]
    if hasattr(cfg, "for_product") and name in names:
        return cfg.for_product(name)
    return with_overrides(cfg, targets=offenses) if offenses else cfg


def config_products(cfg) -> dict[str, list[str] | None]:
    """The config's products (name -> offences) when it has [[products]], else issue 16's five."""
    products = getattr(cfg, "products", None) or []
    if products:
        return {p.name: (list(p.offenses) if getattr(p, "offenses", None) else None) for p in products}
    return dict(DEFAULT_PRODUCTS)


def parse_cases(text: str | None, products: list[str], periods: list[str]) -> list[tuple[str, str]]:
    """(product, period) pairs: `PRODUCT:PERIOD,...` when given, else every product times every period."""
    if not text:
        return [(p, y) for p in products for y in periods]
    cases = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        product, sep, period = item.partition(":")
        if not sep or product not in products or period not in periods:
            raise SystemExit(f"--cases: {item!r} is not PRODUCT:PERIOD with PRODUCT in {products} and PERIOD in "
                             f"{periods}")
        cases.append((product, period))
    return cases


def weekly(metrics: dict, name: str, key: str) -> np.ndarray:
    """One model's weekly values of a metric (NaN where a week has none)."""
    return np.array([w.get(key, np.nan) for w in metrics["models"][name]["weekly"]], dtype=float)


def ratio_interval(a: np.ndarray, b: np.ndarray) -> list[float]:
    """95% paired percentile-bootstrap interval of mean(a) / mean(b) over the weeks both have."""
    from hotspot.training.evaluation.stats import bootstrap_interval

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return [math.nan, math.nan]
    lo, hi = bootstrap_interval((a[ok], b[ok]), lambda x, y, axis=-1: x.mean(axis) / y.mean(axis))
    return [float(lo), float(hi)]


def save_forecasts(path: Path, store, panel, models: list) -> None:
    """Every weekly forecast the case made (the judged weeks and auto's validation weeks before them), per model,
    with the recorded counts: an .npz for looking at combination rules without refitting."""
    from hotspot.training.shared import model_key

    names = {model_key(m.model): m.name for m in models if hasattr(m, "store")}
    by_model: dict[str, dict[int, np.ndarray]] = {}
    for ((mkey, _fit_panel), (_, _, n)), risk in store.forecasts.items():
        if mkey in names:
            by_model.setdefault(names[mkey], {})[n] = risk
    weeks = sorted({n for f in by_model.values() for n in f})
    # float64, as scored: at float32 the count baselines' near-equal risks become ties and the top 1% changes
    # (break and enter 2021: SEPP 17.17 PAI@1% from float32 forecasts against the 17.09 the backtest scored)
    arrays = {name: np.stack([f.get(n, np.full(panel.grid.n_cells, np.nan)) for n in weeks]).astype(np.float64)
              for name, f in by_model.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, periods=np.array(weeks), observed=panel.target[weeks].astype(np.float32), **arrays)


def run_case(cfg, panel, product: str, period: str, end: str, weeks: int, refit_every: int,
             forecasts: Path | None = None, variants: tuple[str, ...] = ()) -> dict:
    """Every model of the case on the same weeks, the limit, the ratios and headroom shares."""
    from sklearn.base import clone

    from hotspot.training.backtest import SELECTION_NAME, forecast_periods, make_models, run_backtest
    from hotspot.training.evaluation.limit import panel_limit
    from hotspot.training.evaluation.metrics import pai_at, poisson_deviance
    from hotspot.training.evaluation.stats import paired_comparison
    from hotspot.training.shared import FitStore, SharedFit

    start = time.perf_counter()
    periods = forecast_periods(panel, weeks, end)
    store = FitStore()
    models = make_models(cfg, ["all", SELECTION_NAME])
    selecting = [m for m in models if m.name == SELECTION_NAME]
    for combine in variants:  # auto with another way of combining its candidates, beside the config's
        if combine != cfg.selection.combine:
            variant = clone(selecting[0]).set_params(combine=combine)
            variant.name = f"{SELECTION_NAME}_{combine}"
            selecting.append(variant)
    for model in selecting:
        model.candidates = [SharedFit(c, store) for c in model.candidates]
    models = [SharedFit(m, store) for m in models if m.name != SELECTION_NAME] + selecting
    result = run_backtest(panel, models, periods, refit_every, [0.01])
    if forecasts is not None:
        save_forecasts(forecasts / f"{product}_{period}.npz", store, panel, models)
    metrics = result.metrics
    rows = {name: {"pai@1%": m["mean"]["pai@1%"], "deviance": m["mean"]["poisson_deviance"],
                   "fit_predict_s": m["fit_predict_s"]} for name, m in metrics["models"].items()}
    baselines = [n for n in rows if not n.startswith((SELECTION_NAME, LIGHTGBM))]
    best = max(baselines, key=lambda n: rows[n]["pai@1%"])
    lcfg = cfg.backtest
    limit = panel_limit(panel, periods, lcfg.limit_weeks, lcfg.limit_min_after)
    limit_row: dict = {"available": limit.available, "note": limit.note, "pai@1%": None, "deviance": None}
    if limit.available:
        pai = [pai_at(r, panel.target[t], 0.01) for r, t in zip(limit.risk, periods, strict=True)]
        dev = [poisson_deviance(r, panel.target[t]) for r, t in zip(limit.risk, periods, strict=True)]
        limit_row.update({"pai@1%": float(np.nanmean(pai)), "deviance": float(np.mean(dev))})
    a, b = weekly(metrics, SELECTION_NAME, "pai@1%"), weekly(metrics, best, "pai@1%")
    pair = paired_comparison(a, b)
    headroom = (limit_row["pai@1%"] - rows[best]["pai@1%"]) if limit.available else None
    shares = {name: ((rows[name]["pai@1%"] - rows[best]["pai@1%"]) / headroom if headroom else None)
              for name in (LIGHTGBM, SELECTION_NAME)}
    auto_refits = metrics["models"][SELECTION_NAME].get("refits", [])
    others = {n: {"ratio": rows[n]["pai@1%"] / rows[best]["pai@1%"], "ratio_ci95": ratio_interval(
        weekly(metrics, n, "pai@1%"), b), "deviance_vs_best": rows[n]["deviance"] - rows[best]["deviance"]}
        for n in rows if n.startswith(SELECTION_NAME + "_")}
    return {
        "product": product, "period": period, "offenses": cfg.model.target_offenses,
        "weeks": [metrics["weeks"][0], metrics["weeks"][-1]], "n_weeks": len(periods), "refit_every": refit_every,
        "models": rows, "best_baseline": best, "limit": limit_row,
        "auto_vs_best": {"ratio": rows[SELECTION_NAME]["pai@1%"] / rows[best]["pai@1%"],
                         "ratio_ci95": ratio_interval(a, b), "difference": pair["difference"],
                         "difference_ci95": pair["ci95"], "weeks_better": pair["weeks_better"],
                         "weeks": pair["weeks"],
                         "deviance_vs_best": rows[SELECTION_NAME]["deviance"] - rows[best]["deviance"]},
        "variants_vs_best": others,
        "headroom": headroom, "headroom_share": shares,
        "auto_choices": [r.get("chosen") for r in auto_refits],
        "fits": {"made": store.fitted, "reused": store.reused},
        "seconds": time.perf_counter() - start, "load_after": load(),
    }


def print_case(res: dict) -> None:
    """One case's table: every model's PAI@1% and deviance, the limit, auto against the best baseline."""
    print(f"\n== {res['product']} {res['period']}: {res['n_weeks']} weeks {res['weeks'][0]} .. {res['weeks'][1]}, "
          f"refit every {res['refit_every']}; {res['seconds']:.0f} s (load {res['load_after']}); fits made "
          f"{res['fits']['made']}, reused {res['fits']['reused']}")
    print(f"{'model':<16}{'PAI@1%':>9}{'deviance':>10}{'fit+pred s':>12}")
    best = res["best_baseline"]
    for name, r in sorted(res["models"].items(), key=lambda kv: -kv[1]["pai@1%"]):
        mark = " <- best baseline" if name == best else ""
        print(f"{name:<16}{r['pai@1%']:>9.2f}{r['deviance']:>10.4f}{r['fit_predict_s']:>12.1f}{mark}")
    lim = res["limit"]
    if lim["available"]:
        print(f"{'limit':<16}{lim['pai@1%']:>9.2f}{lim['deviance']:>10.4f}   (clairvoyant reference, uses future data)")
    else:
        print(f"{'limit':<16}{'n/a':>9}   {lim['note']}")
    v = res["auto_vs_best"]
    lo, hi = v["ratio_ci95"]
    dlo, dhi = v["difference_ci95"]
    print(f"auto / {best}: ratio {v['ratio']:.3f} [95% {lo:.3f}, {hi:.3f}], difference {v['difference']:+.2f} "
          f"[{dlo:+.2f}, {dhi:+.2f}], better in {v['weeks_better']} of {v['weeks']} weeks; deviance "
          f"{v['deviance_vs_best']:+.4f} against the best baseline's")
    if res["headroom"] is not None:
        s = res["headroom_share"]
        print(f"headroom {res['headroom']:.2f}: LightGBM closes {s[LIGHTGBM]:.1%}, auto {s[AUTO]:.1%}")
    print(f"auto chose: {', '.join(str(c) for c in res['auto_choices'])}")
    for name, o in res.get("variants_vs_best", {}).items():
        print(f"{name} / {best}: ratio {o['ratio']:.3f} [95% {o['ratio_ci95'][0]:.3f}, {o['ratio_ci95'][1]:.3f}]; "
              f"deviance {o['deviance_vs_best']:+.4f} against the best baseline's")


def print_summary(results: list[dict]) -> None:
    """The matrix in one table, then the means the issue's targets are about."""
    print(f"\n{'case':<24}{'best baseline':>16}{'best':>7}{'lgbm':>7}{'auto':>7}{'limit':>7}{'ratio':>7}"
          f"{'95% interval':>16}{'dev best':>9}{'dev auto':>9}{'share lgbm':>11}{'share auto':>11}{'s':>6}{'load':>6}")
    for r in results:
        m, best, v = r["models"], r["best_baseline"], r["auto_vs_best"]
        lim = r["limit"]["pai@1%"]
        s = r["headroom_share"]

        def pct(x):
            return f"{x:.0%}" if x is not None else "n/a"

        interval = f"[{v['ratio_ci95'][0]:.3f}, {v['ratio_ci95'][1]:.3f}]"

        print(f"{r['product'] + ' ' + r['period']:<24}{best:>16}{m[best]['pai@1%']:>7.2f}{m[LIGHTGBM]['pai@1%']:>7.2f}"
              f"{m[AUTO]['pai@1%']:>7.2f}{(f'{lim:.2f}' if lim is not None else 'n/a'):>7}{v['ratio']:>7.3f}"
              f"{interval:>16}{m[best]['deviance']:>9.4f}"
              f"{m[AUTO]['deviance']:>9.4f}{pct(s[LIGHTGBM]):>11}{pct(s[AUTO]):>11}{r['seconds']:>6.0f}"
              f"{r['load_after']:>6}")
    ratios = [r["auto_vs_best"]["ratio"] for r in results]
    shares = {k: [r["headroom_share"][k] for r in results if r["headroom_share"][k] is not None]
              for k in (LIGHTGBM, AUTO)}
    print(f"auto / best baseline: mean ratio {np.mean(ratios):.3f}, min {np.min(ratios):.3f} over {len(ratios)} "
          f"case(s); auto's deviance no worse than the best baseline's in "
          f"{sum(r['auto_vs_best']['deviance_vs_best'] <= 0 for r in results)} of {len(results)}")
    for k, v in shares.items():
        print(f"mean headroom share closed by {k}: " + (f"{np.mean(v):.1%} over {len(v)} case(s) with a limit"
                                                        if v else "n/a (no case has a limit)"))
    if any(not r["limit"]["available"] for r in results):
        print("no limit for the cases whose weeks end at the end of the data: the clairvoyant limit needs recorded "
              "weeks after every judged week (limit_min_after), and there are none after 2021-12-27")


def main() -> None:
    """Run the requested cases, print each and the summary, and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "toronto.toml")
    parser.add_argument("--cases", help="PRODUCT:PERIOD pairs, comma-separated, e.g. all:2019,break-and-enter:2021")
    parser.add_argument("--products", help="comma-separated products [default: all of them]")
    parser.add_argument("--periods", default=",".join(f"{k}={v}" for k, v in DEFAULT_PERIODS.items()),
                        help="NAME=END pairs: the judged weeks start before END [default: %(default)s]")
    parser.add_argument("--weeks", type=int, default=26, help="judged weeks per case [default: %(default)s]")
    parser.add_argument("--refit-every", type=int, default=4, help="[default: %(default)s]")
    parser.add_argument("--forecasts", type=Path, help="also keep every model's weekly forecasts here (.npz per case)")
    parser.add_argument("--variants", default="",
                        help="also run auto with these [selection] combine values (choose,blend,average), as "
                             "auto_VALUE columns beside the config's auto; they share every fit")
    parser.add_argument("--out", type=Path, default=Path("/tmp/accuracy_matrix.json"),
                        help="the JSON of every case [default: %(default)s]")
    args = parser.parse_args()

    from hotspot.features.config import load_config
    from hotspot.steps.common import prepare

    base = load_config(args.config)
    products = config_products(base)
    if args.products:
        wanted = [p.strip() for p in args.products.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in products]
        if unknown:
            raise SystemExit(f"--products: unknown {unknown}; choose from {list(products)}")
        products = {p: products[p] for p in wanted}
    periods = dict(item.split("=", 1) for item in args.periods.split(","))
    cases = parse_cases(args.cases, list(products), list(periods))
    began, results = time.perf_counter(), []
    print(f"{len(cases)} case(s); load {load()}", flush=True)
    for product in dict.fromkeys(p for p, _ in cases):  # the panel once per product, for all its periods
        cfg = product_config(base, product, products[product])
        t0 = time.perf_counter()
        panel = prepare(cfg, quiet=True).panel
        print(f"[{time.perf_counter() - began:6.0f} s] {product}: panel {panel.target.shape[0]} weeks x "
              f"{panel.grid.n_cells} cells in {time.perf_counter() - t0:.0f} s (load {load()})", flush=True)
        for period in [y for p, y in cases if p == product]:
            print(f"[{time.perf_counter() - began:6.0f} s] {product} {period}: running (load {load()})", flush=True)
            res = run_case(cfg, panel, product, period, periods[period], args.weeks, args.refit_every,
                           args.forecasts, tuple(v for v in args.variants.split(",") if v))
            results.append(res)
            print_case(res)
            print(f"[{time.perf_counter() - began:6.0f} s] {product} {period}: done in {res['seconds']:.0f} s "
                  f"(load {load()})", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"cases": results, "seconds": time.perf_counter() - began}, indent=2))
    print_summary(results)
    print(f"\n{len(results)} case(s) in {time.perf_counter() - began:.0f} s (load {load()}); JSON: {args.out}")


if __name__ == "__main__":
    main()
