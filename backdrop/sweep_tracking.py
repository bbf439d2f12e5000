"""MLflow records of a sweep: one parent run per sweep, one nested run per trial.

Everything is written by the Tune driver process (a Tune callback and the sweep's epilogue), so the
default sqlite store has a single writer however many trials run at once. Runs are found again by
tags (`backdrop.sweep`, `backdrop.trial_id`) before any is created: a restarted trial or a resumed
sweep continues its runs instead of adding duplicates.
"""

from mlflow import MlflowClient
from mlflow.entities import Param, RunTag
from ray.tune import Callback

from . import tracking
from .checkpoints import checkpoint_at, load_history
from .worker import ERROR_TAG, USER_ERROR, user_error_of
from .search_space import SEED_INDEX

SWEEP_TAG, TRIAL_TAG, ROLE_TAG = "backdrop.sweep", "backdrop.trial_id", "backdrop.role"
PARENT_TAG = "mlflow.parentRunId"


class SweepRecorder:
    """Finds or creates the sweep's runs; no state beyond names, so it pickles with Tune's state."""

    def __init__(self, uri, experiment, sweep):
        self.uri, self.experiment, self.sweep = uri, experiment, sweep

    @property
    def client(self):
        return MlflowClient(self.uri)

    def experiment_id(self):
        return tracking.experiment_id(self.client, self.experiment)

    def find(self, **tags):
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id()], filter_string=where, max_results=2,
                                       order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None

    def parent(self, params=None):
        """The sweep's run (created on first use); set RUNNING again when a sweep resumes."""
        run_id = self.find(**{SWEEP_TAG: self.sweep, ROLE_TAG: "sweep"})
        if run_id is None:
            run = self.client.create_run(self.experiment_id(), run_name=self.sweep, tags=tracking.source_tags(**{
                SWEEP_TAG: self.sweep, ROLE_TAG: "sweep"}))
            run_id = run.info.run_id
            if params:
                self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        else:
            self.client.update_run(run_id, status="RUNNING")
        return run_id

    def trial(self, trial_id, cfg, extra_tags=None, datasets=None):
        """The trial's nested run; its params and `datasets` (MLflow DatasetInputs) are logged
        once, when it is created."""
        run_id = self.find(**{SWEEP_TAG: self.sweep, TRIAL_TAG: trial_id})
        if run_id is None:
            tags = tracking.run_tags(cfg, **{PARENT_TAG: self.parent(), SWEEP_TAG: self.sweep, TRIAL_TAG: trial_id,
                                             ROLE_TAG: "trial", **(extra_tags or {})})
            run_id = self.client.create_run(self.experiment_id(), run_name=f"{self.sweep}-{trial_id}",
                                            tags=tags).info.run_id
            params = tracking.config_params(cfg)
            self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
            if datasets:
                self.client.log_inputs(run_id, datasets=datasets)
        else:
            self.client.update_run(run_id, status="RUNNING")
        return run_id

    def trial_runs(self):
        """{trial_id: run_id} of this sweep's trial runs."""
        runs = self.client.search_runs([self.experiment_id()], max_results=10_000,
                                       filter_string=f"tags.`{SWEEP_TAG}` = '{self.sweep}' and tags.`{ROLE_TAG}` = 'trial'")
        return {r.data.tags[TRIAL_TAG]: r.info.run_id for r in runs}

    def drop_orphans(self, trial_ids):
        """Delete trial runs that Tune no longer knows: a sweep killed between creating a trial and
        its next saved state restarts without it, and its replacement gets a new id."""
        orphans = {t: r for t, r in self.trial_runs().items() if t not in set(trial_ids)}
        for run_id in orphans.values():
            self.client.delete_run(run_id)
        return sorted(orphans)


class MLflowSweepCallback(Callback):
    """Tune callback (runs in the Tune driver): trial runs, their params, per-epoch metrics and
    outcome. `config_of(trial_config)` maps Tune's trial config to the full training config.

    An epoch whose report never reached Tune (the sweep was stopped between a Train run's
    checkpoint and its result) is not lost: every checkpoint carries the metrics of all epochs so
    far, and the next result (which names its checkpoint) fills the gap from it. A trial that
    trains in its Tune process cannot leave such a gap: Tune resumes it from a checkpoint whose
    result it had already processed."""

    def __init__(self, recorder: SweepRecorder, config_of, storage_path, data_dir=None):
        self.recorder, self.config_of, self.storage_path, self.data_dir = recorder, config_of, storage_path, data_dir
        self._runs, self._tagged, self._steps, self._datasets = {}, set(), {}, {}

    def _run(self, trial):
        if trial.trial_id not in self._runs:
            cfg = self.config_of(trial.config)
            self._runs[trial.trial_id] = self.recorder.trial(
                trial.trial_id, cfg, {"searched": ",".join(sorted(k for k in trial.config if k != SEED_INDEX))}, self._datasets_of(cfg))
        return self._runs[trial.trial_id]

    def _datasets_of(self, cfg):
        """The trial's data as MLflow dataset inputs, described once per (dataset, seed, limit)
        (the trials carve the same splits from the driver's copy in Ray's object store)."""
        from .data import splits_of
        key = (cfg["dataset"], cfg["image_size"], cfg["seed"], cfg["limit"])
        if key not in self._datasets:
            splits = splits_of(cfg, self.data_dir)
            self._datasets[key] = tracking.dataset_inputs(cfg, splits, self.data_dir)
        return self._datasets[key]

    def _logged_steps(self, trial, run_id):
        if trial.trial_id not in self._steps:
            history = self.recorder.client.get_metric_history(run_id, "images_per_s")
            self._steps[trial.trial_id] = {m.step for m in history}
        return self._steps[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._runs.pop(trial.trial_id, None)   # (re)started: look the run up and mark it RUNNING
        self._steps.pop(trial.trial_id, None)
        self._tagged.discard(trial.trial_id)    # record where it runs now
        self._run(trial)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.on_trial_start(iteration, trials, trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id, client = self._run(trial), self.recorder.client
        if user_error_of(result):           # bad input, met in the trial's workers: no epoch
            client.set_tag(run_id, ERROR_TAG, user_error_of(result)[:5000])
            return
        now = tracking.now_ms()
        step = int(result.get("step", iteration))
        logged = self._logged_steps(trial, run_id)
        epochs = [] if step in logged else [{"step": step, **tracking.training_metrics(result)}]   # a replayed end
        if set(range(1, step)) - logged and result.get("checkpoint_path"):
            history = load_history(checkpoint_at(result["checkpoint_path"], self.storage_path))
            epochs = [e for e in history if e["step"] < step and e["step"] not in logged] + epochs
        for epoch in epochs:
            client.log_batch(run_id, metrics=tracking.epoch_metrics(epoch, epoch["step"], now))
            logged.add(epoch["step"])
        if trial.trial_id not in self._tagged:
            # Where the trial ran: its Tune process's node and its workers' nodes (the same
            # node when it trains in that process).
            self._tagged.add(trial.trial_id)
            tags = {"ray.trial_node": result.get("trial_node", ""), "ray.worker_nodes": result.get("workers_at", ""),
                    "ray.hostname": result.get("hostname", "")}
            client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def on_trial_complete(self, iteration, trials, trial, **info):
        finished = bool(trial.last_result.get("last"))
        client, run_id = self.recorder.client, self._run(trial)
        if USER_ERROR in trial.last_result:
            client.set_tag(run_id, "backdrop.outcome", "bad input")
            client.set_terminated(run_id, "FAILED")
            return
        client.set_tag(run_id, "backdrop.outcome", "completed" if finished else "stopped early (ASHA)")
        client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        client, run_id = self.recorder.client, self._run(trial)
        client.set_tag(run_id, "backdrop.outcome", "error")
        client.set_terminated(run_id, "FAILED")

    def __setstate__(self, state):
        self.__dict__.update({"data_dir": None, "_datasets": {}, **state})   # saved by an older version

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment; caches are rebuilt from MLflow tags.
        return {"recorder": self.recorder, "config_of": self.config_of, "storage_path": self.storage_path,
                "data_dir": self.data_dir, "_runs": {}, "_tagged": set(), "_steps": {}, "_datasets": {}}
