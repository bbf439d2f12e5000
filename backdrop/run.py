"""One training run, start to finish: data → training → test suite → MLflow record.

`python -m platform.train` calls `run_single`; ablations call it once per seed."""
import tempfile
from pathlib import Path

import mlflow
import torch

from . import figures, mlflow_model, tracking
from .api import save_model
from .data import splits_of
from .evaluate import noise_curve, per_class_accuracy, test_scorer
from .train import train

WEIGHTS_FILE = "model.pt"     # the model file write_final_artifacts writes (logged as the MLflow Model)


def pick_device(name="auto"):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def log_epoch(end):
    tracking.log_metrics(mlflow.MlflowClient(), mlflow.active_run().info.run_id,
                         tracking.epoch_metrics(end.metrics(), end.step, tracking.now_ms()))


def final_scores(algorithm, splits, device="cpu", with_noise=True):
    """Test-suite accuracies (clean + six families + mean/worst/bg_gap) and the noise curve."""
    test = test_scorer(splits, device)(algorithm.predict)
    curve = noise_curve(algorithm.predict, splits.test, device=device) if with_noise else {}
    return test, curve


MAX_CLASSES_DRAWN = 100       # a bar per class; beyond this the chart is unreadable (and too wide to draw)


def write_final_artifacts(algorithm, splits, test, curve, run_label, d):
    """The run's figures, written to the folder `d`, and its model file, `d/model.pt` (Ray tasks
    that train without an MLflow run write the same files and the driver logs them)."""
    d = Path(d)
    bars = {k: v for k, v in test.items() if k not in ("mean", "worst", "bg_gap")}
    figures.bar_chart({run_label: bars}, d / "test_backgrounds.png")
    if len(splits.class_names) <= MAX_CLASSES_DRAWN:
        per_class = per_class_accuracy(algorithm.predict, splits.test, splits.class_names,
                                       device=next(algorithm.parameters()).device)
        figures.bar_chart({run_label: per_class}, d / "test_per_class.png", title="Clean test accuracy per class")
    if curve:
        figures.noise_plot({run_label: curve}, d / "noise_curve.png")
    figures.run_figures(algorithm, splits.test.x[:32].to(next(algorithm.parameters()).device), d)
    save_model(algorithm, d / WEIGHTS_FILE)


def log_artifacts_and_model(d, example, registered_name=None):
    """Log what write_final_artifacts wrote to `d` to the active run: the figures as files, the
    model as the MLflow Model `model` (loadable with mlflow.pyfunc). Returns the ModelInfo."""
    d = Path(d)
    weights = d / WEIGHTS_FILE
    for p in sorted(d.rglob("*")):
        if p.is_file() and p != weights:
            folder = p.parent.relative_to(d).as_posix()
            mlflow.log_artifact(str(p), None if folder == "." else folder)
    return mlflow_model.log_model(weights, example, registered_name)


def log_final(algorithm, splits, test, curve, run_label, registered_name=None):
    """Test metrics, the noise curve (step = rate in %), figures and the model, to the active run."""
    tracking.log_metrics(mlflow.MlflowClient(), mlflow.active_run().info.run_id,
                         tracking.final_metrics(test, curve, tracking.now_ms()))
    with tempfile.TemporaryDirectory() as d:
        write_final_artifacts(algorithm, splits, test, curve, run_label, d)
        return log_artifacts_and_model(d, splits.test.x[:mlflow_model.EXAMPLE_ROWS], registered_name)


def run_single(cfg, *, data_dir=None, tracking_uri=None, experiment=tracking.DEFAULT_EXPERIMENT,
               run_name=None, tags=None, parent_run_id=None, device="auto", progress=True, save_to=None,
               with_noise=True):
    """Train one config and record it; returns {"run_id", "test", "noise", "val"}. `with_noise=False`
    skips the 21-rate noise curve (three times the test suite's cost; Table 1 does not use it)."""
    splits = splits_of(cfg, data_dir)
    tracking.setup(tracking_uri, experiment)
    device = pick_device(device)
    all_tags = tracking.run_tags(cfg, **(tags or {}))
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    last_val = {}
    with mlflow.start_run(run_name=run_name, tags=all_tags) as run:
        mlflow.log_params(tracking.config_params(cfg))
        mlflow.log_params({"n_train": len(splits.train.y), "n_val": len(splits.val.y), "n_test": len(splits.test.y)})
        mlflow.MlflowClient().log_inputs(run.info.run_id, datasets=tracking.dataset_inputs(cfg, splits, data_dir))

        def on_epoch(end):
            log_epoch(end)
            last_val.update(end.val)

        try:
            algorithm = train(cfg, splits, on_epoch=on_epoch, device=device, progress=progress)
            test, curve = final_scores(algorithm, splits, device, with_noise)
            log_final(algorithm, splits, test, curve, cfg["method"])
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")    # Ctrl-C or SIGTERM: stopped, not failed; its epochs stay logged
            raise
        if save_to:
            save_model(algorithm, save_to)
    return {"run_id": run.info.run_id, "test": test, "noise": curve, "val": last_val}
