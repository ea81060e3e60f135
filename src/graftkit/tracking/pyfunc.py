"""A saved graftkit model as an MLflow pyfunc: ``mlflow.pyfunc.load_model(uri).predict(df)`` gives the rows
``graftkit predict`` writes (``prediction`` and ``p_<label>`` / interval columns), one per row of ``df``."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd


class GraftkitModel(mlflow.pyfunc.PythonModel):
    """Loads the model directory logged as the artifact ``model_dir``; reads the column it was fitted on, or
    the modality's name (``text``), or a single column."""

    def load_context(self, context):
        from graftkit.loading import load_model

        self.model = load_model(context.artifacts["model_dir"], use_cache=False, progress=False)

    def predict(self, context, model_input, params=None):
        from graftkit.errors import DataError

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        column, modality = self.model.input_["column"], self.model.input_["modality"]
        name = next((c for c in (column, modality) if c in frame.columns), None)
        if name is None and len(frame.columns) == 1:
            name = frame.columns[0]
        if name is None:
            raise DataError(f"the input frame has columns {list(frame.columns)}; give a {column!r} column")
        return pd.DataFrame(self.model.predict_records(frame[name].tolist(), **(params or {})))
