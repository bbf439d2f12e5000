"""One sweep trial, in the process Ray Tune gives it: the sweep's options and Tune's trainable.

Tune pickles the trainable and the options by reference, so a trial's process imports this module
and what it needs to train, not the sweep's driver side (sweep.py: Tune's callbacks, the MLflow
recorder, the test-suite scoring). The difference is MLflow's import, about a second of CPU in
every trial process as the sweep starts, when two trials start at once on a 2-core laptop.
"""
from dataclasses import dataclass

from . import experiments
from .search_space import SWEEP_KEYS, SearchSpace, parse
from .worker import trial_loop

DEFAULT_EXPERIMENT = experiments.SWEEPS


@dataclass
class SweepOptions:
    """Everything that defines a sweep; saved with it so that --resume rebuilds the same one."""
    name: str
    space: dict                  # SearchSpace.to_dict()
    space_path: str
    trials: int
    workers: int
    # Defaults (for options saved before a key existed) and meanings: search_space.SWEEP_KEYS.
    gpus_per_worker: float = SWEEP_KEYS["gpus_per_worker"].default
    cpus_per_worker: float = SWEEP_KEYS["cpus_per_worker"].default
    max_concurrent: int = SWEEP_KEYS["max_concurrent"].default
    seed: int = SWEEP_KEYS["seed"].default
    grace_period: int = SWEEP_KEYS["grace_period"].default
    multi_objective: bool = False
    data_dir: str | None = None
    storage_path: str = ""
    tracking_uri: str = ""
    experiment: str = DEFAULT_EXPERIMENT
    max_failures: int = 2        # failures a trial's training recovers from, from its checkpoint
    # One-worker trials train in their Tune process. False only in the saved options of a sweep
    # begun by an older version, whose one-worker trials were Train runs: resumed, they stay so
    # (their checkpoints are Train's, which a Tune trial would not find).
    one_worker_in_trial: bool = False
    register: str = ""           # registered model that gets the best trial's model ("": none)
    seeds: int = SWEEP_KEYS["seeds"].default

    @property
    def in_trial(self):
        """Whether each trial trains in its own Tune process (no Ray Train run)."""
        return self.workers == 1 and self.one_worker_in_trial

    @property
    def path(self):
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    def search_space(self) -> SearchSpace:
        return parse(self.space, self.space_path)


def trial_main(config, opts: SweepOptions, source=()):
    """Tune's trainable: train this trial's suggested config, in this process when it has one
    worker, else as a Ray Train run. `source`: [ObjectRef of the data.Source] (empty: read
    `data_dir`)."""
    import ray
    import ray.tune

    cfg = opts.search_space().config(config)
    job = {"cfg": cfg, "data_dir": opts.data_dir, "source": list(source),
           "extra": {"trial_node": ray.get_runtime_context().get_node_id()}}
    if opts.in_trial:
        import torch
        torch.set_num_threads(max(1, int(opts.cpus_per_worker)))   # a reused process keeps no old setting
        # Ray shows the trial only its share of GPUs (CUDA_VISIBLE_DEVICES): a fraction is cuda:0
        # shared with other trials.
        device = "cuda" if opts.gpus_per_worker else "cpu"
        job["extra"]["device"] = device
        trial_loop(job, device=device)
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    from .distributed import make_trainer
    trial_id = ray.tune.get_context().get_trial_id()
    trainer = make_trainer(cfg, workers=opts.workers, name=f"train-{trial_id}", storage_path=f"{opts.path}/train",
                           gpus_per_worker=opts.gpus_per_worker, cpus_per_worker=opts.cpus_per_worker,
                           data_dir=opts.data_dir, source=job["source"], callbacks=[TuneReportCallback()],
                           max_failures=opts.max_failures, extra=job["extra"])
    trainer.fit()


def trial_cpus(opts: SweepOptions):
    """Every CPU one trial holds: its own process's, plus its Train workers' when it has a run."""
    workers = 0 if opts.in_trial else opts.workers
    return trial_resources(opts)["CPU"] + workers * opts.cpus_per_worker


def trial_resources(opts: SweepOptions):
    """What one trial holds: its one worker's CPUs and GPUs; with a Train run, one CPU for the
    function that drives it (its workers hold their own)."""
    if opts.in_trial:
        return {"CPU": opts.cpus_per_worker, "GPU": opts.gpus_per_worker}
    return {"CPU": 1, "GPU": 0}
