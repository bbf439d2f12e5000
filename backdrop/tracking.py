"""MLflow: where runs are recorded. The default is an embedded sqlite store, `mlflow.db` in the
working directory — the same store `mlflow ui` opens when started there with no arguments."""
import os
import subprocess
from pathlib import Path

import mlflow

DEFAULT_EXPERIMENT = "backdrop"


def tracking_uri(uri=None):
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db; a relative
    sqlite file or local folder is made absolute here, in the driver, because Ray's processes
    (a Train controller logging epochs) run in working directories of their own."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////") and uri != "sqlite:///:memory:":
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).expanduser().resolve()}"
    if "://" not in uri and not uri.startswith(("databricks", "file:")):
        return str(Path(uri).expanduser().resolve())     # a local folder store
    return uri


def setup(uri=None, experiment=DEFAULT_EXPERIMENT):
    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(uri), experiment))
    return uri


def artifact_location(uri, experiment):
    """For a sqlite store, artifacts go beside the database file (`mlartifacts/<experiment>`),
    not into ./mlruns of whatever folder a command happens to run in; None = MLflow's default."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / experiment).as_uri()
    return None


def git_commit():
    """The code version runs are tagged with ('unknown' outside a git checkout)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def config_params(cfg):
    """MLflow params are strings; lists are written as comma-separated values."""
    return {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in cfg.items()}


def safe_key(name):
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in str(name))


def experiment_id(client, name):
    """The id of an active experiment, created if missing (a deleted one is a UserError)."""
    from .errors import UserError
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri, name))
    if exp.lifecycle_stage != "active":
        raise UserError(f"MLflow experiment '{name}' is deleted; restore it or choose another name")
    return exp.experiment_id
