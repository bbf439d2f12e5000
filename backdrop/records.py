"""The one writer: a job's record becomes an MLflow run.

A record is plain, picklable data (job.py builds it): the config and params, each epoch's metrics
with its wall-clock time, the test suite, the noise curve, and the figures and the model file as
bytes. A job can build it anywhere — this process, a Ray task, the driver of a Ray Train run — and
only the driver writes the store: MLflow's default store is one sqlite file, several processes
writing it at once fail with "database is locked", and a file on the head node is not even
visible from other nodes.

A run is written in three steps, so that a job training in this process shows its epochs in
`mlflow ui` as they end: `open_run`, `log_epoch` for each epoch, `finish_run`. `write_record` takes
the three steps at once for a record that arrives whole (a Ray task's). Whichever way a job ran,
its run has the same tags, params, inputs, metric names and steps, figures and MLflow Model.
"""
import tempfile
from pathlib import Path

from mlflow.entities import Param

from . import mlflow_model, tracking

WEIGHTS_FILE = "model.pt"    # the record's model file, logged as the MLflow Model `model`
MLFLOW_PARAMS_BATCH = 100    # MLflow's limit on params per log_batch call
CPU_TAG = "backdrop.cpu_seconds"   # the job's own CPU time (train + score), where it trained in one process


def open_run(client, experiment_id, record, *, run_name=None, tags=None, parent_run_id=None):
    """A RUNNING run with the record's tags, params and data inputs (its `head`); returns its id."""
    all_tags = tracking.run_tags(record["cfg"], **{"host": record["host"], "device": record["device"], **(tags or {})})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run_id = client.create_run(experiment_id, start_time=record["start"], run_name=run_name,
                               tags={k: str(v) for k, v in all_tags.items()}).info.run_id
    try:
        params = [Param(k, str(v)) for k, v in record["params"].items()]
        for i in range(0, len(params), MLFLOW_PARAMS_BATCH):
            client.log_batch(run_id, params=params[i:i + MLFLOW_PARAMS_BATCH])
        client.log_inputs(run_id, datasets=record["datasets"])
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def log_epoch(client, run_id, epoch):
    """One epoch ({"step", "time", "metrics"}) as MLflow metrics at step = the epoch count."""
    tracking.log_metrics(client, run_id, tracking.epoch_metrics(epoch["metrics"], epoch["step"], epoch["time"]))


def finish_run(client, run_id, scored, registered_name=None):
    """The test suite, the noise curve, the figures and the MLflow Model `model` (with
    `registered_name`, also a new version of that registered model); then FINISHED. `scored`:
    a record, or the scored part of one (job.score). Returns the model's ModelInfo."""
    tracking.log_metrics(client, run_id, tracking.final_metrics(scored["test"], scored["noise"], scored["end"],
                                                                scored.get("per_class")))
    with tempfile.TemporaryDirectory() as d:
        for rel, data in scored["artifacts"].items():
            p = Path(d) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            if rel != WEIGHTS_FILE:
                folder = p.parent.relative_to(d).as_posix()
                client.log_artifact(run_id, str(p), None if folder == "." else folder)
        # The MLflow Model API logs to the active run: this run, briefly, in this process.
        with tracking.resumed_run(client.tracking_uri, run_id):
            info = mlflow_model.log_model(Path(d) / WEIGHTS_FILE, scored["example"], registered_name)
    if "cpu_s" in scored:
        client.set_tag(run_id, CPU_TAG, f"{scored['cpu_s']:.1f}")
    client.set_terminated(run_id, "FINISHED", end_time=scored["end"])
    return info


def write_record(client, experiment_id, record, *, run_name=None, tags=None, parent_run_id=None):
    """A whole record as one finished run (stopped half-way it is KILLED, failed FAILED: never
    mistaken for a finished run on resume); returns the run id."""
    run_id = open_run(client, experiment_id, record, run_name=run_name, tags=tags, parent_run_id=parent_run_id)
    try:
        for epoch in record["epochs"]:
            log_epoch(client, run_id, epoch)
        finish_run(client, run_id, record)
    except BaseException as e:
        ended(client, run_id, e)
        raise
    return run_id


def ended(client, run_id, error):
    """Mark a run that stopped before its record was whole: KILLED for Ctrl-C or SIGTERM (a stop,
    not a failure; its epochs stay logged), FAILED otherwise."""
    client.set_terminated(run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
