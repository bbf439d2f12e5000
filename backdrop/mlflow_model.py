"""A trained predictor as an MLflow Model (pyfunc): what every run logs under the name `model`.

    mlflow.pyfunc.load_model("runs:/<id>/model").predict(x)     # x: N×C×S×S float32 in [0, 1]
    mlflow.pyfunc.load_model("runs:/<id>/model").metadata.metadata["class_names"]   # logit k's class
    mlflow models serve -m models:/NAME@champion --env-manager local

The model folder holds the weights file written by `api.save_model` (`artifacts/model.pt`, loaded
with `weights_only=True`) and `pyfunc_code.py`, which MLflow runs to build the predictor (MLflow's
"models from code"): nothing in the folder is unpickled. Loading it needs `backdrop` installed.
"""
import os
from pathlib import Path

import numpy as np

NAME = "model"                    # runs:/<id>/model — the artifact name every run uses
WEIGHTS = "weights"               # the key of model.pt in the pyfunc's artifacts
CODE = Path(__file__).with_name("pyfunc_code.py")
EXAMPLE_ROWS = 2


class Predictor:
    """The pyfunc's Python model: logits of a batch. (MLflow wants a `PythonModel` subclass; the
    class is made in pyfunc_code.py so that importing this module does not import mlflow.pyfunc.)"""

    def load_context(self, context):
        from .api import load_model
        self.model = load_model(context.artifacts[WEIGHTS])

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype=np.float32)
        return self.model(x).numpy().astype(np.float32)


def requirements():
    """What the model needs, pinned to this environment (no inference: MLflow's would load the model
    in a subprocess and reach for the package index)."""
    import mlflow
    import torch
    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"]


def log_model(weights_path, example, registered_name=None):
    """Log the model file at `weights_path` as the active run's MLflow Model `model`, with a
    signature and an input example (`example`: a few real input images, N×C×S×S in [0, 1]).
    Returns MLflow's ModelInfo (`model_uri`, `model_id`, `registered_model_version`)."""
    import mlflow
    from mlflow.models import infer_signature

    from .api import load_model
    x = np.asarray(example[:EXAMPLE_ROWS], dtype=np.float32)
    model = load_model(weights_path)
    logits = model(x).numpy().astype(np.float32)
    with quiet_mlflow():
        # The class names travel in the MLmodel file, so a pyfunc user can name logit k:
        # mlflow.pyfunc.load_model(uri).metadata.metadata["class_names"][k]
        return mlflow.pyfunc.log_model(
            name=NAME, python_model=str(CODE), artifacts={WEIGHTS: str(weights_path)},
            signature=infer_signature(x, logits), input_example=x, pip_requirements=requirements(),
            registered_model_name=registered_name, metadata={"class_names": list(model.class_names)})


class quiet_mlflow:
    """MLflow logs INFO lines and draws a download progress bar for every model it logs or loads:
    on a console that prints one line per epoch they are noise. Warnings still show."""

    def __enter__(self):
        import logging
        self.logger = logging.getLogger("mlflow")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)
        self.bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
        if self.bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = self.bar


def weights_file(uri, d):
    """The local model.pt behind a `runs:/…` or `models:/…` URI, downloaded into the folder `d`:
    for runs logged as MLflow Models and for older runs that logged `model/model.pt` as a file."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from .errors import UserError
    from .tracking import tracking_uri
    tracking_uri(mlflow.get_tracking_uri())         # an unreachable server: one line, not minutes of retries
    try:
        with quiet_mlflow():
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=d))
    except MlflowException as e:
        first = str(e.message).splitlines()[0] if str(e.message) else type(e).__name__
        raise UserError(f"{uri}: no model there ({first}); check the run id or the registered name "
                        f"and alias, and the tracking URI ({mlflow.get_tracking_uri()})") from None
    except OSError as e:
        raise UserError(f"{uri}: cannot reach the tracking store {mlflow.get_tracking_uri()} ({e})") from None
    for candidate in (local / "artifacts" / "model.pt", local / "model.pt", local):
        if candidate.is_file():
            return candidate
    names = ", ".join(sorted(os.listdir(local))) if local.is_dir() else local.name
    raise UserError(f"{uri}: holds no backdrop model (found: {names}); name a run's or a registered model's 'model'")
