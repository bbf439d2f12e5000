"""Training as a Ray task, recording in the driver.

Why split: MLflow's default store is one sqlite file, and several processes writing it at once
fail with "database is locked" (and a file on the head node is not even visible from other
nodes). So a task only trains and returns a `record` — plain picklable data: params, per-epoch
metrics with their wall-clock times, test scores, the noise curve and the artifact files as bytes
— and the driver, the store's only writer, turns each record into an MLflow run as it arrives.
The run looks exactly like one from `platform.train` (same metric names, steps, figures, model).
"""
import os
import socket
import tempfile
from pathlib import Path

import ray
from mlflow.entities import Param

from . import tracking

MLFLOW_PARAMS_BATCH = 100    # MLflow's limit on params per log_batch call


def train_record(cfg, data_dir=None, device="cpu", with_noise=True, source=None):
    """Train one config and return its record (see the module docstring). No MLflow here.
    `with_noise=False` skips the noise curve (three times the test suite's cost); `source`: the
    data.Source the driver read (else the data are read from `data_dir`)."""
    import torch

    from .data import splits_of
    from .mlflow_model import EXAMPLE_ROWS
    from .run import final_scores, pick_device, write_final_artifacts
    from .train import train

    start = tracking.now_ms()
    splits = splits_of(cfg, data_dir, source)
    device = pick_device(device)
    epochs = []

    def on_epoch(end):
        epochs.append({"step": end.step, "time": tracking.now_ms(), "metrics": end.metrics(), "val": dict(end.val)})

    algorithm = train(cfg, splits, on_epoch=on_epoch, device=device, progress=False)
    test, curve = final_scores(algorithm, splits, device, with_noise)
    with tempfile.TemporaryDirectory() as d:
        write_final_artifacts(algorithm, splits, test, curve, cfg["method"], d)
        artifacts = {str(p.relative_to(d)): p.read_bytes() for p in sorted(Path(d).rglob("*")) if p.is_file()}
    return {
        "cfg": cfg,
        "params": {**tracking.config_params(cfg), "n_train": len(splits.train.y),
                   "n_val": len(splits.val.y), "n_test": len(splits.test.y)},
        "epochs": epochs, "test": test, "noise": curve,
        "val": epochs[-1]["val"] if epochs else {},
        "artifacts": artifacts,
        "example": splits.test.x[:EXAMPLE_ROWS].numpy(),     # the MLflow Model's input example
        "datasets": tracking.dataset_inputs(cfg, splits, data_dir),
        "start": start, "end": tracking.now_ms(),
        "host": socket.gethostname(), "threads": torch.get_num_threads(), "device": str(device),
    }


@ray.remote(num_cpus=1)
def train_task(cfg, data_dir=None, with_noise=True, source=None, device="cpu"):
    """One run on one CPU (and, with `device` cuda, the GPU share the caller asked Ray for: Ray
    shows the task only that GPU). Ray sets OMP_NUM_THREADS=1 for a 1-CPU task, so torch follows
    it and two tasks on two cores do not fight over threads. `source`: an ObjectRef of the
    data.Source the driver read once (Ray hands the task the Source itself), so no task reads
    the files."""
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return train_record(cfg, data_dir, device=device, with_noise=with_noise, source=source)


def record_metrics(record):
    """Every metric of a record as MLflow Metrics, named and stepped as `platform.train` does."""
    out = []
    for e in record["epochs"]:
        out += tracking.epoch_metrics(e["metrics"], e["step"], e["time"])
    return out + tracking.final_metrics(record["test"], record["noise"], record["end"])


def log_record(client, experiment_id, record, *, run_name=None, tags=None, parent_run_id=None):
    """Write one record as a finished MLflow run (the driver's job); returns the run id."""
    cfg = record["cfg"]
    all_tags = tracking.run_tags(cfg, host=record["host"], device=record.get("device", "cpu"), **(tags or {}))
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, start_time=record["start"], run_name=run_name,
                            tags={k: str(v) for k, v in all_tags.items()})
    run_id = run.info.run_id
    try:
        params = [Param(k, str(v)) for k, v in record["params"].items()]
        for i in range(0, len(params), MLFLOW_PARAMS_BATCH):
            client.log_batch(run_id, params=params[i:i + MLFLOW_PARAMS_BATCH])
        client.log_inputs(run_id, datasets=record["datasets"])
        tracking.log_metrics(client, run_id, record_metrics(record))
        with tempfile.TemporaryDirectory() as d:
            for rel, data in record["artifacts"].items():
                p = Path(d) / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
            # The MLflow Model API logs to the active run: this run, briefly, in this (the only
            # writing) process.
            from .run import log_artifacts_and_model
            with tracking.resumed_run(client.tracking_uri, run_id):
                log_artifacts_and_model(d, record["example"])
    except BaseException:
        client.set_terminated(run_id, "FAILED")    # never mistaken for a finished run on resume
        raise
    client.set_terminated(run_id, "FINISHED", end_time=record["end"])
    return run_id

