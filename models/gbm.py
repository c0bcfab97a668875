"""Gradient-boosted forecaster (LightGBM) on the panel's feature cube.

Count objectives (Poisson by default, Tweedie, L2) predict the expected incident count directly. Ranking objectives
(`lambdarank`, `rank_xendcg`) learn to order the cells of each period, one query per period, in the spirit of the
NIJ challenge's CrimeRank; their scores are then mapped to expected counts by a one-variable Poisson regression
(log risk = a + b * score, b > 0), which keeps the ranking and makes deviance and calibration comparable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import lightgbm as lgb
import numpy as np

from hotspot.features.engine import current
from hotspot.features.panel import Panel
from hotspot.features.parts import PartitionedX
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
        labels = panel.target[start:end]
        keep = None
        if self.zero_row_fraction < 1.0:
            # keep every cell-period with incidents and a random share of the empty ones, weighted back up so the
            # Poisson mean stays unbiased; most cell-periods are empty, so this is most of the fitting cost
            rng = np.random.default_rng(self.seed + end)
            keep = (labels > 0) | (rng.random(labels.size) < self.zero_row_fraction).reshape(labels.shape)
        y = labels[keep] if keep is not None else labels.reshape(-1)
        period = np.nonzero(keep)[0] if keep is not None else np.repeat(np.arange(end - start), panel.grid.n_cells)
        weight = np.ones(len(y)) if keep is None else np.where(y > 0, 1.0, 1.0 / self.zero_row_fraction)
        X: np.ndarray | KeptRows
        if isinstance(panel.X, PartitionedX):  # read by parts, never the whole cube (features/parts.py)
            rows = KeptRows(panel.X, start, end, np.ones(labels.shape, dtype=bool) if keep is None else keep, cols)
            X = rows if current() is not None else rows.read()
        else:
            F = panel.X.shape[2]
            X = panel.X[start:end].reshape(-1, F)
            if len(cols) < F:
                X = X[:, cols]
            if keep is not None:
                X = X[keep.reshape(-1)]
        names = [panel.feature_names[i] for i in cols]
        client = current()
        scores = None
        if client is not None:  # the Dask engine: LightGBM's own distributed training, brought back as a booster
            self.booster_, scores = dask_booster(client, self._lgb_params(), X, y, period, None if keep is None
                                                 else weight, names, self.num_boost_round, self.is_ranker)
        else:
            assert isinstance(X, np.ndarray)
            if self.is_ranker:
                # one query per period; rows are period-major, so group sizes are the rows kept per period.
                # LightGBM takes ranking weights per query, so the empty-row weights are not passed.
                groups = np.bincount(period, minlength=end - start)
                data = lgb.Dataset(X, label=np.minimum(np.rint(y), RANK_MAX_LABEL).astype(np.int32),
                                   group=groups[groups > 0], feature_name=names, free_raw_data=True)
            else:
                data = lgb.Dataset(X, label=y, weight=None if keep is None else weight,
                                   feature_name=names, free_raw_data=True)
            self.booster_ = lgb.train(self._lgb_params(), data, num_boost_round=self.num_boost_round)
        self.feature_names_ = tuple(names)
        self.train_periods_ = (panel.period_starts[start], panel.period_starts[end - 1])
        if self.is_ranker:
            # Booster.predict is typed to return a list or sparse matrix too; for dense input it is an ndarray
            score = np.asarray(self.booster_.predict(X)) if isinstance(X, np.ndarray) else scores
            assert score is not None
            self.calibration_: tuple[float, float] | None = self._calibrate(score, y, weight)
        else:
            self.calibration_ = None
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


class KeptRows:
    """The training rows of a partitioned panel (features/parts.py): periods [start, end), the (period, cell) pairs
    `keep` (end - start, C) marks, feature `columns`; read whole (`read`) or by whole periods on the workers."""

    def __init__(self, X: PartitionedX, start: int, end: int, keep: np.ndarray, columns: np.ndarray):
        self.X, self.start, self.end, self.keep, self.columns = X, start, end, keep, columns

    def read(self) -> np.ndarray:
        return self.X.take(self.start, self.end, self.keep, self.columns)


def _take_part(X: PartitionedX, start: int, end: int, keep: np.ndarray, columns: np.ndarray, k: int,
               n: int) -> np.ndarray:
    return X.take(start, end, keep, columns, every=(k, n))


def _predict_part(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(X))


@contextlib.contextmanager
def ranks_by_address(client) -> Iterator[None]:
    """While a `lightgbm.dask` fit runs, give its workers their LightGBM ranks in the order of their addresses.

    lightgbm.dask numbers the machines in the order `client.who_has` lists the parts, and distributed builds that
    list from a set of keys, whose order changes from one process to the next (string hashing is randomised). The
    rank decides which worker's rows set each feature's bins, so the same data on the same cluster gave one of two
    models at random. With part k placed on the k-th worker by address (`dask_booster`) and the ranks in address
    order, worker k is rank k and every fit of the same rows is the same model. Written by hand (a wrapper on this
    client's `who_has`, removed afterwards) because lightgbm.dask takes no rank order."""
    original = client.who_has

    def who_has(futures=None, **kwargs):
        found = original(futures, **kwargs)
        order = {a: i for i, a in enumerate(sorted(client.scheduler_info()["workers"]))}
        ranked = sorted(found.items(), key=lambda item: min((order.get(w, len(order)) for w in item[1]),
                                                            default=len(order)))
        return type(found)(ranked)

    client.who_has = who_has
    try:
        yield
    finally:
        del client.who_has  # the class's method again


def dask_booster(client, params: dict, X: np.ndarray | KeptRows, y: np.ndarray, period: np.ndarray,
                 weight: np.ndarray | None, names: list[str], rounds: int,
                 ranker: bool) -> tuple[lgb.Booster, np.ndarray | None]:
    """The booster of `lightgbm.dask`'s estimator trained on the rows split among the cluster's workers, converted
    with `to_local()`, and (a ranking objective's calibration needs them) its scores of the training rows when X
    is read by the workers. A ranking objective keeps whole periods per part (a query never straddles two
    workers); the others deal the rows out in turn, so that every worker's part (from which it builds its share of
    the features' bins) looks like the whole. Rows of a partitioned panel (`KeptRows`) are read by the workers
    themselves, worker k taking every k-th period of the window, so no process holds them all.

    LightGBM's distributed (data-parallel) learner builds its histograms from every worker's rows, so the model is
    equivalent to the single-process one, not bit-identical (tests/test_engine.py states the tolerance). The parts
    are scattered to the workers, not embedded in the task graph; a worker lost during the fit takes its parts with
    it, so the fit is run again whole once the cluster has its workers back (`[engine] retries`)."""
    import dask.array as da
    from lightgbm.dask import DaskLGBMRanker, DaskLGBMRegressor

    from hotspot.features.engine import restart_stuck, retrying, unblocking

    workers = max(1, len(client.scheduler_info()["workers"]))
    lazy = isinstance(X, KeptRows)
    if lazy:
        parts = [rows for rows in (np.flatnonzero(period % workers == k) for k in range(workers)) if len(rows)]
    elif ranker:
        starts = np.flatnonzero(np.r_[True, period[1:] != period[:-1]])  # first row of each period (period-major)
        cuts = [int(starts[i]) for i in np.linspace(0, len(starts), workers + 1).astype(int)[1:-1]]
        bounds = [0, *cuts, len(y)]
        parts = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    else:
        parts = [np.arange(w, len(y), workers) for w in range(min(workers, len(y)))]
    where: list = []  # a partitioned panel's part k is read on worker k: its labels and weights go there too
    read: list = []  # the features' futures of the last attempt (for the ranking scores)

    def place() -> None:  # on each attempt: a worker lost and replaced has a new address
        now = sorted(client.scheduler_info()["workers"])
        where[:] = [[now[k % len(now)]] if now else None for k in range(len(parts))]

    def scattered(pieces: list[np.ndarray]) -> list:  # part k on the k-th worker (by address)
        return [client.scatter(p, hash=False, workers=w) for p, w in zip(pieces, where)]

    def spread(values: np.ndarray):
        pieces = [np.ascontiguousarray(values[rows]) for rows in parts]
        return da.concatenate([da.from_delayed(f, shape=p.shape, dtype=p.dtype)
                               for f, p in zip(scattered(pieces), pieces)])

    def features():
        if not isinstance(X, KeptRows):
            return spread(X)
        keep = client.scatter(X.keep, broadcast=True, hash=False)
        k_of = [int(period[rows[0]]) % workers for rows in parts]
        read[:] = [client.submit(_take_part, X.X, X.start, X.end, keep, X.columns, k, workers, workers=w,
                                 pure=False) for k, w in zip(k_of, where)]
        return da.concatenate([da.from_delayed(f, shape=(len(rows), len(X.columns)), dtype=np.float32)
                               for f, rows in zip(read, parts)])

    options = {k: v for k, v in params.items() if k not in ("num_boost_round", "num_threads", "n_jobs")}

    def fit() -> lgb.Booster:  # scatter and fit: run again whole when a worker is lost (its parts go with it)
        with unblocking(client, "_train_part"), ranks_by_address(client):
            return fit_once()

    def fit_once() -> lgb.Booster:
        place()
        if ranker:
            counts = [np.bincount(period[rows] - period[rows][0]) for rows in parts]
            groups = [g[g > 0] for g in counts]
            model = DaskLGBMRanker(client=client, n_estimators=rounds, **options)
            group = da.concatenate([da.from_delayed(f, shape=g.shape, dtype=g.dtype)
                                    for f, g in zip(scattered(groups), groups)])
            labels = np.minimum(np.rint(y), RANK_MAX_LABEL).astype(np.int32)
            model.fit(features(), spread(labels), group=group, feature_name=names)
        else:
            model = DaskLGBMRegressor(client=client, n_estimators=rounds, **options)
            model.fit(features(), spread(y), sample_weight=None if weight is None else spread(
                np.asarray(weight, dtype=np.float64)), feature_name=names)
        return model.to_local().booster_

    booster = retrying(client, "the LightGBM fit on the cluster", fit,
                       before_retry=lambda: restart_stuck(client, "_train_part"))
    if not (lazy and ranker):
        return booster, None
    scores = np.empty(len(y))
    gathered = client.gather([client.submit(_predict_part, booster, f, pure=False) for f in read])
    for rows, part in zip(parts, gathered):
        scores[rows] = part
    return booster, scores
