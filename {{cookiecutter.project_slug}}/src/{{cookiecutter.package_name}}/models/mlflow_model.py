"""MLflow "models from code" entry point: a pyfunc that scores with a saved model bundle.

MLflow stores this file next to the bundle folder and runs it when the model is loaded
(``mlflow.pyfunc.load_model("models:/<name>@champion")``), so no object of ours is
cloudpickled. MLflow runs it as a loose file, not as part of the package: it imports the
package by the name recorded in ``model_config["package"]`` at registration, and it therefore
needs the project package installed where the model is loaded.
"""

import importlib

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class BundleModel(PythonModel):
    """Scores raw canonical rows: returns the positive-class score and the label."""

    def load_context(self, context):
        bundle_module = importlib.import_module(f"{context.model_config['package']}.bundle")
        # load_bundle verifies the SHA-256 of every file before unpickling anything.
        self.bundle = bundle_module.load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        scores = self.bundle.score(frame)
        threshold = (params or {}).get("threshold", self.bundle.threshold)
        labels = self.bundle.labels_for(scores, float(threshold))
        return pd.DataFrame({"score": scores, "label": labels}, index=frame.index)


mlflow.models.set_model(BundleModel())
