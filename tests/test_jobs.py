"""One job, three placements: `run_job` trains a config in this process, as a Ray task or on Ray
Train, and every placement leaves the same kind of record — a FINISHED run with its params, one
metric point per epoch, the test suite, the figures and an MLflow Model — and `save_to` writes
the model file the run logged. Each background mode and a baseline go through each placement
(one tiny epoch per phase, the offline digits)."""
import mlflow
import pytest
import ray
import torch

from backdrop import distributed, records
from backdrop.api import load_model
from backdrop.errors import UserError
from backdrop.job import Placement, run_job
from conftest import logged_model, tiny_config

# Ray Train gets the baseline and the modes whose banks a model rebuilt from a checkpoint must
# bring back (photos, the fixed drawings); the generator's game on Ray Train is test_distributed's,
# and black and noise hold no state: each Ray Train run costs ~30 s of CI.
CASES = [("process", b) for b in ("vanilla", "adv", "black", "noise", "real", "fixed")] \
    + [("task", b) for b in ("vanilla", "adv", "black", "noise", "real", "fixed")] \
    + [("train", b) for b in ("vanilla", "real", "fixed")]
PLACEMENTS = {"process": Placement(), "task": Placement("task"), "train": Placement("train", workers=2)}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    distributed.connect(min_cpus=3)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('jobs') / 'mlflow.db'}"


def config(background):
    if background == "vanilla":
        return tiny_config(method="vanilla", limit=64, batch_size=16)
    return tiny_config(method="adversarial", background=background, mask="heuristic", limit=64, batch_size=16)


@pytest.mark.parametrize("where,background", CASES)
def test_every_placement_records_the_same_run(where, background, store, tmp_path):
    cfg = config(background)
    placement = PLACEMENTS[where]
    if where == "train":
        placement = Placement("train", workers=2, storage_path=str(tmp_path / "ray"))
    out = run_job(cfg, placement, tracking_uri=store, experiment=f"jobs-{background}", run_name=where,
                  progress=False, with_noise=False, save_to=tmp_path / "saved" / "model.pt", device="cpu")
    client = mlflow.MlflowClient(store)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == where
    assert run.data.params["background"] == cfg["background"] and run.data.params["n_train"] == "64"
    epochs = 1 if background == "vanilla" else 2          # the heuristic mask has no mask phase
    assert [m.step for m in client.get_metric_history(out["run_id"], "val/worst")] == list(range(1, epochs + 1))
    assert run.data.metrics["test/clean"] == out["test"]["clean"] and 0 <= out["test"]["worst"] <= 1
    assert {f"class/{k}" for k in range(10)} <= set(run.data.metrics)       # clean accuracy per class
    if where != "train":                                  # one process trained it: its own CPU time
        assert float(run.data.tags[records.CPU_TAG]) > 0
    drawn = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"test_backgrounds.png", "test_per_class.png"} <= drawn
    if background != "vanilla":
        assert {"masks.png", "composites.png"} <= drawn
    # the saved file is the logged MLflow Model's file: both predict alike
    assert logged_model(client, out["run_id"]) is not None
    x = torch.rand(4, 1, 32, 32)
    saved = load_model(tmp_path / "saved" / "model.pt")(x)
    mlflow.set_tracking_uri(store)
    torch.testing.assert_close(load_model(f"runs:/{out['run_id']}/model")(x), saved)
    # whichever placement ran it, the run has the same metric names as the in-process one
    runs = client.search_runs([run.info.experiment_id], "attributes.run_name = 'process'")
    if runs and where != "process":
        assert set(run.data.metrics) == set(runs[0].data.metrics)


def test_a_placement_is_named_and_workers_are_counted():
    with pytest.raises(ValueError, match="process, task or train"):
        Placement("cluster")
    with pytest.raises(UserError, match="--workers must be at least 1, got 0"):
        Placement("train", workers=0)
    for unused in (dict(where="process", workers=2), dict(where="task", storage_path="/tmp/x"),
                   dict(where="train", workers=2, gpus=0.5), dict(where="process", address="auto")):
        with pytest.raises(ValueError, match=f"placement '{unused['where']}'"):
            Placement(**unused)
