"""Gradient-boosted forecaster (LightGBM) on the panel's feature cube.

Count objectives (Poisson by default, Tweedie, L2) predict the expected incident count directly. Ranking objectives
(`lambdarank`, `rank_xendcg`) learn to order the cells of each period, one query per period, in the spirit of the
NIJ challenge's CrimeRank; their scores are then mapped to expected counts by a one-variable Poisson regression
(log risk = a + b * score, b > 0), which keeps the ranking and makes deviance and calibration comparable.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from hotspot.features.panel import Panel
from hotspot.models.base import Forecaster, check_panel

RANK_OBJECTIVES = ("lambdarank", "rank_xendcg")
# relevance labels of the ranking objectives are counts capped here; gains are linear in the count because a
# hit-rate metric counts every incident caught once (LightGBM's default gain, 2^label - 1, would chase outliers)
RANK_MAX_LABEL = 30


class LightGBMForecaster(Forecaster):
    """Fits on the feature rows of the most recent `train_periods` observed periods with full look-back.

    `features` restricts the model to a subset of the panel's features (by name), e.g. for ablation studies.
    `zero_row_fraction` < 1 keeps that share of the empty cell-periods (weighted back up for count objectives).
    """

    def __init__(self, params: dict | None = None, num_boost_round: int = 300, train_periods: int | None = 156,
                 features: list[str] | None = None, name: str = "lightgbm", zero_row_fraction: float = 1.0,
                 seed: int = 42):
        # stored as given (no copies, no defaults filled in): scikit-learn's clone and get_params rely on it
        self.params = params
        self.num_boost_round = num_boost_round
        self.train_periods = train_periods
        self.features = features
        self.name = name
        self.zero_row_fraction = zero_row_fraction
        self.seed = seed

    def _default_name(self) -> str:
        return "lightgbm"

    @property
    def objective(self) -> str:
        """The LightGBM objective (Poisson unless the params say otherwise)."""
        return str((self.params or {}).get("objective", "poisson"))

    @property
    def is_ranker(self) -> bool:
        """Whether the objective is a ranking one (scores are then calibrated to counts)."""
        return self.objective in RANK_OBJECTIVES

    def spec(self) -> dict:
        """Everything needed to rebuild this forecaster unfitted (logged with each registered model)."""
        return {"params": dict(self.params or {}), "num_boost_round": self.num_boost_round,
                "train_periods": self.train_periods,
                "features": list(getattr(self, "feature_names_", None) or self.features or []) or None,
                "zero_row_fraction": self.zero_row_fraction, "seed": self.seed}

    @classmethod
    def from_spec(cls, spec: dict, name: str = "lightgbm") -> LightGBMForecaster:
        """An unfitted forecaster from a spec (see `spec`), values coerced to the types the constructor documents."""
        return cls(params=spec.get("params"), num_boost_round=int(spec.get("num_boost_round", 300)),
                   train_periods=spec.get("train_periods"), features=spec.get("features"), name=name,
                   zero_row_fraction=float(spec.get("zero_row_fraction", 1.0)), seed=int(spec.get("seed", 42)))

    def _columns(self, panel: Panel, names: tuple[str, ...] | list[str] | None) -> np.ndarray:
        """Indices of `names` (all features when None) in the panel; ValueError naming any that are missing."""
        if names is None:
            return np.arange(len(panel.feature_names))
        position = {n: i for i, n in enumerate(panel.feature_names)}
        missing = [n for n in names if n not in position]
        if missing:
            raise ValueError(f"the panel lacks the model's feature(s) {missing[:10]}"
                             f"{' and more' if len(missing) > 10 else ''} (was the model trained with another "
                             "[features] config?)")
        return np.array([position[n] for n in names])

    def _lgb_params(self) -> dict:
        params = {"objective": "poisson", "verbosity": -1, "deterministic": True, "force_row_wise": True}
        params.update(self.params or {})
        if params["objective"] not in ("tweedie",):
            params.pop("tweedie_variance_power", None)
        if params["objective"] != "lambdarank":
            params.pop("lambdarank_truncation_level", None)
        if params["objective"] in RANK_OBJECTIVES:
            params["label_gain"] = list(range(RANK_MAX_LABEL + 1))
        return params

    def training_window(self, panel: Panel) -> tuple[int, int]:
        """First and last+1 observed period used to fit."""
        end = panel.n_periods
        start = panel.min_history
        if self.train_periods is not None:
            start = max(start, end - self.train_periods)
        return start, end

    def fit(self, panel: Panel) -> LightGBMForecaster:
        start, end = self.training_window(panel)
        check_panel(panel, min_periods=panel.min_history + 1)
        cols = self._columns(panel, self.features)
        F = panel.X.shape[2]
        X = panel.X[start:end].reshape(-1, F)
        if len(cols) < F:
            X = X[:, cols]
        y = panel.target[start:end].reshape(-1)
        period = np.repeat(np.arange(end - start), panel.grid.n_cells)
        weight = np.ones(len(y))
        if self.zero_row_fraction < 1.0:
            # keep every cell-period with incidents and a random share of the empty ones, weighted back up so the
            # Poisson mean stays unbiased; most cell-periods are empty, so this is most of the fitting cost
            rng = np.random.default_rng(self.seed + end)
            keep = (y > 0) | (rng.random(len(y)) < self.zero_row_fraction)
            X, y, period = X[keep], y[keep], period[keep]
            weight = np.where(y > 0, 1.0, 1.0 / self.zero_row_fraction)
        names = [panel.feature_names[i] for i in cols]
        from hotspot.features.engine import current

        client = current()
        if client is not None:  # the Dask engine: LightGBM's own distributed training, brought back as a booster
            self.booster_ = dask_booster(client, self._lgb_params(), X, y, period, None if self.zero_row_fraction
                                         >= 1.0 else weight, names, self.num_boost_round, self.is_ranker)
        else:
            if self.is_ranker:
                # one query per period; rows are period-major, so group sizes are the rows kept per period.
                # LightGBM takes ranking weights per query, so the empty-row weights are not passed.
                groups = np.bincount(period, minlength=end - start)
                data = lgb.Dataset(X, label=np.minimum(np.rint(y), RANK_MAX_LABEL).astype(np.int32),
                                   group=groups[groups > 0], feature_name=names, free_raw_data=True)
            else:
                data = lgb.Dataset(X, label=y, weight=None if self.zero_row_fraction >= 1.0 else weight,
                                   feature_name=names, free_raw_data=True)
            self.booster_ = lgb.train(self._lgb_params(), data, num_boost_round=self.num_boost_round)
        self.feature_names_ = tuple(names)
        self.train_periods_ = (panel.period_starts[start], panel.period_starts[end - 1])
        # Booster.predict is typed to return a list or sparse matrix too; for dense input it is an ndarray
        self.calibration_ = self._calibrate(np.asarray(self.booster_.predict(X)), y, weight) if self.is_ranker else None
        return self

    @staticmethod
    def _calibrate(score: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
        """(a, b) of log E[count] = a + b * score, fitted by Poisson maximum likelihood on the training rows."""
        from sklearn.linear_model import PoissonRegressor

        scale = float(score.std()) or 1.0
        glm = PoissonRegressor(alpha=0.0, max_iter=300).fit((score / scale)[:, None], y, sample_weight=weight)
        b = float(glm.coef_[0]) / scale
        # a non-increasing fit would reverse the ranking the model learned; keep it increasing
        return float(glm.intercept_), max(b, 1e-6)

    @classmethod
    def from_booster(cls, booster: lgb.Booster, spec: dict | None = None,
                     calibration: tuple[float, float] | None = None) -> LightGBMForecaster:
        """Wrap a booster loaded from the model registry (with its spec and ranking calibration when known)."""
        model = cls.from_spec(spec) if spec else cls(features=booster.feature_name())
        model.booster_ = booster
        model.feature_names_ = tuple(booster.feature_name())
        model.calibration_ = (float(calibration[0]), float(calibration[1])) if calibration else None
        return model

    def _inputs(self, panel: Panel) -> np.ndarray:
        """The model's feature columns of the period after the panel's observed ones."""
        if not hasattr(self, "booster_"):
            raise RuntimeError("LightGBMForecaster.predict called before fit")
        return panel.X_next[:, self._columns(panel, self.feature_names_)]

    def predict(self, panel: Panel) -> np.ndarray:
        inputs = self._inputs(panel)  # checks that the model is fitted
        raw = np.asarray(self.booster_.predict(inputs), dtype=np.float64)
        calibration = getattr(self, "calibration_", None)
        if calibration:
            a, b = calibration
            return np.exp(a + b * raw)
        return raw

    def contributions(self, panel: Panel) -> np.ndarray:
        """Per-cell contribution of each feature to the log of the forecast risk, (C, F): LightGBM's own
        TreeSHAP values (pred_contrib), scaled by the calibration slope for ranking objectives."""
        inputs = self._inputs(panel)
        contrib = np.asarray(self.booster_.predict(inputs, pred_contrib=True))[:, :-1]
        calibration = getattr(self, "calibration_", None)
        if calibration:
            contrib = contrib * calibration[1]
        return contrib

    def explain(self, panel: Panel) -> tuple[list[str], np.ndarray] | None:
        """Its own TreeSHAP contributions (`contributions`), by its features."""
        return list(self.feature_names_), self.contributions(panel)

    def gain_importance(self) -> dict[str, float]:
        """Total split gain of each feature in the fitted booster."""
        gains = self.booster_.feature_importance(importance_type="gain")
        return dict(zip(self.feature_names_, map(float, gains)))


def dask_booster(client, params: dict, X: np.ndarray, y: np.ndarray, period: np.ndarray, weight: np.ndarray | None,
                 names: list[str], rounds: int, ranker: bool) -> lgb.Booster:
    """The booster of `lightgbm.dask`'s estimator trained on the rows split among the cluster's workers, converted
    with `to_local()`. A ranking objective keeps whole periods per part (a query never straddles two workers); the
    others deal the rows out in turn, so that every worker's part (from which it builds its share of the features'
    bins) looks like the whole.

    LightGBM's distributed (data-parallel) learner builds its histograms from every worker's rows, so the model is
    equivalent to the single-process one, not bit-identical (tests/test_engine.py states the tolerance). The parts
    are scattered to the workers, not embedded in the task graph; a worker lost during the fit takes its parts with
    it, so the fit is run again whole once the cluster has its workers back (`[engine] retries`)."""
    import dask.array as da
    from lightgbm.dask import DaskLGBMRanker, DaskLGBMRegressor

    from hotspot.features.engine import restart_stuck, retrying, unblocking

    workers = max(1, len(client.scheduler_info()["workers"]))
    if ranker:
        starts = np.flatnonzero(np.r_[True, period[1:] != period[:-1]])  # first row of each period (period-major)
        cuts = [int(starts[i]) for i in np.linspace(0, len(starts), workers + 1).astype(int)[1:-1]]
        bounds = [0, *cuts, len(y)]
        parts = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    else:
        parts = [np.arange(w, len(y), workers) for w in range(min(workers, len(y)))]

    def spread(values: np.ndarray):
        pieces = [np.ascontiguousarray(values[rows]) for rows in parts]
        futures = client.scatter(pieces, hash=False)
        return da.concatenate([da.from_delayed(f, shape=p.shape, dtype=p.dtype) for f, p in zip(futures, pieces)])

    options = {k: v for k, v in params.items() if k not in ("num_boost_round", "num_threads", "n_jobs")}

    def fit() -> lgb.Booster:  # scatter and fit: run again whole when a worker is lost (its parts go with it)
        with unblocking(client, "_train_part"):
            return fit_once()

    def fit_once() -> lgb.Booster:
        if ranker:
            counts = [np.bincount(period[rows] - period[rows][0]) for rows in parts]
            groups = [g[g > 0] for g in counts]
            model = DaskLGBMRanker(client=client, n_estimators=rounds, **options)
            group = da.concatenate([da.from_delayed(f, shape=g.shape, dtype=g.dtype)
                                    for f, g in zip(client.scatter(groups, hash=False), groups)])
            labels = np.minimum(np.rint(y), RANK_MAX_LABEL).astype(np.int32)
            model.fit(spread(X), spread(labels), group=group, feature_name=names)
        else:
            model = DaskLGBMRegressor(client=client, n_estimators=rounds, **options)
            model.fit(spread(X), spread(y), sample_weight=None if weight is None else spread(
                np.asarray(weight, dtype=np.float64)), feature_name=names)
        return model.to_local().booster_

    return retrying(client, "the LightGBM fit on the cluster", fit,
                    before_retry=lambda: restart_stuck(client, "_train_part"))
