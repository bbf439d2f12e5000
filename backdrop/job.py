"""One training job: a config and its data in, one record out, wherever it trains.

`run_job(cfg, placement)` is what `platform.train`, `benchmarks/table1.py` and the studio
benchmark call; `platform.ablate` and the benchmarks' `--parallel` submit many `train_task`s at
once (ablate.train_jobs) and write each record as it returns. A `Placement` says where the job trains:

- `IN_PROCESS`: here, no Ray. Its epochs reach MLflow as they end.
- `Placement("task")`: one Ray task of one CPU (or a GPU share), which returns the whole record.
- `Placement("train", workers=N)`: Ray Train, N data-parallel workers (worker.py is each rank's
  job); their epochs reach MLflow through a callback as they end, and the driver scores the
  final checkpoint.

Every placement makes the same record (`head` before training, `epochs`, `score` after) and the
driver alone writes it (records.py), so a run is the same in MLflow whichever way it ran; the
test suite is scored once, where the trained model is; `save_to` writes the record's own model
file, so `--save` means the same in every placement.
"""
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import ray
import torch

from . import figures, records, tracking
from .api import save_model
from .data import data_dir_for_workers, source_of, splits_of
from .errors import UserError
from .evaluate import noise_curve, per_class_accuracy, predicted_classes, share_correct, test_scorer
from .mlflow_model import EXAMPLE_ROWS


@dataclass(frozen=True)
class Placement:
    """Where a job trains: "process" (here), "task" (a Ray task) or "train" (Ray Train with
    `workers`); `address`: the Ray cluster (None: $RAY_ADDRESS if set, else a new local
    instance);
    `gpus`: a Ray task's GPU share (a task asked for device cuda gets a whole GPU);
    `storage_path` and `max_failures`: Ray Train's checkpoints and restarts."""
    where: str = "process"
    workers: int = 1
    address: str | None = None
    gpus: float = 0.0
    storage_path: str | None = None
    max_failures: int = 2

    def __post_init__(self):
        if self.where not in ("process", "task", "train"):
            raise ValueError(f"placement must be process, task or train, not {self.where!r}")
        if self.workers < 1:
            raise UserError(f"--workers must be at least 1, got {self.workers}")
        # A field the placement does not use is a caller's mistake, never silently dropped.
        if self.where != "train" and (self.workers > 1 or self.storage_path):
            raise ValueError(f"workers and storage_path are Ray Train's; placement {self.where!r} trains one copy")
        if self.where != "task" and self.gpus:
            raise ValueError(f"a GPU share is a Ray task's; placement {self.where!r} takes the device")
        if self.where == "process" and self.address:
            raise ValueError("placement 'process' trains here, with no Ray cluster to address")


IN_PROCESS = Placement()


def pick_device(name="auto"):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# ---------------------------------------------------------------- the record

def head(cfg, splits, data_dir=None, device="cpu", **params):
    """What a record holds before training: the config, params, data inputs, start, host."""
    return {"cfg": cfg,
            "params": {**tracking.config_params(cfg), "n_train": len(splits.train.y), "n_val": len(splits.val.y),
                       "n_test": len(splits.test.y), **params},
            "datasets": tracking.dataset_inputs(cfg, splits, data_dir),
            "start": tracking.now_ms(), "host": socket.gethostname(), "device": str(device)}


def epoch_entry(end):
    """One epoch of the loop (train.EpochEnd) as record data."""
    return {"step": end.step, "time": tracking.now_ms(), "metrics": end.metrics(), "val": dict(end.val)}


MAX_CLASSES_DRAWN = 100       # a bar per class; beyond this the chart is unreadable (and too wide to draw)


def score(algorithm, splits, device="cpu", with_noise=True, label=None):
    """What a record holds after training: the test suite (clean, each family, mean, worst,
    bg_gap), each class's clean accuracy, the noise curve (`with_noise`; three times the suite's
    cost), the figures and the model file as bytes, and the MLflow Model's input example."""
    label = label or algorithm.cfg["method"]
    # The clean test images are predicted once, for the per-class scores and the clean column.
    pred = predicted_classes(algorithm.predict, splits.test.x, device=device)
    per_class = per_class_accuracy(pred, splits.test.y, splits.class_names)
    test = test_scorer(splits, device)(algorithm.predict, known={"clean": share_correct(pred, splits.test.y)})
    curve = noise_curve(algorithm.predict, splits.test, device=device) if with_noise else {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        bars = {k: v for k, v in test.items() if k not in ("mean", "worst", "bg_gap")}
        figures.bar_chart({label: bars}, d / "test_backgrounds.png")
        if len(per_class) <= MAX_CLASSES_DRAWN:
            figures.bar_chart({label: per_class}, d / "test_per_class.png", title="Clean test accuracy per class")
        if curve:
            figures.noise_plot({label: curve}, d / "noise_curve.png")
        figures.run_figures(algorithm, splits.test.x[:32].to(device), d)
        save_model(algorithm, d / records.WEIGHTS_FILE)
        artifacts = {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
    return {"test": test, "per_class": per_class, "noise": curve, "artifacts": artifacts,
            "example": splits.test.x[:EXAMPLE_ROWS].cpu().numpy(), "end": tracking.now_ms()}


def train_record(cfg, splits, record, *, device="cpu", with_noise=True, progress=False, on_epoch=None):
    """Train `cfg` on `splits` here and complete `record` (its `head`) with the epochs and the
    score; `on_epoch(entry)` sees each epoch as it ends. No MLflow here."""
    from .train import train
    record["epochs"] = []

    def each(end):
        record["epochs"].append(epoch_entry(end))
        if on_epoch:
            on_epoch(record["epochs"][-1])

    cpu = time.process_time()
    algorithm = train(cfg, splits, on_epoch=each, device=device, progress=progress)
    record.update(score(algorithm, splits, device, with_noise), val=final_val(record))
    # The CPU time this process spent training and scoring: on a shared machine the wall time
    # says how crowded it was, this says what the job itself cost.
    record["cpu_s"] = time.process_time() - cpu
    return record


def final_val(record):
    return record["epochs"][-1]["val"] if record["epochs"] else {}


@ray.remote(num_cpus=1)
def train_task(cfg, data_dir=None, with_noise=True, source=None, device="cpu"):
    """A job as a Ray task of one CPU (and, with `device` cuda, the GPU share the caller asked Ray
    for: Ray shows the task only that GPU); returns its record. Ray sets OMP_NUM_THREADS=1 for a
    1-CPU task, so torch follows it and two tasks on two cores do not fight over threads.
    `source`: the data.Source the driver read once (Ray hands the task the Source itself from its
    object store), so no task reads the files."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    splits, device = splits_of(cfg, data_dir, source), pick_device(device)
    return train_record(cfg, splits, head(cfg, splits, data_dir, device), device=device, with_noise=with_noise)


# ---------------------------------------------------------------- one job, any placement

def run_job(cfg, placement=IN_PROCESS, *, data_dir=None, tracking_uri=None, experiment=tracking.DEFAULT_EXPERIMENT,
            run_name=None, tags=None, parent_run_id=None, device="auto", progress=True, save_to=None,
            with_noise=True):
    """Train one config where `placement` says and record it as one MLflow run; with `save_to`,
    also write its model file there. Returns {"run_id", "test", "noise", "val"}. A stop (Ctrl-C,
    SIGTERM) leaves the run KILLED and an error FAILED, with every epoch already logged kept (a
    Ray task's run is written when its record returns, so a task stopped earlier leaves none)."""
    if placement.where != "process":
        data_dir = data_dir_for_workers(data_dir)       # Ray's processes have working folders of their own
    source = source_of(cfg, data_dir)                   # bad data: fails here, before any Ray or MLflow
    splits = splits_of(cfg, source=source)
    uri = tracking.setup(tracking_uri, experiment)
    client = mlflow.MlflowClient(uri)
    where = {"process": _in_process, "task": _as_task, "train": _on_ray_train}[placement.where]
    run_id, record = where(cfg, placement, client, tracking.experiment_id(client, experiment), source, splits,
                           data_dir=data_dir, run_name=run_name, tags=tags, parent_run_id=parent_run_id,
                           device=device, progress=progress, with_noise=with_noise)
    if save_to:
        path = Path(save_to)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(record["artifacts"][records.WEIGHTS_FILE])
    return {"run_id": run_id, "test": record["test"], "noise": record["noise"], "val": record["val"]}


def _in_process(cfg, placement, client, exp_id, source, splits, *, data_dir, device, progress, with_noise, **run):
    device = pick_device(device)
    record = head(cfg, splits, data_dir, device)
    run_id = records.open_run(client, exp_id, record, **run)
    try:
        train_record(cfg, splits, record, device=device, with_noise=with_noise, progress=progress,
                     on_epoch=lambda epoch: records.log_epoch(client, run_id, epoch))
        records.finish_run(client, run_id, record)
    except BaseException as e:
        records.ended(client, run_id, e)
        raise
    return run_id, record


def _as_task(cfg, placement, client, exp_id, source, splits, *, data_dir, device, progress, with_noise, **run):
    from .ablate import ray_session
    with ray_session(placement.address):
        gpus = placement.gpus or (1.0 if pick_device(device) == "cuda" else 0.0)
        if gpus and not ray.cluster_resources().get("GPU", 0):
            raise UserError(f"a GPU share of {gpus:g}: Ray sees no GPU; use the CPU or join a cluster with GPUs")
        task = train_task.options(num_gpus=gpus) if gpus else train_task
        record = ray.get(task.remote(cfg, data_dir, with_noise, ray.put(source), "cuda" if gpus else "cpu"))
    return records.write_record(client, exp_id, record, **run), record


def _on_ray_train(cfg, placement, client, exp_id, source, splits, *, data_dir, device, progress, with_noise, **run):
    from . import distributed as D
    from .worker import ERROR_TAG
    D.connect(placement.address, min_cpus=placement.workers)
    gpus = D.gpus_for(device, placement.workers, can_grow=bool(D.cluster_address(placement.address)))
    here = "cuda" if gpus and torch.cuda.is_available() else "cpu"
    record = head(cfg, splits, data_dir, here, workers=placement.workers, gpus_per_worker=gpus)
    run["tags"] = {**(run.get("tags") or {}), "backdrop.workers": placement.workers, "backdrop.launcher": "ray-train"}
    run_id = records.open_run(client, exp_id, record, **run)
    try:
        # The workers carve their splits from the driver's copy (Ray's object store): none reads
        # the files, so a worker node needs no copy of the data folder.
        trainer = D.make_trainer(cfg, workers=placement.workers, name=f"train-{run_id}",
                                 storage_path=placement.storage_path, gpus_per_worker=gpus, data_dir=data_dir,
                                 source=[ray.put(source)], callbacks=[D.MLflowEpochs(client.tracking_uri, run_id)],
                                 max_failures=placement.max_failures)
        with D.WaitNotice(f"Ray Train run train-{run_id} ({placement.workers} workers)", client.tracking_uri,
                          run_id, enabled=progress):
            result = trainer.fit()
        client.set_tag(run_id, "ray.train.path", result.path)
        error = client.get_run(run_id).data.tags.get(ERROR_TAG)
        if error:
            raise UserError(f"training ({error})")      # the run ends FAILED, its epochs kept
        algorithm = D.load_trained(result.checkpoint, cfg, splits, here)
        record.update(score(algorithm, splits, here, with_noise), epochs=[],
                      val={k[4:]: v for k, v in result.metrics.items() if k.startswith("val/")})
        records.finish_run(client, run_id, record)
    except BaseException as e:
        records.ended(client, run_id, e)
        raise
    return run_id, record
