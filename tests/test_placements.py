"""Every placement of a job reads the paths a user typed as the user meant them. Ray runs
workers, tasks and its Train controller in working directories of their own, so a relative
`--data-dir ../shared/data`, `$BACKDROP_DATA_DIR`, a relative sqlite store or `--save` path must
be made absolute by the driver. Each command runs from the repo root, as the README shows it,
with the data folder given relative to it."""
import os

import pytest
from mlflow import MlflowClient

from conftest import REPO, SHARED_DATA, run_cli

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"MNIST files not at {SHARED_DATA}")

TINY = ["--limit", "64", "--method", "vanilla", "--epochs-f", "1", "--widths", "8,16,32", "--dense", "32",
        "--batch-size", "16", "--augment", "false"]


def rel(path):
    return os.path.relpath(path, REPO)


def test_train_with_workers_reads_relative_paths(tmp_path):
    """The flag's relative path; $BACKDROP_DATA_DIR's is the sweep test's below (both go through
    data.data_dir_for_workers)."""
    data = rel(SHARED_DATA)                        # ../shared/data in a checkout beside shared/
    assert not os.path.isabs(data)
    store, model = rel(tmp_path / "store.db"), rel(tmp_path / "model.pt")
    proc = run_cli("platform.train", "--workers", "2", "--dataset", "mnist", "--data-dir", data, *TINY,
                   "--tracking-uri", f"sqlite:///{store}", "--save", model, "--storage-path", rel(tmp_path / "ray"),
                   "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "model.pt").is_file()                   # --save is honoured with workers
    client = MlflowClient(f"sqlite:///{tmp_path / 'store.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("backdrop").experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/worst")] == [1]
    assert run.data.params["n_train"] == "64"
    assert "waiting for the first epoch" not in proc.stdout     # --quiet: no waiting lines either


def test_ablation_tasks_read_a_relative_data_dir(tmp_path):
    proc = run_cli("platform.ablate", "mask_off", "--dataset", "mnist", "--data-dir", rel(SHARED_DATA),
                   "--seeds", "1", "--limit", "48", "--widths", "8,16,32", "--batch-size", "16", "--epochs-f", "1", "--epochs-mask", "1", "--epochs-adv", "1",
                   "--tracking-uri", f"sqlite:///{rel(tmp_path / 'a.db')}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'a.db'}")
    runs = client.search_runs([client.get_experiment_by_name("backdrop-ablations").experiment_id],
                              "tags.spec != ''")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)


def test_table1_benchmark_reads_a_relative_data_dir(tmp_path):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BACKDROP_DATA_DIR")}
    proc = subprocess.run([sys.executable, "benchmarks/table1.py", "--dataset", "mnist", "--data-dir", rel(SHARED_DATA),
                           "--methods", "vanilla", "--limit", "64", "--tracking-uri", f"sqlite:///{rel(tmp_path / 't.db')}",
                           "--out", str(tmp_path / "report")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "report" / "report.md").is_file() and "vanilla seed 0" in proc.stdout


def test_sweep_trials_read_a_relative_data_dir(tmp_path):
    space = tmp_path / "mnist.yaml"
    space.write_text("sweep: {trials: 1, workers: 1}\n"
                     "fixed: {dataset: mnist, method: vanilla, limit: 64, widths: [8, 16, 32], dense: 32,\n"
                     "        batch_size: 16, augment: false, epochs_f: 1}\n"
                     "lr_f: {loguniform: [1.0e-3, 2.0e-3]}\n")
    env = {"BACKDROP_DATA_DIR": rel(SHARED_DATA)}              # the environment's relative path
    proc = run_cli("platform.sweep", "--space", str(space), "--name", "rel", "--storage-path", rel(tmp_path / "ray"),
                   "--tracking-uri", f"sqlite:///{rel(tmp_path / 's.db')}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Test-suite accuracy" in proc.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 's.db'}")
    runs = client.search_runs([client.get_experiment_by_name("backdrop-sweeps").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)     # the sweep and its trial


def test_bad_input_in_a_sweeps_workers_stops_the_sweep_in_one_line(tmp_path):
    """Data that goes bad after the driver checked it: the first trial's workers meet it, the
    sweep stops (no retry, no second trial) and says so in one UserError naming the file."""
    import ray

    from backdrop import sweep
    from backdrop.errors import UserError
    from backdrop.search_space import load_space
    from test_distributed import corrupt_after_check
    victim = corrupt_after_check(SHARED_DATA / "mnist", tmp_path / "mnist")
    space = tmp_path / "bad.yaml"
    space.write_text("sweep: {trials: 2, workers: 1, max_concurrent: 1}\n"
                     "fixed: {dataset: mnist, method: vanilla, limit: 64, widths: [8, 16, 32], dense: 32,\n"
                     "        batch_size: 16, augment: false, epochs_f: 1}\n"
                     "lr_f: {loguniform: [1.0e-3, 2.0e-3]}\n")
    opts = sweep.new_options(load_space(space), {"name": "bad", "data_dir": str(tmp_path / "mnist"),
                                                 "storage_path": str(tmp_path / "ray"),
                                                 "tracking_uri": f"sqlite:///{tmp_path / 'b.db'}"})
    try:
        with pytest.raises(UserError, match=victim.name) as e:
            sweep.run_sweep(opts, device="cpu")
    finally:
        ray.shutdown()
    assert "\n" not in str(e.value) and "sweep bad, trial" in str(e.value)
    client = MlflowClient(f"sqlite:///{tmp_path / 'b.db'}")
    runs = client.search_runs([client.get_experiment_by_name("backdrop-sweeps").experiment_id])
    trials = [r for r in runs if r.data.tags.get("backdrop.role") == "trial"]
    parent = [r for r in runs if r.data.tags.get("backdrop.role") == "sweep"]
    assert len(trials) == 1 and victim.name in trials[0].data.tags["backdrop.error"]
    assert trials[0].info.status == "FAILED" and parent[0].info.status == "FAILED"
