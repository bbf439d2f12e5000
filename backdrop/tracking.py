"""MLflow: where runs are recorded. The default is an embedded sqlite store, `mlflow.db` in the
working directory — the same store `mlflow ui` opens when started there with no arguments.

MLflow is imported where a function talks to a store, not with this module: a training process
(a sweep's trial, a Train worker) uses the metric helpers here and never writes a run, and
importing MLflow would cost each such process about a second of CPU at its start."""
import functools
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from . import experiments

DEFAULT_EXPERIMENT = experiments.TRAIN
# An experiment tag the MLflow UI reads to choose its layout: model training, not GenAI traces.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def tracking_uri(uri=None, create=True):
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db; a relative
    sqlite file or local folder is made absolute here, in the driver, because Ray's processes
    (a Train controller logging epochs) run in working directories of their own. An sqlite
    store's tables are made here (`created_once`) unless `create` is False (a command that only
    reads, and must not leave a new empty store behind)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        uri = f"sqlite:///{sqlite_file(uri)}"
        if create:
            created_once(uri)
        return uri
    if "://" not in uri and not uri.startswith(("databricks", "file:")):
        return str(Path(uri).expanduser().resolve())     # a local folder store
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    return uri


@functools.cache
def created_once(uri):
    """Create (or upgrade) an sqlite store's tables under a file lock beside it. MLflow creates
    them on a process's first use of the store, and two commands started at once on a new store
    both do: every one of them fails ('duplicate column name', alembic's 'expected to match one
    row'). With the lock the first creates the tables and the others find them."""
    import fcntl
    db = sqlite_file(uri)
    if not db.parent.is_dir():
        return                                  # MLflow's own error names the missing folder
    try:
        lock = open(db.parent / f".{db.name}.lock", "a")
    except OSError:
        return                                  # a read-only folder: MLflow says what it can do
    import mlflow
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        mlflow.MlflowClient(uri).search_experiments(max_results=1)


@functools.cache
def check_server(uri, timeout_s=10):
    """A tracking server that does not answer is a one-line error now: MLflow's client would
    retry each call with back-off for minutes before failing with a traceback."""
    import urllib.error
    import urllib.request

    from .errors import UserError
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        pass                                    # it answered (a proxy, an auth wall): reachable
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot reach the MLflow tracking server at {uri} ({reason}); start it "
                        "(mlflow server) or fix --tracking-uri / $MLFLOW_TRACKING_URI") from None


def setup(uri=None, experiment=DEFAULT_EXPERIMENT):
    import mlflow
    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(uri), experiment))
    return uri


def resumed_run(uri, run_id):
    """`mlflow.start_run(run_id)` for a run made with the client API, in any process: MLflow
    refuses to resume a run outside the active experiment, so that is set to the run's first."""
    import mlflow
    client = mlflow.MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    return mlflow.start_run(run_id=run_id)


def artifact_location(uri, experiment):
    """For a sqlite store, artifacts go beside the database file (`mlartifacts/<experiment>`),
    not into ./mlruns of whatever folder a command happens to run in; None = MLflow's default."""
    db = sqlite_file(uri)
    return (db.parent / "mlartifacts" / experiment).as_uri() if db else None


def sqlite_file(uri):
    """The database file of an `sqlite:///…` URI (absolute), else None."""
    return Path(uri[len("sqlite:///"):]).expanduser().resolve() if uri.startswith("sqlite:///") else None


@functools.cache
def git_commit():
    """The code version runs are tagged with ('unknown' outside a git checkout)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags(cfg, **extra):
    """The tags every training run carries: method, dataset and the source tags."""
    return {"method": cfg["method"], "dataset": cfg["dataset"], **source_tags(**extra)}


def source_tags(**extra):
    """MLflow's standard source tags (the UI's Source, Version and User): the command that made
    the run, the git commit and the user; plus `git_commit`, which backdrop's own searches use."""
    import getpass
    commit = git_commit()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    tags = {"git_commit": commit, "mlflow.source.type": "LOCAL", "mlflow.source.name": source_name(),
            "mlflow.user": user}
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return {**tags, **{k: str(v) for k, v in extra.items()}}


def source_name():
    """The program that made a run, as a user typed it: `platform/train.py` (relative to the
    working directory when inside it), `benchmarks/table1.py`, ..."""
    prog = Path(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c", "-m") else Path("python")
    try:
        return prog.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(prog)


def dataset_inputs(cfg, splits, data_dir=None):
    """The run's data as MLflow dataset inputs (the UI's Dataset column): one per split, each
    with its name, a digest of its contents, its source folder and its shape."""
    from mlflow.data import from_numpy
    from mlflow.entities import DatasetInput, InputTag

    from .data import resolve_data_dir
    from .dataset_names import DATASETS
    if cfg["dataset"] not in DATASETS:            # a user's own images: their absolute path
        source = {"source": splits.name.partition(":")[2]}
    else:
        root = resolve_data_dir(data_dir)
        source = {"source": str(root)} if root is not None and cfg["dataset"] != "digits" else {}
    out = []
    for context, split in (("train", splits.train), ("validation", splits.val), ("test", splits.test)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # "source can be interpreted in multiple ways"
            ds = from_numpy(split.x.numpy(), targets=split.y.numpy(), name=f"{cfg['dataset']}-{context}", **source)
        out.append(DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]))
    return out


def config_params(cfg):
    """MLflow params are strings; lists are written as comma-separated values."""
    return {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in cfg.items()}


def safe_key(name):
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in str(name))


# ---------------------------------------------------------------- the one metric writer
# Every way a job runs (in process, Ray task, Ray Train, Tune trial) names and steps its metrics
# here, so a run looks the same in MLflow whichever way it ran.

def now_ms():
    return int(time.time() * 1000)


def is_training_metric(key, value):
    """What the loop measures (losses per phase, val/*, throughput), not Ray's or our bookkeeping."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and ("/" in key or key == "images_per_s") and not key.startswith("config/"))


def training_metrics(report):
    """The loop's measurements in a report (an epoch's, or Ray's result dict), by MLflow name."""
    return {safe_key(k): float(v) for k, v in report.items() if is_training_metric(k, v)}


def epoch_metrics(report, step, time_ms):
    """One epoch as MLflow Metrics at step = the epoch count across phases."""
    from mlflow.entities import Metric
    return [Metric(k, v, time_ms, int(step)) for k, v in training_metrics(report).items()]


CLASS_PREFIX = "class/"       # clean test accuracy of one class: class/<class name>


def final_metrics(test, curve, time_ms, per_class=None):
    """The test suite as `test/<column>` (step 0), the accuracy-vs-noise curve as
    `noise/accuracy` at step = the noise rate in %, and each class's clean test accuracy as
    `class/<name>`."""
    from mlflow.entities import Metric
    return ([Metric(f"test/{k}", float(v), time_ms, 0) for k, v in test.items()]
            + [Metric("noise/accuracy", float(acc), time_ms, round(rate * 100)) for rate, acc in curve.items()]
            + [Metric(safe_key(CLASS_PREFIX + str(k)), float(v), time_ms, 0) for k, v in (per_class or {}).items()])


def log_metrics(client, run_id, metrics, batch=1000):
    """Write Metrics in batches of MLflow's per-call limit."""
    for i in range(0, len(metrics), batch):
        client.log_batch(run_id, metrics=metrics[i:i + batch])


def experiment_id(client, name):
    """The id of an active experiment, created if missing (a deleted one is a UserError)."""
    from .errors import UserError
    from mlflow.exceptions import MlflowException
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri, name),
                                            tags=EXPERIMENT_KIND)
        except MlflowException as e:            # another command created it a moment ago
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = client.get_experiment_by_name(name)
    if exp.lifecycle_stage != "active":
        raise UserError(f"MLflow experiment '{name}' is deleted; restore it or choose another name")
    for k, v in EXPERIMENT_KIND.items():
        if k not in exp.tags:                   # made by an older version, or by hand
            client.set_experiment_tag(exp.experiment_id, k, v)
    return exp.experiment_id
