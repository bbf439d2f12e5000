"""MLflow runs this file to build a backdrop model (MLflow's "models from code"): see
backdrop/mlflow_model.py. It is copied into every logged model folder."""
import mlflow
from mlflow.pyfunc import PythonModel

from backdrop.mlflow_model import Predictor


class BackdropModel(Predictor, PythonModel):
    """Logits (N×classes) of N×C×S×S float32 images in [0, 1]."""


mlflow.models.set_model(BackdropModel())
