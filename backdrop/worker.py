"""One training job on Ray, wherever Ray places it: one rank of a Ray Train run (DDP across
workers), or a Tune trial's own process when the trial has one worker (no Train controller, no
worker group, no process group: the fixed start a one-worker trial has no use for). The loop, the
reports, the checkpoints and the bad-input rule are the same code; a session says how to report,
where to resume from and which rank this is.

Once per epoch the job reports its metrics; rank 0 attaches a checkpoint holding the training
state and every epoch's metrics so far (checkpoints.py). A job restarted after a failure resumes
from the latest checkpoint and the epoch count continues.

Ray processes import this module by name, so it (and everything it runs) lives in `backdrop/`,
never in `platform/`.
"""
import hashlib
import os
import socket
import tempfile

from . import tracking
from .checkpoints import load_history, load_state, save_checkpoint
from .data import splits_of
from .errors import UserError
from .ray_internals import quiet_checkpoint_log, quiet_report_log

USER_ERROR = "user_error"        # a report key: the job met bad input (its one-line message)
ERROR_TAG = "backdrop.error"     # the MLflow tag that carries it to the driver and the record


# ---------------------------------------------------------------- where the job runs

class TrainSession:
    """A rank of a Ray Train run: reports go to the Train controller, checkpoints to the run's
    storage, and each trained network is wrapped in DistributedDataParallel on its own."""

    def __init__(self):
        import ray.train
        import ray.train.torch
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        quiet_report_log()

    def checkpoint(self):
        import ray.train
        return ray.train.get_checkpoint()

    def report(self, metrics, directory=None, name=None):
        import ray.train
        saved = ray.train.Checkpoint.from_directory(directory) if directory else None
        ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=name)

    def wrap(self):
        if self.world == 1:
            return None
        from torch.nn.parallel import DistributedDataParallel as DDP
        device = self.device

        def wrap(net):
            return DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
        return wrap


class TuneSession:
    """A Tune trial's own process, one worker: reports and checkpoints go to Tune directly (the
    trial's results and its checkpoints in the sweep's storage); a restarted or resumed trial gets
    its latest checkpoint back from Tune."""
    rank, world = 0, 1

    def __init__(self, device):
        self.device = device
        quiet_checkpoint_log()

    def checkpoint(self):
        import ray.tune
        return ray.tune.get_checkpoint()

    def report(self, metrics, directory=None, name=None):
        import ray.tune
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(directory) if directory else None)

    def wrap(self):
        return None


# ---------------------------------------------------------------- the job

def node_names(world):
    """'host/ray-node-id' of every worker (gathered over the process group), for the records."""
    import ray
    import torch.distributed as dist
    here = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}"
    if world == 1 or not dist.is_initialized():
        return here
    names = [None] * world
    dist.all_gather_object(names, here)
    return ",".join(sorted(set(names)))


def weights_digest(algorithm):
    """sha256 of every weight's bytes: DDP keeps it identical on all workers after each step
    (the replay buffer aside: each rank stores its own backgrounds, and a checkpoint, written by
    rank 0, gives every rank rank 0's buffer on resume)."""
    h = hashlib.sha256()
    for name, t in algorithm.state_dict().items():
        if name.startswith("replay"):     # each rank replays its own backgrounds (own noise)
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def job_splits(cfg, config):
    """The job's data: from the driver's Source in Ray's object store when it sent one (then no
    file is read here), else read from `data_dir` (the driver checked it exists)."""
    import ray
    source = ray.get(config["source"][0]) if config.get("source") else None
    return splits_of(cfg, config.get("data_dir"), source)


def run_job(config, session):
    """Train `config["cfg"]` and report every epoch through `session`. Bad input (a UserError) is
    a deterministic mistake that a restart would only repeat: the job reports its one-line
    message and returns, so Ray ends it at once instead of retrying it, and the driver raises it
    (`raise_user_error`).

    `config`: cfg (a full hparams config), source ([ObjectRef of a data.Source]) or data_dir,
    extra (constant entries added to every report). The test suite is the driver's to score, from
    the final checkpoint."""
    try:
        train_job(config, session)
    except UserError as e:
        # Tune checks every result for its scheduler's metric: give the validation keys every
        # epoch reports, as NaN (no epoch was scored), and step 0.
        session.report({USER_ERROR: str(e), "rank": session.rank, "step": 0,
                        "val/clean": float("nan"), "val/worst": float("nan"), **config.get("extra", {})})


def train_job(config, session):
    from .train import build_algorithm, train

    cfg, rank, world, extra = config["cfg"], session.rank, session.world, config.get("extra", {})
    splits = job_splits(cfg, config)
    checkpoint = session.checkpoint()
    resume, history = load_state(checkpoint), load_history(checkpoint)
    algorithm = build_algorithm(cfg, splits)
    nodes = node_names(world)
    reported = []

    def on_epoch(end):
        reported.append(end.step)
        metrics = {**end.metrics(), "step": end.step, "phase_index": end.phase_index, "last": end.last,
                   "resumed_from": resume["step"] if resume else 0, "world": world, "workers_at": nodes,
                   "pid": os.getpid(), **extra}
        if world > 1:
            metrics["weights_sha"] = weights_digest(end.algorithm)     # equal on every rank: DDP's check
        with tempfile.TemporaryDirectory() as d:
            if rank == 0:
                history.append({"step": end.step, **tracking.training_metrics(metrics)})
                save_checkpoint(d, end.checkpoint(), history)
            session.report(metrics, d if rank == 0 else None, f"epoch_{end.step:04d}")

    train(cfg, splits, on_epoch=on_epoch, resume_state=resume, rank=rank, world=world, wrap=session.wrap(),
          device=session.device, algorithm=algorithm)
    if not reported and resume is not None:
        # Restarted after its last checkpoint (e.g. a sweep killed before it saw the end): nothing
        # left to train, so say again how the job ended, with the checkpoint it ended on.
        last = {**(history[-1] if history else {}), "step": resume["step"], "phase_index": resume["phase_index"],
                "last": True, "resumed_from": resume["step"], "world": world, "workers_at": nodes,
                "checkpoint_path": checkpoint.path, **extra}
        session.report(last if rank == 0 else {"step": resume["step"]})


def worker_loop(config):
    """Ray Train's per-worker function."""
    run_job(config, TrainSession())


def trial_loop(config, device):
    """The whole job inside a Tune trial's process (one worker)."""
    run_job(config, TuneSession(device))


# ---------------------------------------------------------------- reading reports

def user_error_of(metrics):
    """'worker R: message' when a report says its job met bad input, else None."""
    if metrics and USER_ERROR in metrics:
        return f"worker {metrics.get('rank', 0)}: {metrics[USER_ERROR]}"
    return None


def raise_user_error(metrics, where):
    """The driver's side of run_job: a job that ended on bad input is a UserError here."""
    error = user_error_of(metrics)
    if error:
        raise UserError(f"{where} ({error})")
