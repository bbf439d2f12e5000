"""Ray Train (backdrop.distributed) on a real local Ray instance: DDP keeps every worker's weights
identical, a worker crash resumes from the last checkpoint with the epoch count continuing, and
`run_job` on Ray Train records a complete MLflow run. One Ray instance serves the whole module."""
import json
import sys
import time

import mlflow
import pytest
import ray
import ray.cloudpickle
import torch
from ray.train import UserCallback

from backdrop import checkpoints, distributed, ray_internals, worker
from backdrop.job import Placement, run_job
from conftest import SHARED_DATA, logged_model, tiny_config

# The recorder below runs in Ray's Train controller, which cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Recorder(UserCallback):
    """Writes every worker's report and every worker error to a JSON-lines file (the controller
    runs on this machine), so the test sees all ranks, not only rank 0."""

    def __init__(self, path):
        self.path = str(path)

    def _write(self, entry):
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def after_report(self, run_context, metrics, checkpoint):
        self._write({"reports": metrics, "checkpoint": checkpoint.path if checkpoint else None})

    def after_exception(self, run_context, worker_exceptions):
        self._write({"errors": {str(rank): repr(e) for rank, e in worker_exceptions.items()}})


def read(path):
    return [json.loads(line) for line in open(path)]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    distributed.connect(min_cpus=3)
    yield
    ray.shutdown()


def test_ddp_keeps_identical_weights(tmp_path):
    # end_to_end with ascent:descent 2 exercises every DDP path: f, f_m and f_b trained in
    # alternating descent/ascent steps, with frozen players called unwrapped.
    cfg = tiny_config(limit=96, batch_size=16, schedule="end_to_end", ascent_per_descent=2.0, epochs_adv=2)
    log = tmp_path / "reports.jsonl"
    distributed.make_trainer(cfg, workers=2, name="ddp", storage_path=str(tmp_path / "ray"),
                             callbacks=[Recorder(log)], max_failures=0).fit()
    entries = read(log)
    assert [e["reports"][0]["step"] for e in entries] == [1, 2, 3]
    digests = []
    for e in entries:
        rank0, rank1 = e["reports"]
        assert rank0["world"] == rank1["world"] == 2
        assert rank0["weights_sha"] == rank1["weights_sha"], e      # identical after every step
        digests.append(rank0["weights_sha"])
        loss = next(k for k in rank0 if k.endswith("/loss_f"))
        assert rank0[loss] != rank1[loss]                          # ...yet trained on different shards
    assert len(set(digests)) == 3                                  # and the weights did move
    assert "val/worst" in entries[-1]["reports"][0] and "val/worst" not in entries[-1]["reports"][1]


class KillAfterFirstEpoch(Recorder):
    """Records like Recorder and, once epoch 1 is reported and checkpointed, kills the last rank's
    process (SIGKILL, from outside: a real crash, as a lost node or an OOM kill)."""

    def __init__(self, path):
        super().__init__(path)
        self.killed = False

    def after_report(self, run_context, metrics, checkpoint):
        import os
        import signal
        super().after_report(run_context, metrics, checkpoint)
        if metrics[0]["step"] == 1 and not self.killed:
            self.killed = True
            os.kill(metrics[-1]["pid"], signal.SIGKILL)


def test_worker_crash_resumes_from_checkpoint(tmp_path):
    cfg = tiny_config(limit=64, batch_size=16)            # 3 epochs: classifier, mask, adversarial
    log = tmp_path / "reports.jsonl"
    result = distributed.make_trainer(cfg, workers=2, name="crash", storage_path=str(tmp_path / "ray"),
                                      callbacks=[KillAfterFirstEpoch(log)], max_failures=1).fit()
    entries = read(log)
    errors = [e["errors"] for e in entries if "errors" in e]
    # one failure of the group, rank 1's (its process gone: a failed health check or a dead actor,
    # as Ray happens to notice first; rank 0 then loses its gloo peer too)
    assert len(errors) == 1 and "1" in errors[0], entries
    reports = [e["reports"][0] for e in entries if "reports" in e]
    # epoch 1 ran, the crash lost epoch 2 before its report, the restarted group resumed from
    # epoch 1's checkpoint: the epoch count continues, nothing is trained twice from scratch.
    assert [r["step"] for r in reports] == [1, 2, 3]
    assert [r["resumed_from"] for r in reports] == [0, 1, 1]
    assert [r["phase_index"] for r in reports] == [0, 1, 2]
    state = checkpoints.load_state(result.checkpoint)
    assert (state["step"], state["phase_index"], state["epoch"]) == (3, 2, 1)
    assert set(state["model"]) and set(state["optimizers"]) == {"f", "f_m", "f_b"}


@ray.remote(num_cpus=0)
class GroupMaker:
    """Stands in for a Train controller: an actor that reserves a placement group."""

    def make(self):
        from ray.util.placement_group import placement_group
        pg = placement_group([{"CPU": 1}])
        ray.get(pg.ready())
        return pg.id.hex()


def test_sweep_frees_the_groups_of_dead_controllers_only():
    """FreeOrphanedResources removes a placement group whose creating actor died (as a Train
    controller killed with its Tune trial does), read from the GCS rather than the State API;
    it leaves alone a group whose creator lives and one the driver made (Tune's trial groups)."""
    from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group

    from backdrop.sweep import FreeOrphanedResources
    killed, alive = GroupMaker.remote(), GroupMaker.remote()
    orphan, kept = ray.get(killed.make.remote()), ray.get(alive.make.remote())
    ours = placement_group([{"CPU": 0.5}])
    ray.get(ours.ready())
    assert ray_internals.orphaned_placement_groups() == []
    ray.kill(killed)
    deadline = time.time() + 30
    while orphan not in ray_internals.orphaned_placement_groups() and time.time() < deadline:
        time.sleep(0.2)
    assert ray_internals.orphaned_placement_groups() == [orphan]
    FreeOrphanedResources(every_s=0).on_step_begin(0, [])
    groups = {h: PlacementGroup(ray.PlacementGroupID(bytes.fromhex(h))) for h in (orphan, kept)} | {"ours": ours}
    assert {k: placement_group_table(pg)["state"] for k, pg in groups.items()} == \
        {orphan: "REMOVED", kept: "CREATED", "ours": "CREATED"}
    for pg in (groups[kept], ours):
        remove_placement_group(pg)
    ray.kill(alive)


def test_a_ray_train_job_records_mlflow(tmp_path, tracking_uri):
    cfg = tiny_config(limit=64, batch_size=16)
    out = run_job(cfg, Placement("train", workers=2, storage_path=str(tmp_path / "ray")), tracking_uri=tracking_uri,
                  experiment="dist", device="cpu", run_name="ddp-run")
    assert set(out) == {"run_id", "test", "noise", "val"} and 0 <= out["test"]["worst"] <= 1
    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "ddp-run"
    assert run.data.params["workers"] == "2" and run.data.params["lr_f"] == str(cfg["lr_f"])
    assert run.data.params["gpus_per_worker"] == "0.0"
    steps = [m.step for m in client.get_metric_history(out["run_id"], "val/worst")]
    assert steps == [1, 2, 3]                                 # one point per epoch, none twice
    assert run.data.metrics["test/clean"] == out["test"]["clean"]
    assert len(client.get_metric_history(out["run_id"], "noise/accuracy")) == len(out["noise"])
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"test_backgrounds.png", "noise_curve.png", "masks.png"} <= artifacts
    assert logged_model(client, out["run_id"]) is not None


def test_gpus_shared_when_fewer_than_workers_and_gloo_then():
    assert distributed.gpus_for("cpu", 2, have=4) == 0.0
    assert distributed.gpus_for("auto", 2, have=1) == 0.0      # auto never packs: CPU instead
    assert distributed.gpus_for("auto", 2, have=2) == 1.0
    assert distributed.gpus_for("cuda", 2, have=4) == 1.0
    assert distributed.gpus_for("cuda", 2, have=1) == 0.5      # one GPU, two workers: half each
    assert distributed.gpus_for("cuda", 4, have=0) == 1.0      # none yet: an autoscaler may add them
    assert distributed.backend_for(1.0) == "nccl"
    assert distributed.backend_for(0.5) == "gloo"               # NCCL refuses two ranks on one GPU
    assert distributed.backend_for(0.0) == "gloo"
    with pytest.raises(distributed.UserError, match="--device must be cpu, cuda or auto"):
        distributed.gpus_for("tpu", 2, have=0)
    with pytest.raises(distributed.UserError, match="Ray sees no GPU"):   # a local instance never grows
        distributed.gpus_for("cuda", 2, have=0, can_grow=False)


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")


@needs_gpu
def test_ddp_workers_sharing_one_gpu_keep_identical_weights(tmp_path):
    # Two ranks on one GPU: NCCL would refuse them, so make_trainer picks gloo for the share.
    cfg = tiny_config(limit=96, batch_size=16, augment=True, schedule="end_to_end", epochs_adv=2)
    log = tmp_path / "reports.jsonl"
    distributed.make_trainer(cfg, workers=2, name="ddp-gpu", storage_path=str(tmp_path / "ray"),
                             gpus_per_worker=0.5, callbacks=[Recorder(log)], max_failures=0).fit()
    entries = read(log)
    assert [e["reports"][0]["step"] for e in entries] == [1, 2, 3]
    for e in entries:
        rank0, rank1 = e["reports"]
        assert rank0["weights_sha"] == rank1["weights_sha"], e


@needs_gpu
def test_a_ray_train_job_on_cuda_shares_the_gpu(tmp_path, tracking_uri):
    have = ray.cluster_resources().get("GPU", 0)
    out = run_job(tiny_config(limit=64, batch_size=16, augment=True),
                  Placement("train", workers=2, storage_path=str(tmp_path / "ray")),
                  tracking_uri=tracking_uri, experiment="dist-gpu", device="cuda")
    assert 0 <= out["test"]["worst"] <= 1
    run = mlflow.MlflowClient(tracking_uri).get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    # what the workers were actually given: half a GPU each on a one-GPU machine
    assert float(run.data.params["gpus_per_worker"]) == min(1.0, have / 2)


def corrupt_after_check(src, dest):
    """A copy of the MNIST folder whose test labels are damaged *after* this process verified
    them: same size, same mtime, so the driver's check still passes from its cache, while every
    worker (a fresh process) reads the damaged bytes: bad input only a worker can detect."""
    import os
    import shutil

    from backdrop.data import load_dataset
    shutil.copytree(src, dest)
    load_dataset("mnist", str(dest), limit=8)
    victim = dest / "t10k-labels-idx1-ubyte.gz"
    st = victim.stat()
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    return victim


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"MNIST files not at {SHARED_DATA}")
def test_bad_input_in_a_worker_is_not_retried(tmp_path, tracking_uri):
    victim = corrupt_after_check(SHARED_DATA / "mnist", tmp_path / "mnist")
    cfg = tiny_config(dataset="mnist", method="vanilla", limit=64, batch_size=16)
    log = tmp_path / "reports.jsonl"
    t0 = time.time()
    distributed.make_trainer(cfg, workers=2, name="bad", storage_path=str(tmp_path / "ray"),
                                      data_dir=str(tmp_path / "mnist"), callbacks=[Recorder(log)],
                                      max_failures=2).fit()
    entries = read(log)
    assert not [e for e in entries if "errors" in e], entries          # no worker failed: no retry
    [entry] = entries                                                   # one report, from one attempt
    assert {r["rank"] for r in entry["reports"]} == {0, 1}
    assert all(victim.name in r[worker.USER_ERROR] for r in entry["reports"])
    with pytest.raises(distributed.UserError, match=victim.name) as e:
        worker.raise_user_error(entry["reports"][0], "training")
    assert "\n" not in str(e.value) and "(worker 0: " in str(e.value)
    assert time.time() - t0 < 300
    # `platform.train --workers 2` sends its workers the data the driver read (Ray's object store):
    # the damaged file, read by no worker, does not stop the run
    out = run_job(cfg, Placement("train", workers=2, storage_path=str(tmp_path / "ray2")), data_dir=str(tmp_path / "mnist"),
                  tracking_uri=tracking_uri, experiment="copy", device="cpu", progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    assert client.get_run(out["run_id"]).info.status == "FINISHED" and "backdrop.error" not in client.get_run(
        out["run_id"]).data.tags


def test_a_ray_internal_that_moved_warns_once_and_turns_itself_off():
    """What ray_internals does if a Ray upgrade moves a private module it reads: one warning
    naming the helper, then the helper's harmless default, silently."""
    import warnings

    @ray_internals._guarded(default=[])
    def reads_a_moved_module():
        from ray._private import no_such_module   # noqa: F401  (absent in every Ray)
        return ["never"]

    with pytest.warns(RuntimeWarning, match="reads_a_moved_module is off"):
        assert reads_a_moved_module() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reads_a_moved_module() == []


def test_own_images_travel_to_the_workers_after_the_folder_is_gone(tmp_path, tracking_uri):
    """A user's folder is read once by the driver; removed after that, a 2-worker Ray Train run
    still trains on it (the workers get the driver's copy through Ray) and is recorded."""
    import shutil

    from backdrop.data import source_of
    from test_user_data import studio_images, write_folder
    folder = write_folder(tmp_path / "photos", studio_images(n_per_class=12))
    cfg = tiny_config(dataset=f"folder:{folder}", batch_size=8, limit=0)
    source_of(cfg)
    shutil.rmtree(folder)
    out = run_job(cfg, Placement("train", workers=2, storage_path=str(tmp_path / "ray")), tracking_uri=tracking_uri,
                  experiment="own", device="cpu", progress=False)
    run = mlflow.MlflowClient(tracking_uri).get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["dataset"] == f"folder:{folder}"
    assert set(out["test"]) >= {"clean", "worst"}
