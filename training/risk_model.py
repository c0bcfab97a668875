"""The registered model as MLflow serves it: expected incidents per row of features, whatever the objective.

Logged with each registered version as an MLflow *model from code*: this file is copied into the model, and it
imports only MLflow, LightGBM, NumPy and pandas, so `mlflow.pyfunc.load_model("models:/AREA-lightgbm@champion")`
works where the hotspot package is not installed (a batch job, `mlflow models serve`). Its artifacts are the
LightGBM booster (`booster`, LightGBM's text format) and `model_spec` (the JSON spec the forecaster is rebuilt from;
its `calibration` maps ranking scores to counts).

Count objectives (Poisson, Tweedie, L2) predict the expected count directly. Ranking objectives (LambdaRank,
rank_xendcg) score cells; the score goes through the calibration fitted on the training rows,
log E[count] = a + b * score, as `hotspot.models.gbm.LightGBMForecaster.predict` does.
"""

import json
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class RiskModel(PythonModel):
    """A fitted LightGBM forecaster: a DataFrame of features (one row per cell) in, expected incidents out."""

    def load_context(self, context) -> None:
        """Read the booster and the spec (with the ranking calibration) from the model's artifacts."""
        self.booster = lgb.Booster(model_file=context.artifacts["booster"])
        spec = json.loads(Path(context.artifacts["model_spec"]).read_text())
        self.features = list(self.booster.feature_name())
        calibration = spec.get("calibration")
        self.calibration = (float(calibration[0]), float(calibration[1])) if calibration else None
        self.objective = spec.get("objective", "poisson")

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.Series:
        """Expected incidents per row (a Series named `risk`, on the input's index)."""
        frame = pd.DataFrame(model_input)
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise ValueError(f"the input lacks the model's feature column(s) {missing[:10]}"
                             f"{' and more' if len(missing) > 10 else ''}; expected the {len(self.features)} "
                             "columns of the model's signature")
        raw = np.asarray(self.booster.predict(frame[self.features].to_numpy(dtype=np.float64)), dtype=np.float64)
        if self.calibration:
            a, b = self.calibration
            raw = np.exp(a + b * raw)
        return pd.Series(raw, index=frame.index, name="risk")


mlflow.models.set_model(RiskModel())
