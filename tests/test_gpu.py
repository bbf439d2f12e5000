"""The single-process path on a CUDA GPU. CI has no GPU, so these skip there; they run on a lent
GPU machine (docs/BENCHMARKS.md says when they last did). The training data live on the GPU but
every random draw comes from a CPU generator, so a GPU run sees the same batches, augmentations
and noise as a CPU run of the same seed."""
import pytest
import torch

from backdrop.augment import Augment
from backdrop.job import run_job
from conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")


def test_augmentation_on_the_gpu_draws_the_cpu_stream():
    x, m = torch.rand(8, 1, 28, 28), (torch.rand(8, 1, 28, 28) > 0.5).float()
    on_cpu = Augment()(x, m, generator=torch.Generator().manual_seed(3))
    on_gpu = Augment()(x.cuda(), m.cuda(), generator=torch.Generator().manual_seed(3))
    for a, b in zip(on_cpu, on_gpu):
        assert b.is_cuda and torch.allclose(a, b.cpu(), atol=1e-4)


@pytest.mark.parametrize("method", ["vanilla", "attention", "adversarial"])
def test_each_method_trains_and_scores_on_the_gpu(method, tracking_uri):
    # augmentation on (tiny_config turns it off), the Table 1 stabilisers, photographs (drawn on
    # the CPU), symmetric backgrounds (their draws too)
    cfg = tiny_config(method=method, limit=256, augment=True, f_average=0.9, black_fraction=0.25,
                      real_fraction=0.25, symmetric_backgrounds=True)
    out = run_job(cfg, tracking_uri=tracking_uri, experiment="gpu", device="cuda", progress=False,
                  with_noise=False)
    assert set(out["test"]) >= {"clean", "worst"} and 0 <= out["test"]["worst"] <= 1
    assert out["val"]


def test_one_worker_trials_pack_two_to_a_gpu(tmp_path):
    """`gpus_per_worker: 0.5` with one worker per trial: two trials train on one GPU at once."""
    import ray
    from mlflow import MlflowClient
    from ray.tune import ExperimentAnalysis

    from backdrop import sweep
    from backdrop.search_space import parse
    from test_sweep import TINY_SPACE, yaml_space

    space = parse({**yaml_space(TINY_SPACE), "sweep": {"trials": 2, "workers": 1, "gpus_per_worker": 0.5}}, "gpu.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    opts = sweep.new_options(space, {"name": "gpu", "storage_path": str(tmp_path / "ray"), "no_register": True,
                                     "tracking_uri": uri})
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False)
    try:
        assert sweep.concurrency(opts) == 2
        sweep.run_sweep(opts, device="cuda")
    finally:
        ray.shutdown()
    assert {t.last_result["device"] for t in ExperimentAnalysis(opts.path).trials} == {"cuda"}
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("backdrop-sweeps").experiment_id],
                              "tags.`backdrop.role` = 'trial'")
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert len(spans) == 2 and spans[0][1] > spans[1][0]        # the two trials overlapped on the GPU


def test_ray_task_runs_pack_two_to_a_gpu(tmp_path):
    """`table1.py --parallel --gpus-per-run 0.5` (ablate.train_jobs): two runs train on one GPU at
    once, each recorded as run on cuda."""
    import ray
    from mlflow import MlflowClient

    from backdrop import ablate, tracking
    from backdrop.specs import Job, config_key

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = tracking.experiment_id(client, "gpu-tasks")
    jobs = [Job("reference", "gpu", seed, cfg, config_key(cfg))
            for seed, cfg in ((s, tiny_config(seed=s, limit=256)) for s in (0, 1))]
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False)
    try:
        run_of = ablate.train_jobs(client, exp_id, jobs, {}, None, None, print, with_noise=False, gpus_per_run=0.5)
    finally:
        ray.shutdown()
    runs = [client.get_run(run_of[j.key]) for j in jobs]
    assert all(r.data.tags["device"] == "cuda" and r.info.status == "FINISHED" for r in runs)
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert spans[0][1] > spans[1][0]                            # the two runs overlapped on the GPU
