"""Benchmark (issue 16): `auto`'s ways of combining its candidates, replayed on forecasts the accuracy matrix kept.

`python benchmarks/accuracy_matrix.py --weeks 70 --forecasts DIR` keeps, per case, every model's forecast of every
week it backtested (each made by a fit on the weeks before its block, refitted every 4 weeks) and the recorded counts.
From those this script replays `auto` as training/selection.py fits it, without refitting anything: at each refit
week r (every `refit_every` weeks, on the backtest's own grid) the rule sees only the candidates' forecasts of the
`window` weeks before r and what was recorded then, and forecasts the weeks r .. r + refit_every - 1 (the grids line up
because auto's validation blocks are counted back from each refit in steps of refit_every). So a rule's replayed score
is what `--model auto` with that rule scores on those weeks (the config's rule is checked against the matrix's own
`auto` figures, below).

The kept weeks are split in two: the **judged** weeks (the last `--judged` weeks, the matrix's 26) and the
**development** weeks before them (`--dev`). A rule is picked on the development weeks only; the judged weeks then say
what it gives, so the choice among rules is not fitted to the weeks that grade it.

Rules: `blend` (non-negative weights minimising Poisson deviance, the shipped rule) and `choose` (the best mean PAI,
sticky as shipped; `choose_free` without the stickiness) at several validation windows; `average` (equal shares at the
recorded level); `topN` (the blend's weights fitted only on the cells some candidate ranks in its top N% of a
week, e.g. `top5`); `logblend` (a log-linear pool: the forecast is c x prod f_k^w_k, w_k >= 0 and c fitted by Poisson
deviance, which lets a candidate reorder the top of another's ranking rather than add to its level).

Usage: python benchmarks/selection_replay.py DIR [--json OUT] [--judged 26] [--dev 26] [--windows 8,16,26]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

CANDIDATE_PREFIXES = ("lightgbm", "naive_", "history", "ewm_")  # auto's default candidates (training/backtest.py)
NOT_BASELINES = ("lightgbm", "auto", "flat")
LOG_FLOOR = 1e-4  # the least forecast the log-linear pool takes the log of (a count baseline forecasts 0)


def _pai(risk: np.ndarray, observed: np.ndarray) -> float:
    from hotspot.training.evaluation.metrics import pai_at

    return pai_at(risk, observed, 0.01) if observed.sum() > 0 else math.nan


def _deviance(risk: np.ndarray, observed: np.ndarray) -> float:
    from hotspot.training.evaluation.metrics import poisson_deviance

    return poisson_deviance(risk, observed)


def logblend_weights(forecasts: np.ndarray, observed: np.ndarray, floor: float = LOG_FLOOR) -> tuple[np.ndarray, float]:
    """(w, log c) of the log-linear pool c x prod f_k^w_k with the least Poisson deviance, w >= 0."""
    from scipy.optimize import minimize

    K = forecasts.shape[0]
    L = np.log(np.maximum(np.asarray(forecasts, dtype=np.float64).reshape(K, -1), floor))
    y = np.asarray(observed, dtype=np.float64).reshape(-1)
    n = max(y.size, 1)

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        eta = p[:K] @ L + p[K]
        mu = np.exp(eta)
        g = mu - y
        return float(mu.sum() - y @ eta) / n, np.concatenate([L @ g, [g.sum()]]) / n

    start = np.concatenate([np.full(K, 1.0 / K), [0.0]])
    res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * K + [(None, None)])
    return res.x[:K], float(res.x[K])


def top_blend_weights(forecasts: np.ndarray, observed: np.ndarray, share: float) -> np.ndarray:
    """The blend's weights (least Poisson deviance, w >= 0) fitted only on the cells that some candidate ranks in its
    top `share` of a week (forecasts (K, W, C), observed (W, C)): PAI@1% is decided by the order among the busiest
    cells, while a deviance over every cell is mostly the quiet cells' level. Cells tied with a candidate's n-th are
    in too (so the cells do not depend on how a sort breaks ties; a count baseline ties many); a forecast of 0 is
    nobody's top. The weights then apply to every cell."""
    from hotspot.training.selection import blend_weights

    forecasts = np.asarray(forecasts, dtype=np.float64)
    if forecasts.ndim != 3 or forecasts.shape[1:] != np.shape(observed):
        raise ValueError(f"top blend: forecasts (candidates, weeks, cells) for observed (weeks, cells), got "
                         f"{forecasts.shape} and {np.shape(observed)}")
    C = forecasts.shape[2]
    n = max(1, math.ceil(share * C))
    nth = np.partition(forecasts, C - n, axis=2)[:, :, C - n]  # each candidate's n-th largest of each week
    mask = ((forecasts >= nth[:, :, None]) & (forecasts > 0)).any(axis=0)
    if not mask.any():
        return blend_weights(forecasts, observed)
    return blend_weights(forecasts[:, mask], np.asarray(observed)[mask])


def replay(rule: str, window: int, F: np.ndarray, names: list[str], observed: np.ndarray, weeks: range,
           refit_every: int, grid_start: int, pai: np.ndarray) -> np.ndarray:
    """The rule's forecast of each week in `weeks` (rows of F: (K, W, C); `pai`: each candidate's weekly PAI@1%,
    (K, W)), refitted on the grid grid_start + k x refit_every with the `window` weeks before each refit."""
    from hotspot.training.selection import average_weights, beats, blend_weights, choose

    out, fits, chosen = {}, {}, None
    for t in weeks:
        r = grid_start + ((t - grid_start) // refit_every) * refit_every
        if r not in fits:
            lo = r - window
            if lo < 0:
                raise ValueError(f"week {t}: the window of {window} needs forecasts from {lo} (kept from 0)")
            val = slice(lo, r)
            if rule == "blend":
                fits[r] = ("sum", blend_weights(F[:, val], observed[val]))
            elif rule == "average":
                fits[r] = ("sum", average_weights(F[:, val], observed[val]))
            elif rule == "logblend":
                fits[r] = ("log", logblend_weights(F[:, val], observed[val]))
            elif rule.startswith("top") and rule[3:].isdigit():
                fits[r] = ("sum", top_blend_weights(F[:, val], observed[val], int(rule[3:]) / 100))
            elif rule in ("choose", "choose_free"):
                means = {n: float(np.nanmean(s)) if np.isfinite(s).any() else math.nan
                         for n, s in zip(names, pai[:, val], strict=True)}
                best = choose(means, "pai@1%")
                if (rule == "choose" and chosen not in (None, best)
                        and not beats(pai[names.index(best), val], pai[names.index(chosen), val], "pai@1%")):
                    best = chosen  # sticky, as shipped: kept unless the best mean is distinguishably better
                chosen = best
                fits[r] = ("one", names.index(best))
            else:
                raise ValueError(f"unknown rule {rule!r}")
        kind, p = fits[r]
        if kind == "sum":
            out[t] = np.tensordot(p, F[:, t].astype(np.float64), axes=1)
        elif kind == "log":
            w, c = p
            out[t] = np.exp(np.tensordot(w, np.log(np.maximum(F[:, t].astype(np.float64), LOG_FLOOR)), axes=1) + c)
        else:
            out[t] = F[p, t].astype(np.float64)
    return np.stack([out[t] for t in weeks])


def scores(risk: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weekly PAI@1% and deviance of (W, C) forecasts."""
    return (np.array([_pai(r, o) for r, o in zip(risk, observed, strict=True)]),
            np.array([_deviance(r, o) for r, o in zip(risk, observed, strict=True)]))


def at_or_above(rule_weekly: np.ndarray, baselines_weekly: np.ndarray, reps: int = 2000, seed: int = 0) -> float:
    """How often a rule's mean is at or above the best baseline's when the weeks are resampled (the best baseline
    picked again in each resample, as the matrix picks it after the fact): the chance, given these weeks' noise, of
    meeting the target "at or above the best baseline"."""
    ok = np.isfinite(rule_weekly) & np.isfinite(baselines_weekly).all(axis=0)
    a, b = rule_weekly[ok], baselines_weekly[:, ok]
    idx = np.random.default_rng(seed).integers(0, a.size, size=(reps, a.size))
    return float(np.mean(a[idx].mean(axis=1) >= b[:, idx].mean(axis=2).max(axis=0)))


def case(path: Path, rules: list[tuple[str, int]], judged: int, dev: int, refit_every: int) -> dict:
    """Every rule's replayed PAI@1% and deviance on the case's development and judged weeks, beside the baselines."""
    data = np.load(path)
    observed = data["observed"].astype(np.float64)
    models = [k for k in data.files if k not in ("periods", "observed")]
    W = observed.shape[0]
    parts = {"dev": range(W - judged - dev, W - judged), "judged": range(W - judged, W)}
    cand = [m for m in models if m.startswith(CANDIDATE_PREFIXES) and m != "lightgbm_tuned"]
    F = np.stack([data[m] for m in cand])
    pai = np.array([[_pai(F[k, t], observed[t]) for t in range(W)] for k in range(len(cand))])  # for `choose`
    baselines = [m for m in models if not m.startswith(NOT_BASELINES)]
    res: dict = {"case": path.stem, "candidates": cand, "weeks": W}
    grid_start = W - judged  # the judged weeks' first refit: the matrix's grid
    for part, weeks in parts.items():
        if not len(weeks):
            continue
        obs = observed[list(weeks)]
        table = {}
        for m in models:
            arr = data[m][list(weeks)]
            if np.isnan(arr).any():
                continue
            p, d = scores(arr, obs)
            table[m] = {"pai": float(np.nanmean(p)), "dev": float(np.mean(d)), "weekly": p}
        best = max((b for b in baselines if b in table), key=lambda b: table[b]["pai"])
        base_weekly = np.stack([table[b]["weekly"] for b in baselines if b in table])
        row: dict = {"best_baseline": best, "best_pai": table[best]["pai"], "best_dev": table[best]["dev"],
                     "rules": {}}
        if "lightgbm" in table:  # LightGBM alone, the way the rules are shown
            lgbm = table["lightgbm"]
            row["rules"]["lightgbm"] = {"pai": lgbm["pai"], "dev": lgbm["dev"],
                                        "ratio": lgbm["pai"] / table[best]["pai"],
                                        "p_at_or_above": at_or_above(lgbm["weekly"], base_weekly)}
        for rule, window in rules:
            try:
                risk = replay(rule, window, F, cand, observed, weeks, refit_every, grid_start, pai)
            except ValueError:
                continue
            p, d = scores(risk, obs)
            row["rules"][f"{rule}/{window}"] = {"pai": float(np.nanmean(p)), "dev": float(np.mean(d)),
                                                "ratio": float(np.nanmean(p) / table[best]["pai"]),
                                                "p_at_or_above": at_or_above(p, base_weekly)}
        if part == "judged" and "dev" in res:  # the baseline that led the development weeks, on the judged ones
            leader = res["dev"]["best_baseline"]
            row["prior_leader"] = {"name": leader, "ratio": table[leader]["pai"] / table[best]["pai"]}
        res[part] = row
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the --forecasts folder of accuracy_matrix.py (.npz per case)")
    parser.add_argument("--judged", type=int, default=26, help="the last weeks, graded [default: %(default)s]")
    parser.add_argument("--dev", type=int, default=26, help="weeks before them a rule is picked on "
                                                            "[default: %(default)s]")
    parser.add_argument("--windows", default="8,16,26", help="validation windows in weeks [default: %(default)s]")
    parser.add_argument("--rules", default="blend,choose,average,logblend,top1,top2,top5",
                        help="[default: %(default)s]")
    parser.add_argument("--refit-every", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    rules = [(r, w) for r in args.rules.split(",") for w in windows]
    start = time.perf_counter()
    results = []
    for path in sorted(args.folder.glob("*.npz")):
        res = case(path, rules, args.judged, args.dev, args.refit_every)
        results.append(res)
        for part in ("dev", "judged"):
            if part not in res:
                continue
            row = res[part]
            shown = "  ".join(f"{k} {v['ratio']:.3f}" for k, v in row["rules"].items())
            lead = (f"  ({row['prior_leader']['name']}, which led the weeks before: "
                    f"{row['prior_leader']['ratio']:.3f})" if "prior_leader" in row else "")
            print(f"{res['case']:<22}{part:<7} best {row['best_baseline']:<12}{row['best_pai']:6.2f}  {shown}{lead}",
                  flush=True)
    print(f"\nmean ratio to the best baseline, cases at or above it, cases with deviance no worse "
          f"({len(results)} cases; {time.perf_counter() - start:.0f} s, load "
          f"{Path('/proc/loadavg').read_text().split()[0]})")
    for part in ("dev", "judged"):
        keys = sorted({k for r in results if part in r for k in r[part]["rules"]})
        for k in keys:
            rows = [r[part] for r in results if part in r and k in r[part]["rules"]]
            ratios = [row["rules"][k]["ratio"] for row in rows]
            devok = sum(row["rules"][k]["dev"] <= row["best_dev"] for row in rows)
            chance = np.mean([row["rules"][k]["p_at_or_above"] for row in rows])
            print(f"{part:<7}{k:<16} mean {np.mean(ratios):.4f}  min {np.min(ratios):.3f}  >=1: "
                  f"{sum(x >= 1 for x in ratios)}/{len(rows)}  deviance ok: {devok}/{len(rows)}  resampled weeks at "
                  f"or above the best: {chance:.0%} a case")
    leaders = [r["judged"]["prior_leader"]["ratio"] for r in results if "prior_leader" in r["judged"]]
    if leaders:
        print(f"judged the baseline that led the development weeks: mean {np.mean(leaders):.4f}  min "
              f"{np.min(leaders):.3f}  >=1: {sum(x >= 1 for x in leaders)}/{len(leaders)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
