"""The driver's side of Ray: joining a cluster, sizing resources, and data-parallel training on
Ray Train (V2), whose workers each run the job of worker.py on their shard of the data (gloo on
CPU, nccl on GPU). A worker group restarted after a failure (`FailureConfig(max_failures)`), or a
Train run started again under the same name and storage path, resumes from the latest checkpoint
and the epoch count continues.

job.py runs `make_trainer` for `python -m platform.train --workers N`; sweep.py runs it inside
each Tune trial that has several workers.
"""
import os
import socket
import time

import ray
from ray.train import UserCallback

from . import records, tracking
from .algorithms import place
from .checkpoints import load_state, storage_uri
from .errors import UserError
from .train import build_algorithm
from .worker import ERROR_TAG, user_error_of, worker_loop

# ---------------------------------------------------------------- connecting to Ray

def cluster_address(address=None):
    """The cluster to join: `address`, else $RAY_ADDRESS (which `ray job submit` sets); None means
    a local instance of our own."""
    return address or os.environ.get("RAY_ADDRESS")


def connect(address=None, min_cpus=1, dashboard=True):
    """Join the cluster at `cluster_address(address)`, else start a local instance with at least
    `min_cpus` logical CPUs. Ray counts CPUs as slots, not cores:
    one trial needs a slot for its driver plus one per worker, so a 2-core machine is given 3
    slots to run a 2-worker trial (the driver mostly waits). `dashboard=False` starts a local
    instance without the dashboard, for work that starts no Ray Train run (whose placement-group
    cleaner needs the dashboard's State API): 2 s less to start, and its processes take no CPU
    from training on a small machine."""
    if ray.is_initialized():
        return
    address = cluster_address(address)
    try:
        if address:
            # Train's placement-group cleaner queries the State API from inside the cluster; tell
            # it which cluster (auto-detection fails when a machine runs several Ray instances).
            env = {"RAY_ADDRESS": address} if address != "auto" else {}
            ray.init(address=address, runtime_env={"env_vars": env} if env else None)
        else:
            # "local": never attach by accident to another instance on this machine. Its processes
            # inherit our environment when they start, so name its dashboard (the State API) there.
            if not dashboard:
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1, min_cpus), include_dashboard=False)
                return
            port = free_port()
            saved = os.environ.get("RAY_API_SERVER_ADDRESS")
            os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
            # Nothing preempts a local instance; the watcher is one more actor process to start,
            # which on a loaded 2-core machine delays every Train run. Set it yourself to override.
            os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
            try:
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1, min_cpus),
                         include_dashboard=True, dashboard_port=port)
            finally:
                if saved is None:
                    os.environ.pop("RAY_API_SERVER_ADDRESS")
                else:
                    os.environ["RAY_API_SERVER_ADDRESS"] = saved
    except ConnectionError as e:
        raise UserError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None


def cpus_free():
    """'Ray has F of T CPUs free': what every wait line says, so a slow start reads as a queue."""
    return (f"Ray has {ray.available_resources().get('CPU', 0):g} of "
            f"{ray.cluster_resources().get('CPU', 0):g} CPUs free")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_for(gpus_per_worker):
    """The process group's backend: NCCL when each worker has a GPU of its own, gloo on CPU or
    when workers share a GPU (NCCL refuses two ranks on one device; gloo all-reduces CUDA
    tensors through the host)."""
    return "nccl" if gpus_per_worker >= 1 else "gloo"


def scaling(workers, gpus_per_worker=0.0, cpus_per_worker=1):
    """CPUs per worker (Ray sets each worker's torch threads to match); a GPU (or a fraction)
    per worker when asked."""
    from ray.train import ScalingConfig
    resources = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    return ScalingConfig(num_workers=workers, use_gpu=bool(gpus_per_worker), resources_per_worker=resources)


def load_trained(checkpoint, cfg, splits, device="cpu"):
    """Rebuild the trained algorithm from a ray.train.Checkpoint (of a Train run or a Tune trial)."""
    from .train import restore
    algorithm = build_algorithm(cfg, splits)
    restore(algorithm, load_state(checkpoint), optimizers=False)
    return place(algorithm, device).eval()


def free_placement_group(hex_id):
    """Remove a placement group (and so any actor still in it) unless it is gone already."""
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    pg = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(hex_id)))
    if ray.util.placement_group_table(pg).get("state", "REMOVED") != "REMOVED":
        remove_placement_group(pg)


def make_trainer(cfg, *, workers, name, storage_path=None, gpus_per_worker=0.0, cpus_per_worker=1, data_dir=None,
                 source=None, callbacks=(), max_failures=2, extra=None):
    """A TorchTrainer for one training run. The same (storage_path, name) resumes that run.
    `source`: [ObjectRef of the data.Source] the workers carve their splits from (else they read
    `data_dir`); `extra`: constant entries added to every report (e.g. the Tune trial's node)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    # A worker's report waits until the controller collects the previous one, which it polls for
    # every 2 s by default: up to 2 s lost per epoch on small data. Ray forwards this variable
    # from here to the controller; set it yourself to override.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    # Ray gives a worker group 60 s to start, then counts a failure and starts it again. On a
    # busy 2-core machine (CI) starting worker processes that import torch can take longer, and
    # each retry starts from scratch, so a sweep never gets going; a cluster waiting for its
    # autoscaler wants more time too. Ten minutes; set the variable yourself to override.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "600")
    return TorchTrainer(
        worker_loop,
        train_loop_config={"cfg": cfg, "data_dir": data_dir, "source": source,
                           "extra": extra or {}},
        torch_config=TorchConfig(backend=backend_for(gpus_per_worker)),
        scaling_config=scaling(workers, gpus_per_worker, cpus_per_worker),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_uri(storage_path), callbacks=list(callbacks),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),   # no per-report INFO lines
            # every epoch is checkpointed; keep the latest few (a resume needs only the last)
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
    )


# ---------------------------------------------------------------- results → MLflow

class MLflowEpochs(UserCallback):
    """Ray Train callback: logs rank 0's metrics of every epoch to one MLflow run as they arrive.
    It runs in the Train controller, which Ray places on the driver's node, while the driver
    waits: one writer at a time, so the default sqlite store is safe."""

    def __init__(self, uri, run_id):
        self.uri, self.run_id = uri, run_id

    def after_report(self, run_context, metrics, checkpoint):
        from mlflow import MlflowClient
        m = metrics[0]
        error = user_error_of(m)
        if error:                           # bad input: no epoch; the driver reads the tag
            MlflowClient(self.uri).set_tag(self.run_id, ERROR_TAG, error[:5000])
            return
        records.log_epoch(MlflowClient(self.uri), self.run_id, {"step": m["step"], "time": tracking.now_ms(), "metrics": m})


class WaitNotice:
    """While a Ray run has logged no epoch yet (resources, workers starting, a restart), print one
    line every `every_s` seconds saying so, with the CPUs Ray has free: on a loaded machine a
    start can take minutes, which must not look like a hang."""

    def __init__(self, what, uri, run_id, every_s=15.0, enabled=True):
        self.what, self.uri, self.run_id, self.every_s, self.enabled = what, uri, run_id, every_s, enabled
        self._stop = None

    def _first_epoch_logged(self):
        from mlflow import MlflowClient
        try:
            return "images_per_s" in MlflowClient(self.uri).get_run(self.run_id).data.metrics
        except Exception:           # a busy store: ask again next time
            return False

    def _watch(self):
        start = time.monotonic()
        while not self._stop.wait(self.every_s):
            if self._first_epoch_logged():
                return
            print(f"waiting for the first epoch of {self.what}: {time.monotonic() - start:.0f} s so far "
                  f"({cpus_free()})", flush=True)

    def __enter__(self):
        import threading
        if self.enabled:
            self._stop = threading.Event()
            threading.Thread(target=self._watch, daemon=True).start()
        return self

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()


def gpus_for(device, workers, have=None, can_grow=True):
    """GPUs per worker for --device, given the cluster's `have` GPUs: cpu = 0; auto = 1 when the
    cluster has one per worker, else 0; cuda = 1, or a share of each GPU when the cluster has
    some but fewer than the workers (two workers on a one-GPU machine get half each). A cluster
    with none gets 1 per worker, which its autoscaler may provide; a local instance (`can_grow`
    false) with none is an error, not a wait for GPUs that never come."""
    if device not in ("cpu", "auto") and not device.startswith("cuda"):
        raise UserError(f"--device must be cpu, cuda or auto, got {device!r}")
    if device == "cpu":
        return 0.0
    if have is None:
        import ray
        have = ray.cluster_resources().get("GPU", 0)
    if device == "auto":
        return 1.0 if have >= workers else 0.0
    if not have and not can_grow:
        raise UserError("--device cuda: Ray sees no GPU on this machine; use --device cpu or auto, "
                        "or join a cluster with GPUs ($RAY_ADDRESS)")
    return 1.0 if have >= workers or not have else have / workers
