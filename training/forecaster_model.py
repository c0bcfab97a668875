"""A registered version that is not one LightGBM booster (a baseline such as `ewm_hl26`, or `auto`), as MLflow
serves it: expected incidents per cell.

Logged as an MLflow *model from code* (this file is copied into the model). Its artifacts are `forecaster` (the
fitted hotspot forecaster, pickled), `model_spec` (JSON: the model's name, family, parameters and training window)
and `next_period` (CSV: `cell_id`, `risk`, the forecast it made when it was trained, for the period after its
training data). A baseline forecasts from the history of counts, not from one row of features, so `predict` takes:

- a hotspot `Panel`: the fitted forecaster's forecast of the panel's next period (needs the hotspot package, which
  the pickle refers to), as `hotspot forecast --version N` makes it;
- a DataFrame with a `cell_id` column: the stored forecast of the period after training, per row (needs only
  MLflow, NumPy and pandas).
"""

import json
import pickle
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class ForecasterModel(PythonModel):
    """A fitted hotspot forecaster: a Panel (or cell ids) in, expected incidents per cell out."""

    def load_context(self, context) -> None:
        """Read the spec and the stored forecast; the pickled forecaster is read when a Panel asks for it."""
        self.spec = json.loads(Path(context.artifacts["model_spec"]).read_text())
        stored = pd.read_csv(context.artifacts["next_period"])
        self.next_period = pd.Series(stored["risk"].to_numpy(np.float64), index=stored["cell_id"].to_numpy())
        self.forecaster_path = context.artifacts["forecaster"]
        self.forecaster = None

    def predict(self, context, model_input, params=None):
        """Expected incidents per cell (a Series named `risk`)."""
        if hasattr(model_input, "target") and hasattr(model_input, "period_starts"):  # a hotspot Panel
            if self.forecaster is None:
                with open(self.forecaster_path, "rb") as f:
                    self.forecaster = pickle.load(f)  # noqa: S301 - the model's own artifact
            return pd.Series(np.asarray(self.forecaster.predict(model_input), dtype=np.float64), name="risk")
        frame = pd.DataFrame(model_input)
        if "cell_id" not in frame.columns:
            raise ValueError(f"{self.spec.get('model', 'this model')} forecasts from the history of counts: pass a "
                             "hotspot Panel, or a DataFrame with a `cell_id` column for the forecast of the period "
                             f"after training ({self.spec.get('forecast_period', '?')})")
        unknown = sorted(set(frame["cell_id"]) - set(self.next_period.index))
        if unknown:
            raise ValueError(f"unknown cell_id(s) {unknown[:10]}; the model knows {len(self.next_period)} cells")
        return pd.Series(self.next_period.reindex(frame["cell_id"]).to_numpy(), index=frame.index, name="risk")


mlflow.models.set_model(ForecasterModel())
